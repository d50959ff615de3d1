//! Shared helpers for end-to-end tests: free ports, a served directory, and a Ferry process
//! that is killed when the test ends, whatever happens.
#![allow(dead_code)]

pub mod tftp;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The ferry binary under test.
pub fn ferry_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferry")
}

/// True when the tests run as root (CI does); privilege tests need it.
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// A port that is free for both TCP and UDP on all addresses right now.
pub fn free_port() -> u16 {
    loop {
        let tcp =
            TcpListener::bind("[::]:0").or_else(|_| TcpListener::bind("0.0.0.0:0")).expect("bind port 0");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("::", port)).or_else(|_| UdpSocket::bind(("0.0.0.0", port))).is_ok() {
            return port;
        }
    }
}

/// A free privileged port (below 1024) for tests that run as root.
pub fn free_low_port() -> u16 {
    for _ in 0..200 {
        let port = 600 + (rand_u16() % 400);
        if TcpListener::bind(("::", port)).is_ok() && UdpSocket::bind(("::", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below 1024");
}

fn rand_u16() -> u16 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    (t.subsec_nanos() ^ std::process::id().rotate_left(7)) as u16
}

/// A temporary served directory readable by any user (the server drops to `nobody`).
pub fn served_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("ferry-test").tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.path().join("hello.txt"), b"hello from ferry\n").unwrap();
    dir
}

/// A running Ferry process, killed on drop.
pub struct Server {
    pub child: Child,
    pub ftp_port: u16,
    pub tftp_port: u16,
    pub stderr_path: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Server {
    /// Starts `ferry` with the given extra args on fresh ports; waits for the FTP greeting.
    pub fn start(root: &Path, extra: &[&str]) -> Server {
        Self::start_with(Command::new(ferry_bin()), root, free_port(), free_port(), extra)
    }

    /// As `start` but with a prepared command (e.g. wrapped in setpriv) and chosen ports.
    pub fn start_with(
        mut cmd: Command,
        root: &Path,
        ftp_port: u16,
        tftp_port: u16,
        extra: &[&str],
    ) -> Server {
        let log_dir = tempfile::tempdir().unwrap();
        let stderr_path = log_dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        cmd.arg("--root")
            .arg(root)
            .arg("--ftp-port")
            .arg(ftp_port.to_string())
            .arg("--tftp-port")
            .arg(tftp_port.to_string())
            .args(extra)
            .env_remove("RUST_LOG")
            .env_remove("FERRY_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = cmd.spawn().expect("spawn ferry");
        let server = Server { child, ftp_port, tftp_port, stderr_path, _log_dir: log_dir };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        eventually(Duration::from_secs(10), "ferry's FTP greeting (220)", || {
            let mut s = TcpStream::connect(("127.0.0.1", self.ftp_port))
                .map_err(|e| Text(format!("connect: {e}; stderr:\n{}", self.stderr())))?;
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 3];
            match s.read_exact(&mut buf) {
                Ok(()) if &buf == b"220" => Ok(()),
                got => Err(Text(format!("greeting {got:?} {buf:?}; stderr:\n{}", self.stderr()))),
            }
        });
        // The first worker up answers the greeting; "ferry serving" is logged once every
        // worker runs, which tests reading thread lists need. Soft: a server logging above
        // info never says it, and is taken as ready after the wait.
        let _ = poll(Duration::from_secs(5), || check(self.stderr(), |e| e.contains("ferry serving")));
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The log so far, without terminal colour sequences.
    pub fn log(&self) -> String {
        strip_ansi(&self.stderr())
    }

    /// Waits up to 5 s for `needle` in the log (lines are written asynchronously); the log
    /// then, without colour sequences.
    pub fn wait_log(&self, needle: &str) -> String {
        self.wait_log_until(&format!("{needle:?} in the log"), |log| log.contains(needle))
    }

    /// Waits up to 5 s until `done` holds for the log (without colour sequences); the log then.
    pub fn wait_log_until(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        eventually(Duration::from_secs(5), what, || check(Text(self.log()), |log| done(&log.0))).0
    }

    pub fn ftp_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ftp_port))
    }

    /// Sends `sig` and waits up to `timeout` for the exit code.
    pub fn signal_and_wait(&mut self, sig: nix::sys::signal::Signal, timeout: Duration) -> Option<i32> {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
        wait_exit(&mut self.child, timeout)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How often [`poll`] looks again.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Calls `probe` every 20 ms until it returns `Ok`, for up to `within`: that value, or the
/// last `Err` (what was seen) once time is up. The one way tests wait for an effect that
/// follows an action (a file removed, a count settled, a process exited, a log line written)
/// on a busy machine; [`eventually`] is the form that panics.
pub fn poll<T, O>(within: Duration, mut probe: impl FnMut() -> Result<T, O>) -> Result<T, O> {
    let deadline = Instant::now() + within;
    loop {
        match probe() {
            Ok(v) => return Ok(v),
            Err(last) if Instant::now() >= deadline => return Err(last),
            Err(_) => std::thread::sleep(POLL_EVERY),
        }
    }
}

/// As [`poll`], but panics naming `what` was awaited and the last observation when time is up.
pub fn eventually<T, O: std::fmt::Debug>(
    within: Duration,
    what: &str,
    probe: impl FnMut() -> Result<T, O>,
) -> T {
    poll(within, probe).unwrap_or_else(|last| panic!("waited {within:?} for {what}; last seen: {last:?}"))
}

/// `Ok(seen)` when `done(&seen)` holds, else `Err(seen)`: a probe for [`poll`] and
/// [`eventually`] from an observation and a condition on it.
pub fn check<O>(seen: O, done: impl FnOnce(&O) -> bool) -> Result<O, O> {
    if done(&seen) {
        Ok(seen)
    } else {
        Err(seen)
    }
}

/// Text shown as is (not escaped) in a failure message, for logs.
pub struct Text(pub String);

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\n{}", self.0)
    }
}

/// Waits for `child` to exit, up to `timeout`; its exit status.
pub fn wait_status(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    poll(timeout, || child.try_wait().ok().flatten().ok_or(())).ok()
}

/// Waits for `child` to exit, up to `timeout`; returns its exit code.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<i32> {
    wait_status(child, timeout).and_then(|s| s.code())
}

/// Removes `ESC [ ... m` colour sequences.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Fields of /proc/PID/task/TID/status for every thread of `pid`.
pub fn thread_status(pid: i32) -> Vec<std::collections::HashMap<String, String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = entry.unwrap().path().join("status");
        out.push(parse_status(&std::fs::read_to_string(path).unwrap_or_default()));
    }
    out
}

/// Fields of /proc/PID/status.
pub fn process_status(pid: i32) -> std::collections::HashMap<String, String> {
    parse_status(&std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default())
}

fn parse_status(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Child processes of `pid`.
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let text = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            out.extend(text.split_whitespace().filter_map(|s| s.parse::<i32>().ok()));
        }
    }
    out
}

/// Connects to an FTP control port and reads the greeting line.
pub fn ftp_connect(addr: SocketAddr) -> (BufReader<TcpStream>, TcpStream, String) {
    ftp_greeted(TcpStream::connect(addr).expect("connect"))
}

/// As [`ftp_connect`], from the local address `from`: another loopback address (127.0.0.2)
/// is another client IP to the server.
pub fn ftp_connect_from(
    from: std::net::IpAddr,
    addr: SocketAddr,
) -> (BufReader<TcpStream>, TcpStream, String) {
    let sock = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::new(from, 0).into()).expect("bind the client address");
    sock.connect(&addr.into()).expect("connect");
    ftp_greeted(sock.into())
}

/// Reads the greeting line of a connected control connection.
fn ftp_greeted(stream: TcpStream) -> (BufReader<TcpStream>, TcpStream, String) {
    // A guard against a hung server, not a latency check: a loaded 2-core CI machine has
    // taken more than 5 s to answer a PASS (an argon2 check) while other tests ran.
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut greeting = String::new();
    reader.read_line(&mut greeting).unwrap();
    (reader, writer, greeting)
}

/// Sends one command line and reads one reply line.
pub fn ftp_command(reader: &mut BufReader<TcpStream>, writer: &mut TcpStream, line: &str) -> String {
    writer.write_all(format!("{line}\r\n").as_bytes()).unwrap();
    let mut reply = String::new();
    reader.read_line(&mut reply).unwrap();
    reply
}

/// Sends one raw HTTP request to the metrics endpoint at `addr`; returns the whole answer.
pub fn http(addr: &str, request: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The value of one series (name and labels, e.g. `x_total{worker="all"}`) in a scrape.
pub fn metric(page: &str, series: &str) -> i64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in\n{page}"))
}

pub mod ftp;
pub mod netns;
