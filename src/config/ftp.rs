//! The `[ftp]` configuration section: listeners, data connections, users and limits.
//! Defaults follow vsftpd where it has an equivalent (300 s timeouts, 50 sessions per IP,
//! anonymous read-only); every validation error names the key at fault.

use super::tls::TlsConfig;
use super::{Config, ConfigError, PortRange};
use crate::ftp::account::Permissions;
pub use crate::ftp::account::{Permission, ANONYMOUS_NAMES};
use crate::ftp::settings::{
    ActiveRules, AddressOverride, AnonymousSettings, FtpSettings, PassiveRules, UserSettings,
};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// How binary downloads move file pages to the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZeroCopy {
    /// io_uring splice file -> pipe -> socket.
    Splice,
    /// sendfile(2) on a non-blocking socket, waiting for POLLOUT through io_uring.
    Sendfile,
}

/// Settings of the FTP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FtpConfig {
    /// Serve FTP at all.
    pub enabled: bool,
    /// Control connection listen addresses (`[::]` is dual-stack).
    pub listen: Vec<SocketAddr>,
    /// Source port of active-mode (PORT/EPRT) data connections; 0 = any ephemeral port.
    pub active_source_port: u16,
    /// Text of the 220 greeting (one line, no CR/LF).
    pub banner: String,
    /// Longest accepted control line in bytes, CRLF included; longer lines get 500.
    pub max_line_len: usize,
    /// Show `ftp ftp` as owner and group in LIST instead of numeric ids (vsftpd `hide_ids`).
    pub hide_ids: bool,
    /// Passive mode (PASV/EPSV) data connections.
    pub passive: PassiveConfig,
    /// Active mode (PORT/EPRT) data connections.
    pub active: ActiveConfig,
    /// Anonymous logins (`anonymous` and `ftp`).
    pub anonymous: AnonymousConfig,
    /// Virtual users, each with an argon2 password hash, a root and permissions.
    pub users: Vec<UserConfig>,
    /// Session counts, timeouts, login throttling and bandwidth.
    pub limits: LimitsConfig,
    /// How uploads are written.
    pub uploads: UploadsConfig,
    /// The PROXY protocol header from load balancers in front.
    pub proxy_protocol: ProxyProtocolConfig,
    /// How binary downloads move file pages to the socket: `splice` (io_uring splice through
    /// a pipe) or `sendfile` (sendfile(2) driven by io_uring readiness).
    pub zero_copy: ZeroCopy,
    /// FTPS: explicit (AUTH TLS) and implicit TLS.
    pub tls: TlsConfig,
}

impl Default for FtpConfig {
    fn default() -> Self {
        FtpConfig {
            enabled: true,
            listen: vec!["[::]:21".parse().expect("literal address")],
            active_source_port: 20,
            banner: "Ferry FTP server ready.".into(),
            max_line_len: 4096,
            hide_ids: true,
            passive: PassiveConfig::default(),
            active: ActiveConfig::default(),
            anonymous: AnonymousConfig::default(),
            users: Vec::new(),
            limits: LimitsConfig::default(),
            uploads: UploadsConfig::default(),
            proxy_protocol: ProxyProtocolConfig::default(),
            zero_copy: ZeroCopy::Sendfile,
            tls: TlsConfig::default(),
        }
    }
}

/// The `[ftp.passive]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveConfig {
    /// Ports passive listeners are bound in.
    pub ports: PortRange,
    /// Address advertised in 227 replies; unset = the local address of the control connection.
    /// Set it behind NAT (vsftpd `pasv_address`).
    pub address: Option<IpAddr>,
    /// Per-client-network advertised addresses, first match wins (LAN vs WAN clients).
    pub overrides: Vec<PassiveOverride>,
    /// Accept a passive data connection only from the control connection's peer IP.
    pub require_same_peer: bool,
    /// How long a passive listener waits: for a transfer command after PASV/EPSV (then it is
    /// closed), and for the client's data connection once one came (then 425). Seconds;
    /// vsftpd `accept_timeout`.
    pub accept_timeout_secs: u64,
    /// Passive listeners one client address may hold at once, across all its sessions
    /// (PASV/EPSV beyond it get 425), so idle sessions cannot take the whole port range.
    pub max_ports_per_ip: usize,
}

impl Default for PassiveConfig {
    fn default() -> Self {
        PassiveConfig {
            ports: PortRange { first: 50000, last: 50999 },
            address: None,
            overrides: Vec::new(),
            require_same_peer: true,
            accept_timeout_secs: 60,
            max_ports_per_ip: 16,
        }
    }
}

/// One `[[ftp.passive.overrides]]` entry: clients in `network` are told `address`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveOverride {
    /// Client network, e.g. `10.0.0.0/8`.
    pub network: IpNet,
    /// Address advertised to those clients.
    pub address: IpAddr,
}

/// The `[ftp.proxy_protocol]` section: control and passive data connections from `trusted`
/// networks start with a PROXY header (v1 or v2) naming the real client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyProtocolConfig {
    /// Expect headers at all.
    pub enabled: bool,
    /// Networks of the load balancers whose headers are believed (CIDR).
    pub trusted: Vec<IpNet>,
}

impl ProxyProtocolConfig {
    /// True when a connection from `peer` must start with a header.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.enabled && self.trusted.iter().any(|net| net.contains(&peer))
    }
}

/// The `[ftp.active]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActiveConfig {
    /// Accept PORT/EPRT at all.
    pub enabled: bool,
    /// Allow PORT/EPRT to an address other than the control peer (FTP bounce, RFC 2577).
    pub allow_foreign_address: bool,
    /// Allow PORT/EPRT to ports below 1024 (RFC 2577 §3).
    pub allow_low_ports: bool,
    /// How long connecting to the client may take (seconds).
    pub connect_timeout_secs: u64,
}

impl Default for ActiveConfig {
    fn default() -> Self {
        ActiveConfig {
            enabled: true,
            allow_foreign_address: false,
            allow_low_ports: false,
            connect_timeout_secs: 60,
        }
    }
}

/// The `[ftp.anonymous]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnonymousConfig {
    /// Accept the users `anonymous` and `ftp` with any password.
    pub enabled: bool,
    /// Their root; unset = the top-level `root`.
    pub root: Option<PathBuf>,
    /// Let them upload and create directories (never delete, rename or overwrite).
    pub writable: bool,
}

impl Default for AnonymousConfig {
    fn default() -> Self {
        AnonymousConfig { enabled: true, root: None, writable: false }
    }
}

/// One `[[ftp.users]]` entry: a virtual user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Login name (case-sensitive, no whitespace).
    pub name: String,
    /// Argon2 PHC string, e.g. `$argon2id$v=19$m=19456,t=2,p=1$...`.
    pub password_hash: String,
    /// The user's root; unset = the top-level `root`.
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// Granted permissions: any of `read`, `write`, `append`, `delete`, `rename`, `mkdir`.
    #[serde(default = "default_user_permissions")]
    pub permissions: Vec<String>,
}

fn default_user_permissions() -> Vec<String> {
    vec!["read".into()]
}

/// The `[ftp.limits]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Concurrent control connections in total (vsftpd `max_clients`).
    pub max_sessions: usize,
    /// Concurrent control connections from one client IP (vsftpd `max_per_ip`).
    pub max_sessions_per_ip: usize,
    /// Close a control connection idle this long between commands (seconds).
    pub idle_timeout_secs: u64,
    /// Abort a data transfer that makes no progress this long (seconds).
    pub data_timeout_secs: u64,
    /// Delay before answering a failed login (milliseconds), slowing password guessing.
    pub login_failure_delay_ms: u64,
    /// Failed logins after which the connection is closed with 421.
    pub max_login_failures: u32,
    /// Per-session transfer rate cap in bytes per second; 0 = unlimited.
    pub rate_limit_session_bps: u64,
    /// Server-wide transfer rate cap in bytes per second; 0 = unlimited.
    pub rate_limit_global_bps: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_sessions: 2000,
            max_sessions_per_ip: 50,
            idle_timeout_secs: 300,
            data_timeout_secs: 300,
            login_failure_delay_ms: 1000,
            max_login_failures: 3,
            rate_limit_session_bps: 0,
            rate_limit_global_bps: 0,
        }
    }
}

/// The `[ftp.uploads]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadsConfig {
    /// Write to a temporary name and rename into place when the upload completes (STOR and
    /// STOU; without it, replacing a file truncates the old content when the STOR starts).
    pub atomic: bool,
    /// Keep what arrived of an aborted upload (so REST can resume it). A failed APPE to an
    /// existing file is always cut back to the size it had.
    pub keep_partial: bool,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        UploadsConfig { atomic: false, keep_partial: true }
    }
}

impl FtpConfig {
    /// Checks values that parse but cannot work.
    pub fn validate(&self, _top: &super::Config) -> Result<(), ConfigError> {
        if self.enabled && self.listen.is_empty() {
            return Err(ConfigError::invalid("ftp.listen", "FTP is enabled but no listen address is given"));
        }
        if self.banner.contains(['\r', '\n']) {
            return Err(ConfigError::invalid("ftp.banner", "must be one line (no CR or LF)"));
        }
        self.passive.validate()?;
        if let Some(root) = &self.anonymous.root {
            check_root("ftp.anonymous.root", root)?;
        }
        self.limits.validate()?;
        if self.proxy_protocol.enabled && self.proxy_protocol.trusted.is_empty() {
            // Nothing would be believed: every header would close its connection.
            return Err(ConfigError::invalid(
                "ftp.proxy_protocol.trusted",
                "the PROXY protocol is enabled but no load balancer network is trusted",
            ));
        }
        self.tls.validate()?;
        self.validate_users()
    }

    fn validate_users(&self) -> Result<(), ConfigError> {
        for (i, user) in self.users.iter().enumerate() {
            let key = |field: &str| format!("ftp.users[{i}].{field}");
            if user.name.is_empty() || user.name.len() > 256 {
                return Err(ConfigError::invalid(key("name"), "must be 1 to 256 bytes long"));
            }
            if user.name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ConfigError::invalid(
                    key("name"),
                    format!("`{}` contains whitespace or control characters", user.name.escape_debug()),
                ));
            }
            if ANONYMOUS_NAMES.iter().any(|a| a.eq_ignore_ascii_case(&user.name)) {
                return Err(ConfigError::invalid(
                    key("name"),
                    format!("`{}` is reserved for anonymous logins", user.name),
                ));
            }
            if self.users[..i].iter().any(|u| u.name == user.name) {
                return Err(ConfigError::invalid(
                    key("name"),
                    format!("user `{}` is defined twice", user.name),
                ));
            }
            check_password_hash(&user.password_hash)
                .map_err(|e| ConfigError::invalid(key("password_hash"), e))?;
            if let Some(root) = &user.root {
                check_root(&key("root"), root)?;
            }
            for (j, p) in user.permissions.iter().enumerate() {
                if Permission::parse(p).is_none() {
                    let names: Vec<_> = Permission::ALL.iter().map(|p| p.name()).collect();
                    return Err(ConfigError::invalid(
                        format!("ftp.users[{i}].permissions[{j}]"),
                        format!("unknown permission `{p}`; expected one of {}", names.join(", ")),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl PassiveConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.ports.check().map_err(|e| ConfigError::invalid("ftp.passive.ports", e))?;
        if self.ports.first < 1024 {
            return Err(ConfigError::invalid(
                "ftp.passive.ports",
                format!("{} includes privileged ports below 1024, which workers cannot bind", self.ports),
            ));
        }
        let unusable = |a: &IpAddr| a.is_unspecified() || a.is_multicast();
        if self.address.as_ref().is_some_and(unusable) {
            return Err(ConfigError::invalid(
                "ftp.passive.address",
                "must be an address clients can connect to (not unspecified or multicast)",
            ));
        }
        for (i, o) in self.overrides.iter().enumerate() {
            if unusable(&o.address) {
                return Err(ConfigError::invalid(
                    format!("ftp.passive.overrides[{i}].address"),
                    "must be an address clients can connect to (not unspecified or multicast)",
                ));
            }
        }
        Ok(())
    }
}

impl LimitsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        // Each key's own range is in `bounds`; this is the relation between two.
        if self.max_sessions_per_ip > self.max_sessions {
            return Err(ConfigError::invalid(
                "ftp.limits.max_sessions_per_ip",
                format!("{} is more than max_sessions ({})", self.max_sessions_per_ip, self.max_sessions),
            ));
        }
        Ok(())
    }
}

/// Largest argon2 memory cost a password hash may ask for, in KiB (256 MiB): each login
/// attempt allocates this much, so an unbounded `m=` aborts the process at the first login.
const ARGON2_MAX_M_KIB: u32 = 256 * 1024;
/// Largest argon2 time cost (passes over the memory); OWASP suggests 2 to 5.
const ARGON2_MAX_T: u32 = 16;
/// Largest argon2 parallelism (lanes).
const ARGON2_MAX_P: u32 = 8;

/// Parses a PHC string the way login will and bounds what verifying it costs.
fn check_password_hash(phc: &str) -> Result<(), String> {
    let hash = argon2::PasswordHash::new(phc).map_err(|e| format!("not a PHC string: {e}"))?;
    argon2::Algorithm::try_from(hash.algorithm)
        .map_err(|_| format!("algorithm `{}` is not argon2id, argon2i or argon2d", hash.algorithm))?;
    if let Some(v) = hash.version {
        argon2::Version::try_from(v).map_err(|_| format!("argon2 version v={v} is not 16 or 19"))?;
    }
    if hash.hash.is_none() {
        return Err("has no hash value after the salt".into());
    }
    let params = argon2::Params::try_from(&hash).map_err(|e| format!("invalid argon2 parameters: {e}"))?;
    let costs = [
        ("memory cost m", params.m_cost(), ARGON2_MAX_M_KIB, " KiB (256 MiB)"),
        ("time cost t", params.t_cost(), ARGON2_MAX_T, ""),
        ("parallelism p", params.p_cost(), ARGON2_MAX_P, ""),
    ];
    for (name, value, max, unit) in costs {
        if value > max {
            return Err(format!("argon2 {name}={value} is more than the {max}{unit} allowed"));
        }
    }
    Ok(())
}

fn check_root(key: &str, root: &std::path::Path) -> Result<(), ConfigError> {
    if !root.is_absolute() {
        return Err(ConfigError::invalid(key, format!("{} is not an absolute path", root.display())));
    }
    if !root.is_dir() {
        return Err(ConfigError::invalid(
            key,
            format!("directory {} does not exist or is not a directory", root.display()),
        ));
    }
    Ok(())
}

/// The FTP core's settings built from a validated configuration (account roots default to
/// `top.root`, permission names parsed, address rules copied): the one conversion from the
/// `[ftp]` section into what sessions consult.
pub fn session_settings(top: &Config) -> Result<FtpSettings, ConfigError> {
    let ftp = &top.ftp;
    let mut users = Vec::with_capacity(ftp.users.len());
    for (i, u) in ftp.users.iter().enumerate() {
        let mut permissions = Permissions::NONE;
        for (j, name) in u.permissions.iter().enumerate() {
            let p = Permission::parse(name).ok_or_else(|| {
                ConfigError::invalid(format!("ftp.users[{i}].permissions[{j}]"), "unknown permission")
            })?;
            permissions = permissions.with(p);
        }
        users.push(UserSettings {
            name: u.name.clone(),
            password_hash: u.password_hash.clone(),
            root: u.root.clone().unwrap_or_else(|| top.root.clone()),
            permissions,
        });
    }
    let anonymous = ftp.anonymous.enabled.then(|| {
        let mut permissions = Permissions::NONE.with(Permission::Read);
        if ftp.anonymous.writable {
            permissions = permissions.with(Permission::Write).with(Permission::Mkdir);
        }
        AnonymousSettings {
            root: ftp.anonymous.root.clone().unwrap_or_else(|| top.root.clone()),
            permissions,
        }
    });
    Ok(FtpSettings {
        banner: ftp.banner.clone(),
        max_line_len: ftp.max_line_len,
        hide_ids: ftp.hide_ids,
        idle_timeout: Duration::from_secs(ftp.limits.idle_timeout_secs),
        login_failure_delay: Duration::from_millis(ftp.limits.login_failure_delay_ms),
        max_login_failures: ftp.limits.max_login_failures,
        passive: PassiveRules::from(&ftp.passive),
        active: ActiveRules::from(&ftp.active),
        anonymous,
        users,
        tls: ftp.tls.rules(),
    })
}

impl From<&PassiveConfig> for PassiveRules {
    fn from(c: &PassiveConfig) -> PassiveRules {
        PassiveRules {
            address: c.address,
            overrides: c
                .overrides
                .iter()
                .map(|o| AddressOverride { network: o.network, address: o.address })
                .collect(),
            require_same_peer: c.require_same_peer,
            accept_timeout: Duration::from_secs(c.accept_timeout_secs),
        }
    }
}

impl From<&ActiveConfig> for ActiveRules {
    fn from(c: &ActiveConfig) -> ActiveRules {
        ActiveRules {
            enabled: c.enabled,
            allow_foreign_address: c.allow_foreign_address,
            allow_low_ports: c.allow_low_ports,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// A syntactically valid argon2id PHC string (validation parses, it never verifies).
    const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObGmMdFRA4sSA0";

    fn config() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = Config { root: dir.path().to_path_buf(), ..Config::default() };
        (dir, cfg)
    }

    fn user(name: &str) -> UserConfig {
        UserConfig {
            name: name.into(),
            password_hash: HASH.into(),
            root: None,
            permissions: vec!["read".into(), "write".into()],
        }
    }

    fn key_of(cfg: &Config) -> String {
        match cfg.ftp.validate(cfg) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid_and_match_vsftpd() {
        let (_d, cfg) = config();
        cfg.ftp.validate(&cfg).expect("defaults validate");
        assert_eq!(cfg.ftp.limits.max_sessions, 2000);
        assert_eq!(cfg.ftp.limits.max_sessions_per_ip, 50);
        assert_eq!(cfg.ftp.limits.idle_timeout_secs, 300);
        assert!(cfg.ftp.anonymous.enabled && !cfg.ftp.anonymous.writable);
        assert_eq!(cfg.ftp.passive.ports, PortRange { first: 50000, last: 50999 });
    }

    #[test]
    fn proxy_protocol_needs_a_trusted_network() {
        let (_d, mut cfg) = config();
        cfg.ftp.proxy_protocol.enabled = true;
        assert_eq!(key_of(&cfg), "ftp.proxy_protocol.trusted");
        cfg.ftp.proxy_protocol.trusted.push("10.0.0.0/8".parse().unwrap());
        cfg.ftp.validate(&cfg).expect("a trusted network");
        assert!(cfg.ftp.proxy_protocol.trusts("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!cfg.ftp.proxy_protocol.trusts("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn valid_user_passes() {
        let (_d, mut cfg) = config();
        cfg.ftp.users.push(user("alice"));
        cfg.ftp.validate(&cfg).expect("valid user");
    }

    #[test]
    fn bad_password_hash_names_the_user_index() {
        let (_d, mut cfg) = config();
        cfg.ftp.users.push(user("alice"));
        let mut bob = user("bob");
        bob.password_hash = "hunter2".into();
        cfg.ftp.users.push(bob);
        let err = cfg.ftp.validate(&cfg).unwrap_err().to_string();
        assert!(err.contains("ftp.users[1].password_hash") && err.contains("not a PHC string"), "{err}");
    }

    #[test]
    fn non_argon2_hash_is_refused() {
        let (_d, mut cfg) = config();
        let mut u = user("alice");
        u.password_hash =
            "$pbkdf2-sha256$i=1000$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObGmMdFRA4sSA0".into();
        cfg.ftp.users.push(u);
        assert_eq!(key_of(&cfg), "ftp.users[0].password_hash");
    }

    #[test]
    fn what_hash_password_makes_is_within_the_argon2_bounds() {
        let phc = crate::auth::hash_password("correct horse").expect("hash");
        assert_eq!(check_password_hash(&phc), Ok(()));
    }

    #[test]
    fn unknown_permission_names_its_index() {
        let (_d, mut cfg) = config();
        let mut u = user("alice");
        u.permissions.push("wrte".into());
        cfg.ftp.users.push(u);
        assert_eq!(key_of(&cfg), "ftp.users[0].permissions[2]");
    }

    #[test]
    fn user_name_errors() {
        for name in ["", "a b", "Anonymous", "ftp"] {
            let (_d, mut cfg) = config();
            cfg.ftp.users.push(user(name));
            assert_eq!(key_of(&cfg), "ftp.users[0].name", "{name:?}");
        }
        let (_d, mut cfg) = config();
        cfg.ftp.users.push(user("alice"));
        cfg.ftp.users.push(user("alice"));
        assert_eq!(key_of(&cfg), "ftp.users[1].name");
    }

    #[test]
    fn roots_must_be_absolute_existing_directories() {
        let (_d, mut cfg) = config();
        cfg.ftp.anonymous.root = Some("relative/dir".into());
        assert_eq!(key_of(&cfg), "ftp.anonymous.root");
        let (d, mut cfg) = config();
        let mut u = user("alice");
        u.root = Some(d.path().join("missing"));
        cfg.ftp.users.push(u);
        assert_eq!(key_of(&cfg), "ftp.users[0].root");
    }

    #[test]
    fn passive_errors() {
        let (_d, mut cfg) = config();
        cfg.ftp.passive.ports = PortRange { first: 50010, last: 50000 };
        let err = cfg.ftp.validate(&cfg).unwrap_err().to_string();
        assert!(err.contains("ftp.passive.ports") && err.contains("inverted"), "{err}");
        cfg.ftp.passive.ports = PortRange { first: 21, last: 50000 };
        assert_eq!(key_of(&cfg), "ftp.passive.ports");
        cfg.ftp.passive.ports = PortRange { first: 50000, last: 50000 };
        cfg.ftp.passive.address = Some("0.0.0.0".parse().unwrap());
        assert_eq!(key_of(&cfg), "ftp.passive.address");
        cfg.ftp.passive.address = None;
        cfg.ftp
            .passive
            .overrides
            .push(PassiveOverride { network: "10.0.0.0/8".parse().unwrap(), address: "::".parse().unwrap() });
        assert_eq!(key_of(&cfg), "ftp.passive.overrides[0].address");
    }

    #[test]
    fn sessions_per_ip_may_not_exceed_sessions() {
        // Each key's own range is tested with `bounds`; this is the relation between two.
        let (_d, mut cfg) = config();
        cfg.ftp.limits.max_sessions_per_ip = 5000;
        assert_eq!(key_of(&cfg), "ftp.limits.max_sessions_per_ip");
    }

    #[test]
    fn banner_errors() {
        let (_d, mut cfg) = config();
        cfg.ftp.banner = "two\r\nlines".into();
        assert_eq!(key_of(&cfg), "ftp.banner");
    }

    #[test]
    fn defaults_survive_the_figment_and_toml_layers() {
        // The defaults layer is serialized then extracted; every new key must round-trip.
        let (_d, mut cfg) = config();
        cfg.ftp.users.push(user("alice"));
        cfg.ftp.passive.overrides.push(PassiveOverride {
            network: "10.0.0.0/8".parse().unwrap(),
            address: "10.0.0.1".parse().unwrap(),
        });
        let back: Config = figment::Figment::from(figment::providers::Serialized::defaults(&cfg))
            .extract()
            .expect("extract");
        assert_eq!(back, cfg);
        let text = cfg.to_toml();
        assert_eq!(toml::from_str::<Config>(&text).expect("reparse"), cfg);
    }

    #[test]
    fn toml_round_trip_with_users_and_overrides() {
        let text = format!(
            r#"
            banner = "hi"
            [passive]
            ports = "40000-40009"
            address = "203.0.113.7"
            overrides = [{{ network = "10.0.0.0/8", address = "10.0.0.1" }}]
            [[users]]
            name = "alice"
            password_hash = "{HASH}"
            permissions = ["read", "mkdir"]
            "#
        );
        let ftp: FtpConfig = toml::from_str(&text).expect("parses");
        assert_eq!(ftp.passive.ports.first, 40000);
        assert_eq!(ftp.users[0].permissions, ["read", "mkdir"]);
        assert_eq!(ftp.passive.overrides[0].address, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert!(toml::from_str::<FtpConfig>("bogus = 1").is_err(), "unknown keys are refused");
    }
}
