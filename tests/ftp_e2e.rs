//! End-to-end FTP with real clients: curl (EPSV, PASV, active from port 20, uploads,
//! resume, listings, --ftp-method, IPv4 and IPv6) and lftp (mirror, pget -n 4, MLSD),
//! byte-exact against the files on disk.

mod common;

use common::ftp::*;

#[test]
fn curl_downloads_with_epsv_pasv_and_ipv6_passive_and_active() {
    let srv = FtpServer::start(Opts::default());
    let data = random_bytes(6 << 20);
    put(&srv.root().join("pub/big.bin"), &data);
    let tmp = scratch();
    let out = tmp.path().join("o");
    // The last two: EPSV and active EPRT |2|::1|...| over IPv6 (RFC 2428).
    let cases = [(vec![], false), (vec!["--disable-epsv"], false), (vec![], true), (vec!["-P", "-"], true)];
    for (args, v6) in cases {
        let _ = std::fs::remove_file(&out);
        let url = format!("{}/pub/big.bin", srv.url(v6));
        let mut a = args.clone();
        a.extend(["-o", s(&out), &url]);
        ok(&curl(&a), &format!("curl {a:?}"));
        assert!(read(&out) == data, "download {a:?} differs");
    }
    // Passive data connections were accepted from the control peer on the configured range.
    let log = srv.log();
    assert!(log.contains("mode=\"passive\""), "{log}");
    assert!(log.contains("mode=\"active\" local=[::1]:"), "no active IPv6 data connection: {log}");
}

#[test]
fn both_zero_copy_paths_serve_byte_exact_downloads_and_resumes() {
    for mode in ["sendfile", "splice"] {
        let srv = FtpServer::start(Opts { env: &[("FERRY_FTP__ZERO_COPY", mode)], ..Opts::default() });
        let data = random_bytes((3 << 20) + 12_345);
        put(&srv.root().join("fw.bin"), &data);
        let tmp = scratch();
        let out = tmp.path().join("o");
        let url = format!("{}/fw.bin", srv.url(false));
        ok(&curl(&["-o", s(&out), &url]), mode);
        assert!(read(&out) == data, "{mode}: download differs");
        // Resume from the middle (REST + RETR at an offset).
        std::fs::write(&out, &data[..1_000_001]).unwrap();
        ok(&curl(&["-C", "-", "-o", s(&out), &url]), mode);
        assert!(read(&out) == data, "{mode}: resumed download differs");
    }
}

#[test]
fn curl_active_mode_uses_port_20_when_root() {
    let srv = FtpServer::start(Opts::default());
    let data = random_bytes(3 << 20);
    put(&srv.root().join("a.bin"), &data);
    let tmp = scratch();
    let out = tmp.path().join("o");
    let url = format!("{}/a.bin", srv.url(false));
    ok(&curl(&["-P", "127.0.0.1", "-o", s(&out), &url]), "curl -P");
    assert!(read(&out) == data);
    let log = srv.wait_log("mode=\"active\"");
    let line = log.lines().find(|l| l.contains("mode=\"active\"")).expect("active data connection logged");
    if common::is_root() {
        assert!(line.contains("local=127.0.0.1:20 "), "active data must come from port 20: {line}");
    } else {
        assert!(!line.contains("local=127.0.0.1:20 "), "unprivileged runs use an ephemeral port: {line}");
    }
}

#[test]
fn curl_uploads_and_resumes_both_ways() {
    let srv = FtpServer::start(Opts::default());
    let tmp = scratch();
    let data = random_bytes(5 << 20);
    let local = tmp.path().join("up.bin");
    std::fs::write(&local, &data).unwrap();
    // Upload, then resume an upload whose first part is on the server already.
    let url = format!("{}/upload/up.bin", srv.user_url());
    ok(&curl(&["-T", s(&local), &url]), "curl -T");
    assert!(read(srv.root().join("upload/up.bin")) == data);
    std::fs::write(srv.root().join("upload/up.bin"), &data[..1 << 20]).unwrap();
    ok(&curl(&["-C", "-", "-T", s(&local), &url]), "curl -C - -T");
    assert!(read(srv.root().join("upload/up.bin")) == data, "resumed upload differs");
    // Resume a download from a partial local copy (REST + RETR).
    let part = tmp.path().join("part.bin");
    std::fs::write(&part, &data[..1234567]).unwrap();
    ok(&curl(&["-C", "-", "-o", s(&part), &url]), "curl -C - download");
    assert!(read(&part) == data, "resumed download differs");
    // Uploading to an existing name as a user without `delete` would be CreateNew; alice may.
    ok(&curl(&["-T", s(&local), &url]), "overwrite");
    assert!(srv.log().contains("FTP transfer ended") && srv.log().contains("result=\"complete\""));
}

#[test]
fn curl_lists_directories_and_honours_ftp_methods() {
    let srv = FtpServer::start(Opts::default());
    put(&srv.root().join("d1/d2/deep.txt"), b"deep\n");
    put(&srv.root().join("d1/top.txt"), b"top\n");
    let out = curl(&[&format!("{}/d1/", srv.url(false))]);
    ok(&out, "curl list");
    let text = String::from_utf8_lossy(&out.stdout);
    // curl turns the listing's CRLF into local line ends.
    let file = text.lines().any(|l| l.starts_with("-rw-r--r--") && l.ends_with(" top.txt"));
    let dir = text.lines().any(|l| l.starts_with('d') && l.ends_with(" d2"));
    assert!(file && dir, "{text}");
    let names = curl(&["-l", &format!("{}/d1/", srv.url(false))]);
    ok(&names, "curl -l (NLST)");
    assert_eq!(String::from_utf8_lossy(&names.stdout).replace('\r', ""), "d2\ntop.txt\n");
    for method in ["multicwd", "singlecwd", "nocwd"] {
        let out = curl(&["--ftp-method", method, &format!("{}/d1/d2/deep.txt", srv.url(false))]);
        ok(&out, method);
        assert_eq!(out.stdout, b"deep\n", "{method}");
    }
    // TYPE A download: the wire carries CRLF (checked with ftplib); curl turns it back.
    let out = curl(&["-B", &format!("{}/d1/top.txt", srv.url(false))]);
    ok(&out, "curl -B");
    assert_eq!(out.stdout, b"top\n");
}

#[test]
fn lftp_mirror_pget_and_mlsd() {
    let srv = FtpServer::start(Opts::default());
    let mut files = Vec::new();
    for i in 0..300 {
        let rel = format!("tree/d{}/sub{}/f{i}.bin", i % 7, i % 3);
        let data = random_bytes(100 + (i * 997) % 20000);
        put(&srv.root().join(&rel), &data);
        files.push((rel, data));
    }
    let big = random_bytes(8 << 20);
    put(&srv.root().join("big.bin"), &big);
    let tmp = scratch();
    let dest = tmp.path().join("mirror");
    let out = lftp(&srv.url(false), &format!("mirror --parallel=4 tree {}", s(&dest)));
    ok(&out, "lftp mirror");
    for (rel, data) in &files {
        let got = std::fs::read(dest.join(rel.trim_start_matches("tree/"))).unwrap_or_default();
        assert!(&got == data, "{rel} differs after mirror");
    }
    let seg = tmp.path().join("seg.bin");
    ok(&lftp(&srv.url(false), &format!("pget -n 4 big.bin -o {}", s(&seg))), "lftp pget -n 4");
    assert!(read(&seg) == big, "segmented download differs");
    // lftp prefers MLSD when FEAT lists MLST; `cls -l` shows what it parsed.
    let out = lftp(&srv.url(false), "set ftp:use-mlsd yes; cls -1 --sort=name tree/d0");
    ok(&out, "lftp cls");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "tree/d0/sub0/\ntree/d0/sub1/\ntree/d0/sub2/\n");
    assert!(srv.log().contains("LIST /tree"), "{}", srv.log());
}

#[test]
fn shutdown_lets_a_transfer_finish_and_closes_idle_sessions() {
    use nix::sys::signal::Signal;
    use std::io::{BufRead, Read, Write};
    // The per-session rate cap keeps the download running while the signal arrives.
    let env = [("FERRY_FTP__LIMITS__RATE_LIMIT_SESSION_BPS", "2000000")];
    let mut srv = FtpServer::start(Opts { env: &env, ..Opts::default() });
    let data = random_bytes(3 << 20);
    put(&srv.root().join("slow.bin"), &data);
    // An idle logged-in session.
    let (mut idle_r, mut idle_w, _) = common::ftp_connect(srv.server.ftp_addr());
    assert!(common::ftp_command(&mut idle_r, &mut idle_w, "USER anonymous").starts_with("331"));
    assert!(common::ftp_command(&mut idle_r, &mut idle_w, "PASS x").starts_with("230"));
    // A download that the client reads slowly, so it is still running at SIGTERM.
    let (mut r, mut w, _) = common::ftp_connect(srv.server.ftp_addr());
    for line in ["USER anonymous", "PASS x", "TYPE I"] {
        common::ftp_command(&mut r, &mut w, line);
    }
    let pasv = common::ftp_command(&mut r, &mut w, "EPSV");
    let port: u16 = pasv.split('|').nth(3).unwrap().parse().unwrap();
    let mut d = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    w.write_all(b"RETR slow.bin\r\n").unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("150"), "{line}");
    let mut first = vec![0u8; 4096];
    d.read_exact(&mut first).unwrap();
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(srv.server.pid()), Signal::SIGTERM);
    let mut idle_line = String::new();
    idle_r.read_line(&mut idle_line).unwrap();
    assert!(idle_line.starts_with("421"), "idle session: {idle_line}");
    let mut rest = Vec::new();
    d.read_to_end(&mut rest).unwrap();
    first.extend_from_slice(&rest);
    assert!(first == data, "the running transfer completes during the drain");
    let mut end = String::new();
    r.read_line(&mut end).unwrap();
    assert!(end.starts_with("226"), "{end}");
    end.clear();
    r.read_line(&mut end).unwrap();
    assert!(end.starts_with("421"), "then the session closes: {end}");
    let code = common::wait_exit(&mut srv.server.child, std::time::Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", srv.log());
}
