//! The FTP session state machine (RFC 959 §5.4 command-reply sequences), without IO or clocks.
//! Control bytes, operation completions and the current `Instant` go in; encoded replies,
//! [`Action`]s for the io layer, [`Event`]s and the close request come out of `poll_output`.

mod data;
mod files;
mod info;
mod login;
mod security;
mod transfer;

use self::data::Data;
use self::login::Auth;
use self::security::Security;
use self::transfer::Running;
use super::account::Account;
use super::command::{self, Command, TransferType};
use super::line::{Line, LineReader};
use super::listing::FactSet;
use super::path::VirtualPath;
use super::reply::Reply;
use super::settings::FtpSettings;
use crate::ftp::account::Permission;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

pub use super::ops::{
    Action, DataEndpoint, Event, FsError, OpResult, OpToken, Output, PassiveRefusal, StoreMode,
    TransferError, TransferEvent, TransferKind,
};
use std::sync::Arc;
use std::time::Instant;

/// Commands queued while an operation is pending; more is abuse and closes the session.
const MAX_QUEUED_LINES: usize = 32;

/// What a non-transfer action is for, so its completion can be answered.
#[derive(Debug, Clone)]
enum Op {
    /// `None`: an unknown user, checked against [`login::UNKNOWN_USER_HASH`] and always refused.
    Login(Option<Account>),
    Cwd(VirtualPath),
    Size,
    Mdtm,
    Mlst(VirtualPath),
    Rnfr(VirtualPath),
    StatPath(VirtualPath),
    Passive {
        extended: bool,
        advertise: IpAddr,
    },
    /// MKD, RMD, DELE, RNTO, SITE CHMOD, MFMT: one reply on success.
    Simple(Reply),
}

/// What blocks command processing.
#[derive(Debug, Clone)]
enum Pending {
    Idle,
    Op(OpToken, Op),
    Transfer(Box<Running>),
    /// A failed login's 530 is held back until `until`; `close` after it when over the limit.
    LoginDelay {
        until: Instant,
        close: bool,
    },
}

/// One FTP control connection's protocol state.
#[derive(Debug)]
pub struct Session {
    cfg: Arc<FtpSettings>,
    peer: SocketAddr,
    local: SocketAddr,
    reader: LineReader,
    queue: VecDeque<Line>,
    out: VecDeque<Output>,
    auth: Auth,
    failures: u32,
    cwd: VirtualPath,
    ttype: TransferType,
    rest: u64,
    rnfr: Option<VirtualPath>,
    data: Data,
    epsv_all: bool,
    facts: FactSet,
    host: Option<Vec<u8>>,
    pending: Pending,
    next_token: u64,
    last_activity: Instant,
    closed: bool,
    /// FTPS state of this session.
    sec: Security,
    /// Set by AUTH TLS: the rest of the bytes already read are not to be run.
    restart_input: bool,
}

impl Session {
    /// A new session for a control connection from `peer` accepted on `local`; queues 220.
    pub fn new(cfg: Arc<FtpSettings>, peer: SocketAddr, local: SocketAddr, now: Instant) -> Session {
        let reader = LineReader::new(cfg.max_line_len);
        let mut s = Session {
            reader,
            peer,
            local,
            queue: VecDeque::new(),
            out: VecDeque::new(),
            auth: Auth::Fresh,
            failures: 0,
            cwd: VirtualPath::root(),
            ttype: TransferType::Ascii,
            rest: 0,
            rnfr: None,
            data: Data::None,
            epsv_all: false,
            facts: FactSet::all(),
            host: None,
            pending: Pending::Idle,
            next_token: 0,
            last_activity: now,
            closed: false,
            sec: Security::default(),
            restart_input: false,
            cfg,
        };
        tracing::debug!(peer = %peer, "ftp session opened");
        let banner = s.cfg.banner.clone();
        s.reply(220, banner);
        s
    }

    /// A session on the implicit-TLS listener: the connection began with the handshake, so
    /// it is protected from the first byte and AUTH is out of sequence (as after AUTH TLS).
    pub fn new_implicit_tls(
        cfg: Arc<FtpSettings>,
        peer: SocketAddr,
        local: SocketAddr,
        now: Instant,
    ) -> Session {
        let mut s = Session::new(cfg, peer, local, now);
        s.sec.control = true;
        s
    }

    /// Feeds raw control-connection bytes (any split, Telnet sequences allowed); after
    /// AUTH TLS, plaintext from the TLS layer.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        if self.closed {
            return;
        }
        let mut lines = Vec::new();
        self.reader.push(bytes, |l| lines.push(l));
        self.restart_input = false;
        for line in lines {
            self.accept_line(line, now);
            if self.restart_input {
                // AUTH TLS: what followed it in these bytes came before the handshake.
                break;
            }
        }
    }

    /// True once the control connection is protected by TLS.
    pub fn control_protected(&self) -> bool {
        self.sec.control
    }

    /// Runs timers due at `now`: the delayed 530, the idle timeout and the passive
    /// listener's accept timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.expire_passive(now);
        match self.pending {
            Pending::LoginDelay { until, close } if now >= until => self.login_delay_over(close, now),
            Pending::Idle if now >= self.last_activity + self.cfg.idle_timeout => {
                tracing::debug!(peer = %self.peer, "idle timeout");
                self.reply(421, "Timeout.");
                self.close();
            }
            _ => {}
        }
    }

    /// Delivers the io layer's result for the action named `token`.
    pub fn handle_completion(&mut self, token: OpToken, result: OpResult, now: Instant) {
        if self.closed {
            return;
        }
        match std::mem::replace(&mut self.pending, Pending::Idle) {
            Pending::Op(t, op) if t == token => self.complete_op(op, result, now),
            Pending::Transfer(run) if run.token == token => self.complete_transfer(*run, result, now),
            other => {
                tracing::warn!(
                    ?token,
                    ?result,
                    "completion for an action that is not pending (io layer bug)"
                );
                self.pending = other;
                return;
            }
        }
        if matches!(self.pending, Pending::Idle) {
            tracing::debug!("operation complete; resuming commands");
            self.last_activity = now;
            self.drain(now);
        }
    }

    /// The next thing to do, in order; call until `None` after every `handle_*`.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When `handle_timeout` must next be called, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let state = match self.pending {
            Pending::LoginDelay { until, .. } => Some(until),
            Pending::Idle => Some(self.last_activity + self.cfg.idle_timeout),
            // The io layer's data timeout covers transfers; other actions are short.
            Pending::Op(..) | Pending::Transfer(_) => None,
        };
        state.into_iter().chain(self.passive_deadline()).min()
    }

    /// The logged-in account, if any.
    pub fn account(&self) -> Option<&Account> {
        match &self.auth {
            Auth::LoggedIn(a) => Some(a),
            _ => None,
        }
    }

    /// True once `Output::Close` has been queued; later input is ignored.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The current working directory.
    pub fn cwd(&self) -> &VirtualPath {
        &self.cwd
    }

    /// The HOST the client asked for (RFC 7151), if any.
    pub fn host(&self) -> Option<&[u8]> {
        self.host.as_deref()
    }

    // ---- input scheduling ------------------------------------------------------------

    fn accept_line(&mut self, line: Line, now: Instant) {
        if self.closed {
            return;
        }
        self.last_activity = now;
        if matches!(self.pending, Pending::Idle) && self.queue.is_empty() {
            self.execute(line, now);
            return;
        }
        // RFC 959 §4.1.3: ABOR, STAT and QUIT act during a transfer; all else waits its turn.
        if let (Pending::Transfer(_), Line::Command(bytes)) = (&self.pending, &line) {
            if let Ok(cmd) = command::parse(bytes) {
                if cmd.is_out_of_band() {
                    self.during_transfer(cmd);
                    return;
                }
            }
        }
        if self.queue.len() >= MAX_QUEUED_LINES {
            tracing::info!(peer = %self.peer, "too many pipelined commands; closing");
            self.reply(421, "Too many pipelined commands; closing control connection.");
            self.close();
            return;
        }
        self.queue.push_back(line);
    }

    fn drain(&mut self, now: Instant) {
        while matches!(self.pending, Pending::Idle) && !self.closed {
            match self.queue.pop_front() {
                Some(line) => self.execute(line, now),
                None => break,
            }
        }
    }

    // ---- command execution ---------------------------------------------------------------

    fn execute(&mut self, line: Line, now: Instant) {
        let bytes = match line {
            Line::Command(b) => b,
            Line::TooLong => return self.reply(500, "Command line too long."),
        };
        let cmd = match command::parse(&bytes) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "command refused");
                self.rnfr = None;
                self.rest = 0;
                return self.push_reply(e.reply());
            }
        };
        // RFC 3659 §5: REST applies to the transfer command right after it; clients set up
        // the data connection and TYPE in between, anything else drops the offset.
        if !cmd.keeps_restart_offset() {
            self.rest = 0;
        }
        // RFC 959 §4.1.3: RNTO must immediately follow RNFR.
        let rnfr = self.rnfr.take();
        if self.account().is_none() && !cmd.allowed_before_login() {
            return self.reply(530, "Please login with USER and PASS.");
        }
        match cmd {
            Command::User(name) => self.cmd_user(name),
            Command::Pass(pw) => self.cmd_pass(pw, now),
            Command::Acct => self.reply(202, "ACCT not needed."),
            Command::Rein => self.cmd_rein(),
            Command::Quit => self.cmd_quit(),
            Command::Host(name) => self.cmd_host(name),
            Command::Type(t) => self.cmd_type(t),
            Command::Mode => self.reply(200, "Mode set to S."),
            Command::Stru => self.reply(200, "Structure set to F."),
            Command::Port(addr) => self.cmd_port(addr, "PORT"),
            Command::Eprt(addr) => self.cmd_port(addr, "EPRT"),
            Command::Pasv => self.cmd_pasv(),
            Command::Epsv(arg) => self.cmd_epsv(arg),
            Command::Retr(arg) => self.cmd_retr(&arg),
            Command::Stor(arg) => self.cmd_stor(&arg, false),
            Command::Appe(arg) => self.cmd_stor(&arg, true),
            Command::Stou(hint) => self.cmd_stou(hint),
            Command::Rest(n) => self.cmd_rest(n),
            Command::Allo => self.reply(202, "ALLO command ignored."),
            Command::List(args) => self.cmd_list(args),
            Command::Nlst(args) => self.cmd_nlst(args),
            Command::Mlsd(arg) => self.cmd_mlsd(arg),
            Command::Abor => self.cmd_abor(),
            Command::Cwd(arg) => self.cmd_cwd(&arg),
            Command::Cdup => self.cmd_cwd(b".."),
            Command::Pwd => self.cmd_pwd(),
            Command::Mkd(arg) => self.cmd_mkd(&arg),
            Command::Rmd(arg) => self.cmd_rmd(&arg),
            Command::Dele(arg) => self.cmd_dele(&arg),
            Command::Rnfr(arg) => self.cmd_rnfr(&arg),
            Command::Rnto(arg) => self.cmd_rnto(rnfr, &arg),
            Command::Size(arg) => self.cmd_size(&arg),
            Command::Mdtm(arg) => self.cmd_mdtm(&arg),
            Command::Mfmt { mtime, path } => self.cmd_mfmt(mtime, &path),
            Command::Mlst(arg) => self.cmd_mlst(arg),
            Command::Site(site) => self.cmd_site(site),
            Command::Syst => self.reply(215, "UNIX Type: L8"),
            Command::Noop => self.reply(200, "NOOP ok."),
            Command::Stat(arg) => self.cmd_stat(arg),
            Command::Help => self.cmd_help(),
            Command::Feat => self.cmd_feat(),
            Command::Opts(arg) => self.cmd_opts(arg),
            Command::Auth(mech) => self.cmd_auth(mech),
            Command::Pbsz(size) => self.cmd_pbsz(size),
            Command::Prot(level) => self.cmd_prot(level),
            Command::Ccc => self.cmd_ccc(),
        }
    }

    // ---- completions ---------------------------------------------------------------------

    fn complete_op(&mut self, op: Op, result: OpResult, now: Instant) {
        match (op, result) {
            (Op::Login(account), OpResult::Password { valid }) => self.login_done(account, valid, now),
            (Op::Login(_), OpResult::VerifierBusy) => self.login_refused_busy(),
            (Op::Passive { extended, advertise }, OpResult::Passive(port)) => {
                self.passive_done(extended, advertise, port, now)
            }
            (Op::Cwd(path), OpResult::Stat(stat)) => self.cwd_done(path, stat),
            (Op::Rnfr(path), OpResult::Stat(stat)) => self.rnfr_done(path, stat),
            (Op::Size, OpResult::Stat(stat)) => self.size_done(stat),
            (Op::Mdtm, OpResult::Stat(stat)) => self.mdtm_done(stat),
            (Op::Mlst(path), OpResult::Stat(stat)) => self.mlst_done(path, stat),
            (Op::Simple(ok), OpResult::Done(done)) => self.simple_done(ok, done),
            (Op::StatPath(path), OpResult::Entries { entries, now_unix }) => {
                self.stat_done(path, entries, now_unix)
            }
            (op, result) => {
                tracing::warn!(?op, ?result, "completion does not match the action (io layer bug)");
                self.reply(451, "Local error in processing.");
            }
        }
    }

    // ---- helpers -------------------------------------------------------------------------

    fn start_op(&mut self, action: Action, op: Op) {
        self.next_token += 1;
        let token = OpToken(self.next_token);
        self.out.push_back(Output::Action(token, action));
        self.set_pending(Pending::Op(token, op));
    }

    fn set_pending(&mut self, p: Pending) {
        let label = match &p {
            Pending::Idle => "idle",
            Pending::Op(..) => "awaiting operation",
            Pending::Transfer(_) => "transferring",
            Pending::LoginDelay { .. } => "delaying failed login",
        };
        tracing::debug!(state = label, "session state");
        self.pending = p;
    }

    fn join(&mut self, arg: &[u8]) -> Option<VirtualPath> {
        match self.cwd.join(arg) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::info!(peer = %self.peer, error = %e, "path refused");
                self.reply(553, "File name not allowed.");
                None
            }
        }
    }

    fn permitted(&mut self, perm: Permission, verb: &str, path: &VirtualPath) -> bool {
        let Some(account) = self.account() else { return false };
        if account.permissions.allows(perm) {
            return true;
        }
        tracing::info!(
            peer = %self.peer, user = %account.name, %path, permission = perm.name(), "{verb} denied"
        );
        self.reply(550, "Permission denied.");
        false
    }

    /// Resolves `arg` and checks `perm`, answering 553/550 itself when either fails.
    fn checked_path(&mut self, arg: &[u8], perm: Permission, verb: &str) -> Option<VirtualPath> {
        let path = self.join(arg)?;
        self.permitted(perm, verb, &path).then_some(path)
    }

    fn fs_failure(&mut self, e: FsError, what: &str) {
        tracing::info!(peer = %self.peer, error = %e, "{what} failed");
        self.push_reply(Reply::for_file(e));
    }

    fn reply(&mut self, code: u16, text: impl Into<Vec<u8>>) {
        self.push_reply(Reply::new(code, text));
    }

    fn push_reply(&mut self, r: Reply) {
        tracing::trace!(code = r.code, "reply");
        self.out.push_back(Output::Reply(r.to_bytes()));
    }

    fn event(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    fn close(&mut self) {
        tracing::debug!(peer = %self.peer, "closing control connection");
        self.closed = true;
        self.queue.clear();
        self.out.push_back(Output::Close);
    }
}

#[cfg(test)]
mod tests;
