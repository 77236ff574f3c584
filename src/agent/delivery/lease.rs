//! The lease on a delivery while this agent works on it: kept renewed during the
//! transfer, renewed once more right before the first file moves in, and judged on
//! the server's clock.

use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;
use tracing::warn;

use super::{Outcome, Worker};
use crate::agent::client::ClientError;

/// Time a lease must have left for a drop to go ahead without a fresh renewal: the
/// moves take milliseconds, the rest allows for clocks not quite in step.
const LEASE_MARGIN: time::Duration = time::Duration::seconds(5);

/// The lease this agent holds on a delivery: the expiry the server granted last.
pub(super) struct Lease {
    expires_at: Mutex<OffsetDateTime>,
}

impl Lease {
    pub(super) fn new(expires_at: OffsetDateTime) -> Lease {
        Lease {
            expires_at: Mutex::new(expires_at),
        }
    }

    fn expires_at(&self) -> OffsetDateTime {
        *self.expires_at.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the expiry of the latest renewal, even when it is earlier than the one
    /// before: the server's word now is what counts.
    fn renewed(&self, expires_at: OffsetDateTime) {
        *self.expires_at.lock().unwrap_or_else(|p| p.into_inner()) = expires_at;
    }

    /// Whether the lease still has time left at `server_now`, with a margin for the
    /// moves themselves and for clocks that are not quite in step. Without the server's
    /// time (no heartbeat answered since the agent started) it cannot be told: no.
    pub(super) fn has_time_left(&self, server_now: Option<OffsetDateTime>) -> bool {
        let last_moment = self.expires_at().checked_sub(LEASE_MARGIN);
        matches!((last_moment, server_now), (Some(last), Some(now)) if last > now)
    }
}

impl Worker {
    /// Renews the lease at a third of its remaining length until the server says it is
    /// lost; returns why. Transient failures are logged and tried again next time.
    pub(super) async fn keep_lease(&self, id: &str, lease: &Lease) -> String {
        loop {
            let now = self
                .client
                .server_now()
                .unwrap_or_else(OffsetDateTime::now_utc);
            let remaining = lease.expires_at() - now;
            let wait = Duration::try_from(remaining / 3)
                .unwrap_or(Duration::ZERO)
                .clamp(Duration::from_secs(1), Duration::from_secs(300));
            tokio::time::sleep(wait).await;
            match self.client.renew(id).await {
                Ok(renewed) => self.extend_lease(id, lease, renewed.lease_expires_at),
                Err(err @ ClientError::Refused { .. }) => return err.to_string(),
                Err(err) => warn!("could not renew the lease, will try again: {err}"),
            }
        }
    }

    /// Notes a renewal, in memory and in the journal (a restart judges by it).
    fn extend_lease(&self, id: &str, lease: &Lease, expires_at: OffsetDateTime) {
        lease.renewed(expires_at);
        if let Err(err) = self.journal.set_lease(id, expires_at) {
            warn!("{err}");
        }
    }

    /// The protocol asks for a renewal right before the first file moves in. When the
    /// server cannot be reached, the drop goes ahead only while the latest lease granted
    /// has time left on the server's clock. When files of the delivery are in the
    /// hotfolder already (a drop interrupted by a restart), an unreachable server is
    /// waited for: nothing more moves until it says whether the lease is still ours.
    pub(super) async fn renew_before_drop(
        &self,
        id: &str,
        lease: &Lease,
        drop_begun: bool,
    ) -> Result<(), Outcome> {
        let mut pause = Duration::from_secs(1);
        loop {
            let err = match self.client.renew(id).await {
                Ok(renewed) => {
                    // Not journaled: the files move at once, and a restart renews
                    // again before it moves anything.
                    lease.renewed(renewed.lease_expires_at);
                    return Ok(());
                }
                Err(err @ ClientError::Refused { .. }) => {
                    return Err(Outcome::LeaseLost(err.to_string()))
                }
                Err(err) => err,
            };
            if lease.has_time_left(self.client.server_now()) {
                warn!(
                    "could not renew the lease before the drop, dropping within the lease: {err}"
                );
                return Ok(());
            }
            if !drop_begun {
                return Err(Outcome::LeaseLost(format!(
                    "lease ran out and could not be renewed: {err}"
                )));
            }
            warn!("files of this delivery are in the hotfolder already and its lease ran out; moving no more until the server confirms the lease: {err}");
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.shutdown.wait() => return Err(Outcome::Interrupted),
            }
            pause = (pause * 2).min(Duration::from_secs(60));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_judged_only_on_a_known_server_clock() {
        let now = OffsetDateTime::now_utc();
        let lease = Lease::new(now + time::Duration::seconds(30));
        assert!(lease.has_time_left(Some(now)));
        assert!(!lease.has_time_left(Some(now + time::Duration::seconds(26))));
        assert!(!lease.has_time_left(None));
        lease.renewed(now + time::Duration::seconds(3));
        assert!(!lease.has_time_left(Some(now)), "the latest renewal counts");
    }
}
