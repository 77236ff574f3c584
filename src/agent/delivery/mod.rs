//! One delivery's way through the agent, as explicit steps: check, transfer (with
//! verification), drop, report. Claiming happens in the check loop. Each step is
//! written to the journal before it takes effect, so a delivery interrupted at any
//! point, even by a power cut, is carried on after a restart and never dropped twice.

mod after_files;
mod drop_step;
mod job_folder;
mod lease;
mod placement;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use tokio::sync::Notify;
use tracing::{error, info, warn, Instrument};

use super::check::check;
use super::client::{ClientError, JobSideClient};
use super::events::{Event, Events};
use super::journal::{Entry, FileState, Journal, Owed, Step};
use super::queue_set::QueueSet;
use super::staging::StagingDir;
use super::transfer::{fetch, Progress, TransferError};
use super::transfer_slots::TransferSlots;
use crate::protocol::{CompleteRequest, Delivery, DroppedFile, FailRequest};
use crate::shutdown::Shutdown;
use drop_step::{discard_staging, with_landed, FilePlan, StagedPieces};
use lease::Lease;

/// How many times one file's transfer is tried before the delivery is given back.
pub const TRANSFER_ATTEMPTS: usize = 3;

/// The longest file name assumed where the file system does not say (most take 255).
const DEFAULT_NAME_MAX: usize = 255;

/// What became of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every file is in the hotfolder.
    Completed(Vec<DroppedFile>),
    /// Given up: `retryable` lets the server hand it out again.
    Failed { reason: String, retryable: bool },
    /// Another agent has it now; nothing was dropped.
    LeaseLost(String),
    /// The agent is stopping; nothing was dropped.
    Stopped,
    /// The agent is stopping in the middle of a drop: the delivery stays unfinished in
    /// the journal and is carried on at the next start.
    Interrupted,
    /// Already being worked on by this agent, or already dropped and reported again.
    AlreadyHandled,
}

/// Carries deliveries through their steps. One per agent, shared by every delivery task.
pub struct Worker {
    client: JobSideClient,
    queues: QueueSet,
    shutdown: Shutdown,
    transfer_retry: ExponentialBuilder,
    journal: Arc<Journal>,
    /// Wakes the reporter when a report is queued.
    reports: Arc<Notify>,
    /// Deliveries being worked on in this process, so none runs twice at once.
    active: Mutex<HashSet<String>>,
    /// One permit per file transfer at once: `concurrency`, shared by all deliveries.
    transfer_slots: TransferSlots,
    /// Why the journal cannot be written, since a write failed; no work is claimed
    /// until the next check finds it writable again.
    journal_trouble: Mutex<Option<String>>,
    events: Events,
}

/// Removes a delivery from the active set when its task ends, however it ends.
struct ActiveGuard<'a> {
    worker: &'a Worker,
    id: String,
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.worker
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Worker {
    pub(crate) fn new(
        client: JobSideClient,
        queues: QueueSet,
        journal: Arc<Journal>,
        reports: Arc<Notify>,
        shutdown: Shutdown,
        concurrency: usize,
        events: Events,
    ) -> Worker {
        Worker {
            client,
            queues,
            shutdown,
            transfer_retry: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(500))
                .with_max_delay(Duration::from_secs(10))
                .with_jitter(),
            journal,
            reports,
            active: Mutex::new(HashSet::new()),
            transfer_slots: TransferSlots::new(concurrency),
            journal_trouble: Mutex::new(None),
            events,
        }
    }

    pub(crate) fn client(&self) -> &JobSideClient {
        &self.client
    }

    pub(crate) fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    pub(crate) fn queues(&self) -> &QueueSet {
        &self.queues
    }

    pub(crate) fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Wakes the reporter: a report was queued.
    pub(crate) fn wake_reporter(&self) {
        self.reports.notify_one();
    }

    /// Runs at most `concurrency` file transfers at once from now on.
    pub(crate) fn set_concurrency(&self, concurrency: usize) {
        self.transfer_slots.resize(concurrency);
    }

    /// Whether delivery `id` is being worked on in this process.
    pub(crate) fn is_active(&self, id: &str) -> bool {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    /// Notes whether the journal can be written; claiming stops while it cannot.
    pub(crate) fn set_journal_trouble(&self, why: Option<String>) {
        *self
            .journal_trouble
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// Why the journal cannot be written, if it cannot.
    pub(crate) fn journal_trouble(&self) -> Option<String> {
        self.journal_trouble
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn activate(&self, id: &str) -> Option<ActiveGuard<'_>> {
        let fresh = self
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string());
        fresh.then(|| ActiveGuard {
            worker: self,
            id: id.to_string(),
        })
    }

    /// Takes a delivery from a claim through every step. A delivery the journal already
    /// knows is carried on (or, if it was dropped, reported again), never started twice.
    pub async fn deliver(&self, delivery: Delivery) -> Outcome {
        let span = delivery_span(&delivery);
        async {
            let Some(_guard) = self.activate(&delivery.id) else {
                return Outcome::AlreadyHandled;
            };
            let known = match self.journal.record_claim(&delivery) {
                Ok(known) => known,
                Err(err) => {
                    // Work that cannot be recorded is not done: it goes straight back.
                    error!("cannot record the claim; handing the delivery back: {err}");
                    self.set_journal_trouble(Some(err.to_string()));
                    let back = FailRequest {
                        reason: format!("tbot cannot record the delivery: {err}"),
                        retryable: true,
                    };
                    if let Err(err) = self.client.fail(&delivery.id, &back).await {
                        warn!("could not hand the delivery back, it returns when its lease runs out: {err}");
                    }
                    return Outcome::Stopped;
                }
            };
            let files = match known {
                None => {
                    self.events.emit(Event::Claimed {
                        queue: &delivery.queue,
                        files: delivery.files.len(),
                        send: delivery.job.send_count,
                    });
                    Vec::new()
                }
                Some(entry) if entry.step.is_dropped() && !same_work(&entry.delivery, &delivery) => {
                    // A job side restarted without its state hands out old ids for new
                    // work. Reporting it done would lose the job; dropping it would
                    // break the journal's once-only promise. It goes back, refused.
                    let reason = format!(
                        "tbot delivered another job ({}) under delivery id {} before: the job \
                         side reuses delivery ids (was it restarted without its saved state?); \
                         not delivered",
                        entry.delivery.job.id, delivery.id
                    );
                    error!("{reason}");
                    let refused = FailRequest {
                        reason,
                        retryable: false,
                    };
                    if let Err(err) = self.client.fail(&delivery.id, &refused).await {
                        warn!("could not refuse the delivery, it returns when its lease runs out: {err}");
                    }
                    return Outcome::AlreadyHandled;
                }
                Some(entry) if entry.step.is_dropped() => {
                    warn!("the server handed out a delivery already dropped here; reporting it again, not dropping it twice");
                    let outcome = Outcome::Completed(entry.dropped_files());
                    self.record(&delivery, &outcome, None);
                    return Outcome::AlreadyHandled;
                }
                Some(entry) if entry.step.is_unfinished() => {
                    // Carried on as first claimed: only the new lease is taken from
                    // the server's answer, never a changed list of files.
                    info!(step = ?entry.step, "claimed again; carrying on from the journal");
                    if let Err(err) = self.journal.set_lease(&delivery.id, delivery.lease_expires_at) {
                        warn!("{err}");
                    }
                    let mut journaled = entry.delivery;
                    journaled.lease_expires_at = delivery.lease_expires_at;
                    return self.run_and_record(&journaled, &entry.files).await;
                }
                Some(_) => {
                    info!(files = delivery.files.len(), send = delivery.job.send_count, "claimed again after an earlier attempt");
                    match self.journal.restart(&delivery) {
                        Ok(files) => files,
                        Err(err) => {
                            error!("cannot record the claim: {err}");
                            return Outcome::Stopped;
                        }
                    }
                }
            };
            self.run_and_record(&delivery, &files).await
        }
        .instrument(span)
        .await
    }

    /// Carries on a delivery the journal shows unfinished after a restart.
    pub async fn resume(&self, entry: Entry) -> Outcome {
        let delivery = entry.delivery;
        let span = delivery_span(&delivery);
        async {
            let Some(_guard) = self.activate(&delivery.id) else {
                return Outcome::AlreadyHandled;
            };
            info!(step = ?entry.step, "carrying on after a restart");
            self.run_and_record(&delivery, &entry.files).await
        }
        .instrument(span)
        .await
    }

    async fn run_and_record(&self, delivery: &Delivery, files: &[FileState]) -> Outcome {
        let started = Instant::now();
        let outcome = self.run_steps(delivery, files).await;
        self.record(delivery, &outcome, Some(started.elapsed()));
        outcome
    }

    async fn run_steps(&self, delivery: &Delivery, journaled: &[FileState]) -> Outcome {
        let Some(queue) = self.queues.find(&delivery.queue) else {
            return Outcome::Failed {
                reason: format!("this agent does not serve queue {:?}", delivery.queue),
                retryable: true,
            };
        };
        let refused = |reason| Outcome::Failed {
            reason,
            retryable: false,
        };
        let files = match check(delivery, &queue.config) {
            Ok(files) => files,
            Err(reason) => return refused(reason),
        };
        let staging = match queue.hotfolder.open_staging() {
            Ok(staging) => Arc::new(staging),
            Err(why) => {
                return Outcome::Failed {
                    reason: format!("queue {} cannot take files: {why}", queue.config.name),
                    retryable: true,
                }
            }
        };
        let name_max = staging
            .space_and_name_max()
            .map_or(DEFAULT_NAME_MAX, |(_, max)| max);
        let placement = match placement::plan(delivery, &queue.config, &files, name_max) {
            Ok(placement) => placement,
            Err(reason) => return refused(reason),
        };
        info!("checked");
        let pieces = StagedPieces {
            ticket: queue.hotfolder.staged_ticket(&delivery.id),
            job_folder: queue.hotfolder.staged_job_folder(&delivery.id),
        };
        let plan: Vec<FilePlan> = files
            .into_iter()
            .zip(placement.names.clone())
            .enumerate()
            .map(|(index, (file, name))| {
                let state = journaled.get(index).filter(|f| f.name == file.name);
                FilePlan {
                    index,
                    staged: queue.hotfolder.staged_name(&delivery.id, index),
                    name,
                    landed: state
                        .filter(|f| f.dropped)
                        .and_then(|f| f.drop_name.clone()),
                    planned: state
                        .filter(|f| !f.dropped)
                        .and_then(|f| f.drop_name.clone()),
                    etag: state.and_then(|f| f.etag.clone()),
                    file,
                }
            })
            .collect();
        let plan = self.recognise_moves(&delivery.id, &staging, &pieces, plan);
        // Files in the hotfolder already, or about to be: the drop had begun.
        let drop_begun = plan
            .iter()
            .any(|f| f.landed.is_some() || f.planned.is_some());
        let lease = Lease::new(delivery.lease_expires_at);
        if plan.iter().any(FilePlan::needs_transfer) {
            let _ = self.journal.set_step(&delivery.id, Step::Transferring);
            let transfer = tokio::select! {
                done = self.transfer_all(delivery, &staging, &plan) => done,
                lost = self.keep_lease(&delivery.id, &lease) => Err(Outcome::LeaseLost(lost)),
                _ = self.shutdown.wait() => Err(Outcome::Stopped),
            };
            if let Err(outcome) = transfer {
                // A stop keeps what is staged: if the delivery comes back to this
                // agent, it resumes instead of starting over.
                if outcome != Outcome::Stopped {
                    discard_staging(&staging, &pieces, &plan);
                }
                return with_landed(outcome, &plan);
            }
        }
        if let Err(outcome) = self
            .renew_before_drop(&delivery.id, &lease, drop_begun)
            .await
        {
            if !matches!(outcome, Outcome::Interrupted) {
                discard_staging(&staging, &pieces, &plan);
            }
            return with_landed(outcome, &plan);
        }
        self.drop_all(delivery, &queue, staging, placement, pieces, plan)
            .await
    }

    /// Transfer step: every file not yet staged into its staging file, each verified,
    /// each retried a few times with back-off when the network or the bytes let it
    /// down. A transfer that was interrupted continues from the staged bytes. Files go
    /// side by side, each in one of the agent's `concurrency` transfer slots, so a job
    /// of four separations uses idle slots (and cores) instead of fetching its files
    /// one after another; the first file that fails stops the others.
    async fn transfer_all(
        &self,
        delivery: &Delivery,
        staging: &StagingDir,
        plan: &[FilePlan],
    ) -> Result<(), Outcome> {
        let transfers = plan
            .iter()
            .filter(|file| file.needs_transfer())
            .map(|file| self.transfer_one(delivery, staging, file));
        futures_util::future::try_join_all(transfers)
            .await
            .map(drop)
    }

    /// One file of the transfer step, once a transfer slot is free.
    async fn transfer_one(
        &self,
        delivery: &Delivery,
        staging: &StagingDir,
        planned: &FilePlan,
    ) -> Result<(), Outcome> {
        let _slot = self
            .transfer_slots
            .acquire()
            .await
            .map_err(|_| Outcome::Stopped)?;
        let file = &planned.file;
        let started = Instant::now();
        let mut progress = Progress {
            journal: &self.journal,
            delivery: &delivery.id,
            index: planned.index,
            etag: planned.etag.clone(),
        };
        let progress = tokio::sync::Mutex::new(&mut progress);
        let attempt = || async {
            let mut progress = progress.lock().await;
            fetch(&self.client, staging, &planned.staged, file, &mut progress).await
        };
        let result = attempt
            .retry(self.transfer_retry.with_max_times(TRANSFER_ATTEMPTS - 1))
            .when(|err| matches!(err, TransferError::Mismatch(_) | TransferError::Client(ClientError::Transient { .. })))
            .notify(|err, delay| warn!(file = %file.name, "transfer failed, trying again in {delay:?}: {err}"))
            .await;
        match result {
            Ok(verified) => {
                self.events.emit(Event::Transferred {
                    queue: &delivery.queue,
                    file: &file.name,
                    bytes: verified.size,
                    took: started.elapsed(),
                });
                Ok(())
            }
            Err(err) => {
                let reason = match &err {
                    TransferError::Local(_) => format!("cannot stage {}: {err}", file.name),
                    _ => format!(
                        "{} failed after {TRANSFER_ATTEMPTS} attempts: {err}",
                        file.name
                    ),
                };
                Err(Outcome::Failed {
                    reason,
                    retryable: true,
                })
            }
        }
    }

    /// Records how a delivery ended and queues the report the server is owed; `took`
    /// is how long this attempt ran, `None` for a report sent again. A reason may quote
    /// what the server sent (a name, a checksum, a header): the token is blotted out of
    /// it before it is logged, journaled or reported.
    fn record(&self, delivery: &Delivery, outcome: &Outcome, took: Option<Duration>) {
        let id = &delivery.id;
        let outcome = &match outcome {
            Outcome::Failed { reason, retryable } => Outcome::Failed {
                reason: self.client.redact(reason),
                retryable: *retryable,
            },
            Outcome::LeaseLost(why) => Outcome::LeaseLost(self.client.redact(why)),
            other => other.clone(),
        };
        if let Some(took) = took {
            self.events.emit(Event::Finished {
                queue: &delivery.queue,
                outcome,
                took,
            });
        }
        let fail = |reason: &str, retryable| {
            Owed::Fail(FailRequest {
                reason: reason.to_string(),
                retryable,
            })
        };
        let (step, reason, report) = match outcome {
            Outcome::Completed(files) => (
                Step::Dropped,
                None,
                Some(Owed::Complete(CompleteRequest {
                    files: files.clone(),
                })),
            ),
            Outcome::Failed { reason, retryable } => (
                Step::Failed,
                Some(reason.as_str()),
                Some(fail(reason, *retryable)),
            ),
            Outcome::LeaseLost(why) => (Step::LeaseLost, Some(why.as_str()), None),
            Outcome::Stopped => {
                let reason = "tbot stopped before finishing the delivery";
                (Step::HandedBack, Some(reason), Some(fail(reason, true)))
            }
            Outcome::AlreadyHandled | Outcome::Interrupted => return,
        };
        if let Err(err) = self.journal.finish(id, step, reason, report.as_ref()) {
            error!("cannot record the end of the delivery: {err}");
        }
        self.reports.notify_one();
    }
}

/// The span every log line about one delivery is written in.
fn delivery_span(delivery: &Delivery) -> tracing::Span {
    tracing::info_span!("delivery", id = %delivery.id, queue = %delivery.queue, job = %delivery.job.id)
}

/// Whether two deliveries under one id are the same work: the same job and send, and
/// the same files by name and SHA-256.
fn same_work(journaled: &Delivery, claimed: &Delivery) -> bool {
    let files = |delivery: &Delivery| -> Vec<(String, String)> {
        delivery
            .files
            .iter()
            .map(|file| (file.name.clone(), file.sha256.to_ascii_lowercase()))
            .collect()
    };
    journaled.job.id == claimed.job.id
        && journaled.job.send_count == claimed.job.send_count
        && files(journaled) == files(claimed)
}
