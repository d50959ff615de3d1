//! FTP control connections: the accept loop with the session limits, and per connection a
//! driver that feeds the sans-IO [`Session`] and carries out its outputs. A reader task owns
//! the socket's read loop and transfer tasks report back, both over one bounded channel, so
//! the driver only ever waits on cancel-safe futures (channel, timer, shutdown signal).

use super::actions;
use super::data;
use super::limits::{Refusal, SessionPermit};
use super::msg::Msg;
use super::proxy;
use super::state::{FtpWorker, SessionConfig};
use super::tls::DataTls;
use super::transfer::{self, Endpoint, Job, XferMeta};
use super::verifier::Check;
use crate::fs::Root;
use crate::ftp::{
    Action, DataEndpoint, Event, FsError, OpResult, OpToken, Output, PassiveRefusal, Session, TransferError,
    TransferEvent, TransferKind,
};
use crate::io::context::WorkerContext;
use crate::io::registry::{Activity, Entry, Registration};
use crate::io::ring::ops;
use crate::io::ring::sockets::{self, Cancel};
use crate::observe::metrics::Metric;
use crate::observe::xferlog::Direction;
use crate::tls::{SessionTls, TlsConn};
use std::cell::Cell;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_uring::net::{TcpListener, TcpStream};
use tracing::{debug, error, info, info_span, warn, Instrument, Span};

/// Messages queued for a session driver; bounded so a flooding client or a burst of
/// completions cannot grow memory (senders wait instead).
const CHANNEL_DEPTH: usize = 8;
/// Control bytes read per receive.
const READ_CHUNK: usize = 4096;
/// How long writing the 421 of a refused connection may take.
const REFUSE_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts control connections until the listener is shut down; on the implicit-TLS
/// listener (`implicit`), each connection starts with the TLS handshake.
pub async fn accept_loop(ctx: Rc<WorkerContext>, ftp: Rc<FtpWorker>, listener: TcpListener, implicit: bool) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // `client` is known once a PROXY header was read, `user` at login; every
                // later line carries both.
                let span = info_span!(
                    "ftp",
                    client = tracing::field::Empty,
                    via = tracing::field::Empty,
                    worker = ctx.id,
                    user = tracing::field::Empty
                );
                // Settings are fixed per session when it starts (a reload applies to new ones).
                let conf = ftp.settings(ctx.config());
                // The header read waits for the balancer, so it runs in the connection's own
                // task, never in this loop.
                let task =
                    connection(Rc::clone(&ctx), Rc::clone(&ftp), conf, Rc::new(stream), peer, implicit);
                tokio_uring::spawn(task.instrument(span));
            }
            Err(_) if ctx.shutting_down() => break,
            Err(e) => {
                // EMFILE/ENFILE and friends: back off instead of spinning on the error.
                warn!(worker = ctx.id, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    debug!(worker = ctx.id, "FTP listener closed");
}

/// Learns who the client is (from the PROXY header of a trusted balancer), then admits the
/// session or refuses it by that address.
async fn connection(
    ctx: Rc<WorkerContext>,
    ftp: Rc<FtpWorker>,
    conf: SessionConfig,
    stream: Rc<TcpStream>,
    peer: SocketAddr,
    implicit: bool,
) {
    let client = match proxy::client(&stream, peer, &conf.ftp().proxy_protocol).await {
        Ok(client) => client,
        Err(why) => {
            info!(%peer, reason = %why, "control connection closed: PROXY protocol");
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
    };
    let span = Span::current();
    span.record("client", tracing::field::display(client));
    if client != peer {
        span.record("via", tracing::field::display(peer));
    }
    match ftp.shared.limits.admit(client.ip()) {
        Ok(permit) => session(ctx, ftp, conf, stream, client, permit, implicit).await,
        Err(why) => refuse(ctx, &stream, why).await,
    }
}

/// Answers a connection over a session limit with 421 and closes it.
async fn refuse(ctx: Rc<WorkerContext>, stream: &TcpStream, why: Refusal) {
    let metrics = ctx.shared.metrics.worker(ctx.id);
    metrics.inc(Metric::FtpSessionsRefused);
    metrics.inc(match why {
        Refusal::Total => Metric::FtpRefusedSessions,
        Refusal::PerIp => Metric::FtpRefusedSessionsPerIp,
    });
    info!(reason = %why, "session refused");
    let text = match why {
        Refusal::Total => "421 Too many users logged in, try again later.\r\n",
        Refusal::PerIp => "421 Too many connections from your address.\r\n",
    };
    let deadline = tokio::time::Instant::now() + REFUSE_WRITE_TIMEOUT;
    let _ = sockets::bounded(stream.as_raw_fd(), deadline, stream.write_all(text.as_bytes().to_vec())).await;
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Sets the control socket up and returns its local address.
///
/// SO_OOBINLINE, as vsftpd does: clients send ABOR as TCP urgent data (Python's ftplib sends
/// `ABOR\r\n` with MSG_OOB), and without it the kernel takes the urgent last byte, the LF,
/// out of the stream, so the line never ends. TCP_NODELAY: replies are small and awaited.
fn prepare_control(stream: &TcpStream) -> std::io::Result<SocketAddr> {
    let fd = ops::stream_fd(stream);
    let sock = socket2::SockRef::from(&fd);
    sock.set_out_of_band_inline(true)?;
    sock.set_nodelay(true)?;
    sock.local_addr()?.as_socket().ok_or_else(|| std::io::Error::from_raw_os_error(libc::EAFNOSUPPORT))
}

/// Serves an admitted session; `peer` is the client (the PROXY header's source, when one
/// was read), which the session's rules and logs see.
async fn session(
    ctx: Rc<WorkerContext>,
    ftp: Rc<FtpWorker>,
    conf: SessionConfig,
    stream: Rc<TcpStream>,
    peer: SocketAddr,
    _permit: SessionPermit,
    implicit: bool,
) {
    let _active = ctx.activity();
    let metrics = Arc::clone(&ctx.shared.metrics);
    metrics.worker(ctx.id).inc(Metric::FtpSessionsTotal);
    let _open = metrics.hold(ctx.id, Metric::FtpSessionsActive);
    let local = match prepare_control(&stream) {
        Ok(local) => local,
        Err(e) => {
            warn!(error = %e, "cannot set the control connection up; closing");
            return;
        }
    };
    debug!(%local, "control connection open");
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    // With the PROXY protocol on, a header where the first command belongs came from an
    // untrusted address (a trusted one's was read already): not believed, and closed.
    let refuse_header = conf.ftp().proxy_protocol.enabled;
    tokio_uring::spawn(
        read_control(Rc::clone(&stream), tx.clone(), refuse_header).instrument(Span::current()),
    );
    let seen = ctx.sessions.add(Entry::new("ftp", peer, None));
    // The TLS configuration is fixed per session, like its settings: a certificate reloaded
    // later serves sessions that start later. Each session's copy has its own resumption
    // store, which binds its data connections to it.
    let session_tls = conf.settings.tls.and(ftp.shared.tls()).map(|t| t.session());
    let settings = Arc::clone(&conf.settings);
    let (session, tls) = match &session_tls {
        Some(t) if implicit => {
            (Session::new_implicit_tls(settings, peer, local, Instant::now()), Some(t.accept()))
        }
        _ => (Session::new(settings, peer, local, Instant::now()), None),
    };
    let mut driver = Driver {
        seen,
        session,
        session_tls,
        tls,
        conf,
        ctx,
        ftp,
        stream,
        peer,
        local,
        tx,
        root: None,
        passive: None,
        transfer: None,
        ready: VecDeque::new(),
    };
    driver.run(rx).await;
    driver.finish();
    debug!("control connection closed");
}

/// Owns the control socket's read loop; ends at end of stream or error (a shutdown(2) from
/// the driver makes the pending read complete), or when the driver is gone.
///
/// It waits for readability with a buffer-less poll and only then reads, into a stack
/// buffer: an idle session (the common case with thousands of clients) holds no read
/// buffer at all, where a pending read op would pin one per session.
async fn read_control(stream: Rc<TcpStream>, tx: mpsc::Sender<Msg>, mut refuse_header: bool) {
    loop {
        let fd = stream.as_raw_fd();
        let msg = match ops::poll_owned(Rc::clone(&stream), fd, libc::POLLIN).await {
            Err(_) => Msg::Eof,
            Ok(_) => match recv_now(fd) {
                ControlRead::Data(bytes) if refuse_header && proxy::looks_like_header(&bytes) => {
                    info!("PROXY header from an untrusted address; closing");
                    Msg::Eof
                }
                ControlRead::Data(bytes) => {
                    refuse_header = false;
                    Msg::Input(bytes)
                }
                ControlRead::Nothing => continue,
                ControlRead::Eof => Msg::Eof,
            },
        };
        let eof = matches!(msg, Msg::Eof);
        if tx.send(msg).await.is_err() || eof {
            return;
        }
    }
}

/// What a non-blocking read of the control socket found.
enum ControlRead {
    Data(Vec<u8>),
    Nothing,
    Eof,
}

/// Reads what is queued now, copied out at its exact size.
fn recv_now(fd: std::os::fd::RawFd) -> ControlRead {
    let mut buf = [0u8; READ_CHUNK];
    match nix::sys::socket::recv(fd, &mut buf, nix::sys::socket::MsgFlags::MSG_DONTWAIT) {
        Ok(0) => ControlRead::Eof,
        Ok(n) => ControlRead::Data(buf[..n].to_vec()),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => ControlRead::Nothing,
        Err(_) => ControlRead::Eof,
    }
}

/// What woke the driver.
enum Wake {
    Msg(Option<Msg>),
    Timer,
    Shutdown,
    /// The drain timeout passed with this session's transfer still running.
    Cut,
}

/// One session's io side: the control socket, the account's root, the passive listener and
/// the running transfer.
struct Driver {
    session: Session,
    conf: SessionConfig,
    ctx: Rc<WorkerContext>,
    ftp: Rc<FtpWorker>,
    stream: Rc<TcpStream>,
    peer: SocketAddr,
    local: SocketAddr,
    tx: mpsc::Sender<Msg>,
    root: Option<Arc<Root>>,
    passive: Option<data::Passive>,
    transfer: Option<(OpToken, Rc<Cancel>)>,
    /// Completions of actions done inline, delivered once the outputs are drained.
    ready: VecDeque<(OpToken, OpResult)>,
    /// This session in the worker's live view.
    seen: Registration,
    /// The session's TLS (when FTPS is configured): control and data connections accept
    /// with it.
    session_tls: Option<SessionTls>,
    /// The control connection's TLS, once AUTH TLS (or the implicit listener) started it.
    tls: Option<TlsConn>,
}

impl Driver {
    async fn run(&mut self, mut rx: mpsc::Receiver<Msg>) {
        let ctx = Rc::clone(&self.ctx);
        let mut draining = false;
        let mut cut = false;
        loop {
            if !self.flush().await {
                return;
            }
            if draining && self.transfer.is_none() {
                // Idle, or the transfer running at shutdown has ended.
                info!("server shutting down: closing session");
                self.write(b"421 Server shutting down.\r\n".to_vec()).await;
                return;
            }
            let timer = self.session.poll_timeout().map(tokio::time::Instant::from_std);
            let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
            let wake = tokio::select! {
                msg = rx.recv() => Wake::Msg(msg),
                _ = tokio::time::sleep_until(timer.unwrap_or(far)), if timer.is_some() => Wake::Timer,
                _ = ctx.wait_shutdown(), if !draining => Wake::Shutdown,
                _ = ctx.cut.wait(), if draining && !cut && self.transfer.is_some() => Wake::Cut,
            };
            let now = Instant::now();
            match wake {
                Wake::Msg(Some(Msg::Input(bytes))) => {
                    if !self.input(&bytes, now).await {
                        return;
                    }
                }
                Wake::Msg(Some(Msg::Completion(token, result))) => self.complete(token, *result, now),
                Wake::Msg(None | Some(Msg::Eof)) => {
                    debug!("client closed the control connection");
                    return;
                }
                Wake::Timer => self.session.handle_timeout(now),
                Wake::Shutdown => draining = true,
                Wake::Cut => {
                    // The transfer ends as aborted (426), is logged, then the 421 above.
                    cut = true;
                    if let Some((_, cancel)) = &self.transfer {
                        cancel.abort();
                    }
                }
            }
        }
    }

    fn complete(&mut self, token: OpToken, result: OpResult, now: Instant) {
        let ended =
            matches!(result, OpResult::Transfer(TransferEvent::Finished { .. } | TransferEvent::Failed(_)));
        if ended && self.transfer.as_ref().is_some_and(|(t, _)| *t == token) {
            self.transfer = None;
            self.seen.update(|e| e.activity = None);
        }
        self.session.handle_completion(token, result, now);
    }

    /// Carries out every queued output in order; false when the connection must close.
    async fn flush(&mut self) -> bool {
        loop {
            let Some(out) = self.session.poll_output() else {
                match self.ready.pop_front() {
                    Some((token, result)) => {
                        self.complete(token, result, Instant::now());
                        continue;
                    }
                    None => return true,
                }
            };
            match out {
                Output::Reply(bytes) => {
                    if !self.write(bytes).await {
                        return false;
                    }
                }
                Output::Action(token, action) => self.act(token, action),
                Output::Event(event) => self.event(event),
                Output::Close => {
                    if let Some(tls) = &mut self.tls {
                        // close_notify: the client tells our end from a cut.
                        tls.close();
                        self.write(Vec::new()).await;
                    }
                    return false;
                }
            }
        }
    }

    /// Control bytes from the client: plaintext, or ciphertext for the TLS layer, whose
    /// answers (handshake, alerts) are sent at once. False when the connection must close.
    async fn input(&mut self, bytes: &[u8], now: Instant) -> bool {
        let Some(tls) = &mut self.tls else {
            self.session.handle_input(bytes, now);
            return true;
        };
        let was_handshaking = tls.is_handshaking();
        let mut plain = Vec::new();
        let fed = tls.feed(bytes, &mut plain);
        if was_handshaking && !tls.is_handshaking() {
            info!(version = tls.version(), cipher = tls.cipher(), "control connection TLS established");
        }
        if !plain.is_empty() {
            self.session.handle_input(&plain, now);
        }
        let sent = self.write(Vec::new()).await;
        match fed {
            Ok(()) => sent,
            Err(e) => {
                // Garbage instead of a ClientHello, plaintext after AUTH, a bad record.
                info!(error = %e, "control connection TLS failed; closing");
                false
            }
        }
    }

    /// Writes to the control connection (through TLS once it runs), bounded by the data
    /// timeout so a client that stops reading cannot pin the session forever.
    async fn write(&mut self, mut bytes: Vec<u8>) -> bool {
        if let Some(tls) = &mut self.tls {
            let mut plain = &bytes[..];
            let mut wire = Vec::new();
            loop {
                let n = tls.write(plain);
                plain = &plain[n..];
                tls.take_ciphertext(&mut wire);
                if plain.is_empty() || n == 0 {
                    break;
                }
            }
            if !plain.is_empty() {
                // rustls holds 64 KiB before the handshake ends; no reply is that long.
                warn!("control reply does not fit the TLS buffer; closing");
                return false;
            }
            if wire.is_empty() {
                return true;
            }
            bytes = wire;
        }
        self.send_raw(bytes).await
    }

    async fn send_raw(&self, bytes: Vec<u8>) -> bool {
        let secs = self.conf.ftp().limits.data_timeout_secs;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        let ((res, _), expired) =
            sockets::bounded(self.stream.as_raw_fd(), deadline, self.stream.write_all(bytes)).await;
        if expired {
            info!("control connection write timed out");
        }
        res.is_ok() && !expired
    }

    fn act(&mut self, token: OpToken, action: Action) {
        match action {
            Action::VerifyPassword { phc, password } => {
                let check = self.ftp.verify_password(self.peer.ip(), phc, password);
                let (tx, ctx) = (self.tx.clone(), Rc::clone(&self.ctx));
                let task = async move {
                    let check = tokio::select! {
                        check = check => check,
                        // The session has ended: dropping the check withdraws it from the queue.
                        () = tx.closed() => return,
                    };
                    let result = match check {
                        Check::Valid => OpResult::Password { valid: true },
                        Check::Invalid => OpResult::Password { valid: false },
                        // Not judged, so not a failed login: the session answers 421 and closes.
                        Check::Busy(why) => {
                            debug!(reason = %why, "password not checked: verifier busy");
                            ctx.shared.metrics.worker(ctx.id).inc(Metric::FtpLoginsRefusedBusy);
                            OpResult::VerifierBusy
                        }
                    };
                    let _ = tx.send(Msg::Completion(token, Box::new(result))).await;
                };
                tokio_uring::spawn(task.instrument(Span::current()));
            }
            Action::OpenPassive { bind, peer_only } => {
                // The session's previous listener closes first: a new PASV replaces it and
                // takes no second place in the address's count.
                self.passive = None;
                let result = self.open_passive(bind, peer_only);
                self.ready.push_back((token, OpResult::Passive(result)));
            }
            Action::Transfer { kind, data, protect } => self.start_transfer(token, kind, data, protect),
            other => {
                let result = match &self.root {
                    Some(root) => actions::run(root, &other),
                    None => None,
                };
                let result = result.unwrap_or_else(|| {
                    error!(action = ?other, "file action without an open root (io layer bug)");
                    actions::without_root(&other)
                });
                self.ready.push_back((token, result));
            }
        }
    }

    /// Opens the session's passive listener, within its address's share of listeners.
    fn open_passive(&mut self, bind: IpAddr, peer_only: Option<IpAddr>) -> Result<u16, PassiveRefusal> {
        let cfg = &self.conf.ftp().passive;
        let Some(permit) = self.ftp.shared.limits.hold_passive(self.peer.ip(), cfg.max_ports_per_ip) else {
            info!(
                max_ports_per_ip = cfg.max_ports_per_ip,
                "passive listener refused: this client address already holds max_ports_per_ip"
            );
            self.ctx.shared.metrics.worker(self.ctx.id).inc(Metric::FtpRefusedPassivePerIp);
            return Err(PassiveRefusal::PerAddress);
        };
        match data::open_passive(cfg.ports, bind) {
            Ok((listener, port)) => {
                let in_use = self.ctx.shared.metrics.hold(self.ctx.id, Metric::FtpPassivePortsInUse);
                self.passive = Some(data::Passive { listener, peer_only, permit, in_use });
                Ok(port)
            }
            Err(e) => {
                warn!(%bind, ports = %cfg.ports, error = %e, "cannot open a passive listener");
                self.ctx.shared.metrics.worker(self.ctx.id).inc(Metric::FtpRefusedPassivePorts);
                Err(PassiveRefusal::NoPort)
            }
        }
    }

    /// The xferlog facts of a file transfer (listings are not logged there).
    fn xfer_meta(&self, kind: &TransferKind) -> Option<XferMeta> {
        let account = self.session.account()?;
        let (path, ascii, direction) = match kind {
            TransferKind::Retr { path, ascii, .. } => (path, *ascii, Direction::Outgoing),
            TransferKind::Stor { path, ascii, .. } => (path, *ascii, Direction::Incoming),
            TransferKind::List { .. } => return None,
        };
        Some(XferMeta {
            remote: self.peer.ip(),
            path: path.to_string(),
            binary: !ascii,
            direction,
            user: Arc::clone(&account.name),
            anonymous: account.anonymous,
        })
    }

    fn start_transfer(&mut self, token: OpToken, kind: TransferKind, data: DataEndpoint, protect: bool) {
        let failed = |e| OpResult::Transfer(TransferEvent::Failed(e));
        let Some(root) = &self.root else {
            error!("transfer without an open root (io layer bug)");
            return self.ready.push_back((token, failed(TransferError::Fs(FsError::PermissionDenied))));
        };
        let uploads = &self.conf.ftp().uploads;
        // The file first: if it cannot be opened the passive listener stays for a retry.
        let listings = &self.ftp.shared.listing_bytes;
        let source = match transfer::prepare(root, &kind, uploads.atomic, uploads.keep_partial, listings) {
            Ok(s) => s,
            Err(e) => return self.ready.push_back((token, failed(TransferError::Fs(e)))),
        };
        let endpoint = match data {
            DataEndpoint::Active(addr) => Endpoint::Active(addr),
            DataEndpoint::Passive => match self.passive.take() {
                Some(passive) => Endpoint::Passive(passive),
                None => return self.ready.push_back((token, failed(TransferError::DataConnection))),
            },
        };
        let cancel = Rc::new(Cancel::default());
        self.transfer = Some((token, Rc::clone(&cancel)));
        let (verb, path) = match &kind {
            TransferKind::Retr { path, .. } => ("RETR", path),
            TransferKind::Stor { path, .. } => ("STOR", path),
            TransferKind::List { path, .. } => ("LIST", path),
        };
        let label = format!("{verb} {path}");
        let moved = Rc::new(Cell::new(0));
        self.seen.update(|e| e.activity = Some(Activity::new(verb, path.to_string(), Rc::clone(&moved))));
        let record = self.xfer_meta(&kind);
        let conf = self.conf.clone();
        let local_ip = self.local.ip();
        let tls = match (&self.session_tls, protect) {
            (_, false) => None,
            (Some(session), true) => Some(DataTls {
                session: session.clone(),
                require_reuse: self.conf.ftp().tls.require_session_reuse,
            }),
            (None, true) => {
                error!("PROT P without a TLS configuration (io layer bug)");
                return self.ready.push_back((token, failed(TransferError::TlsHandshake)));
            }
        };
        let job = Job { token, source, endpoint, local_ip, cancel, label, record, conf, moved, tls };
        let task = transfer::run(Rc::clone(&self.ctx), Rc::clone(&self.ftp), job, self.tx.clone());
        tokio_uring::spawn(task.instrument(Span::current()));
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::LoggedIn(account) => {
                Span::current().record("user", &*account.name);
                self.seen.update(|e| e.user = Some(Arc::clone(&account.name)));
                info!(user = %account.name, anonymous = account.anonymous, "logged in");
                self.root = self.ftp.shared.root(&account.root);
                if self.root.is_none() {
                    error!(root = %account.root.display(), "account root cannot be opened");
                }
            }
            Event::LoggedOut => {
                self.root = None;
                self.seen.update(|e| e.user = None);
            }
            Event::AbortTransfer(token) => {
                if let Some((t, cancel)) = &self.transfer {
                    if *t == token {
                        cancel.abort();
                    }
                }
            }
            Event::ClosePassive => self.passive = None,
            Event::LoginFailed => self.ctx.shared.metrics.worker(self.ctx.id).inc(Metric::FtpLoginFailures),
            // The 234 went out in clear before this; every later byte is TLS.
            Event::StartTls => match &self.session_tls {
                Some(t) => self.tls = Some(t.accept()),
                None => error!("AUTH TLS accepted without a TLS configuration (io layer bug)"),
            },
        }
    }

    /// Ends everything the session still runs: the transfer is aborted and the reader task
    /// woken by shutting the control socket down.
    fn finish(&mut self) {
        if let Some((_, cancel)) = self.transfer.take() {
            cancel.abort();
        }
        self.passive = None;
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}
