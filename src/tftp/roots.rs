//! Which served directory answers a client, sans IO: per-client roots chosen by network
//! (CIDR) or MAC address, then dnsmasq's `tftp-unique-root` sub-directory per IP or MAC.

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// An Ethernet hardware address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `aa-bb-cc-dd-ee-ff`: lower-case, zero-padded, dashes, as dnsmasq's
    /// `tftp-unique-root=mac` names the client's directory.
    pub fn dashed(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join("-")
    }
}

impl FromStr for MacAddr {
    type Err = String;
    /// Six hex octets separated by `:` or `-` (either case).
    fn from_str(s: &str) -> Result<MacAddr, String> {
        let bad = || format!("`{s}` is not a MAC address (six hex octets: aa:bb:cc:dd:ee:ff)");
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut mac = [0u8; 6];
        for (octet, part) in mac.iter_mut().zip(parts) {
            if part.is_empty() || part.len() > 2 {
                return Err(bad());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        Ok(MacAddr(mac))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// dnsmasq's `tftp-unique-root`: serve from `<root>/<client>/` when that directory exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UniqueRoot {
    /// No per-client sub-directory.
    #[default]
    None,
    /// `<root>/192.0.2.7/` (IPv6: `<root>/2001:db8::7/`).
    Ip,
    /// `<root>/52-54-00-12-34-56/`, the MAC from the kernel's neighbour table.
    Mac,
}

/// One `[[tftp.client_roots]]` entry: a directory for the clients it names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientRoot {
    /// The directory these clients are served from.
    pub root: PathBuf,
    /// Client networks (CIDR) this entry is for.
    pub networks: Vec<IpNet>,
    /// Client MAC addresses this entry is for (found in the kernel's neighbour table, so only
    /// for clients on a directly attached network).
    pub macs: Vec<MacAddr>,
}

/// Why a client got an entry's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched {
    /// Its address is in this network.
    Network(IpNet),
    /// Its MAC address is this one.
    Mac(MacAddr),
}

/// The directories a client is served from, most specific first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The first `client_roots` entry that names the client (index, and why), else `None`
    /// for the common root.
    pub entry: Option<(usize, Matched)>,
    /// The `unique_root` sub-directory name under that root, when the mode has one for this
    /// client (the io layer uses it when it exists).
    pub unique_dir: Option<String>,
}

/// True when choosing for these settings needs the client's MAC address.
pub fn needs_mac(entries: &[ClientRoot], unique: UniqueRoot) -> bool {
    unique == UniqueRoot::Mac || entries.iter().any(|e| !e.macs.is_empty())
}

/// Chooses for a client at `ip` (with its MAC when known): entries in order, the first that
/// names the client's network or MAC wins.
pub fn choose(entries: &[ClientRoot], unique: UniqueRoot, ip: IpAddr, mac: Option<MacAddr>) -> Choice {
    let ip = ip.to_canonical();
    let entry = entries.iter().enumerate().find_map(|(i, e)| {
        let by_net = e.networks.iter().find(|n| n.contains(&ip)).map(|n| Matched::Network(*n));
        let by_mac = mac.filter(|m| e.macs.contains(m)).map(Matched::Mac);
        by_net.or(by_mac).map(|why| (i, why))
    });
    let unique_dir = match unique {
        UniqueRoot::None => None,
        UniqueRoot::Ip => Some(ip.to_string()),
        UniqueRoot::Mac => mac.map(|m| m.dashed()),
    };
    Choice { entry, unique_dir }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(root: &str, nets: &[&str], macs: &[&str]) -> ClientRoot {
        ClientRoot {
            root: root.into(),
            networks: nets.iter().map(|n| n.parse().unwrap()).collect(),
            macs: macs.iter().map(|m| m.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn mac_addresses_parse_and_print_as_dnsmasq_names_them() {
        let m: MacAddr = "52:54:00:AB:0c:0D".parse().unwrap();
        assert_eq!(m.to_string(), "52:54:00:ab:0c:0d");
        assert_eq!(m.dashed(), "52-54-00-ab-0c-0d");
        assert_eq!("52-54-00-ab-0c-0d".parse::<MacAddr>().unwrap(), m);
        for bad in ["", "52:54:00:ab:0c", "52:54:00:ab:0c:0d:01", "5254:00:ab:0c:0d", "zz:54:00:ab:0c:0d"] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn first_entry_naming_the_client_wins() {
        let entries = [
            entry("/lab", &["10.1.0.0/16"], &[]),
            entry("/kiosk", &[], &["52:54:00:00:00:01"]),
            entry("/ten", &["10.0.0.0/8"], &[]),
        ];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mac: MacAddr = "52:54:00:00:00:01".parse().unwrap();
        let pick = |ip, mac| choose(&entries, UniqueRoot::None, ip, mac).entry.map(|(i, _)| i);
        assert_eq!(pick(ip("10.1.2.3"), None), Some(0));
        assert_eq!(pick(ip("::ffff:10.1.2.3"), None), Some(0), "IPv4-mapped is IPv4");
        assert_eq!(pick(ip("10.1.2.3"), Some(mac)), Some(0), "order decides, not the kind of match");
        assert_eq!(pick(ip("10.2.0.1"), Some(mac)), Some(1));
        assert_eq!(pick(ip("10.2.0.1"), None), Some(2));
        assert_eq!(pick(ip("192.0.2.1"), None), None);
        assert!(needs_mac(&entries, UniqueRoot::None));
        assert!(!needs_mac(&entries[..1], UniqueRoot::Ip));
        assert!(needs_mac(&[], UniqueRoot::Mac));
    }

    #[test]
    fn unique_directories_as_dnsmasq_names_them() {
        let mac = Some("01:02:03:04:AA:BB".parse().unwrap());
        let ip: IpAddr = "::ffff:1.2.3.4".parse().unwrap();
        assert_eq!(choose(&[], UniqueRoot::Ip, ip, None).unique_dir.as_deref(), Some("1.2.3.4"));
        assert_eq!(choose(&[], UniqueRoot::Mac, ip, mac).unique_dir.as_deref(), Some("01-02-03-04-aa-bb"));
        assert_eq!(choose(&[], UniqueRoot::Mac, ip, None).unique_dir, None, "no MAC known: no directory");
        assert_eq!(choose(&[], UniqueRoot::None, ip, mac).unique_dir, None);
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(choose(&[], UniqueRoot::Ip, v6, None).unique_dir.as_deref(), Some("2001:db8::7"));
    }
}
