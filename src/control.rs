//! What the operating system asks of a running tbot, as one small value passed down:
//! stop (SIGTERM from systemd, Ctrl-C) or re-read the configuration (SIGHUP from
//! `systemctl reload`). The signals feed it; the agent and the mock server only see
//! the value, so tests drive both without sending signals.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::shutdown::Shutdown;

/// Stop and reload requests for one process.
#[derive(Debug, Clone, Default)]
pub struct Control {
    shutdown: Shutdown,
    reload: Arc<Notify>,
}

impl Control {
    pub fn new() -> Control {
        Control::default()
    }

    /// A control fed by this process's signals: SIGTERM and SIGINT stop, SIGHUP asks
    /// for a reload and never stops tbot (a closed terminal sends it too).
    pub fn from_signals() -> anyhow::Result<Control> {
        let control = Control::new();
        control.listen_to_signals()?;
        Ok(control)
    }

    /// The stop signal, for whoever must stop.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Asks whoever waits in [`Control::reload_requested`] to re-read the configuration.
    /// Requests made while one reload runs fold into one more.
    pub fn request_reload(&self) {
        self.reload.notify_one();
    }

    /// Returns when a reload was requested.
    pub async fn reload_requested(&self) {
        self.reload.notified().await;
    }

    #[cfg(unix)]
    fn listen_to_signals(&self) -> anyhow::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hangup = signal(SignalKind::hangup())?;
        let control = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("SIGINT received"),
                    _ = hangup.recv() => {
                        tracing::info!("SIGHUP received");
                        control.request_reload();
                        continue;
                    }
                }
                break;
            }
            control.shutdown.trigger();
        });
        Ok(())
    }

    #[cfg(not(unix))]
    fn listen_to_signals(&self) -> anyhow::Result<()> {
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                shutdown.trigger();
            }
        });
        Ok(())
    }
}
