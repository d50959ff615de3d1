//! The `[tftp]` configuration section: listeners, option caps, timers, limits and access
//! lists for reads (`[tftp.read]`) and uploads (`[tftp.write]`). Validation names the key.

use super::{ConfigError, PortRange};
use crate::tftp::remap::RuleSet;
use crate::tftp::roots::{ClientRoot, UniqueRoot};
use crate::tftp::{AccessPolicy, BlockWrap, ServerCaps, TransferSettings};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Settings of the TFTP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TftpConfig {
    /// Serve TFTP at all.
    pub enabled: bool,
    /// Request socket listen addresses (`[::]` is dual-stack).
    pub listen: Vec<SocketAddr>,
    /// Directory served over TFTP; unset = the top-level `root`.
    pub root: Option<PathBuf>,
    /// Largest block size granted (RFC 2348, 8..=65464). 1468 fills one Ethernet frame
    /// over IPv4 (1500 - 20 - 8 - 4), what U-Boot and UEFI ask; a bigger block fragments,
    /// and one lost fragment loses the block. Raise it for loopback or jumbo frames.
    pub max_blksize: u16,
    /// Largest window granted (RFC 7440, 1..=65535).
    pub max_windowsize: u16,
    /// Retransmission timeout in seconds when the client sets none (RFC 2349 range 1..=255;
    /// 1 like tftp-hpa). Doubles on each retransmission, except before the client proved
    /// its address and once every block was sent: there it stays at this value (or the
    /// client's, when shorter), so a long client `timeout` cannot hold a transfer slot.
    pub default_timeout_secs: u8,
    /// Give up on a transfer after this many seconds without progress, whatever `timeout`
    /// the client asked.
    pub max_retransmit_time_secs: u64,
    /// Retransmissions of the first packet (OACK or DATA 1) before the client's first ACK
    /// proves its address; bounds what a spoofed request can reflect to 1 + this packets,
    /// and how long it holds a slot to 1 + this times `default_timeout_secs`.
    pub unproven_retransmits: u32,
    /// Block number after 65535: `"zero"` (most clients) or `"one"`.
    pub block_wrap: BlockWrap,
    /// Local ports for per-transfer sockets; unset = kernel ephemeral ports.
    pub transfer_ports: Option<PortRange>,
    /// Single-port mode: every reply leaves from the request socket's own port (69), and
    /// transfers are told apart by the client's address and port, as dnsmasq's
    /// `tftp-single-port` does. Needed behind NAT or a Kubernetes Service, where replies
    /// from a fresh port per transfer (RFC 1350's server TID) do not find their way back.
    /// Restart-only.
    pub single_port: bool,
    /// Concurrent transfers per server; a request over it gets ERROR 0 "server busy".
    pub max_transfers: usize,
    /// New requests accepted per second from one client IP; 0 = unlimited.
    pub requests_per_second_per_ip: u32,
    /// Largest file served in netascii mode (it is converted in memory).
    pub netascii_max_bytes: u64,
    /// Memory all netascii reads together may hold (each counts twice its file size, the
    /// worst case of the encoding); a request beyond it gets ERROR 0 "server busy".
    pub netascii_memory_bytes: u64,
    /// Memory the server-wide file cache may hold: boot storms fetch the same few files
    /// thousands of times, and DATA then comes from memory instead of a read per block. A
    /// file is read in when a second transfer of it starts while another runs. Files in use
    /// by transfers count; 0 disables the cache.
    pub cache_bytes: u64,
    /// Largest file the cache takes (octet mode); bigger files are read from disk per block.
    pub cache_max_file_bytes: u64,
    /// Microseconds a transfer keeps polling its socket for the client's next datagram
    /// before it sleeps, while its worker runs at most a few transfers (a lone lock-step
    /// download is one block per round trip, and a sleeping thread's wake-up is most of a
    /// round trip, on a VM most of all); 0 turns it off. A client that answers slower than
    /// this is not polled for.
    pub busy_poll_us: u32,
    /// dnsmasq's `tftp-unique-root`: serve a client from `<root>/<its IP>/` or
    /// `<root>/<its MAC aa-bb-cc-dd-ee-ff>/` when that directory exists.
    pub unique_root: UniqueRoot,
    /// Who may read.
    pub read: TftpReadConfig,
    /// Uploads.
    pub write: TftpWriteConfig,
    /// Filename remapping.
    pub remap: RemapConfig,
    /// Roots for chosen clients, by network or MAC; the first entry naming a client wins.
    pub client_roots: Vec<ClientRoot>,
}

impl Default for TftpConfig {
    fn default() -> Self {
        TftpConfig {
            enabled: true,
            listen: vec!["[::]:69".parse().expect("literal address")],
            root: None,
            max_blksize: 1468,
            max_windowsize: 64,
            default_timeout_secs: 1,
            max_retransmit_time_secs: 20,
            unproven_retransmits: 3,
            block_wrap: BlockWrap::Zero,
            transfer_ports: None,
            single_port: false,
            max_transfers: 1000,
            requests_per_second_per_ip: 20,
            netascii_max_bytes: 16 << 20,
            netascii_memory_bytes: 128 << 20,
            cache_bytes: 256 << 20,
            cache_max_file_bytes: 64 << 20,
            busy_poll_us: 200,
            unique_root: UniqueRoot::None,
            read: TftpReadConfig::default(),
            write: TftpWriteConfig::default(),
            remap: RemapConfig::default(),
            client_roots: Vec::new(),
        }
    }
}

/// The `[tftp.read]` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TftpReadConfig {
    /// Networks allowed to read (CIDR); empty = everyone not denied.
    pub allow: Vec<IpNet>,
    /// Networks refused (wins over `allow`).
    pub deny: Vec<IpNet>,
}

/// The `[tftp.write]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TftpWriteConfig {
    /// Accept WRQ at all.
    pub enabled: bool,
    /// An upload may replace an existing file (else ERROR 6).
    pub overwrite: bool,
    /// Largest upload in bytes (ERROR 3 beyond it).
    pub quota_bytes: u64,
    /// Networks allowed to write (CIDR); empty = everyone not denied.
    pub allow: Vec<IpNet>,
    /// Networks refused (wins over `allow`).
    pub deny: Vec<IpNet>,
}

impl Default for TftpWriteConfig {
    fn default() -> Self {
        TftpWriteConfig {
            enabled: false,
            overwrite: false,
            quota_bytes: 64 << 20,
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }
}

/// The `[tftp.remap]` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemapConfig {
    /// A rule file in tftp-hpa's `-m` format; unset = no rules.
    pub file: Option<PathBuf>,
    /// Turn every `\` of a requested name into `/` before the rules see it (Windows WDS
    /// clients). Off: the rules see the name as sent, as in tftp-hpa; after them `\` still
    /// separates path components, as it always has in Ferry.
    pub backslash_to_slash: bool,
    /// When a read names a file that does not exist, look each path component up ignoring
    /// case (ASCII), as Windows clients and DOS-era menus expect.
    pub case_insensitive: bool,
    /// The rules read from `file` when the configuration was loaded (re-read on SIGHUP).
    #[serde(skip)]
    pub rules: Option<Arc<RuleSet>>,
}

impl RemapConfig {
    /// Reads and parses `file`; a bad rule is an error naming the file, line and reason.
    pub fn load_rules(&mut self) -> Result<(), ConfigError> {
        let Some(path) = &self.file else {
            self.rules = None;
            return Ok(());
        };
        let bad = |reason: String| Err(ConfigError::invalid("tftp.remap.file", reason));
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => return bad(format!("cannot read the rule file {}: {e}", path.display())),
        };
        match RuleSet::parse(&text) {
            Ok(rules) => {
                self.rules = Some(Arc::new(rules));
                Ok(())
            }
            Err(e) => bad(format!("{}:{}: {}", path.display(), e.line, e.reason)),
        }
    }
}

impl TftpConfig {
    /// Reads the files the section names (the remap rules), so a reload sees their changes.
    pub fn load_files(&mut self) -> Result<(), ConfigError> {
        self.remap.load_rules()
    }

    /// The directory TFTP serves.
    pub fn effective_root<'a>(&'a self, top: &'a super::Config) -> &'a std::path::Path {
        self.root.as_deref().unwrap_or(&top.root)
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self, _top: &super::Config) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: String| Err(ConfigError::invalid(format!("tftp.{key}"), reason));
        if self.enabled && self.listen.is_empty() {
            return bad("listen", "TFTP is enabled but no listen address is given".into());
        }
        if let Some(root) = &self.root {
            if !root.is_dir() {
                return bad(
                    "root",
                    format!("directory {} does not exist or is not a directory", root.display()),
                );
            }
        }
        // Each key's own range is in `bounds`; here are the relations between keys.
        if self.max_retransmit_time_secs < u64::from(self.default_timeout_secs) {
            return bad(
                "max_retransmit_time_secs",
                format!(
                    "{} is less than default_timeout_secs ({})",
                    self.max_retransmit_time_secs, self.default_timeout_secs
                ),
            );
        }
        if let Some(ports) = &self.transfer_ports {
            if let Err(reason) = ports.check() {
                return bad("transfer_ports", reason);
            }
        }
        for (i, entry) in self.client_roots.iter().enumerate() {
            let key = format!("client_roots[{i}]");
            if entry.networks.is_empty() && entry.macs.is_empty() {
                return bad(&key, "names no client: give `networks` or `macs`".into());
            }
            if !entry.root.is_absolute() || !entry.root.is_dir() {
                let why =
                    format!("root {} is not an existing directory (absolute path)", entry.root.display());
                return bad(&format!("{key}.root"), why);
            }
        }
        if self.write.enabled && self.write.quota_bytes == 0 {
            return bad("write.quota_bytes", "must be at least 1 when uploads are enabled".into());
        }
        Ok(())
    }
}

// The TFTP core's views of this section: what it grants, its timers, who may do what.

impl From<&TftpConfig> for ServerCaps {
    fn from(c: &TftpConfig) -> ServerCaps {
        ServerCaps {
            max_blksize: c.max_blksize,
            max_windowsize: c.max_windowsize,
            upload_quota: c.write.quota_bytes,
        }
    }
}

impl From<&TftpConfig> for TransferSettings {
    fn from(c: &TftpConfig) -> TransferSettings {
        TransferSettings {
            timeout: Duration::from_secs(u64::from(c.default_timeout_secs)),
            max_retransmit_time: Duration::from_secs(c.max_retransmit_time_secs),
            unproven_retransmits: c.unproven_retransmits,
            block_wrap: c.block_wrap,
            upload_quota: c.write.quota_bytes,
            ..TransferSettings::default()
        }
    }
}

impl From<&TftpConfig> for AccessPolicy {
    fn from(c: &TftpConfig) -> AccessPolicy {
        AccessPolicy {
            read_allow: c.read.allow.clone(),
            read_deny: c.read.deny.clone(),
            write_enabled: c.write.enabled,
            overwrite: c.write.overwrite,
            write_allow: c.write.allow.clone(),
            write_deny: c.write.deny.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(edit: impl FnOnce(&mut TftpConfig)) -> Result<(), String> {
        let mut top = super::super::Config::default();
        edit(&mut top.tftp);
        top.tftp.validate(&top).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(check(|_| {}), Ok(()));
    }

    #[test]
    fn each_error_names_its_key() {
        type Edit = Box<dyn FnOnce(&mut TftpConfig)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("tftp.listen", Box::new(|c| c.listen.clear())),
            ("tftp.root", Box::new(|c| c.root = Some("/nonexistent/ferry-tftp".into()))),
            (
                "tftp.max_retransmit_time_secs",
                Box::new(|c| {
                    c.default_timeout_secs = 5;
                    c.max_retransmit_time_secs = 4
                }),
            ),
            ("tftp.transfer_ports", Box::new(|c| c.transfer_ports = Some("9-3".parse().unwrap()))),
            (
                "tftp.write.quota_bytes",
                Box::new(|c| {
                    c.write.enabled = true;
                    c.write.quota_bytes = 0
                }),
            ),
        ];
        for (key, edit) in cases {
            let err = check(edit).expect_err(key);
            assert!(err.contains(&format!("`{key}`")), "{err} should name {key}");
        }
    }

    #[test]
    fn parses_sections_from_toml() {
        let c: TftpConfig = toml::from_str(
            r#"
            block_wrap = "one"
            transfer_ports = "40000-40100"
            [read]
            deny = ["10.9.0.0/16"]
            [write]
            enabled = true
            allow = ["192.168.0.0/24", "fd00::/8"]
            "#,
        )
        .unwrap();
        assert_eq!(c.block_wrap, BlockWrap::One);
        assert_eq!(c.read.deny.len(), 1);
        assert!(c.write.enabled && c.write.allow.len() == 2);
        assert!(toml::from_str::<TftpConfig>("block_wrap = \"two\"").is_err());
        assert!(toml::from_str::<TftpConfig>("[write]\nquota = 1").is_err());
    }
}
