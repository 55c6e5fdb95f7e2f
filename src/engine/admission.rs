//! Bounded concurrency: a fixed number of runs compute at once, a bounded number wait,
//! and the rest are refused with `rate_limited` instead of piling up in memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::model::{ApiError, ApiResult};

pub struct Admission {
    slots: Arc<Semaphore>,
    total_slots: usize,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
}

/// Held while a run computes; dropping it frees the slot.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

pub struct WaitGuard(Arc<AtomicUsize>);

impl Drop for WaitGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Admission {
    pub fn new(slots: usize, max_waiting: usize) -> Self {
        Admission {
            slots: Arc::new(Semaphore::new(slots)),
            total_slots: slots,
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting,
        }
    }

    /// Runs waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Slots held now (runs computing).
    pub fn running(&self) -> usize {
        self.total_slots
            .saturating_sub(self.slots.available_permits())
    }

    pub async fn enter(&self, cancel: &CancellationToken) -> ApiResult<Slot> {
        self.ticket()?.slot(cancel).await
    }

    /// A place in the run's line, taken at once: a free slot, a place in the queue, or
    /// `rate_limited`. A background run takes it before answering, so a full queue is
    /// refused to the submitter rather than failing the run later.
    pub fn ticket(&self) -> ApiResult<Ticket> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(Ticket::Ready(Slot { _permit: permit }));
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::rate_limited(
                5,
                "the run queue is full; retry later",
            ));
        }
        Ok(Ticket::Queued {
            slots: self.slots.clone(),
            _waiting: WaitGuard(self.waiting.clone()),
        })
    }
}

/// A run's place: a slot already held, or a counted place in the queue.
pub enum Ticket {
    Ready(Slot),
    Queued {
        slots: Arc<Semaphore>,
        _waiting: WaitGuard,
    },
}

impl Ticket {
    /// Wait for the slot; a cancelled run stops waiting (and leaves the queue).
    pub async fn slot(self, cancel: &CancellationToken) -> ApiResult<Slot> {
        match self {
            Ticket::Ready(slot) => Ok(slot),
            Ticket::Queued { slots, _waiting } => tokio::select! {
                permit = slots.acquire_owned() => permit
                    .map(|p| Slot { _permit: p })
                    .map_err(ApiError::internal),
                _ = cancel.cancelled() => Err(ApiError::cancelled("the run was cancelled while queued")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ErrorCode;

    #[tokio::test]
    async fn refuses_when_slots_and_queue_are_full() {
        let a = Admission::new(1, 0);
        let token = CancellationToken::new();
        let _held = a.enter(&token).await.unwrap();
        assert_eq!((a.running(), a.queued()), (1, 0));
        let e = a.enter(&token).await.err().unwrap();
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert_eq!(a.queued(), 0, "a refused run leaves no place in the queue");
        assert_eq!(e.retry_after_s, Some(5));
    }

    #[tokio::test]
    async fn a_queued_run_stops_waiting_when_cancelled() {
        let a = Admission::new(1, 4);
        let token = CancellationToken::new();
        let _held = a.enter(&token).await.unwrap();
        let queued = a.ticket().unwrap();
        assert_eq!((a.running(), a.queued()), (1, 1));
        let waiter = CancellationToken::new();
        waiter.cancel();
        let e = queued.slot(&waiter).await.err().unwrap();
        assert_eq!(e.code, ErrorCode::Cancelled);
        assert_eq!(a.queued(), 0, "a cancelled run leaves the queue");
    }
}
