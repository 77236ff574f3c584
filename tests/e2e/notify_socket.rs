//! A `NOTIFY_SOCKET` the test owns, as systemd's would be: every datagram the agent
//! sends is kept, in order, for the test to wait on.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::wait_until;

/// The notifications heard so far, one string per datagram.
pub struct NotifySocket {
    heard: Arc<Mutex<Vec<String>>>,
    listener: tokio::task::JoinHandle<()>,
}

impl NotifySocket {
    /// Binds a datagram socket at `path` and listens on it.
    pub fn bind(path: &Path) -> NotifySocket {
        let socket = tokio::net::UnixDatagram::bind(path).expect("notify socket");
        let heard: Arc<Mutex<Vec<String>>> = Arc::default();
        let listener = tokio::spawn({
            let heard = heard.clone();
            async move {
                let mut buffer = vec![0u8; 4096];
                while let Ok(n) = socket.recv(&mut buffer).await {
                    let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
                    heard.lock().unwrap().push(message);
                }
            }
        });
        NotifySocket { heard, listener }
    }

    /// Waits until a notification after the first `after` contains every one of
    /// `parts`; returns its index.
    pub async fn wait_after(&self, after: usize, parts: &[&str]) -> usize {
        wait_until(
            &format!("systemd to hear {parts:?}"),
            Duration::from_secs(20),
            || {
                let heard = self.heard.lock().unwrap();
                let found = heard
                    .iter()
                    .enumerate()
                    .skip(after)
                    .find(|(_, message)| parts.iter().all(|part| message.contains(part)))
                    .map(|(index, _)| index);
                std::future::ready(found)
            },
        )
        .await
    }

    /// Waits until a notification contains every one of `parts`; returns its index.
    pub async fn wait(&self, parts: &[&str]) -> usize {
        self.wait_after(0, parts).await
    }

    /// How many notifications contain `part`.
    pub fn count(&self, part: &str) -> usize {
        self.heard
            .lock()
            .unwrap()
            .iter()
            .filter(|message| message.contains(part))
            .count()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.listener.abort();
    }
}
