//! The pick-up watch: after a drop, whether the device takes the file. A file that
//! leaves its hotfolder was picked up; one still there after the queue's `stall_after`
//! has stalled. Both are reported to the server as events, and a queue with stalled
//! files is announced `stalled` in the heartbeat.
//!
//! A queue with success and error folders (`accepted_folder`, `rejected_folder`) gets
//! the device's verdict instead: the file showed up there.
//!
//! The watch looks at the files every few seconds, and at once when the file system
//! tells of a change in a hotfolder (`folder_watch`): notifications make a local
//! device's verdict known within a second, and polling keeps network shares, where
//! they do not arrive, watched.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Notify;
use tracing::error;

use super::events::{Event, Events};
use super::journal::{AwaitingPickup, Journal};
use super::queue_set::{Queue, QueueSet};
use crate::protocol::{EventRequest, FileEvent};

/// How often dropped files are looked at.
pub const POLL: Duration = Duration::from_secs(2);

/// Files dropped longer ago than this are no longer watched.
const WATCH_FOR: time::Duration = time::Duration::days(7);

/// What one look saw of a queue's dropped files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct QueueLook {
    /// Files still in the hotfolder after the queue's `stall_after`.
    pub(crate) stalled: usize,
    /// Files still in the hotfolder, however long they have been there.
    pub(crate) waiting: usize,
}

/// A file moved into a success or error folder less than this long before the watch
/// recorded its drop still counts: a job folder's move is journaled just after it.
const VERDICT_SLACK: time::Duration = time::Duration::seconds(5);

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
    /// what it saw in each queue.
    pub fn check(&self) -> HashMap<String, QueueLook> {
        let mut looks: HashMap<String, QueueLook> = HashMap::new();
        let queues = self.queues.snapshot();
        let verdict_queues: Vec<&str> = queues
            .iter()
            .filter(|queue| verdict_folders(queue).next().is_some())
            .map(|queue| queue.name())
            .collect();
        let files = match self.journal.awaiting_pickup(WATCH_FOR, &verdict_queues) {
            Ok(files) => files,
            Err(err) => {
                error!("cannot read the dropped files to watch: {err}");
                return looks;
            }
        };
        let now = OffsetDateTime::now_utc();
        for file in files {
            let Some(queue) = queues.iter().find(|queue| queue.name() == file.queue) else {
                continue;
            };
            let root = queue.hotfolder.root();
            // A hotfolder that is gone (a share unmounted) says nothing about its files.
            if !root.is_dir() {
                continue;
            }
            let present =
                !file.picked_up && std::fs::symlink_metadata(root.join(&file.path)).is_ok();
            if present {
                let look = looks.entry(file.queue.clone()).or_default();
                look.waiting += 1;
                let waited = now - file.dropped_at;
                if waited >= queue.config.stall_after {
                    look.stalled += 1;
                    if !file.stalled {
                        self.events.emit(Event::Stalled {
                            delivery: &file.delivery,
                            queue: &file.queue,
                            path: &file.path,
                            after: queue.config.stall_after,
                        });
                        self.record(&file, FileEvent::Stalled, None, now);
                    }
                }
                continue;
            }
            match find_verdict(queue, &file) {
                Some((event, detail)) => {
                    self.events.emit(Event::Verdict {
                        delivery: &file.delivery,
                        queue: &file.queue,
                        path: &file.path,
                        event,
                        detail: &detail,
                    });
                    self.record(&file, event, Some(detail), now);
                }
                None if !file.picked_up => {
                    self.events.emit(Event::PickedUp {
                        delivery: &file.delivery,
                        queue: &file.queue,
                        path: &file.path,
                    });
                    self.record(&file, FileEvent::PickedUp, None, now);
                }
                None => {}
            }
        }
        looks
    }

    fn record(
        &self,
        file: &AwaitingPickup,
        event: FileEvent,
        detail: Option<String>,
        at: OffsetDateTime,
    ) {
        let event = EventRequest {
            event,
            at,
            path: file.path.clone(),
            detail,
        };
        match self.journal.record_pickup_event(file, event) {
            Ok(()) => self.reports.notify_one(),
            Err(err) => error!("cannot record a pick-up event: {err}"),
        }
    }
}

/// A queue's success and error folders, with the event each stands for.
fn verdict_folders(queue: &Queue) -> impl Iterator<Item = (&Path, FileEvent)> {
    let profile = &queue.config.profile;
    [
        (profile.accepted_folder.as_deref(), FileEvent::Accepted),
        (profile.rejected_folder.as_deref(), FileEvent::Rejected),
    ]
    .into_iter()
    .filter_map(|(folder, event)| Some((folder?, event)))
}

/// Where a dropped file (or the job folder or subfolder it is in) shows up in a
/// success or error folder: the device moves what it took, with or without the
/// folders above it. Only something moved there since the drop counts, so a file of
/// the same name from an earlier send is no verdict on this one.
fn find_verdict(queue: &Queue, file: &AwaitingPickup) -> Option<(FileEvent, String)> {
    let root = queue.hotfolder.root();
    let steps: Vec<&str> = file.path.split('/').collect();
    let since = file.dropped_at - VERDICT_SLACK;
    for (folder, event) in verdict_folders(queue) {
        for start in 0..steps.len() {
            let tail = steps[start..].join("/");
            if std::fs::symlink_metadata(root.join(folder).join(&tail)).is_err() {
                continue;
            }
            // The moved item is the first step below the folder: its change time is
            // when it was moved there.
            let moved = std::fs::symlink_metadata(root.join(folder).join(steps[start]))
                .ok()
                .and_then(|meta| changed_at(&meta));
            if moved.is_some_and(|moved| moved >= since) {
                return Some((
                    event,
                    format!("found in {}", Path::new(folder).join(&tail).display()),
                ));
            }
        }
    }
    None
}

/// When a file's inode last changed (a move sets it), where the system tells.
fn changed_at(meta: &std::fs::Metadata) -> Option<OffsetDateTime> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let nanos = i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec());
        OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
    }
    #[cfg(not(unix))]
    {
        meta.modified().ok().map(OffsetDateTime::from)
    }
}
