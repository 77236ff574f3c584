//! One delivery's way through the agent, as explicit steps: check, transfer (with
//! verification), drop, report. Claiming happens in the check loop; every step here
//! takes what the previous one produced, so each can be made durable on its own.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use time::OffsetDateTime;
use tracing::{info, warn, Instrument};

use super::check::{check, CheckedFile};
use super::client::{ClientError, JobSideClient};
use super::hotfolder::Hotfolder;
use super::transfer::{fetch, TransferError, Verified};
use crate::config::QueueConfig;
use crate::protocol::{CompleteRequest, Delivery, DroppedFile, FailRequest};
use crate::shutdown::Shutdown;

/// How many times one file's transfer is tried before the delivery is given back.
pub const TRANSFER_ATTEMPTS: usize = 3;

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
}

impl Worker {
    /// Takes one claimed delivery through every step and reports the outcome.
    pub async fn deliver(&self, delivery: Delivery) -> Outcome {
        let span = tracing::info_span!("delivery", id = %delivery.id, queue = %delivery.queue, job = %delivery.job.id);
        async {
            info!(
                files = delivery.files.len(),
                send = delivery.job.send_count,
                "claimed"
            );
            let outcome = self.run_steps(&delivery).await;
            self.report(&delivery.id, &outcome).await;
            outcome
        }
        .instrument(span)
        .await
    }

    async fn run_steps(&self, delivery: &Delivery) -> Outcome {
        let Some(queue) = self.queues.iter().find(|q| q.config.name == delivery.queue) else {
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
        let transfer = tokio::select! {
            staged = self.transfer_all(delivery, queue, files) => staged,
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
        self.drop_all(delivery, queue, staged).await
    }

    /// Transfer step: every file into its staging file, each verified, each retried a
    /// few times with back-off when the network or the bytes let it down.
    async fn transfer_all(
        &self,
        delivery: &Delivery,
        queue: &Queue,
        files: Vec<CheckedFile>,
    ) -> Result<Vec<Staged>, Outcome> {
        let mut staged = Vec::with_capacity(files.len());
        for (index, file) in files.into_iter().enumerate() {
            let path = queue.hotfolder.staging_path(&delivery.id, index);
            let started = Instant::now();
            let attempt = || fetch(&self.client, &file.url, file.size, &file.sha256, &path);
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
    /// rule, never overwriting.
    async fn drop_all(&self, delivery: &Delivery, queue: &Queue, staged: Vec<Staged>) -> Outcome {
        let mut dropped = Vec::with_capacity(staged.len());
        for item in staged {
            let name = queue.config.naming.render(delivery, &item.file.name);
            let hotfolder = queue.hotfolder.clone();
            let path = item.path.clone();
            let placed =
                tokio::task::spawn_blocking(move || hotfolder.drop_file(&path, &name)).await;
            match placed {
                Ok(Ok(final_name)) => {
                    info!(file = %item.file.name, path = %queue.hotfolder.root().join(&final_name).display(), "dropped");
                    dropped.push(DroppedFile {
                        name: item.file.name,
                        sha256: item.verified.sha256,
                        path: final_name,
                    });
                }
                Ok(Err(err)) => {
                    discard_staging(queue, delivery);
                    return Outcome::Failed {
                        reason: format!(
                            "cannot move {} into hotfolder {}: {err}",
                            item.file.name,
                            queue.hotfolder.root().display()
                        ),
                        retryable: true,
                    };
                }
                Err(join) => {
                    discard_staging(queue, delivery);
                    return Outcome::Failed {
                        reason: format!("the drop of {} stopped: {join}", item.file.name),
                        retryable: true,
                    };
                }
            }
        }
        Outcome::Completed(dropped)
    }

    /// Report step: tell the server how the delivery ended.
    async fn report(&self, id: &str, outcome: &Outcome) {
        let sent = match outcome {
            Outcome::Completed(files) => self
                .client
                .complete(
                    id,
                    &CompleteRequest {
                        files: files.clone(),
                    },
                )
                .await
                .map(|answer| info!(job_state = %answer.job_state, "reported complete")),
            Outcome::Failed { reason, retryable } => {
                warn!(retryable, "failed: {reason}");
                self.client
                    .fail(
                        id,
                        &FailRequest {
                            reason: reason.clone(),
                            retryable: *retryable,
                        },
                    )
                    .await
                    .map(|()| info!("reported failed"))
            }
            Outcome::LeaseLost(why) => {
                warn!("lease lost, nothing dropped: {why}");
                Ok(())
            }
            Outcome::Stopped => {
                info!("stopping: delivery handed back, nothing dropped");
                self.client
                    .fail(
                        id,
                        &FailRequest {
                            reason: "tbot stopped before finishing the delivery".into(),
                            retryable: true,
                        },
                    )
                    .await
            }
        };
        if let Err(err) = sent {
            warn!("could not report to the server: {err}");
        }
    }
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
