//! FTPS (RFC 4217) end to end with real clients: curl (explicit `--ssl-reqd`, implicit
//! `ftps://`, upload, `-C -` resume, `--cacert`), lftp (`ftp:ssl-force`, protected data,
//! `mirror`, `pget -n 4`), Python `ftplib.FTP_TLS` (`prot_p`, with session reuse required off;
//! refused cleanly with it on), `openssl s_client -starttls ftp` (TLS 1.2 and 1.3), bad input
//! (garbage instead of a ClientHello, plaintext after AUTH, a handshake that never finishes,
//! a PROT P upload cut without close_notify, record floods and stalled handshakes with the
//! server's memory measured), client certificates (`client_ca`) with curl `--cert`, and
//! certificate rotation on SIGHUP. Certificates are made at test time with rcgen; what curl
//! cannot do (cut an upload, flood) a small rustls client in the test does.

mod common;

use common::ftp::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A self-signed certificate for 127.0.0.1 and localhost, as PEM files readable by the
/// service user (the server re-reads them after the privilege drop on SIGHUP).
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new(cn: &str) -> Pki {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let pki = Pki { dir };
        pki.write(cn);
        pki
    }

    /// (Re)writes the pair with `cn` as the subject's common name.
    fn write(&self, cn: &str) {
        use std::os::unix::fs::PermissionsExt;
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        for (name, text) in [("cert.pem", cert.pem()), ("key.pem", key.serialize_pem())] {
            let path = self.dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn toml(&self, extra: &str) -> String {
        format!(
            "[ftp.tls]\nenabled = true\ncertificate = \"{}\"\nprivate_key = \"{}\"\n{extra}",
            self.cert().display(),
            self.dir.path().join("key.pem").display()
        )
    }
}

fn tls_server(pki: &Pki, extra: &str) -> FtpServer {
    FtpServer::start(Opts { toml: &pki.toml(extra), ..Opts::default() })
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn curl_explicit_and_implicit_tls_with_upload_resume_and_listing() {
    let pki = Pki::new("ferry-test");
    let implicit = common::free_port();
    let srv = tls_server(&pki, &format!("implicit = true\nimplicit_listen = [\"127.0.0.1:{implicit}\"]\n"));
    let data = random_bytes(3 << 20);
    put(&srv.root().join("big.bin"), &data);
    let tmp = scratch();
    let cacert = pki.cert();
    let base = srv.user_url();
    let cafile = s(&cacert);
    // --ssl-reqd: AUTH TLS, PBSZ 0, PROT P; the certificate checked against --cacert.
    let got = tmp.path().join("got.bin");
    ok(&curl(&["--ssl-reqd", "--cacert", cafile, &format!("{base}/big.bin"), "-o", s(&got)]), "RETR");
    assert_eq!(read(&got), data);
    // Resume: the first MiB is there, REST fetches the rest.
    std::fs::write(&got, &data[..1 << 20]).unwrap();
    ok(
        &curl(&["--ssl-reqd", "--cacert", cafile, "-C", "-", &format!("{base}/big.bin"), "-o", s(&got)]),
        "RETR -C -",
    );
    assert_eq!(read(&got), data, "resumed download");
    // Upload, then resume an upload cut short.
    let src = tmp.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    ok(&curl(&["--ssl-reqd", "-k", "-T", s(&src), &format!("{base}/upload/up.bin")]), "STOR");
    assert_eq!(read(srv.root().join("upload/up.bin")), data);
    let part = srv.root().join("upload/part.bin");
    std::fs::write(&part, &data[..12345]).unwrap();
    // Written here as root: the service user must be able to append to it.
    std::os::unix::fs::chown(&part, Some(65534), Some(65534)).unwrap_or(());
    std::fs::set_permissions(&part, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let resumed = curl(&["--ssl-reqd", "-k", "-C", "-", "-T", s(&src), &format!("{base}/upload/part.bin")]);
    assert!(resumed.status.success(), "{}\n{}", text(&resumed), srv.log());
    assert_eq!(read(srv.root().join("upload/part.bin")), data, "resumed upload");
    let list = curl(&["--ssl-reqd", "-k", &format!("{base}/")]);
    ok(&list, "LIST");
    assert!(String::from_utf8_lossy(&list.stdout).contains("big.bin"));
    // Implicit TLS: the handshake first, no AUTH.
    let imp = curl(&["-k", &format!("ftps://{USER}:{PASS}@127.0.0.1:{implicit}/big.bin"), "-o", s(&got)]);
    ok(&imp, "implicit ftps://");
    assert_eq!(read(&got), data);
    let log = srv.log();
    assert!(log.contains("tls=\"user-space\"") && log.contains("resumed=true"), "{log}");
    assert!(!log.contains("resumed=false"), "curl resumes the control session every time:\n{log}");
}

#[test]
fn lftp_forced_tls_mirror_and_segmented_get() {
    let pki = Pki::new("ferry-test");
    let srv = tls_server(&pki, "");
    let data = random_bytes(4 << 20);
    put(&srv.root().join("tree/a.bin"), &data);
    put(&srv.root().join("tree/sub/b.txt"), b"line one\nline two\n");
    let tmp = scratch();
    let settings = format!(
        "set ssl:ca-file {}; set ftp:ssl-force true; set ftp:ssl-protect-data true; set ftp:ssl-protect-list true;",
        s(&pki.cert())
    );
    let mirror = lftp(&srv.user_url(), &format!("{settings} mirror tree {}/tree", s(tmp.path())));
    ok(&mirror, "lftp mirror");
    assert_eq!(read(tmp.path().join("tree/a.bin")), data);
    assert_eq!(read(tmp.path().join("tree/sub/b.txt")), b"line one\nline two\n");
    // pget -n 4: four connections, each its own control session with resumed data.
    // lftp (GnuTLS) may open a data connection before it has read its control connection's
    // TLS 1.3 tickets, so this runs over TLS 1.2.
    let out = tmp.path().join("pget.bin");
    let pget = lftp(
        &srv.user_url(),
        &format!("{settings} set ssl:priority NORMAL:-VERS-TLS1.3; pget -n 4 tree/a.bin -o {}", s(&out)),
    );
    ok(&pget, "lftp pget -n 4");
    assert_eq!(read(&out), data);
    let log = srv.log();
    assert!(log.contains("version=\"TLSv1.2\"") && log.contains("resumed=true"), "{log}");
}

const PYTHON: &str = r#"
import ftplib, io, ssl, sys
host, port, user, pw, cafile = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=cafile)
f = ftplib.FTP_TLS(context=ctx, timeout=20)
f.connect(host, int(port)); f.login(user, pw); f.prot_p()
try:
    b = io.BytesIO(); f.retrbinary("RETR data.bin", b.write)
    f.storbinary("STOR upload/py.bin", io.BytesIO(b.getvalue()))
    print("names", len(f.nlst()))
    print("RETR", len(b.getvalue()))
except ftplib.error_perm as e:
    print("REFUSED", e)
print(f.voidcmd("NOOP"))
f.quit()
"#;

#[test]
fn python_ftplib_prot_p_without_session_reuse_and_refused_with_it() {
    let pki = Pki::new("localhost");
    let data = random_bytes(1 << 20);
    let run = |srv: &FtpServer| {
        put(&srv.root().join("data.bin"), &data);
        let port = srv.server.ftp_port.to_string();
        let out = python(PYTHON, &["127.0.0.1", &port, USER, PASS, s(&pki.cert())]);
        ok(&out, "ftplib");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // ftplib never resumes the control session on data connections (cpython #63699).
    let srv = tls_server(&pki, "require_session_reuse = false\n");
    let said = run(&srv);
    assert!(said.contains(&format!("RETR {}", data.len())) && said.contains("200 NOOP"), "{said}");
    assert_eq!(read(srv.root().join("upload/py.bin")), data);
    // With reuse required the data connection is refused with 522 and control goes on.
    let srv = tls_server(&pki, "");
    let said = run(&srv);
    assert!(said.contains("REFUSED 522") && said.contains("200 NOOP"), "{said}");
    assert!(srv.log().contains("did not resume"));
}

#[test]
fn openssl_s_client_negotiates_tls12_and_tls13() {
    let pki = Pki::new("ferry-test");
    let srv = tls_server(&pki, "");
    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let mut cmd = Command::new("openssl");
        let addr = format!("127.0.0.1:{}", srv.server.ftp_port);
        // -ign_eof: keep reading after our input ends, until the server closes after QUIT.
        cmd.args([
            "s_client",
            "-ign_eof",
            "-starttls",
            "ftp",
            "-connect",
            &addr,
            flag,
            "-CAfile",
            s(&pki.cert()),
        ]);
        let out = run(cmd, b"FEAT\r\nQUIT\r\n", Duration::from_secs(30));
        let said = text(&out);
        assert!(
            said.contains(&format!("Protocol  : {version}")) || said.contains(&format!("New, {version}")),
            "{said}"
        );
        assert!(said.contains("Verify return code: 0 (ok)"), "{said}");
        assert!(said.contains(" PROT") && said.contains("221"), "FEAT and QUIT over TLS:\n{said}");
    }
}

/// A control connection that sent AUTH TLS and read the 234.
fn after_auth(srv: &FtpServer) -> TcpStream {
    let mut c = TcpStream::connect(("127.0.0.1", srv.server.ftp_port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut buf = [0u8; 512];
    let n = c.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"220"));
    c.write_all(b"AUTH TLS\r\n").unwrap();
    let n = c.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"234"), "{:?}", String::from_utf8_lossy(&buf[..n]));
    c
}

/// Reads until the server closes; what arrived (an alert at most).
fn until_closed(c: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    got
}

#[test]
fn bad_input_after_auth_closes_the_connection_and_the_server_goes_on() {
    let pki = Pki::new("ferry-test");
    let srv = tls_server(&pki, "");
    // Plaintext commands instead of a ClientHello.
    let mut c = after_auth(&srv);
    c.write_all(b"USER anonymous\r\nPASS x\r\n").unwrap();
    let got = until_closed(&mut c);
    assert!(got.is_empty() || got[0] == 0x15, "an alert or nothing, never a reply: {got:?}");
    // Random garbage.
    let mut c = after_auth(&srv);
    c.write_all(&random_bytes(64 << 10)).unwrap_or(());
    let got = until_closed(&mut c);
    assert!(got.is_empty() || got[0] == 0x15, "{got:?}");
    // A TLS record header announcing more than any record may hold.
    let mut c = after_auth(&srv);
    c.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff]).unwrap();
    c.write_all(&[0u8; 4096]).unwrap_or(());
    until_closed(&mut c);
    assert!(srv.log().contains("control connection TLS failed"));
    // Still serving.
    let list = curl(&["--ssl-reqd", "-k", &format!("{}/", srv.user_url())]);
    ok(&list, "LIST after bad clients");
}

#[test]
fn a_handshake_that_never_finishes_ends_with_the_idle_timeout() {
    let pki = Pki::new("ferry-test");
    let srv = FtpServer::start(Opts {
        toml: &pki.toml(""),
        env: &[("FERRY_FTP__LIMITS__IDLE_TIMEOUT_SECS", "2")],
        ..Opts::default()
    });
    let mut c = after_auth(&srv);
    // Half a ClientHello record header, then silence.
    c.write_all(&[0x16, 0x03]).unwrap();
    let start = Instant::now();
    until_closed(&mut c);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(12), "{took:?}");
}

#[test]
fn sighup_rotates_the_certificate_for_new_sessions() {
    let pki = Pki::new("first-cert");
    let srv = tls_server(&pki, "");
    let subject = || {
        let mut cmd = Command::new("openssl");
        let addr = format!("127.0.0.1:{}", srv.server.ftp_port);
        cmd.args(["s_client", "-ign_eof", "-starttls", "ftp", "-connect", &addr]);
        text(&run(cmd, b"QUIT\r\n", Duration::from_secs(30)))
    };
    assert!(subject().contains("first-cert"));
    pki.write("second-cert");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(srv.server.pid()), nix::sys::signal::Signal::SIGHUP)
        .unwrap();
    srv.wait_log("TLS certificate reloaded");
    let now = subject();
    assert!(now.contains("second-cert") && !now.contains("first-cert"), "{now}");
}

/// A TLS connection of the test's own rustls client.
type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A control connection protected by the test's rustls client, trusting `pki`'s certificate;
/// its data connections resume its TLS session (the same configuration and session store).
struct TlsCtl {
    ctl: BufReader<Tls>,
    config: Arc<ClientConfig>,
}

/// One reply line at a time, until the last line of a reply (`NNN ` rather than `NNN-`).
fn reply_from(r: &mut impl BufRead) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return all;
        }
        all.push_str(&line);
        if line.len() >= 4 && line.as_bytes()[3] == b' ' {
            return all;
        }
    }
}

impl TlsCtl {
    /// Connects, `AUTH TLS`, logs in as the test user, `PBSZ 0`, `PROT P`, `TYPE I`.
    fn login(srv: &FtpServer, pki: &Pki) -> TlsCtl {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(pki.cert()).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = ClientConfig::builder_with_provider(ferry::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let config = Arc::new(config);
        let mut tcp = TcpStream::connect(("127.0.0.1", srv.server.ftp_port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        // Byte by byte in clear: nothing may be read past the 234.
        let mut clear = BufReader::with_capacity(1, tcp.try_clone().unwrap());
        assert!(reply_from(&mut clear).starts_with("220"));
        tcp.write_all(b"AUTH TLS\r\n").unwrap();
        assert!(reply_from(&mut clear).starts_with("234"));
        let mut c = TlsCtl { ctl: BufReader::new(Self::tls(&config, tcp)), config };
        for (cmd, want) in
            [(format!("USER {USER}"), "331"), (format!("PASS {PASS}"), "230"), ("PBSZ 0".into(), "200")]
        {
            let said = c.cmd(&cmd);
            assert!(said.starts_with(want), "{cmd}: {said}");
        }
        for cmd in ["PROT P", "TYPE I"] {
            assert!(c.cmd(cmd).starts_with("200"), "{cmd}");
        }
        c
    }

    fn tls(config: &Arc<ClientConfig>, tcp: TcpStream) -> Tls {
        let name = ServerName::try_from("localhost").unwrap();
        StreamOwned::new(ClientConnection::new(Arc::clone(config), name).unwrap(), tcp)
    }

    fn send(&mut self, line: &str) {
        let w = self.ctl.get_mut();
        w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        w.flush().unwrap();
    }

    fn reply(&mut self) -> String {
        reply_from(&mut self.ctl)
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(line);
        self.reply()
    }

    /// `EPSV`, connect, send `line` (RETR, STOR), read the 150, then the data handshake.
    fn data(&mut self, line: &str) -> Tls {
        let said = self.cmd("EPSV");
        let port: u16 =
            said.split('|').nth(3).and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{said}"));
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let said = self.cmd(line);
        assert!(said.starts_with("150"), "{line}: {said}");
        let mut data = Self::tls(&self.config, tcp);
        while data.conn.is_handshaking() {
            data.conn.complete_io(&mut data.sock).unwrap();
        }
        assert_eq!(
            data.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed),
            "data resumes the control session"
        );
        data
    }
}

/// STOR over PROT P of 2 MiB, cut by a FIN without close_notify: the final reply and the
/// bytes the client had sent.
fn upload_cut_without_close_notify(srv: &FtpServer, pki: &Pki) -> (String, Vec<u8>) {
    let mut c = TlsCtl::login(srv, pki);
    let mut data = c.data("STOR upload/cut.bin");
    let sent = random_bytes(2 << 20);
    data.write_all(&sent).unwrap();
    data.flush().unwrap();
    data.sock.shutdown(std::net::Shutdown::Write).unwrap();
    let reply = c.reply();
    drop(data);
    // The control connection goes on.
    assert!(c.cmd("NOOP").starts_with("200"));
    (reply, sent)
}

#[test]
fn a_prot_p_upload_cut_without_close_notify_fails_and_follows_the_partial_upload_rules() {
    let pki = Pki::new("localhost");
    let names = |srv: &FtpServer| -> Vec<String> {
        std::fs::read_dir(srv.root().join("upload"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let failed = |reply: &str| reply.starts_with("426") || reply.starts_with("451");
    let toml = pki.toml("");
    let start = |key, value| FtpServer::start(Opts { toml: &toml, env: &[(key, value)], ..Opts::default() });
    // Atomic: neither the final name nor the temporary file is left.
    let srv = start("FERRY_FTP__UPLOADS__ATOMIC", "true");
    let (reply, _) = upload_cut_without_close_notify(&srv, &pki);
    assert!(failed(&reply), "{reply}");
    assert!(names(&srv).is_empty(), "atomic upload left {:?}", names(&srv));
    drop(srv);
    // keep_partial (the default): what was decrypted stays, a prefix of what was sent.
    let srv = tls_server(&pki, "");
    let (reply, sent) = upload_cut_without_close_notify(&srv, &pki);
    assert!(failed(&reply), "{reply}");
    let kept = read(srv.root().join("upload/cut.bin"));
    assert!(sent.starts_with(&kept), "kept {} bytes, not a prefix of what was sent", kept.len());
    assert!(srv.log().contains("result=\"Failed(Aborted)\""), "{}", srv.log());
    drop(srv);
    // Neither: nothing is left.
    let srv = start("FERRY_FTP__UPLOADS__KEEP_PARTIAL", "false");
    let (reply, _) = upload_cut_without_close_notify(&srv, &pki);
    assert!(failed(&reply), "{reply}");
    assert!(names(&srv).is_empty(), "left {:?}", names(&srv));
    // The same upload ended with close_notify is complete.
    let mut c = TlsCtl::login(&srv, &pki);
    let mut data = c.data("STOR upload/whole.bin");
    let sent = random_bytes(1 << 20);
    data.write_all(&sent).unwrap();
    data.conn.send_close_notify();
    data.flush().unwrap();
    data.sock.shutdown(std::net::Shutdown::Write).unwrap();
    let reply = c.reply();
    assert!(reply.starts_with("226"), "{reply}");
    assert_eq!(read(srv.root().join("upload/whole.bin")), sent);
}

/// A CA for client certificates, a certificate it issued and one it did not, as PEM files
/// in `dir`: `ca.pem`, `client.pem` + `client.key`, `stranger.pem` + `stranger.key`.
fn client_pki(dir: &std::path::Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "ferry test client CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca, &ca_key);
    let leaf = |cn: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        (p, KeyPair::generate().unwrap())
    };
    let (client, client_key) = leaf("ferry test client");
    let client_cert = client.signed_by(&client_key, &issuer).unwrap();
    let (stranger, stranger_key) = leaf("someone else");
    let stranger_cert = stranger.self_signed(&stranger_key).unwrap();
    for (name, text) in [
        ("ca.pem", ca_cert.pem()),
        ("client.pem", client_cert.pem()),
        ("client.key", client_key.serialize_pem()),
        ("stranger.pem", stranger_cert.pem()),
        ("stranger.key", stranger_key.serialize_pem()),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

#[test]
fn client_certificates_issued_by_client_ca_are_required_with_curl() {
    let pki = Pki::new("ferry-test");
    let certs = scratch();
    client_pki(certs.path());
    let file = |name: &str| s(&certs.path().join(name)).to_string();
    let srv = tls_server(&pki, &format!("client_ca = \"{}\"\n", file("ca.pem")));
    let data = random_bytes(1 << 20);
    put(&srv.root().join("data.bin"), &data);
    let tmp = scratch();
    let got = tmp.path().join("got.bin");
    let url = format!("{}/data.bin", srv.user_url());
    let cacert = s(&pki.cert()).to_string();
    let get = |extra: &[&str]| {
        let _ = std::fs::remove_file(&got);
        let mut args = vec!["--ssl-reqd", "--cacert", &cacert, &url, "-o", s(&got)];
        args.extend_from_slice(extra);
        curl(&args)
    };
    // A certificate the CA issued: control and data connections are accepted.
    let (cert, key) = (file("client.pem"), file("client.key"));
    ok(&get(&["--cert", &cert, "--key", &key]), "RETR with a client certificate");
    assert_eq!(read(&got), data);
    let src = tmp.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    let up = curl(&[
        "--ssl-reqd",
        "--cacert",
        &cacert,
        "--cert",
        &cert,
        "--key",
        &key,
        "-T",
        s(&src),
        &format!("{}/upload/up.bin", srv.user_url()),
    ]);
    assert!(up.status.success(), "STOR with a client certificate: {}\n{}", text(&up), srv.log());
    assert_eq!(read(srv.root().join("upload/up.bin")), data);
    // None, or one from elsewhere: refused in the handshake, before any login.
    let none = get(&[]);
    assert!(!none.status.success(), "without a client certificate: {}", text(&none));
    let (cert, key) = (file("stranger.pem"), file("stranger.key"));
    let wrong = get(&["--cert", &cert, "--key", &key]);
    assert!(!wrong.status.success(), "with a certificate the CA did not issue: {}", text(&wrong));
    assert!(!got.exists() || read(&got).is_empty());
    assert!(srv.log().contains("control connection TLS failed"), "{}", srv.log());
    // And the server goes on serving the right client.
    let (cert, key) = (file("client.pem"), file("client.key"));
    ok(&get(&["--cert", &cert, "--key", &key]), "RETR after refused clients");
}

/// The server's resident memory, KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn record_floods_and_stalled_handshakes_keep_the_server_memory_bounded() {
    const STALLED: usize = 200;
    let pki = Pki::new("localhost");
    let srv = FtpServer::start(Opts {
        toml: &pki.toml(""),
        env: &[
            ("FERRY_FTP__LIMITS__IDLE_TIMEOUT_SECS", "6"),
            ("FERRY_FTP__LIMITS__MAX_SESSIONS_PER_IP", "400"),
        ],
        ..Opts::default()
    });
    let pid = srv.server.pid();
    // One whole session first, so allocations every session makes are counted in the base.
    let mut warm = TlsCtl::login(&srv, &pki);
    assert!(warm.cmd("NOOP").starts_with("200"));
    drop(warm);
    let base = rss_kib(pid);

    // Handshakes that never finish, each holding about what rustls buffers at most for one
    // (64 KiB of a handshake message): a ClientHello announcing 64 KiB, of which 60 KiB
    // arrive in four records, then silence.
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let mut c = after_auth(&srv);
        let mut hello = vec![0x01, 0x00, 0xff, 0xff];
        hello.resize(60 << 10, 0x41);
        for record in hello.chunks(16384) {
            let len = (record.len() as u16).to_be_bytes();
            c.write_all(&[0x16, 0x03, 0x01, len[0], len[1]]).unwrap();
            c.write_all(record).unwrap();
        }
        stalled.push(c);
    }
    std::thread::sleep(Duration::from_millis(500));
    let grown = rss_kib(pid).saturating_sub(base);
    // rustls joins at most 64 KiB of one handshake message (plus a record being read).
    assert!(grown < STALLED as u64 * 100, "{STALLED} stalled handshakes grew RSS by {grown} KiB");
    // The server still serves meanwhile.
    let mut c = TlsCtl::login(&srv, &pki);
    assert!(c.cmd("NOOP").starts_with("200"));
    drop(c);

    // A flood of records on a logged-in session: 64 MiB of a command line that never ends,
    // then pipelined NOOPs written without reading a reply. The line is refused (500) and
    // cut, the replies wait in the socket, and the server reads only as fast as it answers.
    let mut flood = TlsCtl::login(&srv, &pki);
    let sock = flood.ctl.get_ref().sock.try_clone().unwrap();
    sock.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    let writer = std::thread::spawn(move || {
        let mut sent = 0usize;
        let chunk = vec![b'A'; 64 << 10];
        let noops = "NOOP\r\n".repeat(10_000);
        let mut peak = 0u64;
        let w = flood.ctl.get_mut();
        for i in 0..1024 {
            let bytes = if i < 1000 { &chunk[..] } else { noops.as_bytes() };
            if w.write_all(bytes).and_then(|()| w.flush()).is_err() {
                break;
            }
            sent += bytes.len();
            if i % 64 == 0 {
                peak = peak.max(rss_kib(pid));
            }
        }
        (sent, peak, flood)
    });
    let (sent, peak, mut flood) = writer.join().unwrap();
    let flood_grown = peak.max(rss_kib(pid)).saturating_sub(base);
    assert!(sent > 1 << 20, "the flood hardly started: {sent} bytes");
    assert!(
        flood_grown < STALLED as u64 * 100 + 16 * 1024,
        "a {sent}-byte record flood grew RSS by {flood_grown} KiB"
    );
    // What came back: 500 for the endless line (the first reply), then NOOP's 200s.
    let first = flood.reply();
    assert!(first.starts_with("500"), "{first}");
    drop(flood);

    // The stalled handshakes end with the idle timeout, and their memory is given back.
    for mut c in stalled {
        let _ = c.set_read_timeout(Some(Duration::from_secs(20)));
        until_closed(&mut c);
    }
    let mut c = TlsCtl::login(&srv, &pki);
    assert!(c.cmd("NOOP").starts_with("200"));
}

#[test]
fn kernel_tls_is_probed_once_with_its_reason_and_require_without_it_stops_the_start() {
    let pki = Pki::new("ferry-test");
    let srv = tls_server(&pki, "");
    let log = srv.log();
    let probe: Vec<&str> = log.lines().filter(|l| l.contains("FTPS data:")).collect();
    assert_eq!(probe.len(), 1, "one start-up line says which path PROT P data takes:\n{log}");
    let kernel = probe[0].contains("path=\"kernel\"");
    assert!(kernel || probe[0].contains("path=\"user-space\"") && probe[0].contains("reason="), "{log}");
    drop(srv);
    if kernel {
        // This kernel has TLS: `require` starts and takes the kernel path.
        let srv = tls_server(&pki, "ktls = \"require\"\n");
        assert!(srv.log().contains("path=\"kernel\""), "{}", srv.log());
        return;
    }
    let config = tempfile::tempdir().unwrap();
    let path = config.path().join("ferry.toml");
    std::fs::write(&path, pki.toml("ktls = \"require\"\n")).unwrap();
    let served = common::served_dir();
    let mut child = Command::new(common::ferry_bin())
        .arg("--config")
        .arg(&path)
        .arg("--root")
        .arg(served.path())
        .args([
            "--ftp-port",
            &common::free_port().to_string(),
            "--tftp-port",
            &common::free_port().to_string(),
        ])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("ktls = \"require\" started without kernel TLS");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ftp.tls.ktls") && stderr.contains("require"),
        "the error names the key:\n{stderr}"
    );
}
