//! The queues the agent serves, as one value a reload swaps while the agent runs. The
//! check loop, the deliveries and the pick-up watch each take a snapshot when they
//! start a piece of work, so a delivery in flight keeps the queue it started with even
//! when a reload removes or changes it.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::hotfolder::Hotfolder;
use crate::config::QueueConfig;

/// A queue the agent serves: its settings and its folder.
#[derive(Debug, Clone)]
pub struct Queue {
    pub config: QueueConfig,
    pub hotfolder: Hotfolder,
}

impl Queue {
    /// The queue `config` describes, staging under this agent's journal id `owner`.
    pub(crate) fn new(config: &QueueConfig, owner: &str) -> Queue {
        Queue {
            config: config.clone(),
            hotfolder: Hotfolder::new(&config.hotfolder, owner),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }
}

/// Every queue served now; clones share the one set.
#[derive(Debug, Clone)]
pub(crate) struct QueueSet(Arc<ArcSwap<Vec<Queue>>>);

impl QueueSet {
    pub(crate) fn new(queues: Vec<Queue>) -> QueueSet {
        QueueSet(Arc::new(ArcSwap::from_pointee(queues)))
    }

    /// The queues as they are now; later swaps do not change the snapshot.
    pub(crate) fn snapshot(&self) -> Arc<Vec<Queue>> {
        self.0.load_full()
    }

    /// The queue called `name`, if it is served now.
    pub(crate) fn find(&self, name: &str) -> Option<Queue> {
        self.0
            .load()
            .iter()
            .find(|queue| queue.name() == name)
            .cloned()
    }

    /// Serves `queues` from now on.
    pub(crate) fn replace(&self, queues: Vec<Queue>) {
        self.0.store(Arc::new(queues));
    }
}
