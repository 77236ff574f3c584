//! The rules a person can change while the server runs: AutoSend, held claims, how
//! long a queue stays connected, leases and the pause before a failed delivery returns.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::jobs::JobState;
use super::Model;

/// Server settings a person can change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// A queue with no heartbeat for this long is not connected and cannot be chosen.
    #[serde(with = "humantime_serde")]
    pub queue_ttl: Duration,
    /// How long a claim leases a delivery to one agent.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How long a delivery failed as retryable waits before it can be claimed again.
    #[serde(with = "humantime_serde")]
    pub retry_hold: Duration,
    /// Every approved job goes to production without anyone sending it.
    pub autosend: bool,
    /// Claims with `wait_s` are held open until work comes (long polling); off, the
    /// server answers every claim at once, as a server without long polling would.
    pub hold_claims: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            queue_ttl: Duration::from_secs(48 * 3600),
            lease: Duration::from_secs(300),
            retry_hold: Duration::from_secs(60),
            autosend: false,
            hold_claims: true,
        }
    }
}

/// A change to some settings; what is not given stays as it is. Read from the mock
/// server's settings file, the operator API and the command line alike.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsChange {
    pub autosend: Option<bool>,
    pub hold_claims: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    pub queue_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub lease: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub retry_hold: Option<Duration>,
}

impl Settings {
    /// Applies the durations and the AutoSend switch of `change`. Turning AutoSend on
    /// for a running server also sends approved jobs: use [`Model::change_settings`].
    pub fn apply(&mut self, change: &SettingsChange) {
        if let Some(ttl) = change.queue_ttl {
            self.queue_ttl = ttl;
        }
        if let Some(lease) = change.lease {
            self.lease = lease;
        }
        if let Some(hold) = change.retry_hold {
            self.retry_hold = hold;
        }
        if let Some(on) = change.autosend {
            self.autosend = on;
        }
        if let Some(hold) = change.hold_claims {
            self.hold_claims = hold;
        }
    }
}

impl Model {
    /// Changes settings on a running server. Turning AutoSend on sends every job
    /// already approved.
    pub fn change_settings(&mut self, change: &SettingsChange, now: OffsetDateTime) {
        let was_on = self.settings.autosend;
        self.settings.apply(change);
        if self.settings.autosend && !was_on {
            let approved: Vec<String> = self
                .jobs
                .values()
                .filter(|job| job.state == JobState::Approved)
                .map(|job| job.id.clone())
                .collect();
            for id in approved {
                self.autosend(&id, now);
            }
        }
    }
}
