//! Sends the reports the journal says the server is owed (complete, fail, events), in
//! order, and keeps them until the server has them: a server that is down costs one
//! quiet retry now and then, not a lost report.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tracing::{debug, error, warn};

use super::client::{ClientError, JobSideClient};
use super::events::{Event, Events};
use super::journal::{Journal, Owed, Report};
use crate::shutdown::Shutdown;

/// An event report older than this is dropped with a warning (PROTOCOL.md, events).
const EVENT_MAX_AGE: time::Duration = time::Duration::days(1);

/// Longest pause between rounds while the server cannot be reached.
const MAX_PAUSE: Duration = Duration::from_secs(60);

/// How many reports are read from the journal at a time.
const BATCH: usize = 64;

/// How many deliveries' reports are sent at once.
const PARALLEL: usize = 8;

/// How often the outbox is looked at even when nothing woke the reporter.
const IDLE_CHECK: Duration = Duration::from_secs(60);

/// First pause before a report whose answer could not be read is sent again; it
/// doubles with each try, up to [`MAX_UNREADABLE_PAUSE`].
const UNREADABLE_PAUSE: Duration = Duration::from_secs(1);

/// Longest pause between tries of a report whose answers cannot be read.
const MAX_UNREADABLE_PAUSE: Duration = Duration::from_secs(15 * 60);

/// The sender of journaled reports.
pub(crate) struct Reporter {
    pub(crate) client: JobSideClient,
    pub(crate) journal: Arc<Journal>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) events: Events,
}

impl Reporter {
    /// Sends reports as they are queued until shutdown, pausing with back-off while the
    /// server cannot be reached.
    pub async fn run(self, shutdown: Shutdown) {
        let mut pause = Duration::from_secs(1);
        loop {
            let wait = match self.flush().await {
                Ok(()) => {
                    pause = Duration::from_secs(1);
                    self.until_next_due().unwrap_or(IDLE_CHECK).min(IDLE_CHECK)
                }
                Err(err) => {
                    debug!("reports wait for the server: {err}; next try in {pause:?}");
                    let wait = pause;
                    pause = (pause * 2).min(MAX_PAUSE);
                    wait
                }
            };
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// How long until a report held back after an unreadable answer is due again.
    fn until_next_due(&self) -> Option<Duration> {
        let due = self.journal.next_report_due().ok()??;
        Some(Duration::try_from(due - OffsetDateTime::now_utc()).unwrap_or(Duration::ZERO))
    }

    /// Sends every queued report. Reports of one delivery go in order; those of
    /// different deliveries go side by side, a few at a time, and are cleared from the
    /// journal together. Stops at the first transient failure.
    pub async fn flush(&self) -> Result<(), ClientError> {
        loop {
            let reports = self
                .journal
                .reports(BATCH)
                .map_err(|err| ClientError::BadResponse(err.to_string()))?;
            let full = reports.len() == BATCH;
            let mut groups: Vec<Vec<Report>> = Vec::new();
            for report in reports {
                match groups.iter_mut().find(|g| g[0].delivery == report.delivery) {
                    Some(group) => group.push(report),
                    None => groups.push(vec![report]),
                }
            }
            let outcomes: Vec<(Vec<Report>, Option<ClientError>)> =
                futures_util::stream::iter(groups)
                    .map(|group| self.send_group(group))
                    .buffer_unordered(PARALLEL)
                    .collect()
                    .await;
            let done: Vec<Report> = outcomes
                .iter()
                .flat_map(|(done, _)| done.iter().cloned())
                .collect();
            if let Err(err) = self.journal.reports_done(&done) {
                // Sent, but not crossed off: pause rather than send them again at once.
                error!("{err}");
                return Err(ClientError::BadResponse(err.to_string()));
            }
            if let Some(err) = outcomes.into_iter().find_map(|(_, failed)| failed) {
                return Err(err);
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Sends one delivery's reports in order; returns those that are done with (sent,
    /// or given up) and the transient failure that stopped the rest, if any.
    async fn send_group(&self, group: Vec<Report>) -> (Vec<Report>, Option<ClientError>) {
        let mut done = Vec::new();
        for report in group {
            let owed = match &report.owed {
                Ok(owed) => owed.clone(),
                Err(err) => {
                    error!(delivery = %report.delivery, "journaled report {} is unreadable, giving it up: {err}", report.seq);
                    done.push(report);
                    continue;
                }
            };
            if let Owed::Event(event) = &owed {
                if OffsetDateTime::now_utc() - report.created_at > EVENT_MAX_AGE {
                    warn!(delivery = %report.delivery, path = %event.path, "dropping a {} event the server has not taken for a day", owed.label());
                    done.push(report);
                    continue;
                }
            }
            match self.send(&report.delivery, &owed).await {
                Ok(()) => {
                    self.events.emit(Event::Reported {
                        delivery: &report.delivery,
                        report: owed.label(),
                    });
                    done.push(report);
                }
                Err(err @ ClientError::Refused { .. }) => {
                    if err.code() == Some("already_completed") || err.code() == Some("lease_lost") {
                        error!(delivery = %report.delivery, "the server says another agent has this delivery, although it was dropped here: {err}");
                    } else {
                        warn!(delivery = %report.delivery, "the server refused the report, giving it up: {err}");
                    }
                    done.push(report);
                }
                Err(err @ ClientError::BadResponse(_)) => {
                    // The server took the request but its answer makes no sense: send it
                    // again later, with a growing pause, and let the others go on.
                    let pause = UNREADABLE_PAUSE
                        .saturating_mul(1 << report.attempts.min(16))
                        .min(MAX_UNREADABLE_PAUSE);
                    warn!(delivery = %report.delivery, report = %owed.label(), attempts = report.attempts + 1,
                        "the server's answer to the report cannot be read; sending it again in {}: {err}",
                        humantime::format_duration(pause));
                    let retry_at = OffsetDateTime::now_utc() + pause;
                    if let Err(journal) =
                        self.journal
                            .report_failed(&report, &err.to_string(), Some(retry_at))
                    {
                        // Not held back in the journal: pause here instead.
                        error!("{journal}");
                        return (done, Some(err));
                    }
                    return (done, None);
                }
                Err(err) => {
                    if let Err(journal) =
                        self.journal.report_failed(&report, &err.to_string(), None)
                    {
                        error!("{journal}");
                    }
                    return (done, Some(err));
                }
            }
        }
        (done, None)
    }

    async fn send(&self, id: &str, owed: &Owed) -> Result<(), ClientError> {
        match owed {
            Owed::Complete(request) => self.client.complete(id, request).await.map(drop),
            Owed::Fail(request) => self.client.fail(id, request).await,
            Owed::Event(request) => self.client.event(id, request).await,
        }
    }
}
