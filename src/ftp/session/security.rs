//! FTPS (RFC 4217): AUTH TLS (§4), PBSZ (§8), PROT (§9), CCC (§6), and the operator's policy
//! of who must protect the control and data connections (`ftp.tls.required`).

use super::login::Auth;
use super::{Event, Session};
use crate::ftp::account::ANONYMOUS_NAMES;
use crate::ftp::command::{AuthMechanism, ProtLevel};
use crate::ftp::line::LineReader;

/// What the session knows of its own protection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Security {
    /// The control connection runs over TLS (after AUTH TLS's 234, or from the start on the
    /// implicit listener). It stays so: CCC is refused, REIN keeps it.
    pub(super) control: bool,
    /// PBSZ was given since the handshake (RFC 4217 §8: it must precede PROT).
    pub(super) pbsz: bool,
    /// PROT P: data connections run TLS too.
    pub(super) private_data: bool,
}

impl Session {
    pub(super) fn cmd_auth(&mut self, mech: AuthMechanism) {
        if self.cfg.tls.is_none() {
            return self.reply(502, "AUTH not available: TLS is not configured.");
        }
        if self.sec.control {
            // RFC 4217 §4: AUTH on a protected connection is out of sequence.
            return self.reply(503, "Already using TLS.");
        }
        if self.account().is_some() {
            return self.reply(503, "AUTH must come before login.");
        }
        if let AuthMechanism::Other(name) = mech {
            tracing::debug!(mechanism = %name, "AUTH refused");
            return self.reply(504, "Security mechanism not understood; use AUTH TLS.");
        }
        tracing::debug!(peer = %self.peer, "AUTH TLS: handshake follows");
        // A USER sent in clear is forgotten: the name goes again, protected.
        self.auth = Auth::Fresh;
        self.sec = Security { control: true, pbsz: false, private_data: false };
        // Whatever the client sent after AUTH before our 234 is not part of the protected
        // session (STARTTLS command injection, CVE-2011-0411): drop it unread.
        self.queue.clear();
        self.reader = LineReader::new(self.cfg.max_line_len);
        self.restart_input = true;
        self.reply(234, "AUTH TLS successful; start the TLS handshake.");
        self.event(Event::StartTls);
    }

    pub(super) fn cmd_pbsz(&mut self, _size: u64) {
        if !self.sec.control {
            return self.reply(503, "PBSZ needs a protected control connection (AUTH TLS) first.");
        }
        self.sec.pbsz = true;
        // RFC 4217 §8: TLS needs no buffer size; the reply states 0.
        self.reply(200, "PBSZ=0");
    }

    pub(super) fn cmd_prot(&mut self, level: ProtLevel) {
        if !self.sec.control {
            return self.reply(503, "PROT needs a protected control connection (AUTH TLS) first.");
        }
        if !self.sec.pbsz {
            return self.reply(503, "PROT needs PBSZ first.");
        }
        match level {
            ProtLevel::Clear if self.account().is_some_and(|a| self.tls_binds(a.anonymous)) => {
                tracing::info!(peer = %self.peer, "PROT C refused by ftp.tls.required");
                self.reply(534, "PROT C refused: data connections must be protected (PROT P).")
            }
            ProtLevel::Clear => {
                self.sec.private_data = false;
                self.reply(200, "PROT now Clear.")
            }
            ProtLevel::Private => {
                self.sec.private_data = true;
                self.reply(200, "PROT now Private.")
            }
            // RFC 4217 §9: TLS has no integrity-only or confidential-only levels.
            ProtLevel::Safe | ProtLevel::Confidential => {
                self.reply(536, "Only PROT C and PROT P are supported with TLS.")
            }
        }
    }

    pub(super) fn cmd_ccc(&mut self) {
        if self.sec.control {
            // A clear control connection after login would expose the rest of the session.
            self.reply(534, "CCC refused: the control connection stays protected.")
        } else {
            self.reply(533, "CCC: the control connection is not protected.")
        }
    }

    /// Whether the policy makes a login of this kind protect control and data.
    pub(super) fn tls_binds(&self, anonymous: bool) -> bool {
        self.cfg.tls.is_some_and(|t| t.required.binds(anonymous))
    }

    /// USER in clear for a name the policy protects: refused before the password is sent.
    pub(super) fn user_needs_tls(&self, name: &[u8]) -> bool {
        let anonymous = ANONYMOUS_NAMES.iter().any(|a| a.as_bytes().eq_ignore_ascii_case(name));
        !self.sec.control && self.tls_binds(anonymous)
    }

    /// A transfer over a clear data connection that the policy forbids for this login.
    pub(super) fn clear_data_refused(&self) -> bool {
        !self.sec.private_data && self.account().is_some_and(|a| self.tls_binds(a.anonymous))
    }

    /// REIN (RFC 959 §4.1.1) ends the login and the data protection; the control connection
    /// stays protected, since going back to clear would be CCC, which is refused.
    pub(super) fn reset_data_protection(&mut self) {
        self.sec.pbsz = false;
        self.sec.private_data = false;
    }

    /// STAT's lines about protection.
    pub(super) fn protection_lines(&self) -> [&'static str; 2] {
        [
            if self.sec.control {
                "     Control connection is protected by TLS"
            } else {
                "     Control connection is plain text"
            },
            if self.sec.private_data {
                "     Data connections will be protected by TLS"
            } else {
                "     Data connections will be plain text"
            },
        ]
    }
}
