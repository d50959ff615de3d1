//! SIGHUP reload end to end: a valid change applies (the log level here), a change that
//! needs a restart is refused naming the key, and an invalid file is rejected while the
//! server keeps serving with its running configuration.

mod common;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::process::Command;
use std::time::Duration;

/// Ferry reading `--config` from a file the test rewrites: (server, file, dir guard).
fn start_with_config(
    root: &std::path::Path,
    text: &str,
    workers: &str,
) -> (Server, std::path::PathBuf, tempfile::TempDir) {
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = conf_dir.path().join("ferry.toml");
    std::fs::write(&conf, text).unwrap();
    let mut cmd = Command::new(ferry_bin());
    cmd.arg("--config").arg(&conf);
    let server = Server::start_with(cmd, root, free_port(), free_port(), &["--workers", workers]);
    (server, conf, conf_dir)
}

fn hup(server: &Server) {
    kill(Pid::from_raw(server.pid()), Signal::SIGHUP).unwrap();
}

#[test]
fn sighup_applies_valid_changes_and_refuses_restart_only_ones() {
    let dir = served_dir();
    let (server, conf, _conf_dir) = start_with_config(dir.path(), "[log]\nlevel = \"info\"\n", "1");
    assert!(!server.stderr().contains("DEBUG"), "starts at info");

    // A valid change: new sessions see debug logging.
    std::fs::write(&conf, "[log]\nlevel = \"debug\"\n").unwrap();
    hup(&server);
    server.wait_log("configuration reloaded");
    let (_r, _w, greeting) = ftp_connect(server.ftp_addr());
    assert!(greeting.starts_with("220"));
    server.wait_log("DEBUG");

    // A restart-only change is refused and named.
    std::fs::write(&conf, "[log]\nlevel = \"debug\"\n[tftp]\nlisten = [\"127.0.0.1:1\"]\n").unwrap();
    hup(&server);
    server.wait_log("NOT reloaded");
    assert!(server.stderr().contains("tftp.listen"));

    // An invalid file is rejected; the server goes on serving.
    std::fs::write(&conf, "[log]\nlevle = \"debug\"\n").unwrap();
    hup(&server);
    server.wait_log("new configuration rejected");
    assert!(server.stderr().contains("levle"));
    let (_r, _w, greeting) = ftp_connect(server.ftp_addr());
    assert!(greeting.starts_with("220"), "still serving");
}

#[test]
fn sighup_applies_ftp_users_and_limits_to_new_sessions() {
    let dir = served_dir();
    let (server, conf, _conf_dir) =
        start_with_config(dir.path(), "[ftp.limits]\nmax_sessions_per_ip = 50\n", "2");

    // Before: the user does not exist.
    let (mut r, mut w, _) = ftp_connect(server.ftp_addr());
    assert!(ftp_command(&mut r, &mut w, "USER deploy").starts_with("331"));
    assert!(ftp_command(&mut r, &mut w, "PASS s3cret").starts_with("530"));
    drop((r, w));

    // A session that is open across the reload keeps working.
    let (mut old_r, mut old_w, _) = ftp_connect(server.ftp_addr());
    let hash = ferry::auth::hash_password("s3cret").unwrap();
    std::fs::write(
        &conf,
        format!(
            "[ftp.limits]\nmax_sessions_per_ip = 2\nlogin_failure_delay_ms = 0\n\
             [[ftp.users]]\nname = \"deploy\"\npassword_hash = \"{hash}\"\npermissions = [\"read\"]\n"
        ),
    )
    .unwrap();
    hup(&server);
    server.wait_log("configuration reloaded");

    // After: the new user logs in (second session from this IP).
    let (mut r, mut w, _) = ftp_connect(server.ftp_addr());
    assert!(ftp_command(&mut r, &mut w, "USER deploy").starts_with("331"));
    assert!(ftp_command(&mut r, &mut w, "PASS s3cret").starts_with("230"), "{}", server.stderr());
    // A third session from the same IP is over the new per-IP limit of 2.
    let (_r3, _w3, greeting) = ftp_connect(server.ftp_addr());
    assert!(greeting.starts_with("421"), "{greeting}");
    // The pre-reload session still answers.
    assert!(ftp_command(&mut old_r, &mut old_w, "NOOP").starts_with("200"));
}

#[test]
fn sighup_applies_tftp_access_lists_to_new_requests() {
    let dir = served_dir();
    let (server, conf, _conf_dir) = start_with_config(dir.path(), "[tftp]\nmax_windowsize = 64\n", "1");
    let get = || {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        udp.send_to(b"\x00\x01hello.txt\x00octet\x00", ("127.0.0.1", server.tftp_port)).unwrap();
        let mut buf = [0u8; 600];
        let (n, _) = udp.recv_from(&mut buf).expect("an answer");
        buf[..n].to_vec()
    };
    assert_eq!(&get()[..4], &[0, 3, 0, 1], "DATA block 1 before the reload");
    std::fs::write(&conf, "[tftp]\nmax_windowsize = 64\n[tftp.read]\ndeny = [\"127.0.0.0/8\"]\n").unwrap();
    hup(&server);
    server.wait_log("configuration reloaded");
    assert_eq!(&get()[..4], &[0, 5, 0, 2], "ERROR 2 (access violation) after the reload");
    // The block size is restart-only: it sizes buffers allocated at start.
    std::fs::write(&conf, "[tftp]\nmax_blksize = 8192\n").unwrap();
    hup(&server);
    server.wait_log("NOT reloaded");
    assert!(server.stderr().contains("tftp.max_blksize"));
}

#[test]
fn transfers_running_during_sighup_all_complete_byte_exact() {
    let dir = served_dir();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    std::fs::write(dir.path().join("fw.bin"), &data).unwrap();
    // 2 MB/s per session: each FTP download takes about 1.5 s, so every reload below lands
    // while they run.
    let (server, conf, _conf_dir) =
        start_with_config(dir.path(), "[ftp.limits]\nrate_limit_session_bps = 2000000\n", "2");
    let out = tempfile::tempdir().unwrap();
    let ftp_port = server.ftp_port;
    let downloads: Vec<_> = (0..4)
        .map(|i| {
            let path = out.path().join(format!("ftp{i}"));
            std::thread::spawn(move || {
                let status = Command::new("curl")
                    .args(["-sS", "--max-time", "30", "-o"])
                    .arg(&path)
                    .arg(format!("ftp://127.0.0.1:{ftp_port}/fw.bin"))
                    .status()
                    .unwrap();
                (status.success(), path)
            })
        })
        .collect();
    let tftp_out = out.path().join("tftp");
    let tftp_port = server.tftp_port;
    let tftp_path = tftp_out.clone();
    let tftp = std::thread::spawn(move || {
        Command::new("tftp")
            .args(["127.0.0.1", &tftp_port.to_string(), "-m", "binary", "-c", "get", "fw.bin"])
            .arg(&tftp_path)
            .status()
            .unwrap()
            .success()
    });
    // Every download has bytes on disk, so the reloads below land while they run.
    let outputs: Vec<_> =
        (0..4).map(|i| out.path().join(format!("ftp{i}"))).chain([tftp_out.clone()]).collect();
    eventually(Duration::from_secs(10), "every download to have started", || {
        let sizes: Vec<u64> = outputs.iter().map(|p| std::fs::metadata(p).map_or(0, |m| m.len())).collect();
        check(sizes, |s| s.iter().all(|&n| n > 0))
    });
    // Two reloads mid-transfer: one that changes limits, one that changes nothing.
    std::fs::write(&conf, "[ftp.limits]\nrate_limit_session_bps = 500000\nmax_sessions_per_ip = 10\n")
        .unwrap();
    hup(&server);
    server.wait_log("configuration reloaded");
    hup(&server);
    for d in downloads {
        let (ok, path) = d.join().unwrap();
        assert!(ok, "FTP download failed:\n{}", server.stderr());
        assert!(std::fs::read(&path).unwrap() == data, "FTP download differs after reload");
    }
    assert!(tftp.join().unwrap(), "TFTP download failed");
    assert!(std::fs::read(&tftp_out).unwrap() == data, "TFTP download differs after reload");
}
