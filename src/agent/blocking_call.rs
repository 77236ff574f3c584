//! File-system work that may hang, such as looking at a hotfolder on a network share
//! that stopped answering, run off the async runtime with a time limit. The check loop
//! never waits on it for longer, and while one run hangs no second one is started, so
//! a dead share costs one stuck thread, not one per heartbeat.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// One kind of blocking work, run at most once at a time.
#[derive(Debug)]
pub(crate) struct BlockingCall<T> {
    limit: Duration,
    /// A run that outlived its limit, and since when it runs.
    hanging: Option<(JoinHandle<T>, Instant)>,
}

impl<T: Send + 'static> BlockingCall<T> {
    pub(crate) fn new(limit: Duration) -> BlockingCall<T> {
        BlockingCall {
            limit,
            hanging: None,
        }
    }

    /// Runs `work` on the blocking pool and waits up to the limit for it. While an
    /// earlier run still hangs, `work` is not run and nothing is waited for: the
    /// earlier run's answer is taken once it comes. The error says, in words, why
    /// there is no answer.
    pub(crate) async fn run(
        &mut self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let (mut handle, started) = match self.hanging.take() {
            Some((handle, started)) if !handle.is_finished() => {
                let since = started.elapsed().as_secs();
                self.hanging = Some((handle, started));
                return Err(format!("has not answered for {since} s"));
            }
            Some(earlier) => earlier,
            None => (tokio::task::spawn_blocking(work), Instant::now()),
        };
        let waited = tokio::time::timeout(self.limit, &mut handle).await;
        match waited {
            Ok(Ok(value)) => Ok(value),
            // Nothing hangs then, and the next run starts afresh.
            Ok(Err(join)) => Err(format!("stopped: {join}")),
            Err(_) => {
                let since = started.elapsed().as_secs();
                self.hanging = Some((handle, started));
                Err(format!("has not answered for {since} s"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hanging_call_is_waited_for_again_and_never_started_twice() {
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let mut call = BlockingCall::new(Duration::from_millis(20));
        let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = started.clone();
        let first = call
            .run(move || {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                hold.recv().unwrap();
                "first"
            })
            .await;
        assert_eq!(first, Err("has not answered for 0 s".to_string()));
        let counter = started.clone();
        let again = call
            .run(move || {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                "second"
            })
            .await;
        assert!(again.is_err());
        release.send(()).unwrap();
        // The earlier run's answer comes back; the second work never ran.
        let mut answer = Err(String::new());
        while answer.is_err() {
            answer = call.run(|| "third").await;
        }
        assert_eq!(answer, Ok("first"));
        assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(call.run(|| "fourth").await, Ok("fourth"));
    }
}
