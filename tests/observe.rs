//! Observability end to end: the metrics endpoint answers scrapes, health checks and
//! nonsense correctly, and SIGHUP reopens a rotated xferlog.

mod common;

use common::*;
use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn metrics_endpoint_serves_prometheus_text_and_health() {
    let dir = served_dir();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(ferry_bin());
    cmd.env("FERRY_METRICS__ENABLED", "true").env("FERRY_METRICS__LISTEN", &listen);
    let server = Server::start_with(cmd, dir.path(), free_port(), free_port(), &["--workers", "2"]);
    let page = http(&listen, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(page.starts_with("HTTP/1.0 200 OK"), "{page}");
    assert!(page.contains("text/plain; version=0.0.4"));
    for series in [
        "# TYPE ferry_ftp_sessions_active gauge",
        "ferry_ftp_sessions_total{worker=\"0\"}",
        "ferry_ftp_sessions_total{worker=\"1\"}",
        "ferry_bytes_sent_total{worker=\"all\",proto=\"tftp\"}",
        "ferry_tftp_retransmissions_total{worker=\"all\"}",
        "ferry_errors_total{worker=\"all\",kind=\"ftp_session_limit\"}",
    ] {
        assert!(page.contains(series), "missing {series} in\n{page}");
    }
    assert!(http(&listen, "GET /healthz HTTP/1.0\r\n\r\n").ends_with("ok\n"));
    assert!(http(&listen, "GET /nope HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 404"));
    assert!(http(&listen, "POST /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 405"));
    let huge = format!("GET /metrics HTTP/1.0\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    assert!(http(&listen, &huge).starts_with("HTTP/1.0 431"));
    drop(server);
}

/// A Ferry command with the xferlog on, in a directory the service user (nobody, when tests
/// run as root) may write: (command, xferlog path, directory guard).
fn with_xferlog() -> (Command, std::path::PathBuf, tempfile::TempDir) {
    let logs = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(logs.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = logs.path().join("xferlog");
    let mut cmd = Command::new(ferry_bin());
    cmd.env("FERRY_XFERLOG__ENABLED", "true").env("FERRY_XFERLOG__PATH", &path);
    (cmd, path, logs)
}

/// Starts `cmd` as root would run it in production: one worker, dropping to nobody.
fn start_dropping(cmd: Command, root: &std::path::Path) -> Server {
    Server::start_with(cmd, root, free_port(), free_port(), &["--workers", "1", "--user", "nobody"])
}

fn hup(server: &Server) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.pid()), nix::sys::signal::Signal::SIGHUP)
        .unwrap();
}

#[test]
fn sighup_reopens_a_rotated_xferlog() {
    let dir = served_dir();
    let (cmd, path, logs) = with_xferlog();
    let server = start_dropping(cmd, dir.path());
    assert!(path.exists(), "xferlog created at start");
    std::fs::rename(&path, logs.path().join("xferlog.1")).unwrap();
    hup(&server);
    eventually(Duration::from_secs(5), "the xferlog reopened after SIGHUP", || {
        path.exists().then_some(()).ok_or_else(|| Text(server.stderr()))
    });
    assert!(server.stderr().contains("xferlog reopened"));
}

#[test]
fn sighup_reopens_an_unrotated_xferlog_after_a_root_start() {
    if !is_root() {
        eprintln!("skipped: needs root to start as root and drop");
        return;
    }
    // A root start creates the log before the drop; the service user must still be able to
    // reopen it when SIGHUP comes without a rotation (a config reload, or logrotate's
    // `create`, which gives the new file the old one's owner).
    let dir = served_dir();
    let (cmd, _path, _logs) = with_xferlog();
    let server = start_dropping(cmd, dir.path());
    hup(&server);
    server.wait_log("xferlog reopened");
    assert!(!server.stderr().contains("cannot reopen the xferlog"), "{}", server.stderr());
}

#[test]
fn a_root_start_never_hands_a_device_xferlog_to_the_service_user() {
    if !is_root() {
        eprintln!("skipped: needs root to start as root and make a device node");
        return;
    }
    // An operator may point the xferlog at /dev/null; only plain files change owner. A node
    // of our own stands in for /dev/null, so a regression cannot touch the real one.
    let dir = served_dir();
    let logs = tempfile::tempdir().unwrap();
    let node = logs.path().join("null");
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o666);
    nix::sys::stat::mknod(&node, nix::sys::stat::SFlag::S_IFCHR, mode, nix::sys::stat::makedev(1, 3))
        .unwrap();
    let mut cmd = Command::new(ferry_bin());
    cmd.env("FERRY_XFERLOG__ENABLED", "true").env("FERRY_XFERLOG__PATH", &node);
    let server = start_dropping(cmd, dir.path());
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&node).unwrap().uid(), 0, "{}", server.stderr());
}

#[test]
fn a_missing_xferlog_directory_is_a_config_error() {
    let dir = served_dir();
    let out = Command::new(ferry_bin())
        .args(["check-config", "--root"])
        .arg(dir.path())
        .env("FERRY_XFERLOG__ENABLED", "true")
        .env("FERRY_XFERLOG__PATH", "/nonexistent/dir/xferlog")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("xferlog.path"));
}

/// Ferry with metrics and xferlog on: (server, metrics address, xferlog path, log dir guard).
fn start_observed(root: &std::path::Path) -> (Server, String, std::path::PathBuf, tempfile::TempDir) {
    let (mut cmd, xferlog, logs) = with_xferlog();
    let listen = format!("127.0.0.1:{}", free_port());
    cmd.env("FERRY_METRICS__ENABLED", "true").env("FERRY_METRICS__LISTEN", &listen);
    let server = Server::start_with(cmd, root, free_port(), free_port(), &["--workers", "2"]);
    (server, listen, xferlog, logs)
}

#[test]
fn ftp_metrics_and_xferlog_match_the_load() {
    let dir = served_dir();
    let sizes = [1000usize, 70_000, 3_000_000];
    for (i, n) in sizes.iter().enumerate() {
        std::fs::write(dir.path().join(format!("f{i}.bin")), vec![b'x'; *n]).unwrap();
    }
    let (server, listen, xferlog, _logs) = start_observed(dir.path());
    for i in 0..sizes.len() {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null"])
            .arg(format!("ftp://127.0.0.1:{}/f{i}.bin", server.ftp_port))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let listing = Command::new("curl")
        .args(["-sS"])
        .arg(format!("ftp://127.0.0.1:{}/", server.ftp_port))
        .output()
        .unwrap();
    assert!(listing.status.success());

    // Sessions end just after curl has its 221: wait for the steady state (a scrape reads
    // counter after counter, not one snapshot).
    let open = "ferry_ftp_sessions_active{worker=\"all\"}";
    let page = eventually(Duration::from_secs(5), "no FTP session open", || {
        let page = http(&listen, "GET /metrics HTTP/1.0\r\n\r\n");
        check(page, |p| metric(p, open) == 0).map_err(|p| metric(&p, open))
    });
    // The readiness probe of Server::start is a session too.
    assert_eq!(metric(&page, "ferry_ftp_sessions_total{worker=\"all\"}"), 5);
    assert_eq!(metric(&page, "ferry_ftp_sessions_active{worker=\"all\"}"), 0);
    assert_eq!(metric(&page, "ferry_transfers_total{worker=\"all\",proto=\"ftp\",outcome=\"complete\"}"), 4);
    assert_eq!(metric(&page, "ferry_transfers_active{worker=\"all\",proto=\"ftp\"}"), 0);
    let sent = metric(&page, "ferry_bytes_sent_total{worker=\"all\",proto=\"ftp\"}");
    let files: i64 = sizes.iter().map(|n| *n as i64).sum();
    assert!(sent >= files && sent < files + 2000, "bytes sent {sent} = files {files} + one small listing");

    let log = std::fs::read_to_string(&xferlog).unwrap();
    let lines: Vec<Vec<&str>> = log.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines.len(), sizes.len(), "one line per file transfer, none for the listing:\n{log}");
    for (fields, (i, n)) in lines.iter().zip(sizes.iter().enumerate()) {
        assert_eq!(fields.len(), 18, "{fields:?}");
        assert_eq!(fields[6], "127.0.0.1");
        assert_eq!(fields[7], n.to_string(), "bytes");
        assert_eq!(fields[8], format!("/f{i}.bin"));
        assert_eq!(&fields[9..], ["b", "_", "o", "a", "anonymous", "ftp", "0", "*", "c"]);
    }
}

#[test]
fn tftp_metrics_and_xferlog_match_the_load() {
    let dir = served_dir();
    std::fs::write(dir.path().join("boot.img"), vec![7u8; 100_000]).unwrap();
    let (server, listen, xferlog, _logs) = start_observed(dir.path());
    let out_dir = tempfile::tempdir().unwrap();
    for i in 0..2 {
        let out = out_dir.path().join(format!("o{i}"));
        let got = Command::new("tftp")
            .args(["127.0.0.1", &server.tftp_port.to_string(), "-m", "binary", "-c", "get", "boot.img"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(got.status.success() && std::fs::metadata(&out).unwrap().len() == 100_000);
    }
    // One refused request, from a raw client that sends nothing after the ERROR (tftp-hpa
    // would send a last ACK to port 69, itself refused: a second count).
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    udp.send_to(b"\x00\x01missing.img\x00octet\x00", ("127.0.0.1", server.tftp_port)).unwrap();
    let mut buf = [0u8; 600];
    let (n, _) = udp.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..4.min(n)], &[0, 5, 0, 1], "ERROR 1 file not found");
    // tftp-hpa exits as soon as it has sent its last ACK; give the server that ACK's worth
    // of time to finish the transfer before reading the counters.
    let complete = "ferry_transfers_total{worker=\"all\",proto=\"tftp\",outcome=\"complete\"}";
    // A scrape is not one atomic snapshot (it reads counter after counter), so wait for the
    // steady state rather than a single moment.
    let active = "ferry_transfers_active{worker=\"all\",proto=\"tftp\"}";
    let page = eventually(Duration::from_secs(5), "2 complete TFTP transfers, none active", || {
        let page = http(&listen, "GET /metrics HTTP/1.0\r\n\r\n");
        check(page, |p| metric(p, complete) >= 2 && metric(p, active) == 0)
            .map_err(|p| (metric(&p, complete), metric(&p, active)))
    });
    assert_eq!(metric(&page, "ferry_transfers_total{worker=\"all\",proto=\"tftp\",outcome=\"complete\"}"), 2);
    assert_eq!(metric(&page, "ferry_bytes_sent_total{worker=\"all\",proto=\"tftp\"}"), 200_000);
    assert_eq!(metric(&page, "ferry_errors_total{worker=\"all\",kind=\"tftp_request_refused\"}"), 1);
    assert_eq!(metric(&page, "ferry_transfers_active{worker=\"all\",proto=\"tftp\"}"), 0);
    let log = std::fs::read_to_string(&xferlog).unwrap();
    let lines: Vec<Vec<&str>> = log.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines.len(), 2, "{log}");
    for fields in &lines {
        assert_eq!(fields.len(), 18);
        assert_eq!(&fields[7..9], ["100000", "/boot.img"]);
        assert_eq!(&fields[9..], ["b", "_", "o", "a", "anonymous", "tftp", "0", "*", "c"]);
    }
}

#[test]
fn a_uefi_size_probe_is_counted_as_a_probe_not_as_a_failed_transfer() {
    // EDK2 asks for tsize, reads the size from the OACK, answers ERROR 8 (RFC 2347: option
    // negotiation refused) and asks again from a new port. That is how it boots: no failed
    // transfer, no incomplete xferlog line, a count of its own.
    use common::tftp::*;
    let dir = served_dir();
    let want = random_file(dir.path(), "bootx64.efi", 3000);
    let (server, listen, xferlog, _logs) = start_observed(dir.path());
    let probe = Raw::new(v4(&server));
    probe.send(&request(1, "bootx64.efi", "octet", &[("tsize", "0"), ("blksize", "1468")]));
    let (p, tid) = probe.recv();
    assert_eq!(oack_options(&p)[0], ("tsize".to_string(), "3000".to_string()));
    probe.send_to(&error(8, "User aborted"), tid);
    let fetch = Raw::new(v4(&server));
    assert_eq!(fetch.get("bootx64.efi", "octet"), want);
    let series = |outcome: &str| {
        format!("ferry_transfers_total{{worker=\"all\",proto=\"tftp\",outcome=\"{outcome}\"}}")
    };
    let probes = "ferry_tftp_option_probes_total{worker=\"all\"}";
    let page = eventually(Duration::from_secs(5), "one probe and one complete transfer counted", || {
        let page = http(&listen, "GET /metrics HTTP/1.0\r\n\r\n");
        check(Text(page), |p| metric(&p.0, probes) == 1 && metric(&p.0, &series("complete")) == 1)
    })
    .0;
    assert_eq!(metric(&page, &series("failed")), 0, "{page}");
    eventually(Duration::from_secs(5), "the xferlog line", || {
        check(std::fs::read_to_string(&xferlog).unwrap_or_default(), |l| !l.is_empty())
    });
    let log = std::fs::read_to_string(&xferlog).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 1, "only the real fetch is logged:\n{log}");
    assert!(lines[0].ends_with(" c"), "{log}");
    let stderr = server.stderr();
    assert_eq!(stderr.matches("TFTP options probe").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("TFTP transfer ended").count(), 1, "{stderr}");
}

#[test]
fn failed_ftp_logins_are_counted() {
    // A wrong password for a virtual user and an unknown user both count as login failures
    // (the counter once moved only when the password verifier was too busy to answer).
    let dir = served_dir();
    let listen = format!("127.0.0.1:{}", free_port());
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObGmMdFRA4sSA0";
    let mut cmd = Command::new(ferry_bin());
    cmd.env("FERRY_METRICS__ENABLED", "true")
        .env("FERRY_METRICS__LISTEN", &listen)
        .env("FERRY_FTP__LIMITS__LOGIN_FAILURE_DELAY_MS", "0")
        .env("FERRY_FTP__USERS", format!("[{{name=\"deploy\",password_hash=\"{hash}\"}}]"));
    let server = Server::start_with(cmd, dir.path(), free_port(), free_port(), &["--workers", "1"]);
    for user in ["deploy", "mallory"] {
        let (mut r, mut w, _) = ftp_connect(server.ftp_addr());
        assert!(ftp_command(&mut r, &mut w, &format!("USER {user}")).starts_with("331"));
        let reply = ftp_command(&mut r, &mut w, "PASS not-the-password");
        assert!(reply.starts_with("530"), "{user}: {reply}");
    }
    let page = http(&listen, "GET /metrics HTTP/1.0\r\n\r\n");
    assert_eq!(metric(&page, "ferry_ftp_login_failures_total{worker=\"all\"}"), 2, "{page}");
}

#[test]
fn aborted_transfers_log_and_count_what_they_moved() {
    // wu-ftpd writes an incomplete (`i`) xferlog line with the bytes that did go through;
    // so do the byte counters. Earlier both said 0 for any transfer that failed.
    let dir = served_dir();
    std::fs::write(dir.path().join("big.bin"), vec![7u8; 64 << 20]).unwrap();
    common::tftp::random_file(dir.path(), "t.bin", 10 * 512);
    let (server, listen, xferlog, _logs) = start_observed(dir.path());

    // FTP: read 1 MiB of a 64 MiB RETR, then close the data connection.
    let (mut r, mut w, _) = ftp_connect(server.ftp_addr());
    assert!(ftp_command(&mut r, &mut w, "USER anonymous").starts_with("331"));
    assert!(ftp_command(&mut r, &mut w, "PASS x").starts_with("230"));
    assert!(ftp_command(&mut r, &mut w, "TYPE I").starts_with("200"));
    let epsv = ftp_command(&mut r, &mut w, "EPSV");
    let port: u16 = epsv.split('|').nth(3).and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{epsv}"));
    let mut data = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(ftp_command(&mut r, &mut w, "RETR big.bin").starts_with("150"));
    let mut first = vec![0u8; 1 << 20];
    data.read_exact(&mut first).unwrap();
    drop(data);
    let mut reply = String::new();
    std::io::BufRead::read_line(&mut r, &mut reply).unwrap();
    assert!(reply.starts_with("426"), "{reply}");

    // TFTP: acknowledge 3 of 10 blocks, then abort with an ERROR.
    use common::tftp::*;
    let c = Raw::new(v4(&server));
    c.send(&request(1, "t.bin", "octet", &[]));
    let (mut tid, mut got) = (None, 0);
    while got < 3 {
        let (p, from) = c.recv();
        if opcode(&p) == 3 && block(&p) == got + 1 {
            got += 1;
            c.send_to(&ack(got), from);
            tid = Some(from);
        }
    }
    c.send_to(&error(0, "enough"), tid.unwrap());

    let lines = |proto: &str| -> Vec<Vec<String>> {
        std::fs::read_to_string(&xferlog)
            .unwrap_or_default()
            .lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .filter(|f| f.len() == 18 && f[14] == proto)
            .collect()
    };
    eventually(Duration::from_secs(5), "an FTP and a TFTP xferlog line", || {
        let both = !lines("ftp").is_empty() && !lines("tftp").is_empty();
        both.then_some(()).ok_or_else(|| Text(std::fs::read_to_string(&xferlog).unwrap_or_default()))
    });
    let ftp = &lines("ftp")[0];
    let ftp_bytes: u64 = ftp[7].parse().unwrap();
    assert_eq!(ftp[17], "i", "{ftp:?}");
    assert!((1 << 20..64 << 20).contains(&ftp_bytes), "an aborted RETR logged {ftp_bytes} bytes");
    let tftp = &lines("tftp")[0];
    assert_eq!((tftp[7].as_str(), tftp[17].as_str()), ("1536", "i"), "{tftp:?}");

    let page = http(&listen, "GET /metrics HTTP/1.0\r\n\r\n");
    let ftp_sent = metric(&page, "ferry_bytes_sent_total{worker=\"all\",proto=\"ftp\"}");
    assert!(ftp_sent >= ftp_bytes as i64, "counted {ftp_sent} of {ftp_bytes}");
    assert_eq!(metric(&page, "ferry_bytes_sent_total{worker=\"all\",proto=\"tftp\"}"), 1536);
}

#[test]
fn the_drain_timeout_aborts_running_transfers_with_a_reason_and_logs_them() {
    // Past drain_timeout_secs, transfers still running are aborted, not dropped with the
    // process: FTP gets 426 then 421, TFTP an ERROR, the xferlog an `i` line for each.
    let dir = served_dir();
    std::fs::write(dir.path().join("slow.bin"), vec![1u8; 8 << 20]).unwrap();
    common::tftp::random_file(dir.path(), "t.bin", 20 * 512);
    let (mut cmd, xferlog, _logs) = with_xferlog();
    cmd.env("FERRY_DRAIN_TIMEOUT_SECS", "1").env("FERRY_FTP__LIMITS__RATE_LIMIT_SESSION_BPS", "1000000");
    let mut server = Server::start_with(cmd, dir.path(), free_port(), free_port(), &["--workers", "2"]);

    let (mut r, mut w, _) = ftp_connect(server.ftp_addr());
    for line in ["USER anonymous", "PASS x", "TYPE I"] {
        ftp_command(&mut r, &mut w, line);
    }
    let epsv = ftp_command(&mut r, &mut w, "EPSV");
    let port: u16 = epsv.split('|').nth(3).and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{epsv}"));
    let mut data = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(ftp_command(&mut r, &mut w, "RETR slow.bin").starts_with("150"));
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let _ = data.read_to_end(&mut got);
        got.len()
    });
    // A TFTP read held at block 1: the server keeps retransmitting it.
    use common::tftp::*;
    let c = Raw::new(v4(&server));
    c.send(&request(1, "t.bin", "octet", &[]));
    assert_eq!(opcode(&c.recv().0), 3);

    let started = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.pid()), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let mut replies = String::new();
    for _ in 0..2 {
        std::io::BufRead::read_line(&mut r, &mut replies).unwrap();
    }
    assert!(replies.starts_with("426") && replies.contains("\n421"), "{replies}");
    let sent = reader.join().unwrap();
    assert!(sent > 0 && sent < 8 << 20, "the slow download was cut: {sent} bytes");
    let ended = (0..50).find_map(|_| {
        let (p, _) = c.recv_within(Duration::from_millis(200))?;
        error_of(&p)
    });
    assert_eq!(ended, Some((0, "server shutting down".to_string())));
    assert_eq!(wait_exit(&mut server.child, Duration::from_secs(10)), Some(0), "{}", server.stderr());
    assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
    let log = std::fs::read_to_string(&xferlog).unwrap();
    let incomplete: Vec<&str> = log.lines().filter(|l| l.ends_with(" i")).collect();
    assert_eq!(incomplete.len(), 2, "{log}");
    assert!(
        incomplete.iter().any(|l| l.contains(" ftp ")) && incomplete.iter().any(|l| l.contains(" tftp ")),
        "{log}"
    );
}
