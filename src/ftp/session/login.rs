//! Access control: who is logged in (RFC 959 §4.1.1 USER, PASS, REIN, QUIT; RFC 7151 HOST),
//! the delayed, counted 530 that answers a failed login, and the 421 of a busy verifier.

use super::{Action, Event, Op, Pending, Session};
use crate::ftp::account::Account;
use crate::ftp::account::ANONYMOUS_NAMES;
use crate::ftp::command::TransferType;
use crate::ftp::listing::FactSet;
use crate::ftp::path::VirtualPath;
use std::time::Instant;

/// Unknown users' passwords are checked against this (a hash of a random password, with
/// `ferry hash-password`'s parameters), so that a wrong name takes as long as a wrong password
/// and the delay does not tell which user names exist.
pub(super) const UNKNOWN_USER_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$C5U87OgF/96K4yv4uQChJA$fN6qbmXwSBGhgfGIU88EoRivLFXTHw2+mxH9y8EXmx4";

/// Login state (RFC 959 §5.4: USER -> 331 -> PASS -> 230).
#[derive(Debug, Clone)]
pub(super) enum Auth {
    /// Nothing sent yet, or after REIN / a failed login.
    Fresh,
    /// USER accepted with 331; waiting for PASS.
    NeedPass { name: Vec<u8> },
    /// Logged in.
    LoggedIn(Account),
}

impl Session {
    pub(super) fn cmd_user(&mut self, name: Vec<u8>) {
        if self.account().is_some() {
            return self.reply(530, "Can't change to another user.");
        }
        let anonymous = ANONYMOUS_NAMES.iter().any(|a| a.as_bytes().eq_ignore_ascii_case(&name));
        if anonymous && self.cfg.anonymous.is_none() {
            self.auth = Auth::Fresh;
            return self.reply(530, "This server does not allow anonymous logins.");
        }
        if self.user_needs_tls(&name) {
            // Refused at USER, so the client never sends the password in clear.
            tracing::info!(peer = %self.peer, user = %String::from_utf8_lossy(&name), "USER in clear refused by ftp.tls.required");
            self.auth = Auth::Fresh;
            return self.reply(530, "This login must use TLS: send AUTH TLS first.");
        }
        tracing::debug!(user = %String::from_utf8_lossy(&name), "USER: awaiting PASS");
        self.auth = Auth::NeedPass { name };
        // Same answer for unknown users: no account enumeration.
        self.reply(331, "Please specify the password.");
    }

    pub(super) fn cmd_pass(&mut self, password: Vec<u8>, now: Instant) {
        let name = match std::mem::replace(&mut self.auth, Auth::Fresh) {
            Auth::Fresh => return self.reply(503, "Login with USER first."),
            Auth::LoggedIn(a) => {
                self.auth = Auth::LoggedIn(a);
                return self.reply(230, "Already logged in.");
            }
            Auth::NeedPass { name } => name,
        };
        if ANONYMOUS_NAMES.iter().any(|a| a.as_bytes().eq_ignore_ascii_case(&name)) {
            if let Some(anon) = &self.cfg.anonymous {
                let account = Account {
                    name: "anonymous".into(),
                    root: anon.root.clone(),
                    permissions: anon.permissions,
                    anonymous: true,
                };
                return self.logged_in(account);
            }
        }
        match self.cfg.user(&name) {
            Some(user) => {
                let account = Account {
                    name: user.name.as_str().into(),
                    root: user.root.clone(),
                    permissions: user.permissions,
                    anonymous: false,
                };
                let action = Action::VerifyPassword { phc: user.password_hash.clone(), password };
                self.start_op(action, Op::Login(Some(account)));
            }
            // With no virtual users there is no name to find out (and no verifier to load).
            None if !self.cfg.users.is_empty() => {
                tracing::info!(peer = %self.peer, user = %String::from_utf8_lossy(&name), "login failed: unknown user");
                let action = Action::VerifyPassword { phc: UNKNOWN_USER_HASH.into(), password };
                self.start_op(action, Op::Login(None));
            }
            None => {
                tracing::info!(peer = %self.peer, user = %String::from_utf8_lossy(&name), "login failed: unknown user");
                self.login_failed(now);
            }
        }
    }

    /// The password check is over; `None` is an unknown user, refused even on a match.
    pub(super) fn login_done(&mut self, account: Option<Account>, valid: bool, now: Instant) {
        match account {
            Some(account) if valid => self.logged_in(account),
            Some(account) => {
                tracing::info!(peer = %self.peer, user = %account.name, "login failed: wrong password");
                self.login_failed(now);
            }
            None => self.login_failed(now),
        }
    }

    /// The io layer could not check the password now (too many checks waiting). The password
    /// was not judged, so this is no failed login (not counted, not delayed); RFC 959's 421,
    /// closing the connection, tells the client to come back later.
    pub(super) fn login_refused_busy(&mut self) {
        tracing::info!(peer = %self.peer, "login refused: password verifier busy");
        self.reply(421, "Service not available, too many login attempts; try again later.");
        self.close();
    }

    fn logged_in(&mut self, account: Account) {
        tracing::info!(peer = %self.peer, user = %account.name, "logged in");
        self.cwd = VirtualPath::root();
        self.auth = Auth::LoggedIn(account.clone());
        self.event(Event::LoggedIn(account));
        self.reply(230, "Login successful.");
    }

    fn login_failed(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        self.event(Event::LoginFailed);
        let close = self.failures >= self.cfg.max_login_failures;
        tracing::debug!(failures = self.failures, close, "login failed: delaying 530");
        self.set_pending(Pending::LoginDelay { until: now + self.cfg.login_failure_delay, close });
        if self.cfg.login_failure_delay.is_zero() {
            self.handle_timeout(now);
        }
    }

    /// The held-back 530 is due; `close` when the session has used up its attempts.
    pub(super) fn login_delay_over(&mut self, close: bool, now: Instant) {
        self.set_pending(Pending::Idle);
        self.reply(530, "Login incorrect.");
        if close {
            self.reply(421, "Too many failed logins; closing control connection.");
            self.close();
            return;
        }
        self.drain(now);
    }

    pub(super) fn cmd_rein(&mut self) {
        if matches!(self.auth, Auth::LoggedIn(_)) {
            self.event(Event::LoggedOut);
        }
        self.clear_data();
        self.reset_data_protection();
        tracing::debug!("REIN: back to pre-login state");
        self.auth = Auth::Fresh;
        self.cwd = VirtualPath::root();
        self.ttype = TransferType::Ascii;
        self.rest = 0;
        self.epsv_all = false;
        self.facts = FactSet::all();
        self.host = None;
        self.reply(220, "Service ready for new user.");
    }

    /// QUIT, at once when idle or once the running transfer has ended.
    pub(super) fn cmd_quit(&mut self) {
        self.reply(221, "Goodbye.");
        self.close();
    }

    pub(super) fn cmd_host(&mut self, name: Vec<u8>) {
        // RFC 7151 §3: HOST only before USER; afterwards 503.
        if !matches!(self.auth, Auth::Fresh) {
            return self.reply(503, "HOST must be sent before USER.");
        }
        tracing::debug!(host = %String::from_utf8_lossy(&name), "HOST");
        self.host = Some(name);
        self.reply(220, "Host accepted.");
    }
}
