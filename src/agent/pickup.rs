//! The pick-up watch: after a drop, whether the device takes the file. A file that
//! leaves its hotfolder was picked up; one still there after the queue's `stall_after`
//! has stalled. Both are reported to the server as events, and a queue with stalled
//! files is announced `stalled` in the heartbeat.
//!
//! The watch looks at the files every few seconds rather than waiting for file-system
//! notifications: hotfolders are often network shares, where those do not arrive.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Notify;
use tracing::error;

use super::events::{Event, Events};
use super::journal::{AwaitingPickup, Journal};
use super::queue_set::QueueSet;
use crate::protocol::{EventRequest, FileEvent};

/// How often dropped files are looked at.
pub const POLL: Duration = Duration::from_secs(2);

/// Files dropped longer ago than this are no longer watched.
const WATCH_FOR: time::Duration = time::Duration::days(7);

/// Watches the files this agent dropped.
pub(crate) struct PickupWatch {
    pub(crate) journal: Arc<Journal>,
    /// The queues served now: files dropped into a queue a reload removed are no
    /// longer watched.
    pub(crate) queues: QueueSet,
    /// Wakes the reporter when an event is queued.
    pub(crate) reports: Arc<Notify>,
    pub(crate) events: Events,
}

impl PickupWatch {
    /// Looks at every watched file once, queueing the events that are due. Returns
    /// how many files have stalled in each queue.
    pub fn check(&self) -> HashMap<String, usize> {
        let mut stalled: HashMap<String, usize> = HashMap::new();
        let files = match self.journal.awaiting_pickup(WATCH_FOR) {
            Ok(files) => files,
            Err(err) => {
                error!("cannot read the dropped files to watch: {err}");
                return stalled;
            }
        };
        let now = OffsetDateTime::now_utc();
        for file in files {
            let Some(queue) = self.queues.find(&file.queue) else {
                continue;
            };
            let root = queue.hotfolder.root();
            // A hotfolder that is gone (a share unmounted) says nothing about its files.
            if !root.is_dir() {
                continue;
            }
            let present = std::fs::symlink_metadata(root.join(&file.path)).is_ok();
            if !present {
                self.events.emit(Event::PickedUp {
                    delivery: &file.delivery,
                    queue: &file.queue,
                    path: &file.path,
                });
                self.record(&file, FileEvent::PickedUp, now);
                continue;
            }
            let waited = now - file.dropped_at;
            if waited >= queue.config.stall_after {
                *stalled.entry(file.queue.clone()).or_default() += 1;
                if !file.stalled {
                    self.events.emit(Event::Stalled {
                        delivery: &file.delivery,
                        queue: &file.queue,
                        path: &file.path,
                        after: queue.config.stall_after,
                    });
                    self.record(&file, FileEvent::Stalled, now);
                }
            }
        }
        stalled
    }

    fn record(&self, file: &AwaitingPickup, event: FileEvent, at: OffsetDateTime) {
        let event = EventRequest {
            event,
            at,
            path: file.path.clone(),
        };
        match self.journal.record_pickup_event(file, event) {
            Ok(()) => self.reports.notify_one(),
            Err(err) => error!("cannot record a pick-up event: {err}"),
        }
    }
}
