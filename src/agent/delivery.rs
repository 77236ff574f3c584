//! One delivery's way through the agent, as explicit steps: check, transfer (with
//! verification), drop, report. Claiming happens in the check loop. Each step is
//! written to the journal before it takes effect, so a delivery interrupted at any
//! point, even by a power cut, is carried on after a restart and never dropped twice.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tracing::{error, info, warn, Instrument};

use super::check::{check, final_names, CheckedFile};
use super::client::{ClientError, JobSideClient};
use super::events::{Event, Events};
use super::journal::{Entry, FileState, Journal, Owed, Step};
use super::queue_set::QueueSet;
use super::staging::StagingDir;
use super::transfer::{fetch, Progress, TransferError};
use super::transfer_slots::TransferSlots;
use crate::naming::clash_name;
use crate::protocol::{CompleteRequest, Delivery, DroppedFile, FailRequest};
use crate::shutdown::Shutdown;

/// How many times one file's transfer is tried before the delivery is given back.
pub const TRANSFER_ATTEMPTS: usize = 3;

/// How many clash names are tried before a drop gives up.
const MAX_CLASH_TRIES: u32 = 10_000;

/// The longest file name assumed where the file system does not say (most take 255).
const DEFAULT_NAME_MAX: usize = 255;

/// Time a lease must have left for a drop to go ahead without a fresh renewal: the
/// moves take milliseconds, the rest allows for clocks not quite in step.
const LEASE_MARGIN: time::Duration = time::Duration::seconds(5);

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
        let names = match final_names(delivery, &queue.config, &files, name_max) {
            Ok(names) => names,
            Err(reason) => return refused(reason),
        };
        info!("checked");
        let plan: Vec<FilePlan> = files
            .into_iter()
            .zip(names)
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
        let plan = self.recognise_moves(&delivery.id, &staging, plan);
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
                    discard_staging(&staging, &plan);
                }
                return with_landed(outcome, &plan);
            }
        }
        if let Err(outcome) = self
            .renew_before_drop(&delivery.id, &lease, drop_begun)
            .await
        {
            if !matches!(outcome, Outcome::Interrupted) {
                discard_staging(&staging, &plan);
            }
            return with_landed(outcome, &plan);
        }
        self.drop_all(delivery, staging, plan).await
    }

    /// After a crash in the middle of a drop: the files whose move took place count as
    /// landed (and are journaled so) before anything else is decided, so that no later
    /// step or attempt moves them again.
    fn recognise_moves(
        &self,
        id: &str,
        staging: &StagingDir,
        plan: Vec<FilePlan>,
    ) -> Vec<FilePlan> {
        plan.into_iter()
            .map(|mut file| {
                let Some(planned) = file
                    .planned
                    .take_if(|name| staging.was_placed(&file.staged, name))
                else {
                    return file;
                };
                if let Err(err) = staging
                    .remove(&file.staged)
                    .map_err(|e| e.to_string())
                    .and_then(|()| {
                        self.journal
                            .set_dropped(id, file.index)
                            .map_err(|e| e.to_string())
                    })
                {
                    warn!(
                        "cannot record that {} is in the hotfolder: {err}",
                        file.file.name
                    );
                }
                file.landed = Some(planned);
                file
            })
            .collect()
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

    /// Renews the lease at a third of its remaining length until the server says it is
    /// lost; returns why. Transient failures are logged and tried again next time.
    async fn keep_lease(&self, id: &str, lease: &Lease) -> String {
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
    async fn renew_before_drop(
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

    /// Drop step: each verified file moves into the hotfolder under the name planned
    /// for it, never overwriting. The names are journaled, durably, before the files
    /// move, so after a crash the journal and the folder together tell what happened.
    async fn drop_all(
        &self,
        delivery: &Delivery,
        staging: Arc<StagingDir>,
        plan: Vec<FilePlan>,
    ) -> Outcome {
        let (journal, id) = (self.journal.clone(), delivery.id.clone());
        let root = staging.root_path().to_path_buf();
        let placed = tokio::task::spawn_blocking(move || {
            let placed = drop_files(&journal, &staging, &id, &plan);
            (placed, plan)
        })
        .await;
        let (placed, plan) = match placed {
            Ok(done) => done,
            Err(join) => {
                return Outcome::Failed {
                    reason: format!("the drop stopped: {join}"),
                    retryable: true,
                }
            }
        };
        let names = match placed {
            Ok(names) => names,
            Err(failure) => return failure.into_outcome(&root),
        };
        let dropped = plan
            .into_iter()
            .zip(names)
            .map(|(item, name)| {
                self.events.emit(Event::Dropped {
                    queue: &delivery.queue,
                    file: &item.file.name,
                    path: &root.join(&name),
                });
                DroppedFile {
                    name: item.file.name,
                    sha256: item.file.sha256,
                    path: name,
                }
            })
            .collect();
        Outcome::Completed(dropped)
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

/// One file of a delivery on its way: where it is staged, the name it gets, and how far
/// an earlier attempt took it.
struct FilePlan {
    index: usize,
    file: CheckedFile,
    /// Its name in the staging folder.
    staged: String,
    /// The name the naming rule gives it in the hotfolder.
    name: String,
    /// The name it has in the hotfolder, moved there by an earlier attempt.
    landed: Option<String>,
    /// The name journaled for its move by an earlier attempt that was interrupted.
    planned: Option<String>,
    /// The server's ETag from an earlier attempt, for `If-Range`.
    etag: Option<String>,
}

impl FilePlan {
    /// Whether its bytes still have to be fetched: not in the hotfolder, and not
    /// verified and staged by a drop that was interrupted.
    fn needs_transfer(&self) -> bool {
        self.landed.is_none() && self.planned.is_none()
    }
}

/// The lease this agent holds on a delivery: the expiry the server granted last.
struct Lease {
    expires_at: Mutex<OffsetDateTime>,
}

impl Lease {
    fn new(expires_at: OffsetDateTime) -> Lease {
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
    fn has_time_left(&self, server_now: Option<OffsetDateTime>) -> bool {
        let last_moment = self.expires_at().checked_sub(LEASE_MARGIN);
        matches!((last_moment, server_now), (Some(last), Some(now)) if last > now)
    }
}

/// Why a drop stopped part of the way, and which files had moved in by then.
struct DropFailure {
    why: String,
    /// Each file already in the hotfolder: its name from the server, and its name there.
    landed: Vec<(String, String)>,
}

impl DropFailure {
    fn into_outcome(self, root: &Path) -> Outcome {
        let reason = format!(
            "cannot move the files into hotfolder {}: {}",
            root.display(),
            self.why
        );
        Outcome::Failed {
            reason: append_landed(reason, &self.landed),
            retryable: true,
        }
    }
}

/// Adds to `reason` which files are in the hotfolder already, and that they stay.
fn append_landed(reason: String, landed: &[(String, String)]) -> String {
    if landed.is_empty() {
        return reason;
    }
    let list: Vec<String> = landed
        .iter()
        .map(|(name, path)| format!("{name} as {path}"))
        .collect();
    format!(
        "{reason}; already in the hotfolder, and never dropped again: {}",
        list.join(", ")
    )
}

/// An outcome that ends a delivery part of the way, with the files it had moved in.
fn with_landed(outcome: Outcome, plan: &[FilePlan]) -> Outcome {
    let landed: Vec<(String, String)> = plan
        .iter()
        .filter_map(|f| Some((f.file.name.clone(), f.landed.clone()?)))
        .collect();
    match outcome {
        Outcome::LeaseLost(why) => Outcome::LeaseLost(append_landed(why, &landed)),
        Outcome::Failed { reason, retryable } => Outcome::Failed {
            reason: append_landed(reason, &landed),
            retryable,
        },
        other => other,
    }
}

/// The file work of the drop step, in one blocking call: sync the staged files, journal
/// their names durably, move them (a clash journals the next name first), and sync the
/// folders once. Returns each file's name.
fn drop_files(
    journal: &Journal,
    staging: &StagingDir,
    id: &str,
    plan: &[FilePlan],
) -> Result<Vec<String>, DropFailure> {
    let mut names: Vec<Option<String>> = plan.iter().map(|f| f.landed.clone()).collect();
    let fail = |why: String, names: &[Option<String>]| DropFailure {
        why,
        landed: plan
            .iter()
            .zip(names)
            .filter_map(|(f, name)| Some((f.file.name.clone(), name.clone()?)))
            .collect(),
    };
    let mut to_move = Vec::new();
    for (slot, file) in plan.iter().enumerate() {
        if file.landed.is_some() {
            continue;
        }
        let synced = staging
            .open_staged(&file.staged)
            .and_then(|staged| staged.ok_or_else(|| std::io::ErrorKind::NotFound.into()))
            .and_then(|staged| staged.sync_all());
        synced.map_err(|e| {
            fail(
                format!("cannot sync the staged {}: {e}", file.file.name),
                &names,
            )
        })?;
        to_move.push(slot);
    }
    let planned: Vec<(usize, String)> = to_move
        .iter()
        .map(|&slot| (plan[slot].index, plan[slot].name.clone()))
        .collect();
    journal
        .record_drop_names(id, &planned)
        .map_err(|e| fail(e.to_string(), &names))?;
    for slot in to_move {
        let file = &plan[slot];
        let mut candidate = file.name.clone();
        let mut tries = 1;
        loop {
            match staging.place(&file.staged, &candidate) {
                Ok(()) => break,
                Err(err)
                    if err.kind() == std::io::ErrorKind::AlreadyExists
                        && tries < MAX_CLASH_TRIES =>
                {
                    tries += 1;
                    candidate = clash_name(&file.name, tries);
                    journal
                        .record_drop_names(id, &[(file.index, candidate.clone())])
                        .map_err(|e| fail(e.to_string(), &names))?;
                }
                Err(err) => {
                    let why = format!(
                        "{} could not be moved in as {candidate}: {err}",
                        file.file.name
                    );
                    return Err(fail(why, &names));
                }
            }
        }
        names[slot] = Some(candidate);
        journal
            .set_dropped(id, file.index)
            .map_err(|e| fail(e.to_string(), &names))?;
    }
    staging
        .sync()
        .map_err(|e| fail(format!("cannot sync the hotfolder: {e}"), &names))?;
    Ok(names.into_iter().map(Option::unwrap_or_default).collect())
}

/// The span every log line about one delivery is written in.
fn delivery_span(delivery: &Delivery) -> tracing::Span {
    tracing::info_span!("delivery", id = %delivery.id, queue = %delivery.queue, job = %delivery.job.id)
}

/// Removes what a delivery staged and did not move in.
fn discard_staging(staging: &StagingDir, plan: &[FilePlan]) {
    for file in plan.iter().filter(|f| f.landed.is_none()) {
        if let Err(err) = staging.remove(&file.staged) {
            warn!("cannot remove staged {}: {err}", file.file.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drop_cut_short_names_the_files_that_landed() {
        let failure = DropFailure {
            why: "b.pdf could not be moved in as MC-1_J-1_b.pdf: share gone".into(),
            landed: vec![("a.pdf".into(), "MC-1_J-1_a.pdf".into())],
        };
        let Outcome::Failed { reason, retryable } = failure.into_outcome(Path::new("/srv/hot"))
        else {
            panic!("not a failure");
        };
        assert!(retryable, "the rest may still arrive: {reason}");
        assert!(
            reason.contains("/srv/hot") && reason.contains("share gone"),
            "{reason}"
        );
        assert!(
            reason.contains(
                "already in the hotfolder, and never dropped again: a.pdf as MC-1_J-1_a.pdf"
            ),
            "{reason}"
        );
    }

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
