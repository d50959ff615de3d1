//! TFTP test helpers: a Ferry started with TFTP settings from the environment, random files,
//! real clients run under `timeout`, and a small raw UDP client for protocol probes.

use super::{ferry_bin, free_port, Server};
use rand::RngCore;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Starts Ferry on fresh ports with `FERRY_*` variables (e.g. `FERRY_TFTP__WRITE__ENABLED`).
pub fn start_tftp(root: &Path, env: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(ferry_bin());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Server::start_with(cmd, root, free_port(), free_port(), &["--workers", "2"])
}

/// Where a server's transfers answer from: RFC 1350's fresh port per transfer (its TID, the
/// default) or, with `tftp.single_port`, the request port itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    PerTransferPorts,
    SinglePort,
}

impl Mode {
    /// True in single-port mode.
    pub fn single(self) -> bool {
        self == Mode::SinglePort
    }

    /// Starts Ferry in this mode, with `env` as [`start_tftp`] takes it.
    pub fn start(self, root: &Path, env: &[(&str, &str)]) -> Server {
        let single = [("FERRY_TFTP__SINGLE_PORT", if self.single() { "true" } else { "false" })];
        start_tftp(root, &[&single[..], env].concat())
    }

    /// Asserts that a transfer's reply came from the right place for this mode: a port of its
    /// own on the address the request went to, or the request port `server` itself.
    pub fn assert_transfer_source(self, from: SocketAddr, server: SocketAddr) {
        assert_eq!(from.ip(), server.ip(), "the reply comes from the address the request went to");
        match self {
            Mode::PerTransferPorts => assert_ne!(from, server, "a transfer answers from a port of its own"),
            Mode::SinglePort => assert_eq!(from, server, "single-port mode answers from the request port"),
        }
    }
}

/// Runs a test body once per [`Mode`], as two tests named after it (`name::per_transfer_ports`
/// and `name::single_port`), so either mode's failure shows by name.
#[macro_export]
macro_rules! in_both_modes {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            use super::*;
            #[test]
            fn per_transfer_ports() {
                super::$name(Mode::PerTransferPorts)
            }
            #[test]
            fn single_port() {
                super::$name(Mode::SinglePort)
            }
        }
    )+};
}

/// Skips (with a message) when a client program is missing; CI installs all of them.
pub fn have(program: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: {program} is not installed (tests/run-all.sh installs it)");
    }
    found
}

/// Writes `len` random bytes to `dir/name` (world-readable) and returns them.
pub fn random_file(dir: &Path, name: &str, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut data);
    std::fs::write(dir.join(name), &data).unwrap();
    data
}

/// A world-writable directory `name` under `dir`, for uploads (the server runs as nobody).
pub fn upload_dir(dir: &Path, name: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::create_dir(&p).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
    p
}

/// Runs a client command killed after `secs` seconds; returns its output.
pub fn run_client(secs: u32, program: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg(secs.to_string())
        .arg(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Asserts a client run succeeded and `out` holds exactly `expected`.
pub fn assert_fetched(out: &Output, path: &Path, expected: &[u8], what: &str, server: &Server) {
    let got = std::fs::read(path).unwrap_or_default();
    assert!(
        got == expected,
        "{what}: got {} bytes, expected {} (status {:?})\nstdout: {}\nstderr: {}\nserver:\n{}",
        got.len(),
        expected.len(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.stderr()
    );
}

/// Builds an RRQ (1) or WRQ (2) with options.
pub fn request(op: u16, file: &str, mode: &str, opts: &[(&str, &str)]) -> Vec<u8> {
    let mut p = op.to_be_bytes().to_vec();
    for s in [file, mode].into_iter().chain(opts.iter().flat_map(|(k, v)| [*k, *v])) {
        p.extend_from_slice(s.as_bytes());
        p.push(0);
    }
    p
}

/// Opcode of a packet.
pub fn opcode(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[0], p[1]])
}

/// Block number (or error code) of a packet.
pub fn block(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[2], p[3]])
}

/// `(code, message)` when `p` is an ERROR.
pub fn error_of(p: &[u8]) -> Option<(u16, String)> {
    (p.len() >= 4 && opcode(p) == 5).then(|| {
        let msg = &p[4..];
        let end = msg.iter().position(|&b| b == 0).unwrap_or(msg.len());
        (block(p), String::from_utf8_lossy(&msg[..end]).into_owned())
    })
}

/// OACK options as (name, value) pairs.
pub fn oack_options(p: &[u8]) -> Vec<(String, String)> {
    assert_eq!(opcode(p), 6, "expected OACK, got {p:?}");
    let parts: Vec<String> = p[2..]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into())
        .collect();
    parts.chunks(2).map(|c| (c[0].clone(), c.get(1).cloned().unwrap_or_default())).collect()
}

/// An ACK packet.
pub fn ack(block: u16) -> Vec<u8> {
    [4u16.to_be_bytes(), block.to_be_bytes()].concat()
}

/// A DATA packet.
pub fn data(block: u16, payload: &[u8]) -> Vec<u8> {
    [&3u16.to_be_bytes()[..], &block.to_be_bytes(), payload].concat()
}

/// An ERROR packet.
pub fn error(code: u16, msg: &str) -> Vec<u8> {
    [&5u16.to_be_bytes()[..], &code.to_be_bytes(), msg.as_bytes(), &[0]].concat()
}

/// A raw UDP client on loopback (its own port = its TID).
pub struct Raw {
    pub sock: UdpSocket,
    pub server: SocketAddr,
}

impl Raw {
    /// A client of the server at `server`, bound to the same family's loopback.
    pub fn new(server: SocketAddr) -> Raw {
        let local: SocketAddr = if server.is_ipv6() { "[::1]:0" } else { "127.0.0.1:0" }.parse().unwrap();
        let sock = UdpSocket::bind(local).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        Raw { sock, server }
    }

    /// Sends `p` to the server's request port.
    pub fn send(&self, p: &[u8]) {
        self.sock.send_to(p, self.server).unwrap();
    }

    /// Sends `p` to `to`.
    pub fn send_to(&self, p: &[u8], to: SocketAddr) {
        self.sock.send_to(p, to).unwrap();
    }

    /// Next datagram, or None after `within`.
    pub fn recv_within(&self, within: Duration) -> Option<(Vec<u8>, SocketAddr)> {
        self.sock.set_read_timeout(Some(within.max(Duration::from_millis(1)))).unwrap();
        let mut buf = vec![0u8; 70_000];
        match self.sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                buf.truncate(n);
                Some((buf, from))
            }
            Err(_) => None,
        }
    }

    /// Next datagram within 3 s; panics when none comes.
    pub fn recv(&self) -> (Vec<u8>, SocketAddr) {
        self.recv_within(Duration::from_secs(3)).expect("no answer from the server within 3 s")
    }

    /// Every datagram arriving within `d`: a fixed listening window, not a wait for an effect
    /// (callers check that nothing more, or only so much, arrives in it).
    pub fn collect_for(&self, d: Duration) -> Vec<(Vec<u8>, SocketAddr)> {
        let end = Instant::now() + d;
        let mut out = Vec::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.recv_within(left) {
                Some(p) => out.push(p),
                None => break,
            }
        }
        out
    }

    /// Fetches `file` with window 1 after an RRQ without options; returns the bytes.
    pub fn get(&self, file: &str, mode: &str) -> Vec<u8> {
        self.send(&request(1, file, mode, &[]));
        self.receive_blocks(512, 1)
    }

    /// Receives DATA blocks of `blksize` from block `first` on (window 1), ACKing each,
    /// until the short one.
    pub fn receive_blocks(&self, blksize: usize, first: u16) -> Vec<u8> {
        let mut out = Vec::new();
        let mut expected = first;
        loop {
            let (p, from) = self.recv();
            assert_eq!(
                opcode(&p),
                3,
                "expected DATA, got {:?}",
                error_of(&p).unwrap_or((0, format!("{p:?}")))
            );
            if block(&p) == expected {
                out.extend_from_slice(&p[4..]);
                self.send_to(&ack(expected), from);
                expected = expected.wrapping_add(1);
                if p.len() - 4 < blksize {
                    return out;
                }
            }
        }
    }
}

/// The server's TFTP address on 127.0.0.1.
pub fn v4(server: &Server) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], server.tftp_port))
}

/// The server's TFTP address on ::1.
pub fn v6(server: &Server) -> SocketAddr {
    SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, server.tftp_port))
}

/// A served directory with random files, a running server and a directory for downloads.
pub struct Fixture {
    /// The served directory.
    pub dir: tempfile::TempDir,
    /// Where clients write what they fetch.
    pub out: tempfile::TempDir,
    /// The running server.
    pub server: Server,
    /// Its TFTP port, as clients take it on the command line.
    pub port: String,
}

impl Fixture {
    /// Serves random files of the given names and sizes; returns their contents in order.
    pub fn new(files: &[(&str, usize)], env: &[(&str, &str)]) -> (Fixture, Vec<Vec<u8>>) {
        let dir = super::served_dir();
        let contents = files.iter().map(|(name, len)| random_file(dir.path(), name, *len)).collect();
        let server = start_tftp(dir.path(), env);
        let port = server.tftp_port.to_string();
        (Fixture { dir, out: tempfile::tempdir().unwrap(), server, port }, contents)
    }

    /// A path for a download named `name`.
    pub fn out_path(&self, name: &str) -> std::path::PathBuf {
        self.out.path().join(name)
    }
}

/// True when IPv6 loopback works here; says it is skipping otherwise.
pub fn have_ipv6() -> bool {
    let ok = UdpSocket::bind("[::1]:0").is_ok();
    if !ok {
        eprintln!("skipped: no IPv6 loopback here");
    }
    ok
}

impl Raw {
    /// Completes a download (window 1, 512-byte blocks) whose DATA 1 `first` came from `tid`.
    pub fn continue_get(&self, first: &[u8], tid: SocketAddr) -> Vec<u8> {
        assert_eq!((opcode(first), block(first)), (3, 1), "expected DATA 1");
        let mut got = first[4..].to_vec();
        self.send_to(&ack(1), tid);
        if first.len() - 4 == 512 {
            got.extend(self.receive_blocks(512, 2));
        }
        got
    }
}
