//! Each thing that happens to a delivery, once: the log line a person reads and the
//! metric a monitoring system counts are written together, so the two never disagree.
//! Delivery events are emitted inside the delivery's log span, which names it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::delivery::Outcome;
use super::metrics::{Metrics, OutcomeLabels, QueueLabel, ReportLabel};
use crate::protocol::FileEvent;

/// Something that happened.
pub(crate) enum Event<'a> {
    /// A delivery was claimed for the first time by this agent.
    Claimed {
        queue: &'a str,
        files: usize,
        send: u32,
    },
    /// One file was downloaded and its SHA-256 matched.
    Transferred {
        queue: &'a str,
        file: &'a str,
        bytes: u64,
        took: Duration,
    },
    /// One file was moved into the hotfolder.
    Dropped {
        queue: &'a str,
        file: &'a str,
        path: &'a Path,
    },
    /// A delivery ended here, one way or another.
    Finished {
        queue: &'a str,
        outcome: &'a Outcome,
        took: Duration,
    },
    /// The job side took a report or an event.
    Reported {
        delivery: &'a str,
        report: &'static str,
    },
    /// The device took a dropped file from its hotfolder.
    PickedUp {
        delivery: &'a str,
        queue: &'a str,
        path: &'a str,
    },
    /// The device moved a dropped file into the queue's success or error folder.
    Verdict {
        delivery: &'a str,
        queue: &'a str,
        path: &'a str,
        event: FileEvent,
        detail: &'a str,
    },
    /// A dropped file is still in the hotfolder after the queue's `stall_after`.
    Stalled {
        delivery: &'a str,
        queue: &'a str,
        path: &'a str,
        after: Duration,
    },
}

/// Where events go; clones share the metrics.
#[derive(Debug, Clone)]
pub(crate) struct Events {
    metrics: Arc<Metrics>,
}

impl Events {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Events {
        Events { metrics }
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The metrics, for the endpoint that serves them.
    pub(crate) fn metrics_handle(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Logs `event` and counts it.
    pub(crate) fn emit(&self, event: Event<'_>) {
        let metrics = &self.metrics;
        let by_queue = |queue: &str| QueueLabel {
            queue: queue.to_string(),
        };
        match event {
            Event::Claimed { queue, files, send } => {
                info!(files, send, "claimed");
                metrics.claimed.get_or_create(&by_queue(queue)).inc();
            }
            Event::Transferred {
                queue,
                file,
                bytes,
                took,
            } => {
                info!(
                    file,
                    bytes,
                    seconds = took.as_secs_f64(),
                    "transferred and verified"
                );
                metrics.bytes.get_or_create(&by_queue(queue)).inc_by(bytes);
                metrics
                    .transfer_seconds
                    .get_or_create(&by_queue(queue))
                    .observe(took.as_secs_f64());
            }
            Event::Dropped { queue, file, path } => {
                info!(file, path = %path.display(), "dropped");
                metrics.files_dropped.get_or_create(&by_queue(queue)).inc();
            }
            Event::Finished {
                queue,
                outcome,
                took,
            } => {
                let counted = match outcome {
                    Outcome::Completed(_) => "completed",
                    Outcome::Failed { reason, retryable } => {
                        warn!(retryable, "failed: {reason}");
                        "failed"
                    }
                    Outcome::LeaseLost(why) => {
                        warn!("lease lost, nothing dropped: {why}");
                        "lease_lost"
                    }
                    Outcome::Stopped => {
                        info!("stopping: delivery handed back, nothing dropped");
                        "handed_back"
                    }
                    Outcome::AlreadyHandled | Outcome::Interrupted => return,
                };
                metrics
                    .deliveries
                    .get_or_create(&OutcomeLabels {
                        queue: queue.to_string(),
                        outcome: counted,
                    })
                    .inc();
                if counted == "completed" {
                    metrics
                        .delivery_seconds
                        .get_or_create(&by_queue(queue))
                        .observe(took.as_secs_f64());
                }
            }
            Event::Reported { delivery, report } => {
                info!(delivery, report, "reported");
                metrics
                    .reports_sent
                    .get_or_create(&ReportLabel { report })
                    .inc();
            }
            Event::PickedUp {
                delivery,
                queue,
                path,
            } => {
                info!(delivery, queue, path, "picked up by the device");
                metrics.picked_up.get_or_create(&by_queue(queue)).inc();
            }
            Event::Verdict {
                delivery,
                queue,
                path,
                event: FileEvent::Rejected,
                detail,
            } => warn!(delivery, queue, path, "rejected by the device: {detail}"),
            Event::Verdict {
                delivery,
                queue,
                path,
                detail,
                ..
            } => info!(delivery, queue, path, "accepted by the device: {detail}"),
            Event::Stalled {
                delivery,
                queue,
                path,
                after,
            } => {
                warn!(
                    delivery,
                    queue,
                    path,
                    "stalled: still in the hotfolder after {}",
                    humantime::format_duration(after)
                );
                metrics.stalls.get_or_create(&by_queue(queue)).inc();
            }
        }
    }
}
