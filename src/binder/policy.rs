//! The binder's decision, as a pure function: only the configured data port, only an
//! address this host owns. Kept free of IO so every refusal is a unit test.

use super::proto::BindRequest;
use std::net::IpAddr;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Only the active-mode data port may be bound.
    #[error("port {asked} is not the data port {allowed}")]
    Port { asked: u16, allowed: u16 },
    /// Unspecified, multicast or broadcast addresses are never ours to bind.
    #[error("address {0} is not a unicast address")]
    NotUnicast(IpAddr),
    /// The address does not belong to any interface of this host.
    #[error("address {0} is not one of this host's addresses")]
    Foreign(IpAddr),
}

/// Decides a request. `local_addrs` are the host's interface addresses at request time.
pub fn check(req: &BindRequest, allowed_port: u16, local_addrs: &[IpAddr]) -> Result<(), Refusal> {
    if req.addr.port() != allowed_port {
        return Err(Refusal::Port { asked: req.addr.port(), allowed: allowed_port });
    }
    let ip = req.addr.ip().to_canonical();
    let unicast = match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    };
    if !unicast {
        return Err(Refusal::NotUnicast(ip));
    }
    if !local_addrs.iter().any(|a| a.to_canonical() == ip) {
        return Err(Refusal::Foreign(ip));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> BindRequest {
        BindRequest { addr: s.parse().unwrap() }
    }

    fn local() -> Vec<IpAddr> {
        vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap(), "192.0.2.10".parse().unwrap()]
    }

    #[test]
    fn grants_the_data_port_on_our_addresses() {
        assert_eq!(check(&req("127.0.0.1:20"), 20, &local()), Ok(()));
        assert_eq!(check(&req("[::1]:20"), 20, &local()), Ok(()));
        assert_eq!(check(&req("[::ffff:192.0.2.10]:20"), 20, &local()), Ok(()));
    }

    #[test]
    fn refuses_other_ports() {
        assert_eq!(check(&req("127.0.0.1:21"), 20, &local()), Err(Refusal::Port { asked: 21, allowed: 20 }));
        assert!(check(&req("127.0.0.1:0"), 20, &local()).is_err());
        assert!(check(&req("127.0.0.1:1023"), 20, &local()).is_err());
    }

    #[test]
    fn refuses_foreign_and_non_unicast_addresses() {
        assert!(matches!(check(&req("198.51.100.1:20"), 20, &local()), Err(Refusal::Foreign(_))));
        assert!(matches!(check(&req("0.0.0.0:20"), 20, &local()), Err(Refusal::NotUnicast(_))));
        assert!(matches!(check(&req("[::]:20"), 20, &local()), Err(Refusal::NotUnicast(_))));
        assert!(matches!(check(&req("224.0.0.1:20"), 20, &local()), Err(Refusal::NotUnicast(_))));
        assert!(matches!(check(&req("255.255.255.255:20"), 20, &local()), Err(Refusal::NotUnicast(_))));
    }
}
