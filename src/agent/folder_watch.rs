//! File-system notifications from the hotfolders, so that the pick-up watch looks as
//! soon as a device takes a file or gives its verdict, instead of at its next poll.
//! Where notifications do not arrive (network shares) nothing breaks: the poll goes on.

use std::sync::Arc;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tracing::debug;

use super::queue_set::Queue;
use super::staging::STAGING_DIR;

/// Watches the hotfolders of the queues served now.
pub(crate) struct FolderWatch {
    /// Dropped (and so unwatched) when the queues change.
    watcher: Option<RecommendedWatcher>,
    /// Woken by a change in any hotfolder; shared by every watcher this one makes.
    changed: Arc<Notify>,
}

impl FolderWatch {
    pub(crate) fn new() -> FolderWatch {
        FolderWatch {
            watcher: None,
            changed: Arc::new(Notify::new()),
        }
    }

    /// What a change wakes; the same however often [`FolderWatch::watch`] is called.
    pub(crate) fn changes(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    /// Watches the hotfolders of `queues`, and no others. A folder that cannot be
    /// watched is polled only, which is said in the debug log.
    pub(crate) fn watch(&mut self, queues: &[Queue]) {
        self.watcher = None;
        let changed = self.changed.clone();
        let on_change = move |event: notify::Result<notify::Event>| {
            // tbot's own staging is no news of the device.
            let outside_staging = event.is_ok_and(|event| {
                event.paths.iter().any(|path| {
                    !path
                        .components()
                        .any(|part| part.as_os_str() == STAGING_DIR)
                })
            });
            if outside_staging {
                changed.notify_one();
            }
        };
        // A link planted in a shared hotfolder must not make tbot watch (and walk)
        // whatever it points at; the hotfolder's own path may still be a link.
        let config = notify::Config::default().with_follow_symlinks(false);
        let watcher = RecommendedWatcher::new(on_change, config);
        let mut watcher = match watcher {
            Ok(watcher) => watcher,
            Err(err) => {
                debug!("no file-system notifications, polling the hotfolders only: {err}");
                return;
            }
        };
        for queue in queues {
            let root = queue.hotfolder.root();
            if let Err(err) = watcher.watch(root, RecursiveMode::Recursive) {
                debug!(
                    queue = queue.name(),
                    "hotfolder {} is polled only: {err}",
                    root.display()
                );
            }
        }
        self.watcher = Some(watcher);
    }
}
