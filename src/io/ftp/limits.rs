//! Admission and bandwidth limits for FTP: total and per-IP session counts checked when a
//! control connection is accepted, per-IP counts of passive listeners checked at PASV/EPSV
//! (each permit releases its place on drop), and the rate a new transfer may use given the
//! per-session and server-wide caps.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Why a control connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `ftp.limits.max_sessions` reached.
    #[error("too many sessions in total")]
    Total,
    /// `ftp.limits.max_sessions_per_ip` reached for this client address.
    #[error("too many sessions from this address")]
    PerIp,
}

/// Session and passive-listener counters shared by every worker.
///
/// The total is an atomic. The per-IP counts are maps behind a mutex each: they are touched
/// only when a control connection or a passive listener opens or closes (never per byte),
/// so a lock is rare and short, and a plain map keeps exact counts without a concurrent-map
/// crate.
#[derive(Debug)]
pub struct SessionLimits {
    max_total: AtomicUsize,
    max_per_ip: AtomicUsize,
    total: AtomicUsize,
    per_ip: PerIp,
    passive_per_ip: PerIp,
}

/// How many of something each client address holds.
#[derive(Debug, Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

impl PerIp {
    /// Counts one more for `ip` unless it already holds `max`.
    fn take(&self, ip: IpAddr, max: usize) -> bool {
        // A poisoned lock only means another thread panicked mid-update of plain counters.
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = map.entry(ip).or_insert(0);
        if *count >= max {
            if *count == 0 {
                map.remove(&ip);
            }
            return false;
        }
        *count += 1;
        true
    }

    /// Counts one less for `ip`; an address holding nothing leaves the map.
    fn give_back(&self, ip: IpAddr) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = map.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                map.remove(&ip);
            }
        }
    }
}

/// One admitted session; dropping it frees its slots.
#[derive(Debug)]
pub struct SessionPermit {
    limits: Arc<SessionLimits>,
    ip: IpAddr,
}

/// One passive listener's place in its client address's count; dropping it (with the
/// listener) gives the place back.
#[derive(Debug)]
pub struct PassivePermit {
    limits: Arc<SessionLimits>,
    ip: IpAddr,
}

impl SessionLimits {
    /// Limits allowing `max_total` sessions, at most `max_per_ip` from one address.
    pub fn new(max_total: usize, max_per_ip: usize) -> SessionLimits {
        SessionLimits {
            max_total: AtomicUsize::new(max_total),
            max_per_ip: AtomicUsize::new(max_per_ip),
            total: AtomicUsize::new(0),
            per_ip: PerIp::default(),
            passive_per_ip: PerIp::default(),
        }
    }

    /// New maxima after a reload; sessions already admitted keep their slots.
    pub fn set_maxima(&self, max_total: usize, max_per_ip: usize) {
        self.max_total.store(max_total, Ordering::Relaxed);
        self.max_per_ip.store(max_per_ip, Ordering::Relaxed);
    }

    /// Takes a slot for a session from `ip` (canonical form, so v4-mapped peers count as v4).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<SessionPermit, Refusal> {
        let ip = ip.to_canonical();
        let taken = self.total.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < self.max_total.load(Ordering::Relaxed)).then_some(n + 1)
        });
        if taken.is_err() {
            return Err(Refusal::Total);
        }
        if !self.per_ip.take(ip, self.max_per_ip.load(Ordering::Relaxed)) {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::PerIp);
        }
        Ok(SessionPermit { limits: Arc::clone(self), ip })
    }

    /// Takes a place for a passive listener of a client at `ip`, unless that address
    /// already holds `max` (the session's `ftp.passive.max_ports_per_ip`, so a reload
    /// applies to sessions that start after it, as every other limit).
    pub fn hold_passive(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<PassivePermit> {
        let ip = ip.to_canonical();
        self.passive_per_ip.take(ip, max).then(|| PassivePermit { limits: Arc::clone(self), ip })
    }

    /// Sessions currently admitted.
    pub fn sessions(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        self.limits.per_ip.give_back(self.ip);
        self.limits.total.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for PassivePermit {
    fn drop(&mut self) {
        self.limits.passive_per_ip.give_back(self.ip);
    }
}

/// Bytes per second for a transfer starting now (0 = unlimited).
///
/// The server-wide cap is split evenly across workers (no cross-worker traffic on the hot
/// path), and a worker's share evenly across the transfers it runs when this one starts;
/// the per-session cap applies on top. Transfers started earlier keep their rate, so the
/// global cap is approximate while the number of transfers changes.
pub fn transfer_rate(session_bps: u64, global_bps: u64, workers: usize, running_here: usize) -> u64 {
    let share = if global_bps == 0 {
        0
    } else {
        (global_bps / workers.max(1) as u64 / running_here.max(1) as u64).max(1)
    };
    match (session_bps, share) {
        (0, s) | (s, 0) => s,
        (a, b) => a.min(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn total_and_per_ip_limits_release_on_drop() {
        let limits = Arc::new(SessionLimits::new(3, 2));
        let a1 = limits.admit(ip("192.0.2.1")).unwrap();
        let _a2 = limits.admit(ip("::ffff:192.0.2.1")).unwrap();
        assert_eq!(limits.admit(ip("192.0.2.1")).unwrap_err(), Refusal::PerIp, "mapped counts as v4");
        let _b1 = limits.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(limits.admit(ip("192.0.2.3")).unwrap_err(), Refusal::Total);
        drop(a1);
        assert_eq!(limits.sessions(), 2);
        let _a3 = limits.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(limits.sessions(), 3);
    }

    #[test]
    fn passive_listeners_are_counted_per_address_apart_from_sessions() {
        let limits = Arc::new(SessionLimits::new(10, 10));
        let a1 = limits.hold_passive(ip("192.0.2.1"), 2).unwrap();
        let _a2 = limits.hold_passive(ip("::ffff:192.0.2.1"), 2).unwrap();
        assert!(limits.hold_passive(ip("192.0.2.1"), 2).is_none(), "mapped counts as v4");
        let _b1 = limits.hold_passive(ip("192.0.2.2"), 2).unwrap();
        assert_eq!(limits.sessions(), 0, "listeners are not sessions");
        drop(a1);
        assert!(limits.hold_passive(ip("192.0.2.1"), 2).is_some());
        assert!(!limits.passive_per_ip.take(ip("192.0.2.9"), 0));
        assert!(
            limits.passive_per_ip.0.lock().unwrap().get(&ip("192.0.2.9")).is_none(),
            "no empty entry left"
        );
    }

    #[test]
    fn rates_combine_session_and_global_caps() {
        assert_eq!(transfer_rate(0, 0, 2, 1), 0);
        assert_eq!(transfer_rate(1000, 0, 2, 5), 1000);
        assert_eq!(transfer_rate(0, 1000, 2, 1), 500);
        assert_eq!(transfer_rate(0, 1000, 2, 5), 100);
        assert_eq!(transfer_rate(50, 1000, 2, 1), 50);
    }
}
