//! A byte budget shared by every session of a lab: what clients may make the lab hold at
//! once in pending literal and message data (issue #14).
//!
//! The sans-IO framer reserves an announced literal's size here before it buffers a single
//! octet of it; the [`Reservation`] gives the bytes back when it is dropped (the command
//! ran, was refused, or the session ended). Lock-free: one atomic counter checked against
//! the cap.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The default lab-wide budget (`harness serve --memory-budget`).
pub const DEFAULT_MEMORY_BUDGET: usize = 256 * 1024 * 1024;

#[derive(Debug)]
struct Pool {
    cap: usize,
    in_use: AtomicUsize,
}

/// A cap on bytes held at once, shared by every clone.
#[derive(Debug, Clone)]
pub struct MemoryBudget(Arc<Pool>);

impl MemoryBudget {
    /// A budget of `cap` bytes.
    pub fn new(cap: usize) -> Self {
        MemoryBudget(Arc::new(Pool {
            cap,
            in_use: AtomicUsize::new(0),
        }))
    }

    /// No cap: for in-process paths (driver, scenarios, fuzz targets), where each
    /// session's own limits are the only ones.
    pub fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    pub fn cap(&self) -> usize {
        self.0.cap
    }

    /// Bytes reserved now, by every session.
    pub fn in_use(&self) -> usize {
        self.0.in_use.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes from the budget, or `None` (nothing taken) when they do not fit.
    pub fn reserve(&self, n: usize) -> Option<Reservation> {
        self.take(n).then(|| Reservation {
            budget: self.clone(),
            bytes: n,
        })
    }

    fn take(&self, n: usize) -> bool {
        let pool = &self.0;
        pool.in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= pool.cap)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.0.in_use.fetch_sub(n, Ordering::AcqRel);
    }
}

impl Default for MemoryBudget {
    fn default() -> Self {
        Self::unlimited()
    }
}

/// Bytes taken from a [`MemoryBudget`], given back on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: MemoryBudget,
    bytes: usize,
}

impl Reservation {
    /// Bytes this reservation holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes `n` more bytes into this reservation; false (nothing taken) when they do not
    /// fit.
    pub fn try_grow(&mut self, n: usize) -> bool {
        let grown = self.budget.take(n);
        if grown {
            self.bytes += n;
        }
        grown
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_the_cap_and_give_back_on_drop() {
        let budget = MemoryBudget::new(100);
        let a = budget.reserve(60).unwrap();
        assert!(budget.reserve(41).is_none());
        let mut b = budget.clone().reserve(40).unwrap();
        assert_eq!(budget.in_use(), 100);
        assert!(!b.try_grow(1));
        drop(a);
        assert!(b.try_grow(60));
        assert_eq!(b.bytes(), 100);
        drop(b);
        assert_eq!(budget.in_use(), 0);
        assert!(MemoryBudget::unlimited().reserve(usize::MAX).is_some());
        assert!(budget.reserve(usize::MAX).is_none());
    }
}
