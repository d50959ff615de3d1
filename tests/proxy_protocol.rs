//! The PROXY protocol on the FTP control and passive data listeners: raw headers (v1, v2,
//! missing, malformed, from untrusted addresses) against the real server, and a real HAProxy
//! with send-proxy and send-proxy-v2 in front of it for curl.

mod common;

use common::ftp::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// The raw tests' balancer is 127.0.0.2 and HAProxy connects from 127.0.0.4: not 127.0.0.1,
/// whose plain connections the harness uses to see that the server is up.
const TRUSTED_LOCAL: &str =
    "[ftp.proxy_protocol]\nenabled = true\ntrusted = [\"127.0.0.2/32\", \"127.0.0.4/32\"]\n";
/// The address the raw tests connect from, as a trusted balancer.
const BALANCER: [u8; 4] = [127, 0, 0, 2];
const TRUSTED_ELSEWHERE: &str = "[ftp.proxy_protocol]\nenabled = true\ntrusted = [\"10.0.0.0/8\"]\n";

fn v1(src: &str, sport: u16) -> Vec<u8> {
    format!("PROXY TCP4 {src} 127.0.0.1 {sport} 21\r\n").into_bytes()
}

/// A version 2 PROXY (not LOCAL) header for TCP over IPv4 from `src`.
fn v2(src: Ipv4Addr, sport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&21u16.to_be_bytes());
    h
}

/// Connects from the balancer's address to `addr` and sends `first` at once; the reader and
/// writer.
fn send_first(addr: SocketAddr, first: &[u8]) -> (BufReader<TcpStream>, TcpStream) {
    send_from(BALANCER.into(), addr, first)
}

fn send_from(from: Ipv4Addr, addr: SocketAddr, first: &[u8]) -> (BufReader<TcpStream>, TcpStream) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    sock.connect(&addr.into()).unwrap();
    let mut w: TcpStream = sock.into();
    w.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    w.write_all(first).unwrap();
    (BufReader::new(w.try_clone().unwrap()), w)
}

fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    let _ = r.read_line(&mut l);
    l
}

/// A control connection whose first bytes are `header`, greeted and logged in.
fn login_with(srv: &FtpServer, header: &[u8]) -> Ctl {
    let (mut r, w) = send_first(srv.server.ftp_addr(), header);
    let greeting = line(&mut r);
    assert!(greeting.starts_with("220 "), "{greeting}");
    let mut c = Ctl { r, w };
    assert!(c.cmd(&format!("USER {USER}")).starts_with("331 "));
    let reply = c.cmd(&format!("PASS {PASS}"));
    assert!(reply.starts_with("230 "), "{reply}");
    c
}

#[test]
fn headers_name_the_client_for_limits_logs_and_data_connections() {
    let env = [("FERRY_FTP__LIMITS__MAX_SESSIONS_PER_IP", "1")];
    let srv = FtpServer::start(Opts { toml: TRUSTED_LOCAL, env: &env, ..Opts::default() });
    let content = random_bytes(200_000);
    put(&srv.root().join("file.bin"), &content);

    // v1, and a command in the same segment: the header is taken off exactly.
    let mut header = v1("192.0.2.10", 40000);
    header.extend_from_slice(format!("USER {USER}\r\n").as_bytes());
    let (mut r, w) = send_first(srv.server.ftp_addr(), &header);
    assert!(line(&mut r).starts_with("220 "));
    assert!(line(&mut r).starts_with("331 "));
    let mut a = Ctl { r, w };
    assert!(a.cmd(&format!("PASS {PASS}")).starts_with("230 "));
    assert!(a.cmd("TYPE I").starts_with("200 "));
    srv.wait_log("client=192.0.2.10:40000");

    // v2 from another client: admitted though the TCP peer (127.0.0.1) already has one.
    let mut b = login_with(&srv, &v2(Ipv4Addr::new(198, 51, 100, 7), 41000));
    assert!(b.cmd("TYPE I").starts_with("200 "));
    srv.wait_log("client=198.51.100.7:41000");

    // The same client again: over max_sessions_per_ip = 1.
    let (mut r, _w) = send_first(srv.server.ftp_addr(), &v1("192.0.2.10", 40001));
    let refused = line(&mut r);
    assert!(refused.starts_with("421 "), "{refused}");

    // Passive data connections carry a header too; require_same_peer compares its source.
    let port = a.epsv_port().unwrap();
    let data_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (_r, _foreign) = send_first(data_addr, &v1("198.51.100.7", 41001));
    let (mut data, _w) = send_first(data_addr, &v2(Ipv4Addr::new(192, 0, 2, 10), 40002));
    assert!(a.cmd("RETR file.bin").starts_with("150 "));
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert!(got == content, "download differs ({} bytes)", got.len());
    assert!(a.reply().starts_with("226 "));
    let log = srv.wait_log("passive data connection from a foreign address refused");
    assert!(log.contains("from=198.51.100.7:41001"), "{log}");

    // An upload's first bytes in the header's segment stay for the data path.
    let port = b.epsv_port().unwrap();
    let mut first = v1("198.51.100.7", 41002);
    first.extend_from_slice(&content[..1000]);
    let (_r, mut up) = send_first(SocketAddr::from(([127, 0, 0, 1], port)), &first);
    assert!(b.cmd("STOR upload/up.bin").starts_with("150 "));
    up.write_all(&content[1000..]).unwrap();
    // The reader holds a clone of the socket: shutting it down is what ends the upload.
    up.shutdown(std::net::Shutdown::Write).unwrap();
    let done = b.reply();
    assert!(done.starts_with("226 "), "{done}");
    assert!(read(srv.root().join("upload/up.bin")) == content, "upload differs");
}

#[test]
fn a_trusted_peer_without_a_valid_header_is_closed_before_the_greeting() {
    let srv = FtpServer::start(Opts { toml: TRUSTED_LOCAL, ..Opts::default() });
    let cases: [(&str, &[u8]); 3] = [
        ("missing", b"USER anonymous\r\n"),
        ("malformed v1", b"PROXY TCP4 300.1.1.1 127.0.0.1 1 21\r\n"),
        ("malformed v2", b"\r\n\r\n\0\r\nQUIT\n\x29\x11\x00\x0c"),
    ];
    for (what, first) in cases {
        let (mut r, _w) = send_first(srv.server.ftp_addr(), first);
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{what}: {:?}", String::from_utf8_lossy(&rest));
    }
    let log = srv.wait_log("malformed PROXY header");
    assert!(log.contains("no PROXY header from a trusted balancer"), "{log}");
    // Nothing at all: closed when the header timeout passes.
    let (mut r, _w) = send_first(srv.server.ftp_addr(), b"");
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

#[test]
fn an_untrusted_peer_is_served_directly_and_closed_if_it_sends_a_header() {
    let srv = FtpServer::start(Opts { toml: TRUSTED_ELSEWHERE, ..Opts::default() });
    let mut c = Ctl::login(&srv, USER, PASS);
    assert!(c.cmd("PWD").starts_with("257 "));
    srv.wait_log("logged in");
    for header in [v1("192.0.2.10", 40000), v2(Ipv4Addr::new(192, 0, 2, 10), 40000)] {
        let (mut r, _w) = send_from(Ipv4Addr::LOCALHOST, srv.server.ftp_addr(), &header);
        // The greeting may go out before the header is read; nothing follows it.
        let mut rest = String::new();
        let _ = r.read_to_string(&mut rest);
        assert!(rest.is_empty() || rest.starts_with("220 ") && rest.lines().count() == 1, "{rest:?}");
    }
    srv.wait_log("PROXY header from an untrusted address");
    assert!(!srv.log().contains("client=192.0.2.10"), "{}", srv.log());
}

/// A HAProxy in TCP mode on 127.0.0.2 in front of `srv`: the control port and the passive
/// range, each connection sent on with a PROXY header (`send` is `send-proxy` or
/// `send-proxy-v2`); killed on drop.
struct Haproxy {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Haproxy {
    fn start(srv: &FtpServer, send: &str) -> Result<Haproxy, String> {
        let dir = tempfile::tempdir().unwrap();
        let port = common::free_port();
        let (first, last) = srv.passive;
        // A server without a port keeps the port the client connected to: the passive
        // range maps one to one onto Ferry's.
        let cfg = format!(
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             listen control\n  bind 127.0.0.2:{port}\n  server ferry 127.0.0.1:{ferry} {send} source 127.0.0.4\n\
             listen passive\n  bind 127.0.0.2:{first}-{last}\n  server ferry 127.0.0.1 {send} source 127.0.0.4\n",
            ferry = srv.server.ftp_port,
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let child = std::process::Command::new("haproxy")
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("haproxy: {e}"))?;
        let mut hap = Haproxy { child, port, _dir: dir };
        // Up once a connection through it gets Ferry's greeting.
        let addr = SocketAddr::from(([127, 0, 0, 2], port));
        let greeted = common::poll(Duration::from_secs(10), || {
            if let Ok(Some(status)) = hap.child.try_wait() {
                return Ok(Err(format!("haproxy exited: {status}")));
            }
            let mut r = BufReader::new(TcpStream::connect(addr).map_err(|_| ())?);
            let mut l = String::new();
            r.read_line(&mut l).map_err(|_| ())?;
            if l.starts_with("220 ") {
                Ok(Ok(()))
            } else {
                Err(())
            }
        });
        match greeted {
            Ok(Ok(())) => Ok(hap),
            Ok(Err(e)) => Err(e),
            Err(()) => {
                let _ = hap.child.kill();
                Err("haproxy did not forward within 10 s".into())
            }
        }
    }
}

fn haproxy_in_front(send: &str) {
    if std::process::Command::new("haproxy").arg("-v").output().is_err() {
        eprintln!("skipped: haproxy is not installed");
        return;
    }
    let logs = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(logs.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let xferlog = logs.path().join("xferlog");
    let env = [
        ("FERRY_FTP__PASSIVE__ADDRESS", "127.0.0.2"),
        ("FERRY_XFERLOG__ENABLED", "true"),
        ("FERRY_XFERLOG__PATH", xferlog.to_str().unwrap()),
    ];
    let srv = FtpServer::start(Opts { toml: TRUSTED_LOCAL, env: &env, ..Opts::default() });
    let content = random_bytes(3_000_000);
    put(&srv.root().join("file.bin"), &content);
    let hap = match Haproxy::start(&srv, send) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("skipped: {e}");
            return;
        }
    };
    let url = format!("ftp://{USER}:{PASS}@127.0.0.2:{}", hap.port);
    let tmp = scratch();
    // The client on 127.0.0.3, so its address differs from HAProxy's own (127.0.0.1).
    for (name, extra) in [("epsv", None), ("pasv", Some("--disable-epsv"))] {
        let out = tmp.path().join(name);
        let mut args = vec!["--interface", "127.0.0.3", "-o", s(&out)];
        args.extend(extra);
        let file_url = format!("{url}/file.bin");
        args.push(&file_url);
        ok(&curl(&args), &format!("{send} {name} download"));
        assert!(read(&out) == content, "{send} {name}: download differs");
    }
    let up = tmp.path().join("up");
    put(&up, &content[..500_000]);
    let up_url = format!("{url}/upload/up.bin");
    ok(&curl(&["--interface", "127.0.0.3", "-T", s(&up), &up_url]), &format!("{send} upload"));
    assert!(read(srv.root().join("upload/up.bin")) == content[..500_000], "{send}: upload differs");

    let log = srv.wait_log("client=127.0.0.3:");
    assert!(log.contains("via=[::ffff:127.0.0.4]:"), "{log}");
    let lines = common::poll(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(&xferlog).unwrap_or_default();
        if text.lines().count() >= 3 {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .unwrap_or_else(|text| panic!("xferlog: {text}"));
    for l in lines.lines() {
        assert!(l.contains(" 127.0.0.3 "), "{send}: xferlog names the client: {l}");
    }
}

#[test]
fn haproxy_send_proxy_v1_in_front() {
    haproxy_in_front("send-proxy");
}

#[test]
fn haproxy_send_proxy_v2_in_front() {
    haproxy_in_front("send-proxy-v2");
}
