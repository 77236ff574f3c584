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
use tokio::sync::{Notify, Semaphore};
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
    /// One permit per file transfer at once: `concurrency`, shared by all deliveries.
    pub transfer_slots: Semaphore,
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
        let span = delivery_span(&delivery);
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
        self.drop_all(delivery, queue, staged, journaled).await
    }

    /// Transfer step: every file into its staging file, each verified, each retried a
    /// few times with back-off when the network or the bytes let it down. A transfer
    /// that was interrupted continues from the staged bytes. Files go side by side, each
    /// in one of the agent's `concurrency` transfer slots, so a job of four separations
    /// uses idle slots (and cores) instead of fetching its files one after another; the
    /// first file that fails stops the others.
    async fn transfer_all(
        &self,
        delivery: &Delivery,
        queue: &Queue,
        files: Vec<CheckedFile>,
        journaled: &[FileState],
    ) -> Result<Vec<Staged>, Outcome> {
        let transfers = files.into_iter().enumerate().map(|(index, file)| {
            let etag = journaled.get(index).and_then(|f| f.etag.clone());
            self.transfer_one(delivery, queue, index, file, etag)
        });
        futures_util::future::try_join_all(transfers).await
    }

    /// One file of the transfer step, once a transfer slot is free.
    async fn transfer_one(
        &self,
        delivery: &Delivery,
        queue: &Queue,
        index: usize,
        file: CheckedFile,
        etag: Option<String>,
    ) -> Result<Staged, Outcome> {
        let _slot = self
            .transfer_slots
            .acquire()
            .await
            .map_err(|_| Outcome::Stopped)?;
        let path = queue.hotfolder.staging_path(&delivery.id, index);
        let started = Instant::now();
        let mut progress = Progress {
            journal: &self.journal,
            delivery: &delivery.id,
            index,
            etag,
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
                Ok(Staged {
                    file,
                    path,
                    verified,
                })
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
    /// rule, never overwriting. The names are journaled, durably, before the files move,
    /// so after a crash the journal and the folder together tell what happened.
    async fn drop_all(
        &self,
        delivery: &Delivery,
        queue: &Queue,
        staged: Vec<Staged>,
        journaled: &[FileState],
    ) -> Outcome {
        let plan: Vec<PlannedDrop> = staged
            .iter()
            .enumerate()
            .map(|(index, item)| PlannedDrop {
                index,
                staged: item.path.clone(),
                name: queue.config.naming.render(delivery, &item.file.name),
                earlier: journaled.get(index).and_then(|f| f.drop_name.clone()),
                done: journaled.get(index).is_some_and(|f| f.dropped),
            })
            .collect();
        let (journal, hotfolder, id) = (
            self.journal.clone(),
            queue.hotfolder.clone(),
            delivery.id.clone(),
        );
        let placed =
            tokio::task::spawn_blocking(move || drop_files(&journal, &hotfolder, &id, &plan))
                .await
                .unwrap_or_else(|join| Err(join.to_string()));
        let names = match placed {
            Ok(names) => names,
            Err(why) => {
                return Outcome::Failed {
                    reason: format!(
                        "cannot move the files into hotfolder {}: {why}",
                        queue.hotfolder.root().display()
                    ),
                    retryable: true,
                }
            }
        };
        let dropped = staged
            .into_iter()
            .zip(names)
            .map(|(item, name)| {
                info!(file = %item.file.name, path = %queue.hotfolder.root().join(&name).display(), "dropped");
                DroppedFile {
                    name: item.file.name,
                    sha256: item.verified.sha256,
                    path: name,
                }
            })
            .collect();
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

/// One file's move, as planned before any file of the delivery moves.
struct PlannedDrop {
    index: usize,
    staged: PathBuf,
    /// The name the naming rule gives the file.
    name: String,
    /// The name journaled by an earlier, interrupted drop.
    earlier: Option<String>,
    /// The journal says the earlier move finished.
    done: bool,
}

/// The file work of the drop step, in one blocking call: recognise moves an earlier
/// run finished, sync the staged files, journal their names durably, move them (a clash
/// journals the next name first), and sync the folders once. Returns each file's name.
fn drop_files(
    journal: &Journal,
    hotfolder: &Hotfolder,
    id: &str,
    plan: &[PlannedDrop],
) -> Result<Vec<String>, String> {
    let text = |err: &dyn std::fmt::Display| err.to_string();
    let mut names: Vec<Option<String>> = vec![None; plan.len()];
    let mut to_move = Vec::new();
    for (slot, drop) in plan.iter().enumerate() {
        if let Some(earlier) = &drop.earlier {
            if drop.done || hotfolder.was_placed(&drop.staged, earlier) {
                hotfolder
                    .forget_staged(&drop.staged)
                    .map_err(|e| text(&e))?;
                journal.set_dropped(id, drop.index).map_err(|e| text(&e))?;
                names[slot] = Some(earlier.clone());
                continue;
            }
        }
        hotfolder
            .sync_staged(&drop.staged)
            .map_err(|e| format!("cannot sync the staged file: {e}"))?;
        to_move.push(slot);
    }
    if !to_move.is_empty() {
        let planned: Vec<(usize, String)> = to_move
            .iter()
            .map(|&slot| (plan[slot].index, plan[slot].name.clone()))
            .collect();
        journal
            .record_drop_names(id, &planned)
            .map_err(|e| text(&e))?;
        for slot in to_move {
            let drop = &plan[slot];
            let mut candidate = drop.name.clone();
            let mut tries = 1;
            loop {
                match hotfolder.place(&drop.staged, &candidate) {
                    Ok(()) => break,
                    Err(err)
                        if err.kind() == std::io::ErrorKind::AlreadyExists
                            && tries < MAX_CLASH_TRIES =>
                    {
                        tries += 1;
                        candidate = clash_name(&drop.name, tries);
                        journal
                            .record_drop_names(id, &[(drop.index, candidate.clone())])
                            .map_err(|e| text(&e))?;
                    }
                    Err(err) => return Err(err.to_string()),
                }
            }
            journal.set_dropped(id, drop.index).map_err(|e| text(&e))?;
            names[slot] = Some(candidate);
        }
        hotfolder
            .sync_folders()
            .map_err(|e| format!("cannot sync the hotfolder: {e}"))?;
    }
    Ok(names.into_iter().map(Option::unwrap_or_default).collect())
}

/// The span every log line about one delivery is written in.
fn delivery_span(delivery: &Delivery) -> tracing::Span {
    tracing::info_span!("delivery", id = %delivery.id, queue = %delivery.queue, job = %delivery.job.id)
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
