//! What a session needs to know, resolved once (roots filled in, permission names parsed; the
//! configuration layer builds it), plus the pure data-connection address rules: which address
//! a PASV reply advertises (NAT, per-client-network overrides) and which PORT/EPRT targets are
//! allowed.

use super::account::Permissions;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// One virtual user, ready for login checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSettings {
    /// Login name.
    pub name: String,
    /// Argon2 PHC string the io layer verifies the password against.
    pub password_hash: String,
    /// Resolved root directory.
    pub root: PathBuf,
    /// Granted permissions.
    pub permissions: Permissions,
}

/// Anonymous access, when enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnonymousSettings {
    /// Resolved root directory.
    pub root: PathBuf,
    /// Read, plus write and mkdir when the operator made anonymous writable.
    pub permissions: Permissions,
}

/// Everything the session state machine consults; shared by all sessions of a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct FtpSettings {
    /// Text of the 220 greeting.
    pub banner: String,
    /// Longest control line, CRLF included.
    pub max_line_len: usize,
    /// LIST shows `ftp ftp` instead of numeric ids.
    pub hide_ids: bool,
    /// Idle time between commands before 421.
    pub idle_timeout: Duration,
    /// Delay before a 530 for a failed login.
    pub login_failure_delay: Duration,
    /// Failed logins before 421 and close.
    pub max_login_failures: u32,
    /// Passive mode rules.
    pub passive: PassiveRules,
    /// Active mode rules.
    pub active: ActiveRules,
    /// Anonymous access, `None` when disabled.
    pub anonymous: Option<AnonymousSettings>,
    /// Virtual users.
    pub users: Vec<UserSettings>,
    /// FTPS (RFC 4217), `None` when TLS is not configured.
    pub tls: Option<TlsRules>,
}

/// What FTPS asks of sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsRules {
    /// Who must protect the control and data connections.
    pub required: TlsPolicy,
}

/// Who must use TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// Offered, never required.
    Optional,
    /// Named users; anonymous may stay in clear.
    Accounts,
    /// Everyone.
    All,
}

impl TlsPolicy {
    /// Whether a login of this kind must protect its control and data connections.
    pub fn binds(self, anonymous: bool) -> bool {
        match self {
            TlsPolicy::Optional => false,
            TlsPolicy::Accounts => !anonymous,
            TlsPolicy::All => true,
        }
    }
}

/// Which address PASV advertises and whom a passive listener accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassiveRules {
    /// Address advertised in 227 replies; `None` = the control connection's local address.
    pub address: Option<IpAddr>,
    /// Per-client-network advertised addresses, first match wins.
    pub overrides: Vec<AddressOverride>,
    /// Accept a passive data connection only from the control connection's peer IP.
    pub require_same_peer: bool,
    /// A passive listener that sees no transfer command this long is closed.
    pub accept_timeout: Duration,
}

/// Clients in `network` are told `address` in PASV replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressOverride {
    /// Client network.
    pub network: IpNet,
    /// Address advertised to those clients.
    pub address: IpAddr,
}

/// Which PORT/EPRT targets are allowed (RFC 2577 bounce protection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveRules {
    /// Accept PORT/EPRT at all.
    pub enabled: bool,
    /// Allow a target address other than the control peer.
    pub allow_foreign_address: bool,
    /// Allow target ports below 1024.
    pub allow_low_ports: bool,
}

impl Default for ActiveRules {
    fn default() -> Self {
        ActiveRules { enabled: true, allow_foreign_address: false, allow_low_ports: false }
    }
}

impl FtpSettings {
    /// The virtual user called `name`, if any.
    pub fn user(&self, name: &[u8]) -> Option<&UserSettings> {
        self.users.iter().find(|u| u.name.as_bytes() == name)
    }
}

/// The address to advertise in a 227 reply: the first override whose network holds the
/// client, else the configured address, else the control connection's local address.
/// Addresses are compared in canonical form, so `::ffff:10.1.2.3` (a v4 client on a
/// dual-stack socket) matches `10.0.0.0/8`.
pub fn passive_address(cfg: &PassiveRules, peer: IpAddr, local: IpAddr) -> IpAddr {
    let peer = peer.to_canonical();
    cfg.overrides
        .iter()
        .find(|o| o.network.contains(&peer))
        .map(|o| o.address)
        .or(cfg.address)
        .unwrap_or(local)
        .to_canonical()
}

/// Why a PORT/EPRT target is refused (FTP bounce protection, RFC 2577 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ActiveRefusal {
    /// Active mode is switched off.
    #[error("active mode is disabled")]
    Disabled,
    /// The target address is not the control connection's peer.
    #[error("address differs from the control connection's peer")]
    ForeignAddress,
    /// The target port is privileged.
    #[error("port below 1024")]
    LowPort,
}

/// Checks a PORT/EPRT target against the bounce rules.
pub fn check_active_target(cfg: &ActiveRules, peer: IpAddr, target: SocketAddr) -> Result<(), ActiveRefusal> {
    if !cfg.enabled {
        return Err(ActiveRefusal::Disabled);
    }
    if !cfg.allow_foreign_address && target.ip().to_canonical() != peer.to_canonical() {
        return Err(ActiveRefusal::ForeignAddress);
    }
    if !cfg.allow_low_ports && target.port() < 1024 {
        return Err(ActiveRefusal::LowPort);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn passive() -> PassiveRules {
        PassiveRules {
            overrides: vec![
                AddressOverride { network: "10.0.0.0/8".parse().unwrap(), address: ip("10.0.0.1") },
                AddressOverride { network: "10.1.0.0/16".parse().unwrap(), address: ip("10.1.0.1") },
                AddressOverride { network: "fd00::/8".parse().unwrap(), address: ip("192.168.0.1") },
            ],
            ..PassiveRules::default()
        }
    }

    #[test]
    fn defaults_to_control_local_address() {
        let cfg = PassiveRules::default();
        assert_eq!(passive_address(&cfg, ip("198.51.100.9"), ip("192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn configured_address_wins_over_local() {
        let cfg = PassiveRules { address: Some(ip("203.0.113.7")), ..passive() };
        assert_eq!(passive_address(&cfg, ip("198.51.100.9"), ip("172.17.0.2")), ip("203.0.113.7"));
    }

    #[test]
    fn first_matching_override_wins() {
        let cfg = PassiveRules { address: Some(ip("203.0.113.7")), ..passive() };
        // 10.1.2.3 is in both 10/8 and 10.1/16: the first listed wins.
        assert_eq!(passive_address(&cfg, ip("10.1.2.3"), ip("172.17.0.2")), ip("10.0.0.1"));
        assert_eq!(passive_address(&cfg, ip("fd12::1"), ip("172.17.0.2")), ip("192.168.0.1"));
    }

    #[test]
    fn mapped_v4_peer_matches_v4_network() {
        let cfg = passive();
        assert_eq!(passive_address(&cfg, ip("::ffff:10.9.9.9"), ip("::ffff:172.17.0.2")), ip("10.0.0.1"));
        // And the local fallback comes back unmapped, so PASV can carry it.
        assert_eq!(passive_address(&cfg, ip("::ffff:8.8.8.8"), ip("::ffff:172.17.0.2")), ip("172.17.0.2"));
    }

    #[test]
    fn bounce_rules() {
        let cfg = ActiveRules::default();
        let peer = ip("192.0.2.5");
        assert_eq!(check_active_target(&cfg, peer, "192.0.2.5:2000".parse().unwrap()), Ok(()));
        assert_eq!(
            check_active_target(&cfg, ip("::ffff:192.0.2.5"), "192.0.2.5:2000".parse().unwrap()),
            Ok(())
        );
        assert_eq!(
            check_active_target(&cfg, peer, "192.0.2.6:2000".parse().unwrap()),
            Err(ActiveRefusal::ForeignAddress)
        );
        assert_eq!(
            check_active_target(&cfg, peer, "192.0.2.5:25".parse().unwrap()),
            Err(ActiveRefusal::LowPort)
        );
        let open = ActiveRules { allow_foreign_address: true, allow_low_ports: true, ..cfg };
        assert_eq!(check_active_target(&open, peer, "192.0.2.6:25".parse().unwrap()), Ok(()));
        let off = ActiveRules { enabled: false, ..cfg };
        assert_eq!(
            check_active_target(&off, peer, "192.0.2.5:2000".parse().unwrap()),
            Err(ActiveRefusal::Disabled)
        );
    }
}
