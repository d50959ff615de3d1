//! Client MAC addresses from the kernel's IPv4 neighbour table (`/proc/net/arp`), for roots
//! chosen by MAC: read at most every [`RETRY_MISS`] and kept [`FRESH`], shared by all workers.
//! IPv6 neighbours are not in /proc (only netlink has them): an IPv6 client has no MAC here.

use crate::tftp::roots::MacAddr;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a read of the table answers every lookup.
pub const FRESH: Duration = Duration::from_secs(2);
/// How soon a lookup that missed may read the table again: a booting client's entry appears
/// when it first talks to us, but a storm of unknown clients reads the table at most this
/// often (a read of a 10,000-entry table costs about a millisecond).
pub const RETRY_MISS: Duration = Duration::from_millis(100);

/// The neighbour table as last read.
#[derive(Debug, Default)]
pub struct Neighbours {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    read_at: Option<Instant>,
    macs: HashMap<Ipv4Addr, MacAddr>,
}

impl Neighbours {
    /// The MAC of `ip` when the kernel knows it.
    pub fn lookup(&self, ip: IpAddr) -> Option<MacAddr> {
        let IpAddr::V4(v4) = ip.to_canonical() else { return None };
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let age = table.read_at.map(|t| now.saturating_duration_since(t));
        let known = table.macs.get(&v4).copied();
        let reread = match age {
            None => true,
            Some(age) => age >= FRESH || (known.is_none() && age >= RETRY_MISS),
        };
        if !reread {
            return known;
        }
        // A failed read (no /proc in a container) leaves an empty table, retried as above.
        table.macs = std::fs::read_to_string("/proc/net/arp").map(|t| parse_proc_arp(&t)).unwrap_or_default();
        table.read_at = Some(now);
        table.macs.get(&v4).copied()
    }
}

/// The complete entries of `/proc/net/arp` (flag ATF_COM): incomplete ones have no MAC yet.
pub fn parse_proc_arp(text: &str) -> HashMap<Ipv4Addr, MacAddr> {
    const ATF_COM: u32 = 0x2;
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let ip = f.first()?.parse().ok()?;
            let flags = u32::from_str_radix(f.get(2)?.trim_start_matches("0x"), 16).ok()?;
            let mac = f.get(3)?.parse().ok()?;
            (flags & ATF_COM != 0).then_some((ip, mac))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_complete_entries_of_proc_net_arp() {
        let text = "IP address       HW type     Flags       HW address            Mask     Device\n\
                    192.0.2.1        0x1         0x2         02:fc:00:00:00:05     *        eth0\n\
                    192.0.2.9        0x1         0x0         00:00:00:00:00:00     *        eth0\n\
                    10.0.0.7         0x1         0x6         52:54:00:AB:CD:EF     *        br0\n\
                    garbage\n";
        let t = parse_proc_arp(text);
        assert_eq!(t.len(), 2, "the incomplete entry and the garbage line are skipped");
        assert_eq!(t[&"10.0.0.7".parse().unwrap()].to_string(), "52:54:00:ab:cd:ef");
    }

    #[test]
    fn ipv6_clients_have_no_mac_here() {
        assert_eq!(Neighbours::default().lookup("fd00::1".parse().unwrap()), None);
    }
}
