//! Minimal FTP and TFTP servers (std threads, one directory) for the load generator's
//! self-test and `tests/bench_smoke.rs`: just enough protocol (passive, active, RETR, STOR,
//! SIZE; FTPS with AUTH TLS or implicit TLS, PBSZ, PROT P and data connections that must
//! resume a known TLS session; TFTP blksize/windowsize/tsize with wrap-around) to check the
//! client end to end.
#![allow(dead_code)]

use rustls::{ServerConfig, ServerConnection, StreamOwned};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A running mini server; stops (and joins its accept loop) when dropped.
pub struct Mini {
    pub addr: SocketAddr,
    /// FTPS: data connections whose TLS resumed a session (the others were refused).
    pub resumed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The mini server's certificate: self-signed, for 127.0.0.1 and localhost, valid until 2126.
/// A test key, published on purpose; nothing trusts it.
const CERT: &str = include_str!("selftest-cert.pem");
const KEY: &str = include_str!("selftest-key.pem");

/// How the mini FTP server offers TLS.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    Off,
    /// AUTH TLS on the control connection.
    Explicit,
    /// The handshake first.
    Implicit,
}

fn server_config() -> std::io::Result<Arc<ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(CERT.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(std::io::Error::other)?;
    let key = PrivateKeyDer::from_pem_slice(KEY.as_bytes()).map_err(std::io::Error::other)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(std::io::Error::other)?;
    Ok(Arc::new(config))
}

impl Drop for Mini {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn confined(root: &Path, name: &str) -> Option<PathBuf> {
    let rel = name.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    Some(root.join(rel))
}

/// Starts an FTP server on 127.0.0.1 serving (and accepting uploads into) `root`.
pub fn ftp(root: PathBuf) -> std::io::Result<Mini> {
    ftps(root, Tls::Off)
}

/// An FTP server like [`ftp`], offering TLS as `tls` says.
pub fn ftps(root: PathBuf, tls: Tls) -> std::io::Result<Mini> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let config = if tls == Tls::Off { None } else { Some(server_config()?) };
    let stop = Arc::new(AtomicBool::new(false));
    let resumed = Arc::new(AtomicUsize::new(0));
    let (flag, count) = (Arc::clone(&stop), Arc::clone(&resumed));
    let thread = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((s, _)) => {
                    let (root, config, count) = (root.clone(), config.clone(), Arc::clone(&count));
                    std::thread::spawn(move || {
                        let _ = ftp_session(s, &root, config.map(|c| (c, tls, count)));
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    Ok(Mini { addr, resumed, stop, thread: Some(thread) })
}

/// A connection that may have TLS over it.
enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Conn {
    fn tls(config: &Arc<ServerConfig>, s: TcpStream) -> std::io::Result<Conn> {
        let conn = ServerConnection::new(Arc::clone(config)).map_err(std::io::Error::other)?;
        Ok(Conn::Tls(Box::new(StreamOwned::new(conn, s))))
    }

    /// Completes the handshake now; true if it resumed an earlier session.
    fn handshake(&mut self) -> std::io::Result<bool> {
        let Conn::Tls(t) = self else { return Ok(false) };
        while t.conn.is_handshaking() {
            t.conn.complete_io(&mut t.sock)?;
        }
        Ok(t.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed))
    }

    /// close_notify (TLS) and the end of the stream.
    fn finish(mut self) -> std::io::Result<()> {
        if let Conn::Tls(t) = &mut self {
            t.conn.send_close_notify();
            t.flush()?;
        }
        Ok(())
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

enum DataPlan {
    None,
    Passive(TcpListener),
    Active(SocketAddr),
}

impl DataPlan {
    fn open(&mut self) -> std::io::Result<TcpStream> {
        match std::mem::replace(self, DataPlan::None) {
            DataPlan::Passive(l) => l.accept().map(|(s, _)| s),
            DataPlan::Active(a) => TcpStream::connect(a),
            DataPlan::None => Err(std::io::Error::other("no PASV/EPSV/PORT")),
        }
    }
}

type TlsSetup = (Arc<ServerConfig>, Tls, Arc<AtomicUsize>);

fn ftp_session(s: TcpStream, root: &Path, tls: Option<TlsSetup>) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut r = match &tls {
        Some((config, Tls::Implicit, _)) => BufReader::new(Conn::tls(config, s)?),
        _ => BufReader::new(Conn::Plain(s)),
    };
    r.get_mut().write_all(b"220 mini ftp\r\n")?;
    let (mut plan, mut protect) = (DataPlan::None, false);
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let l = line.trim_end();
        let (cmd, arg) = l.split_once(' ').unwrap_or((l, ""));
        let w = r.get_mut();
        // A data connection, with TLS after PROT P; it must resume a session, as vsftpd's
        // require_ssl_reuse and Ferry's require_session_reuse want.
        let open_data = |plan: &mut DataPlan, w: &mut Conn| -> std::io::Result<Option<Conn>> {
            let d = plan.open()?;
            let Some((config, _, resumed)) = tls.as_ref().filter(|_| protect) else {
                return Ok(Some(Conn::Plain(d)));
            };
            let mut d = Conn::tls(config, d)?;
            if d.handshake()? {
                resumed.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(d));
            }
            d.finish()?;
            w.write_all(b"522 data connection must resume the control connection's TLS session\r\n")?;
            Ok(None)
        };
        let reply: String = match cmd.to_ascii_uppercase().as_str() {
            "AUTH" if tls.as_ref().is_some_and(|t| t.1 == Tls::Explicit) && matches!(w, Conn::Plain(_)) => {
                w.write_all(b"234 go ahead\r\n")?;
                let Conn::Plain(s) = r.into_inner() else { unreachable!("matched above") };
                let config = &tls.as_ref().expect("checked above").0;
                r = BufReader::new(Conn::tls(config, s)?);
                continue;
            }
            "PBSZ" if matches!(w, Conn::Tls(_)) => "200 PBSZ=0".into(),
            "PROT" if matches!(w, Conn::Tls(_)) => {
                protect = arg.eq_ignore_ascii_case("P");
                "200 protection set".into()
            }
            "USER" => "331 password please".into(),
            "PASS" => "230 logged in".into(),
            "TYPE" | "NOOP" => "200 ok".into(),
            "EPSV" | "PASV" => {
                let l = TcpListener::bind("127.0.0.1:0")?;
                let p = l.local_addr()?.port();
                plan = DataPlan::Passive(l);
                if cmd.eq_ignore_ascii_case("EPSV") {
                    format!("229 Entering Extended Passive Mode (|||{p}|)")
                } else {
                    format!("227 Entering Passive Mode (127,0,0,1,{},{})", p >> 8, p & 0xff)
                }
            }
            "PORT" => {
                let n: Vec<u16> = arg.split(',').filter_map(|x| x.trim().parse().ok()).collect();
                if n.len() == 6 {
                    let ip = std::net::Ipv4Addr::new(n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8);
                    plan = DataPlan::Active(SocketAddr::new(ip.into(), n[4] << 8 | n[5]));
                    "200 PORT ok".into()
                } else {
                    "501 bad PORT".into()
                }
            }
            "SIZE" => match confined(root, arg).and_then(|p| std::fs::metadata(p).ok()) {
                Some(m) => format!("213 {}", m.len()),
                None => "550 no such file".into(),
            },
            "RETR" => match confined(root, arg).and_then(|p| std::fs::File::open(p).ok()) {
                Some(mut f) => {
                    w.write_all(b"150 sending\r\n")?;
                    let Some(mut d) = open_data(&mut plan, w)? else { continue };
                    std::io::copy(&mut f, &mut d)?;
                    d.finish()?;
                    "226 done".into()
                }
                None => "550 no such file".into(),
            },
            "STOR" => match confined(root, arg).and_then(|p| std::fs::File::create(p).ok()) {
                Some(mut f) => {
                    w.write_all(b"150 receiving\r\n")?;
                    let Some(mut d) = open_data(&mut plan, w)? else { continue };
                    // Over TLS this ends with the client's close_notify; a cut is an error.
                    std::io::copy(&mut d, &mut f)?;
                    "226 stored".into()
                }
                None => "553 cannot create".into(),
            },
            "QUIT" => {
                w.write_all(b"221 bye\r\n")?;
                return r.into_inner().finish();
            }
            _ => "502 not implemented".into(),
        };
        w.write_all(format!("{reply}\r\n").as_bytes())?;
    }
}

/// Starts a TFTP server on 127.0.0.1 serving `root` read-only.
pub fn tftp(root: PathBuf) -> std::io::Result<Mini> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let addr = sock.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !flag.load(Ordering::Relaxed) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                let req = buf[..n].to_vec();
                let root = root.clone();
                std::thread::spawn(move || {
                    let _ = tftp_transfer(&req, from, &root);
                });
            }
        }
    });
    Ok(Mini { addr, resumed: Arc::default(), stop, thread: Some(thread) })
}

fn tftp_error(s: &UdpSocket, to: SocketAddr, code: u16, msg: &str) -> std::io::Result<()> {
    let mut p = vec![0, 5];
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(msg.as_bytes());
    p.push(0);
    s.send_to(&p, to).map(|_| ())
}

/// Waits for an ACK from `peer`; `None` on timeout.
fn wait_ack(s: &UdpSocket, peer: SocketAddr) -> std::io::Result<Option<u16>> {
    let mut buf = [0u8; 516];
    loop {
        match s.recv_from(&mut buf) {
            Ok((n, from)) if from == peer && n >= 4 && buf[1] == 4 => {
                return Ok(Some(u16::from_be_bytes([buf[2], buf[3]])))
            }
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
    }
}

fn tftp_transfer(req: &[u8], peer: SocketAddr, root: &Path) -> std::io::Result<()> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let fields: Vec<String> =
        req.get(2..).unwrap_or(&[]).split(|b| *b == 0).map(|f| String::from_utf8_lossy(f).into()).collect();
    if req.get(..2) != Some(&[0, 1]) || fields.len() < 2 {
        return tftp_error(&s, peer, 4, "only RRQ");
    }
    let Some(data) = confined(root, &fields[0]).and_then(|p| std::fs::read(p).ok()) else {
        return tftp_error(&s, peer, 1, "file not found");
    };
    let (mut blksize, mut window) = (512usize, 1u64);
    let mut oack: Vec<u8> = vec![0, 6];
    for kv in fields[2..].chunks(2) {
        let [k, v] = kv else { break };
        let value = match k.to_ascii_lowercase().as_str() {
            "blksize" => v.parse::<usize>().ok().map(|b| {
                blksize = b.clamp(8, 65464);
                blksize
            }),
            "windowsize" => v.parse::<u64>().ok().map(|w| {
                window = w.clamp(1, 64);
                window as usize
            }),
            "tsize" => Some(data.len()),
            _ => None,
        };
        if let Some(value) = value {
            oack.extend_from_slice(format!("{k}\0{value}\0").as_bytes());
        }
    }
    if oack.len() > 2 {
        let mut tries = 0;
        loop {
            s.send_to(&oack, peer)?;
            match wait_ack(&s, peer)? {
                Some(0) => break,
                _ if tries > 10 => return Ok(()),
                _ => tries += 1,
            }
        }
    }
    let last = (data.len() / blksize) as u64 + 1; // always ends with a short (maybe empty) block
    let mut base = 1u64;
    let mut tries = 0;
    while base <= last {
        let end = (base + window - 1).min(last);
        for i in base..=end {
            let from = ((i - 1) as usize * blksize).min(data.len());
            let to = (from + blksize).min(data.len());
            let mut p = vec![0, 3];
            p.extend_from_slice(&(i as u16).to_be_bytes());
            p.extend_from_slice(&data[from..to]);
            s.send_to(&p, peer)?;
        }
        match wait_ack(&s, peer)? {
            Some(b) => {
                // The ACKed block is within [base-1, end]; find it modulo 2^16 (wrap to 0).
                if let Some(i) = (base - 1..=end).rev().find(|i| *i as u16 == b) {
                    base = i + 1;
                    tries = 0;
                }
            }
            None if tries > 10 => return Ok(()),
            None => tries += 1,
        }
    }
    Ok(())
}
