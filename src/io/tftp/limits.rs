//! Admission of TFTP requests: the global `max_transfers` count (an atomic shared by all
//! workers), a per-IP request rate (one token bucket per IP shared by all workers: SO_REUSEPORT
//! spreads a client's source ports over every worker, so per-worker buckets would multiply
//! the rate by the worker count), and the per-worker table of live transfers used to ignore
//! a repeated RRQ/WRQ.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// One running transfer counted against `max_transfers`; released on drop.
#[derive(Debug)]
pub struct TransferSlot {
    count: Arc<AtomicUsize>,
}

impl TransferSlot {
    /// Takes a slot unless `max` transfers already run.
    pub fn acquire(count: &Arc<AtomicUsize>, max: usize) -> Option<TransferSlot> {
        let before = count.fetch_add(1, Ordering::AcqRel);
        if before >= max {
            count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(TransferSlot { count: Arc::clone(count) })
    }
}

impl Drop for TransferSlot {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Most client IPs the limiter tracks; beyond it idle buckets are pruned, and if none is idle
/// a new IP is admitted without a bucket (memory stays bounded under a spoofed flood).
const MAX_TRACKED_IPS: usize = 8192;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Per-IP token bucket: `rate` requests per second, bursts of up to `rate`.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    buckets: HashMap<IpAddr, Bucket>,
}

impl RateLimiter {
    /// A limiter for `per_second` requests per IP; 0 disables it.
    pub fn new(per_second: u32) -> RateLimiter {
        RateLimiter { rate: f64::from(per_second), buckets: HashMap::new() }
    }

    /// Applies a reloaded rate; buckets restart full only when it changed (every worker
    /// calls this once per reload).
    pub fn set_rate(&mut self, per_second: u32) {
        if self.rate != f64::from(per_second) {
            *self = RateLimiter::new(per_second);
        }
    }

    /// Takes one token for `ip`; false when its bucket is empty.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        if self.buckets.len() >= MAX_TRACKED_IPS && !self.buckets.contains_key(&ip) {
            self.prune(now);
            if self.buckets.len() >= MAX_TRACKED_IPS {
                return true;
            }
        }
        let rate = self.rate;
        let b = self.buckets.entry(ip).or_insert(Bucket { tokens: rate, last: now });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(rate);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets buckets that have refilled completely (they behave like new ones).
    fn prune(&mut self, now: Instant) {
        let rate = self.rate;
        self.buckets
            .retain(|_, b| b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate < rate);
    }
}

/// Client TIDs (address and port) with a transfer running on this worker whose outcome is
/// still open (an upload that dallies after its final ACK has left the table).
#[derive(Debug, Default)]
pub struct LiveTransfers {
    peers: RefCell<HashSet<SocketAddr>>,
}

impl LiveTransfers {
    /// Registers `peer`; `None` when it already has a transfer (a repeated request).
    pub fn register(self: &Rc<Self>, peer: SocketAddr) -> Option<LiveEntry> {
        if !self.peers.borrow_mut().insert(peer) {
            return None;
        }
        Some(LiveEntry { table: Rc::clone(self), peer })
    }

    /// True when `peer` has a transfer running.
    pub fn contains(&self, peer: &SocketAddr) -> bool {
        self.peers.borrow().contains(peer)
    }
}

/// A registered client TID; removed from the table on drop.
#[derive(Debug)]
pub struct LiveEntry {
    table: Rc<LiveTransfers>,
    peer: SocketAddr,
}

impl Drop for LiveEntry {
    fn drop(&mut self) {
        self.table.peers.borrow_mut().remove(&self.peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn slots_are_counted_and_released() {
        let count = Arc::new(AtomicUsize::new(0));
        let a = TransferSlot::acquire(&count, 2).unwrap();
        let _b = TransferSlot::acquire(&count, 2).unwrap();
        assert!(TransferSlot::acquire(&count, 2).is_none());
        drop(a);
        assert!(TransferSlot::acquire(&count, 2).is_some());
    }

    #[test]
    fn token_bucket_limits_and_refills() {
        let mut r = RateLimiter::new(3);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t = Instant::now();
        assert!((0..3).all(|_| r.allow(ip, t)));
        assert!(!r.allow(ip, t));
        assert!(r.allow("10.0.0.2".parse().unwrap(), t), "other IPs have their own bucket");
        assert!(r.allow(ip, t + Duration::from_millis(400)));
        assert!(RateLimiter::new(0).allow(ip, t));
    }

    #[test]
    fn set_rate_keeps_buckets_unless_the_rate_changes() {
        let mut r = RateLimiter::new(1);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t = Instant::now();
        assert!(r.allow(ip, t));
        r.set_rate(1);
        assert!(!r.allow(ip, t), "a reload by each worker must not refill the buckets");
        r.set_rate(2);
        assert!(r.allow(ip, t), "a new rate starts with full buckets");
    }

    #[test]
    fn live_table_rejects_repeats_until_dropped() {
        let live = Rc::new(LiveTransfers::default());
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let e = live.register(peer).unwrap();
        assert!(live.register(peer).is_none());
        assert!(live.contains(&peer));
        drop(e);
        assert!(live.register(peer).is_some());
    }
}
