//! The next transfer's data connection and representation: PORT, PASV, TYPE (RFC 959 §4.1.2),
//! EPRT, EPSV and EPSV ALL (RFC 2428 §2-4), with PORT/EPRT bounce checks (RFC 2577 §3).

use super::{Action, Event, Op, PassiveRefusal, Session};
use crate::ftp::command::{EpsvArg, NetProto, TransferType};
use crate::ftp::settings::{check_active_target, passive_address, ActiveRefusal};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// The data connection the next transfer uses (RFC 959 §3.2-3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Data {
    None,
    /// A passive listener is open; it is closed at `until` unless a transfer command takes it.
    Passive {
        until: Instant,
    },
    Active(SocketAddr),
}

impl Session {
    /// Forgets the next transfer's data connection, closing a passive listener.
    pub(super) fn clear_data(&mut self) {
        if matches!(std::mem::replace(&mut self.data, Data::None), Data::Passive { .. }) {
            self.event(Event::ClosePassive);
        }
    }

    /// The io layer holds a passive listener for the next transfer from `now` on.
    pub(super) fn passive_ready(&mut self, now: Instant) {
        self.data = Data::Passive { until: now + self.cfg.passive.accept_timeout };
    }

    /// When the passive listener closes unless a transfer command takes it first.
    pub(super) fn passive_deadline(&self) -> Option<Instant> {
        match self.data {
            Data::Passive { until } => Some(until),
            _ => None,
        }
    }

    /// Closes a passive listener that saw no transfer command within the accept timeout
    /// (vsftpd's accept_timeout): its port goes back to the range, so sessions kept alive
    /// by NOOP cannot hold ports forever; the next transfer command gets 425.
    pub(super) fn expire_passive(&mut self, now: Instant) {
        if self.passive_deadline().is_some_and(|until| now >= until) {
            tracing::debug!(peer = %self.peer, "passive listener unused within the accept timeout; closed");
            self.clear_data();
        }
    }

    pub(super) fn cmd_type(&mut self, t: TransferType) {
        self.ttype = t;
        tracing::debug!(?t, "TYPE");
        match t {
            TransferType::Ascii => self.reply(200, "Switching to ASCII mode."),
            TransferType::Binary => self.reply(200, "Switching to Binary mode."),
        }
    }

    pub(super) fn cmd_port(&mut self, addr: SocketAddr, verb: &str) {
        if self.epsv_all {
            return self.reply(503, format!("{verb} not allowed after EPSV ALL (RFC 2428 section 4)."));
        }
        match check_active_target(&self.cfg.active, self.peer.ip(), addr) {
            Ok(()) => {
                self.clear_data();
                tracing::debug!(%addr, "active data connection target set");
                self.data = Data::Active(addr);
                self.reply(200, format!("{verb} command successful. Consider using EPSV."));
            }
            Err(why) => {
                tracing::info!(peer = %self.peer, %addr, reason = %why, "{verb} refused");
                match why {
                    ActiveRefusal::Disabled => self.reply(502, "Active mode is disabled; use EPSV or PASV."),
                    ActiveRefusal::ForeignAddress => self.reply(500, format!("Illegal {verb} command.")),
                    // RFC 2577 §3: refuse privileged ports with 504.
                    ActiveRefusal::LowPort => self.reply(504, "Refusing to connect to a port below 1024."),
                }
            }
        }
    }

    pub(super) fn cmd_pasv(&mut self) {
        if self.epsv_all {
            return self.reply(503, "PASV not allowed after EPSV ALL (RFC 2428 section 4).");
        }
        let advertise = passive_address(&self.cfg.passive, self.peer.ip(), self.local.ip());
        if !advertise.is_ipv4() {
            // 227 can only carry IPv4 (RFC 959). A 4xx would invite the client to repeat the
            // same PASV; 522 is RFC 2428's permanent "use another network protocol" answer.
            return self.reply(522, "PASV cannot carry an IPv6 address; use EPSV.");
        }
        self.open_passive(false, advertise);
    }

    pub(super) fn cmd_epsv(&mut self, arg: EpsvArg) {
        let local_v4 = self.local.ip().to_canonical().is_ipv4();
        match arg {
            EpsvArg::All => {
                tracing::debug!("EPSV ALL: only EPSV from now on");
                self.epsv_all = true;
                self.reply(200, "EPSV ALL ok.");
            }
            // RFC 2428 §3: a protocol other than the control connection's gets 522.
            EpsvArg::Proto(NetProto::V4) if !local_v4 => {
                self.reply(522, "Network protocol not supported, use (2)")
            }
            EpsvArg::Proto(NetProto::V6) if local_v4 => {
                self.reply(522, "Network protocol not supported, use (1)")
            }
            EpsvArg::Proto(_) | EpsvArg::Any => self.open_passive(true, self.local.ip()),
        }
    }

    fn open_passive(&mut self, extended: bool, advertise: IpAddr) {
        // Canonical (unmapped) addresses: a v4 client on a dual-stack socket gets an AF_INET
        // listener, and the peer check compares like with like.
        let peer_only = self.cfg.passive.require_same_peer.then_some(self.peer.ip().to_canonical());
        let action = Action::OpenPassive { bind: self.local.ip().to_canonical(), peer_only };
        self.start_op(action, Op::Passive { extended, advertise });
    }

    /// The io layer opened (or could not open) the listener PASV/EPSV asked for.
    pub(super) fn passive_done(
        &mut self,
        extended: bool,
        advertise: IpAddr,
        port: Result<u16, PassiveRefusal>,
        now: Instant,
    ) {
        match port {
            Ok(port) => {
                tracing::debug!(port, %advertise, "passive listener open");
                self.passive_ready(now);
                if extended {
                    self.reply(229, format!("Entering Extended Passive Mode (|||{port}|)"));
                } else if let IpAddr::V4(v4) = advertise {
                    let [a, b, c, d] = v4.octets();
                    let [p1, p2] = port.to_be_bytes();
                    self.reply(227, format!("Entering Passive Mode ({a},{b},{c},{d},{p1},{p2})."));
                }
            }
            Err(e) => {
                tracing::info!(peer = %self.peer, error = %e, "cannot open passive listener");
                // The io layer closed the previous listener before it tried.
                self.data = Data::None;
                // 425 either way, a transient refusal (RFC 959 §4.2.1): a port frees, the
                // address's other sessions use or drop their listeners.
                match e {
                    PassiveRefusal::NoPort => self.reply(425, "Can't open passive connection."),
                    PassiveRefusal::PerAddress => self.reply(
                        425,
                        "Too many passive connections open from your address; use or close them first.",
                    ),
                }
            }
        }
    }
}
