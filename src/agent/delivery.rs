//! One delivery's way through the agent, as explicit steps: check, transfer (with
//! verification), drop, report. Claiming happens in the check loop. Each step is
//! written to the journal before it takes effect, so a delivery interrupted at any
//! point, even by a power cut, is carried on after a restart and never dropped twice.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tracing::{error, info, warn, Instrument};

use super::check::{check, CheckedFile};
use super::client::{ClientError, JobSideClient};
use super::hotfolder::Hotfolder;
use super::journal::{Entry, FileState, Journal, ReportKind, Step};
use super::transfer::{fetch, Progress, TransferError, Verified};
use crate::config::QueueConfig;
use crate::naming::clash_name;
use crate::protocol::{Delivery, DroppedFile};
use crate::shutdown::Shutdown;

/// How many times one file's transfer is tried before the delivery is given back.
pub const TRANSFER_ATTEMPTS: usize = 3;

/// How many clash names are tried before a drop gives up.
const MAX_CLASH_TRIES: u32 = 10_000;

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
    /// Already being worked on by this agent, or already dropped and reported again.
    AlreadyHandled,
}

/// A queue the agent serves: its settings and its folder.
#[derive(Debug, Clone)]
pub struct Queue {
    pub config: QueueConfig,
    pub hotfolder: Hotfolder,
}

/// A verified file waiting in the staging folder for its drop.
struct Staged {
    file: CheckedFile,
    path: PathBuf,
    verified: Verified,
}

/// Carries deliveries through their steps. One per agent, shared by every delivery task.
pub struct Worker {
    pub client: JobSideClient,
    pub queues: Vec<Queue>,
    pub shutdown: Shutdown,
    pub transfer_retry: ExponentialBuilder,
    pub journal: Arc<Journal>,
    /// Wakes the reporter when a report is queued.
    pub reports: Arc<Notify>,
    /// Deliveries being worked on in this process, so none runs twice at once.
    pub active: Mutex<HashSet<String>>,
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
    fn queue(&self, name: &str) -> Option<&Queue> {
        self.queues.iter().find(|q| q.config.name == name)
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
        let span = tracing::info_span!("delivery", id = %delivery.id, queue = %delivery.queue, job = %delivery.job.id);
        async {
            let Some(_guard) = self.activate(&delivery.id) else {
                return Outcome::AlreadyHandled;
            };
            let known = match self.journal.record_claim(&delivery) {
                Ok(known) => known,
                Err(err) => {
                    error!("cannot record the claim, leaving the delivery to its lease: {err}");
                    return Outcome::Stopped;
                }
            };
            let files = match known {
                None => {
                    info!(files = delivery.files.len(), send = delivery.job.send_count, "claimed");
                    Vec::new()
                }
                Some(entry) if entry.step.is_dropped() => {
                    warn!("the server handed out a delivery already dropped here; reporting it again, not dropping it twice");
                    let outcome = Outcome::Completed(entry.dropped_files());
                    self.record(&delivery.id, &outcome);
                    return Outcome::AlreadyHandled;
                }
                Some(entry) if entry.step.is_unfinished() => {
                    info!(step = ?entry.step, "claimed again; carrying on from the journal");
                    let _ = self.journal.refresh_claim(&delivery);
                    entry.files
                }
                Some(_) => {
                    info!(files = delivery.files.len(), send = delivery.job.send_count, "claimed again after an earlier attempt");
                    if let Err(err) = self.journal.restart(&delivery) {
                        error!("cannot record the claim: {err}");
                        return Outcome::Stopped;
                    }
                    Vec::new()
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
        let span = tracing::info_span!("delivery", id = %delivery.id, queue = %delivery.queue, job = %delivery.job.id);
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
        let outcome = self.run_steps(delivery, files).await;
        self.record(&delivery.id, &outcome);
        outcome
    }

    async fn run_steps(&self, delivery: &Delivery, journaled: &[FileState]) -> Outcome {
        let Some(queue) = self.queue(&delivery.queue) else {
            return Outcome::Failed {
                reason: format!("this agent does not serve queue {:?}", delivery.queue),
                retryable: true,
            };
        };
        let files = match check(delivery, &queue.config) {
            Ok(files) => files,
            Err(reason) => {
                return Outcome::Failed {
                    reason,
                    retryable: false,
                }
            }
        };
        info!("checked");
        // A drop that had begun is finished whatever happens: half a job in a hotfolder
        // is worse than a late one.
        let drop_begun = journaled.iter().any(|f| f.drop_name.is_some());
        let staged = if drop_begun {
            self.already_staged(delivery, queue, files)
        } else {
            let _ = self.journal.set_step(&delivery.id, Step::Transferring);
            let transfer = tokio::select! {
                staged = self.transfer_all(delivery, queue, files, journaled) => staged,
                lost = keep_lease(&self.client, delivery) => Err(Outcome::LeaseLost(lost)),
                _ = self.shutdown.wait() => Err(Outcome::Stopped),
            };
            let staged = match transfer {
                Ok(staged) => staged,
                Err(outcome) => {
                    discard_staging(queue, delivery);
                    return outcome;
                }
            };
            if let Err(outcome) = self.renew_before_drop(delivery).await {
                discard_staging(queue, delivery);
                return outcome;
            }
            staged
        };
        if let Err(err) = self.journal.set_step(&delivery.id, Step::Dropping) {
            discard_staging(queue, delivery);
            return Outcome::Failed {
                reason: format!("cannot write the journal before the drop: {err}"),
                retryable: true,
            };
        }
        self.drop_all(delivery, queue, staged, journaled).await
    }

    /// Transfer step: every file into its staging file, each verified, each retried a
    /// few times with back-off when the network or the bytes let it down. A transfer
    /// that was interrupted continues from the staged bytes.
    async fn transfer_all(
        &self,
        delivery: &Delivery,
        queue: &Queue,
        files: Vec<CheckedFile>,
        journaled: &[FileState],
    ) -> Result<Vec<Staged>, Outcome> {
        let mut staged = Vec::with_capacity(files.len());
        for (index, file) in files.into_iter().enumerate() {
            let path = queue.hotfolder.staging_path(&delivery.id, index);
            let started = Instant::now();
            let mut progress = Progress {
                journal: &self.journal,
                delivery: &delivery.id,
                index,
                etag: journaled.get(index).and_then(|f| f.etag.clone()),
            };
            let progress = tokio::sync::Mutex::new(&mut progress);
            let attempt = || async {
                let mut progress = progress.lock().await;
                fetch(&self.client, &queue.hotfolder, &file, &path, &mut progress).await
            };
            let result = attempt
                .retry(self.transfer_retry.with_max_times(TRANSFER_ATTEMPTS - 1))
                .when(|err| matches!(err, TransferError::Mismatch(_) | TransferError::Client(ClientError::Transient { .. })))
                .notify(|err, delay| warn!(file = %file.name, "transfer failed, trying again in {delay:?}: {err}"))
                .await;
            match result {
                Ok(verified) => {
                    info!(file = %file.name, bytes = verified.size, seconds = started.elapsed().as_secs_f64(), "transferred and verified");
                    staged.push(Staged {
                        file,
                        path,
                        verified,
                    });
                }
                Err(err) => {
                    let reason = match &err {
                        TransferError::Local(_) => format!("cannot stage {}: {err}", file.name),
                        _ => format!(
                            "{} failed after {TRANSFER_ATTEMPTS} attempts: {err}",
                            file.name
                        ),
                    };
                    return Err(Outcome::Failed {
                        reason,
                        retryable: true,
                    });
                }
            }
        }
        Ok(staged)
    }

    /// After a restart in the middle of a drop: the staged files were verified before
    /// the drop began, so they are taken as they are.
    fn already_staged(
        &self,
        delivery: &Delivery,
        queue: &Queue,
        files: Vec<CheckedFile>,
    ) -> Vec<Staged> {
        files
            .into_iter()
            .enumerate()
            .map(|(index, file)| Staged {
                path: queue.hotfolder.staging_path(&delivery.id, index),
                verified: Verified {
                    size: file.size,
                    sha256: file.sha256.clone(),
                },
                file,
            })
            .collect()
    }

    /// The protocol asks for a renewal right before the first file moves in. When the
    /// server cannot be reached, the drop goes ahead only while the lease we hold has
    /// not run out by our clock.
    async fn renew_before_drop(&self, delivery: &Delivery) -> Result<(), Outcome> {
        match self.client.renew(&delivery.id).await {
            Ok(_) => Ok(()),
            Err(err @ ClientError::Refused { .. }) => Err(Outcome::LeaseLost(err.to_string())),
            Err(err) if delivery.lease_expires_at > OffsetDateTime::now_utc() => {
                warn!(
                    "could not renew the lease before the drop, dropping within the lease: {err}"
                );
                Ok(())
            }
            Err(err) => Err(Outcome::LeaseLost(format!(
                "lease ran out and could not be renewed: {err}"
            ))),
        }
    }

    /// Drop step: each verified file moves into the hotfolder under the queue's naming
    /// rule, never overwriting. The name is journaled before each move, so after a crash
    /// the journal and the folder together tell whether the move happened.
    async fn drop_all(
        &self,
        delivery: &Delivery,
        queue: &Queue,
        staged: Vec<Staged>,
        journaled: &[FileState],
    ) -> Outcome {
        let mut dropped = Vec::with_capacity(staged.len());
        for (index, item) in staged.into_iter().enumerate() {
            let before = journaled.get(index);
            let result = if before.is_some_and(|f| f.dropped) {
                Ok(before.and_then(|f| f.drop_name.clone()).unwrap_or_default())
            } else {
                let journal = self.journal.clone();
                let hotfolder = queue.hotfolder.clone();
                let id = delivery.id.clone();
                let name = queue.config.naming.render(delivery, &item.file.name);
                let earlier = before.and_then(|f| f.drop_name.clone());
                let path = item.path.clone();
                tokio::task::spawn_blocking(move || {
                    drop_one(&journal, &hotfolder, &id, index, &path, &name, earlier)
                })
                .await
                .unwrap_or_else(|join| Err(join.to_string()))
            };
            match result {
                Ok(final_name) => {
                    info!(file = %item.file.name, path = %queue.hotfolder.root().join(&final_name).display(), "dropped");
                    dropped.push(DroppedFile {
                        name: item.file.name,
                        sha256: item.verified.sha256,
                        path: final_name,
                    });
                }
                Err(why) => {
                    return Outcome::Failed {
                        reason: format!(
                            "cannot move {} into hotfolder {}: {why}",
                            item.file.name,
                            queue.hotfolder.root().display()
                        ),
                        retryable: true,
                    };
                }
            }
        }
        Outcome::Completed(dropped)
    }

    /// Records how a delivery ended and queues the report the server is owed.
    fn record(&self, id: &str, outcome: &Outcome) {
        let (step, reason, report) = match outcome {
            Outcome::Completed(files) => (
                Step::Dropped,
                None,
                Some((ReportKind::Complete, json!({ "files": files }))),
            ),
            Outcome::Failed { reason, retryable } => {
                warn!(retryable, "failed: {reason}");
                (
                    Step::Failed,
                    Some(reason.as_str()),
                    Some((
                        ReportKind::Fail,
                        json!({ "reason": reason, "retryable": retryable }),
                    )),
                )
            }
            Outcome::LeaseLost(why) => {
                warn!("lease lost, nothing dropped: {why}");
                (Step::LeaseLost, Some(why.as_str()), None)
            }
            Outcome::Stopped => {
                info!("stopping: delivery handed back, nothing dropped");
                let reason = "tbot stopped before finishing the delivery";
                (
                    Step::HandedBack,
                    Some(reason),
                    Some((
                        ReportKind::Fail,
                        json!({ "reason": reason, "retryable": true }),
                    )),
                )
            }
            Outcome::AlreadyHandled => return,
        };
        if let Err(err) = self.journal.finish(id, step, reason, report) {
            error!("cannot record the end of the delivery: {err}");
        }
        self.reports.notify_one();
    }
}

/// Moves one staged file in, finishing an interrupted earlier move if there was one.
/// Returns the name the file has in the hotfolder.
fn drop_one(
    journal: &Journal,
    hotfolder: &Hotfolder,
    id: &str,
    index: usize,
    staged: &std::path::Path,
    name: &str,
    earlier: Option<String>,
) -> Result<String, String> {
    if let Some(earlier) = earlier {
        if hotfolder.was_placed(staged, &earlier) {
            hotfolder.forget_staged(staged).map_err(|e| e.to_string())?;
            journal.set_dropped(id, index).map_err(|e| e.to_string())?;
            return Ok(earlier);
        }
    }
    hotfolder
        .sync_staged(staged)
        .map_err(|e| format!("cannot sync the staged file: {e}"))?;
    for n in 1..=MAX_CLASH_TRIES {
        let candidate = if n == 1 {
            name.to_string()
        } else {
            clash_name(name, n)
        };
        journal
            .set_drop_name(id, index, &candidate)
            .map_err(|e| e.to_string())?;
        match hotfolder.place(staged, &candidate) {
            Ok(()) => {
                journal.set_dropped(id, index).map_err(|e| e.to_string())?;
                return Ok(candidate);
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err.to_string()),
        }
    }
    Err(format!(
        "{MAX_CLASH_TRIES} files named like {name} are already there"
    ))
}

/// Renews the lease at a third of its remaining length until the server says it is
/// lost; returns why. Transient failures are logged and tried again next time.
async fn keep_lease(client: &JobSideClient, delivery: &Delivery) -> String {
    let mut expires_at = delivery.lease_expires_at;
    loop {
        let remaining = expires_at - OffsetDateTime::now_utc();
        let wait = Duration::try_from(remaining / 3)
            .unwrap_or(Duration::ZERO)
            .clamp(Duration::from_secs(1), Duration::from_secs(300));
        tokio::time::sleep(wait).await;
        match client.renew(&delivery.id).await {
            Ok(renewed) => expires_at = renewed.lease_expires_at,
            Err(err @ ClientError::Refused { .. }) => return err.to_string(),
            Err(err) => warn!("could not renew the lease, will try again: {err}"),
        }
    }
}

/// Removes whatever a delivery left in its queue's staging folder.
fn discard_staging(queue: &Queue, delivery: &Delivery) {
    for index in 0..delivery.files.len() {
        let path = queue.hotfolder.staging_path(&delivery.id, index);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => warn!("cannot remove staging file {}: {err}", path.display()),
        }
    }
}
