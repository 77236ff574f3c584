//! How many file transfers run at once: `agent.concurrency` permits, shared by every
//! delivery. A reload changes the number without touching the transfers running: more
//! slots open at once, fewer close as running transfers end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{AcquireError, Semaphore, SemaphorePermit};

/// The transfer slots of one agent.
#[derive(Debug)]
pub(crate) struct TransferSlots {
    permits: Arc<Semaphore>,
    /// How many slots there are meant to be, once every shrink has taken effect.
    size: AtomicUsize,
}

impl TransferSlots {
    pub(crate) fn new(size: usize) -> TransferSlots {
        TransferSlots {
            permits: Arc::new(Semaphore::new(size)),
            size: AtomicUsize::new(size),
        }
    }

    /// Waits for a free slot; it is given back when the permit is dropped.
    pub(crate) async fn acquire(&self) -> Result<SemaphorePermit<'_>, AcquireError> {
        self.permits.acquire().await
    }

    /// Makes `size` slots from now on.
    pub(crate) fn resize(&self, size: usize) {
        let before = self.size.swap(size, Ordering::SeqCst);
        if size >= before {
            self.permits.add_permits(size - before);
            return;
        }
        let mut surplus = before - size;
        surplus -= self.permits.forget_permits(surplus);
        if surplus == 0 {
            return;
        }
        // The rest are held by running transfers: retire them as those end.
        let permits = self.permits.clone();
        let surplus = u32::try_from(surplus).unwrap_or(u32::MAX);
        tokio::spawn(async move {
            if let Ok(held) = permits.acquire_many(surplus).await {
                held.forget();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shrinking_waits_for_running_transfers_and_growing_opens_slots_at_once() {
        let slots = TransferSlots::new(2);
        let first = slots.acquire().await.unwrap();
        let second = slots.acquire().await.unwrap();
        slots.resize(1);
        drop(first);
        drop(second);
        // One of the two freed permits is retired by the task the shrink started.
        while slots.permits.available_permits() != 1 {
            tokio::task::yield_now().await;
        }
        let only = slots.acquire().await.unwrap();
        assert_eq!(slots.permits.available_permits(), 0);
        drop(only);
        slots.resize(3);
        assert_eq!(slots.permits.available_permits(), 3);
    }
}
