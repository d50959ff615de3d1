//! FTP client scenarios: download sessions (one or many RETRs each), uploads (STOR) and
//! many idle logged-in sessions. Passive (EPSV, PASV) and active (PORT) data connections;
//! every transfer's bytes are counted and, when a reference file is given, hashed. With
//! `--tls`, FTPS (RFC 4217): control and data protected, data resuming the control session.

use crate::hash::Hasher;
use crate::report::{Failure, Json, Stats};
use crate::run::Budget;
use crate::tls::{ClientTls, TlsMode, TlsStream};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// How the data connection is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DataMode {
    /// RFC 2428 extended passive: the client connects to the port in the 229 reply.
    Epsv,
    /// RFC 959 passive: the client connects to the address in the 227 reply.
    Pasv,
    /// RFC 959 active: the server connects to a port the client listens on.
    Port,
}

/// Settings shared by every FTP task of a run.
#[derive(Clone)]
pub struct FtpCfg {
    pub addr: SocketAddr,
    pub user: String,
    pub pass: String,
    pub mode: DataMode,
    /// Remote path; `{n}` becomes the transfer's sequence number and `{t}` the task id.
    pub path: String,
    pub retrs_per_session: u32,
    /// Expected length and, when a reference file was given, its digest.
    pub expect_len: Option<u64>,
    pub expect_hash: Option<u64>,
    /// Longest wait for any single read, write, connect or reply.
    pub io_timeout: Duration,
    pub buf_size: usize,
    /// Bytes per STOR.
    pub upload_size: u64,
    /// After STOR, ask SIZE and compare.
    pub check_size: bool,
    /// FTPS: how sessions get TLS; `None` is plain FTP.
    pub tls: Option<Arc<ClientTls>>,
}

/// A control or data connection: plain TCP, or TLS over it. One branch per call is all
/// the plain path pays for the choice.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, data),
            Conn::Tls(s) => Pin::new(&mut **s).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

async fn timed<T>(
    d: Duration,
    what: &'static str,
    fut: impl Future<Output = std::io::Result<T>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(d, fut).await {
        Err(_) => Err(Failure::Timeout(what)),
        Ok(Err(e)) => Err(Failure::Io(e)),
        Ok(Ok(v)) => Ok(v),
    }
}

/// A control connection: reads replies (RFC 959 4.2 multi-line aware), sends commands.
pub struct Control {
    io: BufReader<Conn>,
    timeout: Duration,
    line: Vec<u8>,
    peer: SocketAddr,
    local: SocketAddr,
    /// What the next reply answers, so a timeout says which step the server stalled on.
    awaiting: &'static str,
    /// The session's TLS client configuration (its own resumption store), once protected.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// PROT P is in force: data connections get TLS.
    protected: bool,
}

/// The label of the reply a command line waits for (static, for error kinds).
fn awaiting(line: &str) -> &'static str {
    const LABELS: [(&str, &str); 14] = [
        ("AUTH", "reply-AUTH"),
        ("PBSZ", "reply-PBSZ"),
        ("PROT", "reply-PROT"),
        ("USER", "reply-USER"),
        ("PASS", "reply-PASS"),
        ("TYPE", "reply-TYPE"),
        ("EPSV", "reply-EPSV"),
        ("PASV", "reply-PASV"),
        ("PORT", "reply-PORT"),
        ("RETR", "reply-RETR"),
        ("STOR", "reply-STOR"),
        ("SIZE", "reply-SIZE"),
        ("NOOP", "reply-NOOP"),
        ("QUIT", "reply-QUIT"),
    ];
    let verb = line.split(' ').next().unwrap_or("");
    LABELS.iter().find(|(v, _)| verb.eq_ignore_ascii_case(v)).map_or("reply", |(_, label)| label)
}

impl Control {
    /// Connects and reads the greeting (which must be 220); with `tls`, protects the
    /// connection first (implicit) or right after the greeting (`AUTH TLS`).
    pub async fn connect(
        addr: SocketAddr,
        timeout: Duration,
        bufcap: usize,
        tls: Option<&ClientTls>,
    ) -> Result<Control, Failure> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Err(_) => return Err(Failure::Timeout("connect")),
            Ok(Err(e)) => return Err(Failure::Connect(e)),
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().map_err(Failure::Io)?;
        let session = tls.map(ClientTls::session);
        let conn = match (tls.map(|t| t.mode), &session) {
            (Some(TlsMode::Implicit), Some(config)) => {
                Conn::Tls(Box::new(TlsStream::connect(stream, Arc::clone(config), bufcap, timeout).await?))
            }
            _ => Conn::Plain(stream),
        };
        let mut c = Control {
            io: BufReader::with_capacity(bufcap, conn),
            timeout,
            line: Vec::with_capacity(128),
            peer: addr,
            local,
            awaiting: "greeting",
            tls: None,
            protected: false,
        };
        let (code, text) = c.reply().await?;
        if code != 220 {
            return Err(Failure::Reply { cmd: "greeting", code, text });
        }
        if let Some(config) = session {
            if matches!(c.io.get_ref(), Conn::Plain(_)) {
                c.command("AUTH", "AUTH TLS", &[234]).await?;
                c = c.start_tls(Arc::clone(&config), bufcap).await?;
            }
            c.tls = Some(config);
        }
        Ok(c)
    }

    /// Runs the handshake on the control connection after `234`.
    async fn start_tls(self, config: Arc<rustls::ClientConfig>, bufcap: usize) -> Result<Control, Failure> {
        if !self.io.buffer().is_empty() {
            return Err(Failure::Protocol("bytes after 234, before the TLS handshake".into()));
        }
        let Conn::Plain(tcp) = self.io.into_inner() else {
            return Err(Failure::Protocol("AUTH TLS on a protected connection".into()));
        };
        let tls = TlsStream::connect(tcp, config, bufcap, self.timeout).await?;
        Ok(Control { io: BufReader::with_capacity(bufcap, Conn::Tls(Box::new(tls))), ..self })
    }

    /// `PBSZ 0` and `PROT P` (RFC 4217 sections 8 and 9): data connections get TLS too.
    pub async fn protect_data(&mut self) -> Result<(), Failure> {
        if self.tls.is_some() {
            self.command("PBSZ", "PBSZ 0", &[200]).await?;
            self.command("PROT", "PROT P", &[200]).await?;
            self.protected = true;
        }
        Ok(())
    }

    async fn read_line(&mut self) -> Result<(), Failure> {
        self.line.clear();
        // Bounded so a misbehaving server cannot grow the line without limit.
        let mut limited = (&mut self.io).take(8192);
        let n = timed(self.timeout, self.awaiting, limited.read_until(b'\n', &mut self.line)).await?;
        if n == 0 {
            return Err(Failure::Protocol("control connection closed".into()));
        }
        if self.line.last() != Some(&b'\n') {
            return Err(Failure::Protocol("reply line too long or truncated".into()));
        }
        Ok(())
    }

    /// Reads one complete reply: its code and the text of its last line.
    pub async fn reply(&mut self) -> Result<(u16, String), Failure> {
        self.read_line().await?;
        let code = parse_code(&self.line).ok_or_else(|| {
            Failure::Protocol(format!("bad reply {:?}", String::from_utf8_lossy(&self.line)))
        })?;
        if self.line.get(3) == Some(&b'-') {
            // Multi-line: ends at a line that starts with the same code and a space.
            loop {
                self.read_line().await?;
                if parse_code(&self.line) == Some(code) && self.line.get(3) == Some(&b' ') {
                    break;
                }
            }
        }
        Ok((code, String::from_utf8_lossy(&self.line).trim_end().to_string()))
    }

    /// Sends one command line.
    pub async fn send(&mut self, line: &str) -> Result<(), Failure> {
        self.awaiting = awaiting(line);
        let mut buf = Vec::with_capacity(line.len() + 2);
        buf.extend_from_slice(line.as_bytes());
        buf.extend_from_slice(b"\r\n");
        timed(self.timeout, "send", self.io.write_all(&buf)).await
    }

    /// Sends a command and requires a reply whose code is in `ok`.
    pub async fn command(&mut self, cmd: &'static str, line: &str, ok: &[u16]) -> Result<String, Failure> {
        self.send(line).await?;
        let (code, text) = self.reply().await?;
        if ok.contains(&code) {
            Ok(text)
        } else {
            Err(Failure::Reply { cmd, code, text })
        }
    }

    /// USER then PASS when asked (RFC 959 5.4: 230 after USER needs no password).
    pub async fn login(&mut self, user: &str, pass: &str) -> Result<(), Failure> {
        self.send(&format!("USER {user}")).await?;
        match self.reply().await? {
            (230, _) => Ok(()),
            (331, _) => self.command("PASS", &format!("PASS {pass}"), &[230, 202]).await.map(|_| ()),
            (code, text) => Err(Failure::Reply { cmd: "USER", code, text }),
        }
    }

    /// Says goodbye, tolerating a server that closes without answering.
    pub async fn quit(mut self) -> Result<(), Failure> {
        self.send("QUIT").await?;
        match self.reply().await {
            Ok((221, _)) | Err(Failure::Protocol(_)) => Ok(()),
            Ok((code, text)) => Err(Failure::Reply { cmd: "QUIT", code, text }),
            Err(e) => Err(e),
        }
    }

    /// Prepares a data connection: passive ones are connected now, active ones listen.
    async fn open_data(&mut self, mode: DataMode) -> Result<Data, Failure> {
        match mode {
            DataMode::Epsv => {
                let text = self.command("EPSV", "EPSV", &[229]).await?;
                let port = parse_epsv(&text).ok_or_else(|| Failure::Protocol(format!("bad 229: {text}")))?;
                self.connect_data(SocketAddr::new(self.peer.ip(), port)).await
            }
            DataMode::Pasv => {
                let text = self.command("PASV", "PASV", &[227]).await?;
                let addr = parse_pasv(&text).ok_or_else(|| Failure::Protocol(format!("bad 227: {text}")))?;
                self.connect_data(addr).await
            }
            DataMode::Port => {
                let ip = self.local.ip();
                let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await.map_err(Failure::Connect)?;
                let port = listener.local_addr().map_err(Failure::Io)?.port();
                let IpAddr::V4(v4) = ip else {
                    return Err(Failure::Protocol("PORT needs IPv4; use EPSV".into()));
                };
                let [a, b, c, d] = v4.octets();
                self.command("PORT", &format!("PORT {a},{b},{c},{d},{},{}", port >> 8, port & 0xff), &[200])
                    .await?;
                Ok(Data::Listening(listener))
            }
        }
    }

    async fn connect_data(&self, addr: SocketAddr) -> Result<Data, Failure> {
        match tokio::time::timeout(self.timeout, TcpStream::connect(addr)).await {
            Err(_) => Err(Failure::Timeout("data-connect")),
            Ok(Err(e)) => Err(Failure::Connect(e)),
            Ok(Ok(s)) => Ok(Data::Connected(s)),
        }
    }

    /// Sends RETR/STOR, waits for the preliminary 1xx, returns the data stream: after
    /// PROT P with its TLS handshake done (as curl does it: after the 1xx, resuming the
    /// control connection's session). `resumed` counts handshakes that did.
    async fn start_transfer(
        &mut self,
        cmd: &'static str,
        path: &str,
        data: Data,
        (tls_buf, stats): (usize, &mut Stats),
    ) -> Result<Conn, Failure> {
        self.send(&format!("{cmd} {path}")).await?;
        let (code, text) = self.reply().await?;
        if code != 150 && code != 125 {
            return Err(Failure::Reply { cmd, code, text });
        }
        let tcp = match data {
            Data::Connected(s) => s,
            Data::Listening(l) => timed(self.timeout, "data-accept", l.accept()).await.map(|(s, _)| s)?,
        };
        match &self.tls {
            Some(config) if self.protected => {
                let tls = TlsStream::connect(tcp, Arc::clone(config), tls_buf, self.timeout).await?;
                stats.tls_data_handshakes += 1;
                stats.tls_data_resumed += u64::from(tls.resumed());
                Ok(Conn::Tls(Box::new(tls)))
            }
            _ => Ok(Conn::Plain(tcp)),
        }
    }

    /// Requires the transfer's completion reply (226 or 250).
    async fn finish_transfer(&mut self, cmd: &'static str) -> Result<(), Failure> {
        match self.reply().await? {
            (226 | 250, _) => Ok(()),
            (code, text) => Err(Failure::Reply { cmd, code, text }),
        }
    }

    /// Downloads `path`; returns the byte count after checking length and digest.
    pub async fn retr(
        &mut self,
        cfg: &FtpCfg,
        path: &str,
        buf: &mut [u8],
        stats: &mut Stats,
    ) -> Result<u64, Failure> {
        let data = self.open_data(cfg.mode).await?;
        let mut stream = self.start_transfer("RETR", path, data, (buf.len(), stats)).await?;
        let mut got = 0u64;
        let mut hasher = cfg.expect_hash.map(|_| Hasher::default());
        loop {
            let n = timed(self.timeout, "data", stream.read(buf)).await?;
            if n == 0 {
                break;
            }
            got += n as u64;
            if let Some(h) = hasher.as_mut() {
                h.update(&buf[..n]);
            }
        }
        drop(stream);
        self.finish_transfer("RETR").await?;
        if let Some(want) = cfg.expect_len {
            if want != got {
                return Err(Failure::Length { want, got });
            }
        }
        if let (Some(want), Some(h)) = (cfg.expect_hash, hasher) {
            if h.finish() != want {
                return Err(Failure::Hash);
            }
        }
        Ok(got)
    }

    /// Uploads `cfg.upload_size` bytes of `pattern` (repeated) to `path`.
    pub async fn stor(
        &mut self,
        cfg: &FtpCfg,
        path: &str,
        pattern: &[u8],
        stats: &mut Stats,
    ) -> Result<u64, Failure> {
        let data = self.open_data(cfg.mode).await?;
        let mut stream = self.start_transfer("STOR", path, data, (4096, stats)).await?;
        let mut left = cfg.upload_size;
        while left > 0 {
            let n = pattern.len().min(left as usize);
            timed(self.timeout, "data", stream.write_all(&pattern[..n])).await?;
            left -= n as u64;
        }
        timed(self.timeout, "data", stream.shutdown()).await?;
        if matches!(stream, Conn::Tls(_)) {
            // Read what the server still sends (TLS 1.3 tickets, its close_notify) until it
            // closes: closing with unread bytes would reset the connection, and a reset can
            // discard the upload's last bytes before the server read them.
            let mut sink = [0u8; 4096];
            while let Ok(Ok(n)) = tokio::time::timeout(self.timeout, stream.read(&mut sink)).await {
                if n == 0 {
                    break;
                }
            }
        }
        drop(stream);
        self.finish_transfer("STOR").await?;
        if cfg.check_size {
            let text = self.command("SIZE", &format!("SIZE {path}"), &[213]).await?;
            let got = text.get(4..).and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(u64::MAX);
            if got != cfg.upload_size {
                return Err(Failure::Length { want: cfg.upload_size, got });
            }
        }
        Ok(cfg.upload_size)
    }
}

enum Data {
    Connected(TcpStream),
    Listening(TcpListener),
}

fn parse_code(line: &[u8]) -> Option<u16> {
    let d = line.get(..3)?;
    if !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(d.iter().fold(0u16, |a, b| a * 10 + u16::from(b - b'0')))
}

/// `229 Entering Extended Passive Mode (|||6446|)` -> 6446 (RFC 2428 section 3).
pub fn parse_epsv(text: &str) -> Option<u16> {
    let inner = &text[text.find('(')? + 1..text.rfind(')')?];
    let delim = inner.chars().next()?;
    let parts: Vec<&str> = inner.split(delim).collect();
    parts.get(3)?.parse().ok()
}

/// `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)` -> address (RFC 959 4.1.2, RFC 1123 4.1.2.6:
/// the numbers may appear without parentheses, so take the first six-number run).
pub fn parse_pasv(text: &str) -> Option<SocketAddr> {
    let start = text.get(4..)?.find(|c: char| c.is_ascii_digit())? + 4;
    let nums: Vec<u16> = text[start..]
        .split(|c: char| !c.is_ascii_digit())
        .take(6)
        .map(|s| s.parse().ok())
        .collect::<Option<Vec<u16>>>()?;
    if nums.len() != 6 || nums.iter().any(|n| *n > 255) {
        return None;
    }
    let ip = std::net::Ipv4Addr::new(nums[0] as u8, nums[1] as u8, nums[2] as u8, nums[3] as u8);
    Some(SocketAddr::new(ip.into(), nums[4] << 8 | nums[5]))
}

fn expand(template: &str, n: u64, task: usize) -> String {
    template.replace("{n}", &n.to_string()).replace("{t}", &task.to_string())
}

/// A deterministic pseudo-random upload pattern (incompressible, cheap to make).
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Which way a session's transfers go.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `retrs_per_session` x RETR of `path`.
    Download,
    /// One STOR of `upload_size` bytes to `path` (a unique name per upload).
    Upload,
}

/// One client task: whole sessions (connect, login, TYPE I, transfers, QUIT) until the
/// budget is spent. `ok` counts transfers; a failed transfer ends its session.
pub async fn session_task(task: usize, cfg: Arc<FtpCfg>, budget: Arc<Budget>, dir: Direction) -> Stats {
    let mut stats = Stats::default();
    let mut buf = vec![0u8; cfg.buf_size];
    let data = if dir == Direction::Upload { pattern(cfg.buf_size.max(64 << 10)) } else { Vec::new() };
    let transfers = if dir == Direction::Upload { 1 } else { cfg.retrs_per_session };
    while let Some(n) = budget.take() {
        let t0 = Instant::now();
        let result = async {
            let mut c = Control::connect(cfg.addr, cfg.io_timeout, 4096, cfg.tls.as_deref()).await?;
            c.login(&cfg.user, &cfg.pass).await?;
            c.protect_data().await?;
            c.command("TYPE", "TYPE I", &[200]).await?;
            for _ in 0..transfers {
                let t1 = Instant::now();
                let path = expand(&cfg.path, n, task);
                let moved = match dir {
                    Direction::Download => c.retr(&cfg, &path, &mut buf, &mut stats).await?,
                    Direction::Upload => c.stor(&cfg, &path, &data, &mut stats).await?,
                };
                stats.bytes += moved;
                stats.ok += 1;
                stats.latency_us.push(t1.elapsed().as_micros() as u64);
            }
            c.quit().await
        }
        .await;
        let took = t0.elapsed().as_micros() as u64;
        match result {
            Ok(()) => stats.session_us.push(took),
            Err(f) => {
                stats.failed_session_us.push(took);
                stats.fail(&f);
            }
        }
    }
    stats
}

/// State the idle tasks share: how many sessions to open and how far they got.
pub struct Idle {
    pub target: usize,
    pub hold: Duration,
    pub ready_file: Option<PathBuf>,
    next: AtomicUsize,
    settled: AtomicUsize,
    pub accepted: AtomicUsize,
    pub held: AtomicUsize,
    /// Microseconds from the start until every session was opened or had failed.
    pub establish_us: AtomicU64,
    started: Instant,
    announced: AtomicBool,
}

impl Idle {
    /// Shared state for opening `target` sessions and holding them for `hold`.
    pub fn new(target: usize, hold: Duration, ready_file: Option<PathBuf>) -> Idle {
        Idle {
            target,
            hold,
            ready_file,
            next: AtomicUsize::new(0),
            settled: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            establish_us: AtomicU64::new(0),
            started: Instant::now(),
            announced: AtomicBool::new(false),
        }
    }

    /// The scenario-specific numbers for the report.
    pub fn extra(&self) -> Vec<(String, Json)> {
        vec![
            ("requested".into(), Json::Int(self.target as i64)),
            ("accepted".into(), Json::Int(self.accepted.load(Ordering::Relaxed) as i64)),
            ("held".into(), Json::Int(self.held.load(Ordering::Relaxed) as i64)),
            ("establish_s".into(), Json::Num(self.establish_us.load(Ordering::Relaxed) as f64 / 1e6)),
            ("hold_s".into(), Json::Num(self.hold.as_secs_f64())),
        ]
    }
}

/// One idle task: opens and logs in sessions until `target` are attempted, waits for all
/// tasks, holds them, then checks each still answers NOOP (held) and quits.
pub async fn idle_task(cfg: Arc<FtpCfg>, idle: Arc<Idle>) -> Stats {
    let mut stats = Stats::default();
    let mut open = Vec::new();
    while idle.next.fetch_add(1, Ordering::Relaxed) < idle.target {
        let t0 = Instant::now();
        let r = async {
            let mut c = Control::connect(cfg.addr, cfg.io_timeout, 256, cfg.tls.as_deref()).await?;
            c.login(&cfg.user, &cfg.pass).await?;
            Ok::<_, Failure>(c)
        }
        .await;
        match r {
            Ok(c) => {
                stats.latency_us.push(t0.elapsed().as_micros() as u64);
                idle.accepted.fetch_add(1, Ordering::Relaxed);
                open.push(c);
            }
            Err(f) => stats.fail(&f),
        }
        idle.settled.fetch_add(1, Ordering::Relaxed);
    }
    while idle.settled.load(Ordering::Relaxed) < idle.target {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if !idle.announced.swap(true, Ordering::Relaxed) {
        idle.establish_us.store(idle.started.elapsed().as_micros() as u64, Ordering::Relaxed);
        eprintln!(
            "idle: {} of {} sessions open after {:.2} s; holding {:.1} s",
            idle.accepted.load(Ordering::Relaxed),
            idle.target,
            idle.started.elapsed().as_secs_f64(),
            idle.hold.as_secs_f64()
        );
        if let Some(path) = &idle.ready_file {
            if let Err(e) = std::fs::write(path, idle.accepted.load(Ordering::Relaxed).to_string()) {
                eprintln!("idle: cannot write the ready file {}: {e}", path.display());
            }
        }
    }
    tokio::time::sleep(idle.hold).await;
    for mut c in open {
        match c.command("NOOP", "NOOP", &[200]).await {
            Ok(_) => {
                stats.ok += 1;
                idle.held.fetch_add(1, Ordering::Relaxed);
                // The session was held; a slow goodbye is not this scenario's concern.
                let _ = c.quit().await;
            }
            Err(f) => stats.fail(&f),
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_replies_parse() {
        assert_eq!(parse_epsv("229 Entering Extended Passive Mode (|||6446|)"), Some(6446));
        assert_eq!(parse_epsv("229 ok (!!!21!)"), Some(21));
        assert_eq!(parse_epsv("229 nothing"), None);
        assert_eq!(
            parse_pasv("227 Entering Passive Mode (127,0,0,1,78,40)."),
            Some("127.0.0.1:20008".parse().unwrap())
        );
        assert_eq!(parse_pasv("227 =127,0,0,1,0,21"), Some("127.0.0.1:21".parse().unwrap()));
        assert_eq!(parse_pasv("227 (300,0,0,1,0,21)"), None);
        assert_eq!(parse_code(b"220 hi\r\n"), Some(220));
        assert_eq!(parse_code(b"2x0 hi"), None);
    }
}
