//! What systemd (or any service manager that speaks `sd_notify`) hears from the agent:
//! ready once it can work, a status line in words for `systemctl status`, the watchdog
//! while the main loop turns, reloading, and stopping. Without `NOTIFY_SOCKET` every
//! call returns at once.

use std::time::Duration;

use sd_notify::NotifyState;
use tracing::debug;

/// The agent's line to its service manager.
#[derive(Debug)]
pub(crate) struct ServiceManager {
    enabled: bool,
    /// The status last sent, so an unchanged one is not sent again.
    status: String,
}

impl ServiceManager {
    /// Listens to `NOTIFY_SOCKET`, when the service manager set it.
    pub(crate) fn from_env() -> ServiceManager {
        ServiceManager {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
            status: String::new(),
        }
    }

    /// How often the watchdog must hear from the main loop: half of what the service
    /// manager allows, when it watches at all.
    pub(crate) fn watchdog_every(&self) -> Option<Duration> {
        self.enabled
            .then(sd_notify::watchdog_enabled)
            .flatten()
            .map(|allowed| allowed / 2)
    }

    /// The configuration is loaded, the journal open, the queues probed: the agent
    /// works from now on, whether or not the server can be reached yet.
    pub(crate) fn ready(&mut self, status: String) {
        self.send(&[NotifyState::Ready, NotifyState::Status(&status)]);
        self.status = status;
    }

    /// Tells what the agent is doing, in words, when that changed.
    pub(crate) fn status(&mut self, status: String) {
        if status != self.status {
            self.send(&[NotifyState::Status(&status)]);
            self.status = status;
        }
    }

    /// The main loop is turning.
    pub(crate) fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// A reload begins; [`ServiceManager::ready`] ends it, whether it was applied or not.
    pub(crate) fn reloading(&self) {
        if !self.enabled {
            return;
        }
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    pub(crate) fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        if let Err(err) = sd_notify::notify(states) {
            debug!("cannot tell the service manager: {err}");
        }
    }
}
