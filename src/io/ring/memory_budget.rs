//! A server-wide memory budget for data that peers make Ferry hold whole (netascii files,
//! rendered listings): a charge is reserved before use and returned when dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Memory reserved against a shared budget; returned on drop.
#[derive(Debug)]
pub struct MemoryCharge {
    held: Arc<AtomicU64>,
    bytes: u64,
}

impl MemoryCharge {
    /// Reserves `bytes` unless that would take `held` past `max`.
    pub fn acquire(held: &Arc<AtomicU64>, bytes: u64, max: u64) -> Option<MemoryCharge> {
        let before = held.fetch_add(bytes, Ordering::AcqRel);
        if before.saturating_add(bytes) > max {
            held.fetch_sub(bytes, Ordering::AcqRel);
            return None;
        }
        Some(MemoryCharge { held: Arc::clone(held), bytes })
    }
}

impl Drop for MemoryCharge {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_stay_within_the_budget_and_are_returned() {
        let held = Arc::new(AtomicU64::new(0));
        let a = MemoryCharge::acquire(&held, 60, 100).unwrap();
        assert!(MemoryCharge::acquire(&held, 60, 100).is_none());
        assert_eq!(held.load(Ordering::Acquire), 60, "a refused charge takes nothing");
        drop(a);
        assert!(MemoryCharge::acquire(&held, 100, 100).is_some());
    }
}
