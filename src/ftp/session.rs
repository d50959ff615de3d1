//! The FTP session state machine (RFC 959 §5.4 command-reply sequences), without IO or clocks.
//! Control bytes, operation completions and the current `Instant` go in; encoded replies,
//! [`Action`]s for the io layer, [`Event`]s and the close request come out of `poll_output`.

use super::account::Account;
use super::command::{self, Command, EpsvArg, ListArgs, NetProto, OptsArg, SiteCommand, TransferType};
use super::line::{Line, LineReader};
use super::listing::{self, FactSet, FileKind, ListFormat};
use super::path::VirtualPath;
use super::reply::{quote_path, Reply};
use super::settings::{check_active_target, passive_address, ActiveRefusal, FtpSettings};
use crate::config::ftp::{Permission, ANONYMOUS_NAMES};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

pub use super::ops::{
    Action, DataEndpoint, Event, FsError, OpResult, OpToken, Output, StoreMode, TransferError, TransferEvent,
    TransferKind,
};
use std::sync::Arc;
use std::time::Instant;

/// Commands queued while an operation is pending; more is abuse and closes the session.
const MAX_QUEUED_LINES: usize = 32;

/// Unknown users' passwords are checked against this (a hash of a random password, with
/// `ferry hash-password`'s parameters), so that a wrong name takes as long as a wrong password
/// and the delay does not tell which user names exist.
const UNKNOWN_USER_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$C5U87OgF/96K4yv4uQChJA$fN6qbmXwSBGhgfGIU88EoRivLFXTHw2+mxH9y8EXmx4";

/// How many STOU names are tried before giving up.
const STOU_ATTEMPTS: u32 = 100;

/// Login state (RFC 959 §5.4: USER -> 331 -> PASS -> 230).
#[derive(Debug, Clone)]
enum Auth {
    /// Nothing sent yet, or after REIN / a failed login.
    Fresh,
    /// USER accepted with 331; waiting for PASS.
    NeedPass { name: Vec<u8> },
    /// Logged in.
    LoggedIn(Account),
}

/// The data connection the next transfer uses (RFC 959 §3.2-3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Data {
    None,
    Passive,
    Active(SocketAddr),
}

/// What a non-transfer action is for, so its completion can be answered.
#[derive(Debug, Clone)]
enum Op {
    /// `None`: an unknown user, checked against [`UNKNOWN_USER_HASH`] and always refused.
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

/// A running transfer.
#[derive(Debug, Clone)]
struct Running {
    token: OpToken,
    action: Action,
    started: bool,
    /// ABOR received (RFC 959 §4.1.3: answer 426 then 226).
    abort: bool,
    /// QUIT received: 221 and close once the transfer ends (RFC 959 §4.1.1).
    quit: bool,
    /// STOU: the hint and how many names have been tried.
    stou: Option<(Vec<u8>, u32)>,
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
            cfg,
        };
        tracing::debug!(peer = %peer, "ftp session opened");
        let banner = s.cfg.banner.clone();
        s.reply(220, banner);
        s
    }

    /// Feeds raw control-connection bytes (any split, Telnet sequences allowed).
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        if self.closed {
            return;
        }
        let mut lines = Vec::new();
        self.reader.push(bytes, |l| lines.push(l));
        for line in lines {
            self.accept_line(line, now);
        }
    }

    /// Runs timers due at `now`: the delayed 530 and the idle timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        match self.pending {
            Pending::LoginDelay { until, close } if now >= until => {
                self.set_pending(Pending::Idle);
                self.reply(530, "Login incorrect.");
                if close {
                    self.reply(421, "Too many failed logins; closing control connection.");
                    self.close();
                    return;
                }
                self.drain(now);
            }
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
        match self.pending {
            Pending::LoginDelay { until, .. } => Some(until),
            Pending::Idle => Some(self.last_activity + self.cfg.idle_timeout),
            // The io layer's data timeout covers transfers; other actions are short.
            Pending::Op(..) | Pending::Transfer(_) => None,
        }
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

    fn during_transfer(&mut self, cmd: Command) {
        let status = self.status_lines();
        let Pending::Transfer(run) = &mut self.pending else { return };
        match cmd {
            Command::Abor if !run.abort => {
                run.abort = true;
                let token = run.token;
                tracing::debug!(?token, "ABOR: aborting transfer");
                self.event(Event::AbortTransfer(token));
            }
            Command::Abor => {}
            Command::Quit => {
                tracing::debug!("QUIT during transfer: closing after it ends");
                run.quit = true;
            }
            _ => {
                let mut lines = status;
                lines.insert(lines.len() - 1, b"     Data transfer in progress".to_vec());
                self.push_reply(Reply::multi(211, lines));
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
            Command::Quit => {
                self.reply(221, "Goodbye.");
                self.close();
            }
            Command::Cwd(arg) => self.cmd_cwd(&arg),
            Command::Cdup => self.cmd_cwd(b".."),
            Command::Pwd => {
                let line = [quote_path(self.cwd.as_bytes()), b" is the current directory".to_vec()].concat();
                self.push_reply(Reply::new(257, line));
            }
            Command::Type(t) => {
                self.ttype = t;
                tracing::debug!(?t, "TYPE");
                match t {
                    TransferType::Ascii => self.reply(200, "Switching to ASCII mode."),
                    TransferType::Binary => self.reply(200, "Switching to Binary mode."),
                }
            }
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
            Command::Rest(n) => {
                self.rest = n;
                tracing::debug!(offset = n, "REST");
                self.reply(350, format!("Restart position accepted ({n})."));
            }
            Command::Allo => self.reply(202, "ALLO command ignored."),
            Command::Rnfr(arg) => {
                if let Some(path) = self.checked_path(&arg, Permission::Rename, "RNFR") {
                    self.start_op(Action::Stat { path: path.clone() }, Op::Rnfr(path));
                }
            }
            Command::Rnto(arg) => self.cmd_rnto(rnfr, &arg),
            Command::Dele(arg) => {
                if let Some(path) = self.checked_path(&arg, Permission::Delete, "DELE") {
                    let ok = Reply::new(250, "Delete operation successful.");
                    self.start_op(Action::Delete { path }, Op::Simple(ok));
                }
            }
            Command::Mkd(arg) => {
                if let Some(path) = self.checked_path(&arg, Permission::Mkdir, "MKD") {
                    let ok = Reply::path_created(257, path.as_bytes(), "created");
                    self.start_op(Action::MakeDir { path }, Op::Simple(ok));
                }
            }
            Command::Rmd(arg) => {
                if let Some(path) = self.checked_path(&arg, Permission::Delete, "RMD") {
                    let ok = Reply::new(250, "Remove directory operation successful.");
                    self.start_op(Action::RemoveDir { path }, Op::Simple(ok));
                }
            }
            Command::List(args) => {
                self.cmd_list(args, ListFormat::Long { hide_ids: self.cfg.hide_ids }, "LIST")
            }
            Command::Nlst(args) => self.cmd_list(args, ListFormat::Names, "NLST"),
            Command::Mlsd(arg) => {
                let perms = self.account().map(|a| a.permissions).unwrap_or_default();
                let args = ListArgs { path: arg, all: true };
                self.cmd_list(args, ListFormat::Facts { facts: self.facts, perms }, "MLSD");
            }
            Command::Mlst(arg) => {
                let arg = arg.unwrap_or_default();
                if let Some(path) = self.checked_path(&arg, Permission::Read, "MLST") {
                    self.start_op(Action::Stat { path: path.clone() }, Op::Mlst(path));
                }
            }
            Command::Size(arg) => {
                if let Some(path) = self.checked_path(&arg, Permission::Read, "SIZE") {
                    // The file's length in either TYPE, as vsftpd and Pure-FTPd answer. RFC 3659
                    // §4 asks for the TYPE A count, but clients ask in the default TYPE A and
                    // use the answer as a byte count (Python ftplib's size() sends no TYPE I),
                    // and counting would read the whole file on the worker.
                    self.start_op(Action::Stat { path }, Op::Size);
                }
            }
            Command::Mdtm(arg) => {
                if let Some(path) = self.checked_path(&arg, Permission::Read, "MDTM") {
                    self.start_op(Action::Stat { path }, Op::Mdtm);
                }
            }
            Command::Mfmt { mtime, path } => {
                if let Some(path) = self.checked_change(&path, "MFMT") {
                    let text = [b"Modify=".to_vec(), listing::time_val(mtime).into_bytes(), b"; ".to_vec()];
                    let ok = Reply::new(213, [text.concat(), path.as_bytes().to_vec()].concat());
                    self.start_op(Action::SetMtime { path, mtime }, Op::Simple(ok));
                }
            }
            Command::Site(site) => self.cmd_site(site),
            Command::Syst => self.reply(215, "UNIX Type: L8"),
            Command::Stat(None) => {
                let lines = self.status_lines();
                self.push_reply(Reply::multi(211, lines));
            }
            Command::Stat(Some(arg)) => {
                if let Some(path) = self.checked_path(&arg, Permission::Read, "STAT") {
                    self.start_op(Action::ReadDir { path: path.clone() }, Op::StatPath(path));
                }
            }
            Command::Help => self.push_reply(help_reply()),
            Command::Noop => self.reply(200, "NOOP ok."),
            Command::Feat => {
                let reply = feat_reply(self.facts);
                self.push_reply(reply);
            }
            Command::Opts(OptsArg::Utf8(_)) => self.reply(200, "Always in UTF8 mode."),
            Command::Opts(OptsArg::Mlst(facts)) => {
                self.facts = FactSet::of(&facts);
                let text = format!("MLST OPTS {}", self.facts.describe(false));
                self.reply(200, text);
            }
            Command::Host(name) => self.cmd_host(name),
            Command::Abor => {
                // RFC 959 §4.1.3 ABOR with nothing running: close the data connection, 226.
                if std::mem::replace(&mut self.data, Data::None) == Data::Passive {
                    self.event(Event::ClosePassive);
                }
                self.reply(226, "No transfer to abort.")
            }
        }
    }

    fn cmd_user(&mut self, name: Vec<u8>) {
        if self.account().is_some() {
            return self.reply(530, "Can't change to another user.");
        }
        let anonymous = ANONYMOUS_NAMES.iter().any(|a| a.as_bytes().eq_ignore_ascii_case(&name));
        if anonymous && self.cfg.anonymous.is_none() {
            self.auth = Auth::Fresh;
            return self.reply(530, "This server does not allow anonymous logins.");
        }
        tracing::debug!(user = %String::from_utf8_lossy(&name), "USER: awaiting PASS");
        self.auth = Auth::NeedPass { name };
        // Same answer for unknown users: no account enumeration.
        self.reply(331, "Please specify the password.");
    }

    fn cmd_pass(&mut self, password: Vec<u8>, now: Instant) {
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

    fn cmd_rein(&mut self) {
        if matches!(self.auth, Auth::LoggedIn(_)) {
            self.event(Event::LoggedOut);
        }
        if self.data == Data::Passive {
            self.event(Event::ClosePassive);
        }
        tracing::debug!("REIN: back to pre-login state");
        self.auth = Auth::Fresh;
        self.cwd = VirtualPath::root();
        self.ttype = TransferType::Ascii;
        self.rest = 0;
        self.data = Data::None;
        self.epsv_all = false;
        self.facts = FactSet::all();
        self.host = None;
        self.reply(220, "Service ready for new user.");
    }

    fn cmd_host(&mut self, name: Vec<u8>) {
        // RFC 7151 §3: HOST only before USER; afterwards 503.
        if !matches!(self.auth, Auth::Fresh) {
            return self.reply(503, "HOST must be sent before USER.");
        }
        tracing::debug!(host = %String::from_utf8_lossy(&name), "HOST");
        self.host = Some(name);
        self.reply(220, "Host accepted.");
    }

    fn cmd_cwd(&mut self, arg: &[u8]) {
        if let Some(path) = self.join(arg) {
            self.start_op(Action::Stat { path: path.clone() }, Op::Cwd(path));
        }
    }

    fn cmd_port(&mut self, addr: SocketAddr, verb: &str) {
        if self.epsv_all {
            return self.reply(503, format!("{verb} not allowed after EPSV ALL (RFC 2428 section 4)."));
        }
        match check_active_target(&self.cfg.active, self.peer.ip(), addr) {
            Ok(()) => {
                if self.data == Data::Passive {
                    self.event(Event::ClosePassive);
                }
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

    fn cmd_pasv(&mut self) {
        if self.epsv_all {
            return self.reply(503, "PASV not allowed after EPSV ALL (RFC 2428 section 4).");
        }
        let advertise = passive_address(&self.cfg.passive, self.peer.ip(), self.local.ip());
        if !advertise.is_ipv4() {
            // 227 can only carry IPv4 (RFC 959); RFC 2428's 522 is defined for EPRT/EPSV only.
            return self.reply(425, "PASV cannot carry an IPv6 address; use EPSV.");
        }
        self.open_passive(false, advertise);
    }

    fn cmd_epsv(&mut self, arg: EpsvArg) {
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

    fn cmd_retr(&mut self, arg: &[u8]) {
        let offset = std::mem::take(&mut self.rest);
        if let Some(path) = self.checked_path(arg, Permission::Read, "RETR") {
            let ascii = self.ttype == TransferType::Ascii;
            self.start_transfer(TransferKind::Retr { path, offset, ascii }, None);
        }
    }

    fn cmd_stor(&mut self, arg: &[u8], append: bool) {
        let offset = std::mem::take(&mut self.rest);
        let (perm, verb) = if append { (Permission::Append, "APPE") } else { (Permission::Write, "STOR") };
        let Some(path) = self.checked_path(arg, perm, verb) else { return };
        let mode = if append {
            StoreMode::Append
        } else if offset > 0 {
            // A resumed upload extends what is there: that is appending.
            if !self.permitted(Permission::Append, "STOR with REST", &path) {
                return;
            }
            StoreMode::Replace
        } else if self.account().is_some_and(|a| a.permissions.allows(Permission::Delete)) {
            StoreMode::Replace
        } else {
            // Overwriting destroys the old content; without `delete` only new files.
            StoreMode::CreateNew
        };
        let offset = if append { 0 } else { offset };
        let ascii = self.ttype == TransferType::Ascii;
        self.start_transfer(TransferKind::Stor { path, mode, offset, ascii }, None);
    }

    fn cmd_stou(&mut self, hint: Option<Vec<u8>>) {
        self.rest = 0;
        let base = hint.unwrap_or_else(|| b"file".to_vec());
        let Some(path) = self.checked_path(&base, Permission::Write, "STOU") else { return };
        let ascii = self.ttype == TransferType::Ascii;
        let kind = TransferKind::Stor { path, mode: StoreMode::CreateNew, offset: 0, ascii };
        self.start_transfer(kind, Some((base, 0)));
    }

    fn cmd_rnto(&mut self, from: Option<VirtualPath>, arg: &[u8]) {
        let Some(from) = from else { return self.reply(503, "RNFR required first.") };
        if let Some(to) = self.checked_path(arg, Permission::Rename, "RNTO") {
            // Replacing an existing file destroys it: like STOR, only with `delete`.
            let replace = self.account().is_some_and(|a| a.permissions.allows(Permission::Delete));
            let ok = Reply::new(250, "Rename successful.");
            self.start_op(Action::Rename { from, to, replace }, Op::Simple(ok));
        }
    }

    fn cmd_list(&mut self, args: ListArgs, format: ListFormat, verb: &str) {
        let arg = args.path.unwrap_or_default();
        if let Some(path) = self.checked_path(&arg, Permission::Read, verb) {
            self.start_transfer(TransferKind::List { path, format, hidden: args.all }, None);
        }
    }

    fn cmd_site(&mut self, site: SiteCommand) {
        match site {
            SiteCommand::Chmod { mode, path } => {
                if let Some(path) = self.checked_change(&path, "SITE CHMOD") {
                    let ok = Reply::new(200, "SITE CHMOD command ok.");
                    self.start_op(Action::Chmod { path, mode }, Op::Simple(ok));
                }
            }
            SiteCommand::Help => self.reply(214, "CHMOD HELP"),
            SiteCommand::Other(_) => self.reply(500, "Unknown SITE command."),
        }
    }

    // ---- completions ---------------------------------------------------------------------

    fn complete_op(&mut self, op: Op, result: OpResult, now: Instant) {
        match (op, result) {
            (Op::Login(Some(account)), OpResult::Password { valid: true }) => self.logged_in(account),
            (Op::Login(None), OpResult::Password { .. }) => self.login_failed(now),
            (Op::Login(Some(account)), OpResult::Password { valid: false }) => {
                tracing::info!(peer = %self.peer, user = %account.name, "login failed: wrong password");
                self.login_failed(now);
            }
            (Op::Cwd(path), OpResult::Stat(Ok(meta))) if meta.kind == FileKind::Dir => {
                tracing::debug!(cwd = %path, "working directory changed");
                self.cwd = path;
                self.reply(250, "Directory successfully changed.");
            }
            (Op::Cwd(_), OpResult::Stat(_)) => self.reply(550, "Failed to change directory."),
            (Op::Size, OpResult::Stat(Ok(meta))) if meta.kind == FileKind::File => {
                self.reply(213, meta.size.to_string())
            }
            (Op::Size, OpResult::Stat(_)) => self.reply(550, "Could not get file size."),
            (Op::Mdtm, OpResult::Stat(Ok(meta))) if meta.kind == FileKind::File => {
                self.reply(213, listing::time_val(meta.mtime))
            }
            (Op::Mdtm, OpResult::Stat(_)) => self.reply(550, "Could not get file modification time."),
            (Op::Mlst(path), OpResult::Stat(Ok(meta))) => {
                // RFC 3659 §7.2.1: the fact line starts with a space and names the path.
                let perms = self.account().map(|a| a.permissions).unwrap_or_default();
                let mut fact_line = b" ".to_vec();
                listing::facts_line(&meta, self.facts, perms, &mut fact_line);
                fact_line.extend_from_slice(path.as_bytes());
                let first = [b"Listing ".to_vec(), path.as_bytes().to_vec()].concat();
                self.push_reply(Reply::multi(250, vec![first, fact_line, b"End".to_vec()]));
            }
            (Op::Mlst(_), OpResult::Stat(Err(e))) => self.fs_failure(e, "MLST"),
            (Op::Rnfr(path), OpResult::Stat(Ok(_))) => {
                tracing::debug!(from = %path, "RNFR: awaiting RNTO");
                self.rnfr = Some(path);
                self.reply(350, "Ready for RNTO.");
            }
            (Op::Rnfr(_), OpResult::Stat(Err(e))) => self.fs_failure(e, "RNFR"),
            (Op::StatPath(path), OpResult::Entries { entries: Ok(entries), now_unix }) => {
                let format = ListFormat::Long { hide_ids: self.cfg.hide_ids };
                let mut lines =
                    vec![[b"Status of ".to_vec(), path.as_bytes().to_vec(), b":".to_vec()].concat()];
                for e in &entries {
                    let mut l = Vec::new();
                    format.render(e, now_unix, &mut l);
                    l.truncate(l.len().saturating_sub(2));
                    lines.push(l);
                }
                lines.push(b"End of status".to_vec());
                self.push_reply(Reply::multi(213, lines));
            }
            (Op::StatPath(_), OpResult::Entries { entries: Err(e), .. }) => self.fs_failure(e, "STAT"),
            (Op::Passive { extended, advertise }, OpResult::Passive(Ok(port))) => {
                tracing::debug!(port, %advertise, "passive listener open");
                self.data = Data::Passive;
                if extended {
                    self.reply(229, format!("Entering Extended Passive Mode (|||{port}|)"));
                } else if let IpAddr::V4(v4) = advertise {
                    let [a, b, c, d] = v4.octets();
                    let [p1, p2] = port.to_be_bytes();
                    self.reply(227, format!("Entering Passive Mode ({a},{b},{c},{d},{p1},{p2})."));
                }
            }
            (Op::Passive { .. }, OpResult::Passive(Err(e))) => {
                tracing::info!(peer = %self.peer, error = %e, "cannot open passive listener");
                self.data = Data::None;
                self.reply(425, "Can't open passive connection.");
            }
            (Op::Simple(ok), OpResult::Done(Ok(()))) => self.push_reply(ok),
            (Op::Simple(_), OpResult::Done(Err(e))) => self.fs_failure(e, "file operation"),
            (op, result) => {
                tracing::warn!(?op, ?result, "completion does not match the action (io layer bug)");
                self.reply(451, "Local error in processing.");
            }
        }
    }

    fn complete_transfer(&mut self, mut run: Running, result: OpResult, now: Instant) {
        let event = match result {
            OpResult::Transfer(e) => e,
            other => {
                tracing::warn!(?other, "transfer completed with a non-transfer result (io layer bug)");
                TransferEvent::Failed(TransferError::Local)
            }
        };
        match event {
            TransferEvent::Started if !run.started => {
                run.started = true;
                let text = match &run.action {
                    Action::Transfer { kind: TransferKind::List { .. }, .. } => {
                        b"Here comes the directory listing.".to_vec()
                    }
                    Action::Transfer { kind: TransferKind::Stor { path, .. }, .. } if run.stou.is_some() => {
                        // RFC 1123 §4.1.2.9: STOU's 150 names the file.
                        [b"FILE: ".to_vec(), path.file_name().unwrap_or_default().to_vec()].concat()
                    }
                    Action::Transfer { kind: TransferKind::Stor { .. }, .. } => b"Ok to send data.".to_vec(),
                    _ => {
                        let mode = if self.ttype == TransferType::Ascii { "ASCII" } else { "BINARY" };
                        format!("Opening {mode} mode data connection.").into_bytes()
                    }
                };
                tracing::debug!(token = ?run.token, "transfer started");
                self.push_reply(Reply::new(150, text));
                self.pending = Pending::Transfer(Box::new(run));
                return;
            }
            TransferEvent::Started => {
                tracing::warn!("transfer reported Started twice (io layer bug)");
                self.pending = Pending::Transfer(Box::new(run));
                return;
            }
            TransferEvent::Finished { bytes } => {
                tracing::debug!(bytes, "transfer finished");
                let is_list = matches!(run.action, Action::Transfer { kind: TransferKind::List { .. }, .. });
                self.reply(226, if is_list { "Directory send OK." } else { "Transfer complete." });
                if run.abort {
                    // ABOR lost the race: the transfer completed; still answer the ABOR.
                    self.reply(226, "ABOR successful; nothing left to abort.");
                }
            }
            TransferEvent::Failed(err) if run.abort => {
                tracing::debug!(error = %err, "transfer aborted");
                // RFC 959 §4.1.3 ABOR: 426 for the transfer, then 226 for the ABOR.
                self.reply(426, "Connection closed; transfer aborted.");
                self.reply(226, "Abort successful.");
            }
            TransferEvent::Failed(TransferError::Fs(FsError::Exists))
                if !run.started && run.stou.is_some() =>
            {
                if self.retry_stou(&mut run) {
                    return;
                }
                self.reply(553, "Could not create a unique file name.");
            }
            TransferEvent::Failed(err) => {
                tracing::info!(peer = %self.peer, error = %err, "transfer failed");
                // A file that could not be opened never touched the data connection (the io
                // layer keeps the passive listener), so the PASV/PORT still holds for the
                // next command, as with vsftpd: clients retry without a new PASV.
                if let (false, TransferError::Fs(_), Action::Transfer { data, .. }) =
                    (run.started, &err, &run.action)
                {
                    self.data = match data {
                        DataEndpoint::Passive => Data::Passive,
                        DataEndpoint::Active(addr) => Data::Active(*addr),
                    };
                }
                let mlsd = matches!(
                    run.action,
                    Action::Transfer {
                        kind: TransferKind::List { format: ListFormat::Facts { .. }, .. },
                        ..
                    }
                );
                match err {
                    // RFC 3659 §7.2: MLSD of something that is not a directory is a 501.
                    TransferError::Fs(FsError::NotADirectory) if mlsd => {
                        self.reply(501, "MLSD needs a directory; use MLST for a file.")
                    }
                    TransferError::DataConnection => self.reply(425, "Failed to establish data connection."),
                    TransferError::Aborted => self.reply(426, "Connection closed; transfer aborted."),
                    TransferError::Local => self.reply(451, "Local error in processing."),
                    TransferError::Fs(e) => self.fs_failure(e, "transfer"),
                }
            }
        }
        self.last_activity = now;
        if run.quit {
            self.reply(221, "Goodbye.");
            self.close();
        }
    }

    /// Proposes the next STOU name (`hint.1`, `hint.2`, ...) after an O_EXCL collision.
    fn retry_stou(&mut self, run: &mut Running) -> bool {
        let Some((base, tries)) = run.stou.as_mut() else { return false };
        *tries += 1;
        if *tries >= STOU_ATTEMPTS {
            return false;
        }
        let candidate = [base.as_slice(), format!(".{tries}").as_bytes()].concat();
        let Ok(path) = self.cwd.join(&candidate) else { return false };
        let Action::Transfer { kind: TransferKind::Stor { path: old, .. }, .. } = &mut run.action else {
            return false;
        };
        *old = path;
        self.next_token += 1;
        run.token = OpToken(self.next_token);
        tracing::debug!(attempt = *tries, "STOU: name taken, trying another");
        self.out.push_back(Output::Action(run.token, run.action.clone()));
        self.pending = Pending::Transfer(Box::new(run.clone()));
        true
    }

    // ---- helpers -------------------------------------------------------------------------

    fn start_op(&mut self, action: Action, op: Op) {
        self.next_token += 1;
        let token = OpToken(self.next_token);
        self.out.push_back(Output::Action(token, action));
        self.set_pending(Pending::Op(token, op));
    }

    fn start_transfer(&mut self, kind: TransferKind, stou: Option<(Vec<u8>, u32)>) {
        let data = match self.data {
            Data::None => return self.reply(425, "Use PORT, PASV or EPSV first."),
            Data::Passive => DataEndpoint::Passive,
            Data::Active(addr) => DataEndpoint::Active(addr),
        };
        // One data connection per PORT/PASV (RFC 959 §3.3 stream mode closes it at EOF).
        self.data = Data::None;
        self.next_token += 1;
        let token = OpToken(self.next_token);
        let action = Action::Transfer { kind, data };
        self.out.push_back(Output::Action(token, action.clone()));
        self.set_pending(Pending::Transfer(Box::new(Running {
            token,
            action,
            started: false,
            abort: false,
            quit: false,
            stou,
        })));
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

    /// Like [`Self::checked_path`] with `write`, for commands that change an existing entry in
    /// place (SITE CHMOD, MFMT). Writable anonymous users may only add files and directories
    /// (vsftpd's anon_upload_enable), so these stay refused to them.
    fn checked_change(&mut self, arg: &[u8], verb: &str) -> Option<VirtualPath> {
        let path = self.checked_path(arg, Permission::Write, verb)?;
        if self.account().is_some_and(|a| a.anonymous) {
            tracing::info!(peer = %self.peer, user = "anonymous", %path, "{verb} denied");
            self.reply(550, "Permission denied.");
            return None;
        }
        Some(path)
    }

    fn fs_failure(&mut self, e: FsError, what: &str) {
        tracing::info!(peer = %self.peer, error = %e, "{what} failed");
        self.push_reply(Reply::for_file(e));
    }

    fn status_lines(&self) -> Vec<Vec<u8>> {
        let user = match &self.auth {
            Auth::LoggedIn(a) => format!("Logged in as {}", a.name),
            _ => "Not logged in".to_string(),
        };
        let ttype = if self.ttype == TransferType::Ascii { "ASCII" } else { "BINARY" };
        [
            "FTP server status:".to_string(),
            format!("     Connected to {}", self.peer.ip().to_canonical()),
            format!("     {user}"),
            format!("     TYPE: {ttype}"),
            format!("     Session timeout in seconds is {}", self.cfg.idle_timeout.as_secs()),
            "     Control connection is plain text".to_string(),
            "     Data connections will be plain text".to_string(),
            "End of status".to_string(),
        ]
        .into_iter()
        .map(String::into_bytes)
        .collect()
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

/// FEAT (RFC 2389 §3): one feature per line, each starting with a space.
fn feat_reply(facts: FactSet) -> Reply {
    let mlst = format!(" MLST {}", facts.describe(true));
    let lines = [
        "Features:",
        " EPRT",
        " EPSV",
        " HOST",
        " MDTM",
        " MFMT",
        &mlst,
        " REST STREAM",
        " SIZE",
        " TVFS",
        " UTF8",
        "End",
    ];
    Reply::multi(211, lines.iter().map(|l| l.as_bytes().to_vec()).collect())
}

/// HELP (RFC 959 §4.1.3): the recognised commands.
fn help_reply() -> Reply {
    let lines = [
        "The following commands are recognized.",
        " ABOR ACCT ALLO APPE CDUP CWD  DELE EPRT EPSV FEAT HELP HOST LIST MDTM MFMT MKD",
        " MLSD MLST MODE NLST NOOP OPTS PASS PASV PORT PWD  QUIT REIN REST RETR RMD  RNFR",
        " RNTO SITE SIZE STAT STOR STOU STRU SYST TYPE USER XCUP XCWD XMKD XPWD XRMD",
        "Help OK.",
    ];
    Reply::multi(214, lines.iter().map(|l| l.as_bytes().to_vec()).collect())
}

#[cfg(test)]
mod tests;
