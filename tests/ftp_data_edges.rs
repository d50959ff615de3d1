//! FTP data-connection edges against the real server: running out of passive ports gives
//! an immediate 425 (never a hang) and recovers when a port frees; a passive listener is
//! held for the accept timeout at most, and one address holds a bounded number of them; an
//! interrupted upload leaves nothing under its name with `atomic` uploads, the bytes
//! received with `keep_partial`, or nothing at all without it, and a failed APPE leaves the
//! file as it was; a full disk is 452 before the data and 451 during it; a file cut short
//! during RETR ends in 451.

mod common;

use common::ftp::{put, Ctl, FtpServer, Opts, PASS, USER};
use common::{eventually, free_port};
use std::io::{BufRead, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn running_out_of_passive_ports_is_a_quick_425_and_recovers() {
    let port = free_port();
    let range = format!("{port}-{port}");
    let srv = FtpServer::start(Opts { env: &[("FERRY_FTP__PASSIVE__PORTS", &range)], ..Opts::default() });
    let mut a = Ctl::login(&srv, "anonymous", "guest@");
    assert_eq!(a.epsv_port(), Ok(port), "the one passive port goes to the first session");
    let mut b = Ctl::login(&srv, "anonymous", "guest@");
    let started = Instant::now();
    let refused = b.epsv_port().expect_err("no passive port left");
    assert!(refused.starts_with("425"), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(2), "refused at once, not after a timeout");
    // The first session leaves; its listener is freed and the port serves the second.
    assert!(a.cmd("QUIT").starts_with("221"));
    drop(a);
    let again = eventually(Duration::from_secs(5), "the freed passive port", || {
        b.epsv_port().inspect_err(|e| assert!(e.starts_with("425"), "{e}"))
    });
    assert_eq!(again, port);
}

/// Starts `STOR upload/cut.bin`, sends part of the data, then resets the data connection.
/// Returns what was sent and the final control reply.
fn interrupted_upload(srv: &FtpServer) -> (Vec<u8>, String) {
    let mut c = Ctl::login(srv, USER, PASS);
    assert!(c.cmd("TYPE I").starts_with("200"));
    let port = c.epsv_port().expect("EPSV");
    c.w.write_all(b"STOR upload/cut.bin\r\n").unwrap();
    let mut data = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut line = String::new();
    c.r.read_line(&mut line).unwrap();
    assert!(line.starts_with("150"), "{line}");
    let sent: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    data.write_all(&sent).unwrap();
    // An abortive close (RST): the client died mid-upload.
    socket2::SockRef::from(&data).set_linger(Some(Duration::ZERO)).unwrap();
    drop(data);
    let mut reply = String::new();
    c.r.read_line(&mut reply).unwrap();
    (sent, reply)
}

fn upload_dir_names(srv: &FtpServer) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(srv.root().join("upload"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn an_interrupted_upload_leaves_nothing_or_the_received_bytes_as_configured() {
    // Atomic: the final name never appears, and the temporary file is removed.
    let srv = FtpServer::start(Opts { env: &[("FERRY_FTP__UPLOADS__ATOMIC", "true")], ..Opts::default() });
    let (_, reply) = interrupted_upload(&srv);
    assert!(reply.starts_with("426") || reply.starts_with("451"), "{reply}");
    assert!(upload_dir_names(&srv).is_empty(), "atomic upload left {:?}", upload_dir_names(&srv));
    drop(srv);

    // keep_partial (the vsftpd behaviour, default): what arrived stays, for REST to resume.
    let srv = FtpServer::start(Opts::default());
    let (sent, reply) = interrupted_upload(&srv);
    assert!(reply.starts_with("426") || reply.starts_with("451"), "{reply}");
    let kept = std::fs::read(srv.root().join("upload/cut.bin")).expect("partial file kept");
    assert!(sent.starts_with(&kept), "kept bytes are a prefix of what was sent ({} bytes)", kept.len());
    drop(srv);

    // Neither: the partial file is removed.
    let srv =
        FtpServer::start(Opts { env: &[("FERRY_FTP__UPLOADS__KEEP_PARTIAL", "false")], ..Opts::default() });
    let (_, reply) = interrupted_upload(&srv);
    assert!(reply.starts_with("426") || reply.starts_with("451"), "{reply}");
    assert!(upload_dir_names(&srv).is_empty(), "left {:?}", upload_dir_names(&srv));
}

#[test]
fn a_failed_open_keeps_the_passive_port_for_the_next_transfer() {
    let srv = FtpServer::start(Opts::default());
    std::fs::write(srv.root().join("present.bin"), b"present\n").unwrap();
    let mut c = Ctl::login(&srv, "anonymous", "guest@");
    assert!(c.cmd("TYPE I").starts_with("200"));
    let port = c.epsv_port().expect("EPSV");
    assert!(c.cmd("RETR missing.bin").starts_with("550"));
    // No new EPSV: the same listener serves the next RETR.
    c.w.write_all(b"RETR present.bin\r\n").unwrap();
    let mut data = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut line = String::new();
    c.r.read_line(&mut line).unwrap();
    assert!(line.starts_with("150"), "{line}");
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut data, &mut got).unwrap();
    assert_eq!(got, b"present\n");
    line.clear();
    c.r.read_line(&mut line).unwrap();
    assert!(line.starts_with("226"), "{line}");
}

/// RETR of an 8 MiB file, paced to 2 MiB/s, that the test cuts to 4 MiB once the client has
/// some of it: the final reply, and how many bytes the client got.
fn retr_of_a_file_cut_short(srv: &FtpServer, type_cmd: &str) -> (String, usize) {
    const FULL: usize = 8 << 20;
    const CUT: u64 = 4 << 20;
    let path = srv.root().join("shrinking.bin");
    put(&path, &vec![b'x'; FULL]);
    let mut c = Ctl::login(srv, "anonymous", "guest@");
    assert!(c.cmd(type_cmd).starts_with("200"));
    let mut data = c.epsv();
    data.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let first = c.cmd("RETR shrinking.bin");
    assert!(first.starts_with("150"), "{first}");
    let mut got = vec![0u8; 256 << 10];
    std::io::Read::read_exact(&mut data, &mut got).unwrap();
    // The server is about 1/4 s into a 4 s transfer: far from the cut.
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(CUT).unwrap();
    std::io::Read::read_to_end(&mut data, &mut got).unwrap();
    (c.reply(), got.len())
}

#[test]
fn a_file_cut_short_during_retr_fails_with_451_never_226() {
    // The rate limit keeps the transfer going while the test truncates the file.
    for zero_copy in ["sendfile", "splice"] {
        let env =
            [("FERRY_FTP__ZERO_COPY", zero_copy), ("FERRY_FTP__LIMITS__RATE_LIMIT_SESSION_BPS", "2097152")];
        let srv = FtpServer::start(Opts { env: &env, ..Opts::default() });
        let (reply, got) = retr_of_a_file_cut_short(&srv, "TYPE I");
        // RFC 959 §4.2.1: 451 "Requested action aborted: local error in processing".
        assert!(reply.starts_with("451 "), "{zero_copy}: {reply} after {got} bytes");
        assert_eq!(got, 4 << 20, "{zero_copy}: what the file still had");
        if zero_copy == "sendfile" {
            // TYPE A reads and converts in user space: the same rule.
            let (reply, got) = retr_of_a_file_cut_short(&srv, "TYPE A");
            assert!(reply.starts_with("451 "), "TYPE A: {reply} after {got} bytes");
        }
    }
}

/// A tmpfs mounted on a directory until dropped (unmounted then even if the test failed).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs with `options` on `dir`; `None`, saying why, where that is not possible
    /// (not root, no mount permission in a container).
    fn mount(dir: &Path, options: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        match Command::new("mount").args(["-t", "tmpfs", "-o", options, "tmpfs"]).arg(dir).output() {
            Ok(out) if out.status.success() => Some(Tmpfs(dir.to_path_buf())),
            Ok(out) => {
                let why = String::from_utf8_lossy(&out.stderr);
                eprintln!("skipped: cannot mount a tmpfs on {}: {}", dir.display(), why.trim());
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy, so that it goes even while the server still holds a file there.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_452_before_the_data_451_during_it_and_a_failed_appe_changes_nothing() {
    let srv = FtpServer::start(Opts::default());
    let dir = srv.root().join("upload/full");
    // 1 MiB of blocks; inodes for the directory and two files.
    let Some(_tmpfs) = Tmpfs::mount(&dir, "size=1m,nr_inodes=3,mode=0777") else { return };
    let original: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let log = dir.join("log.bin");
    put(&log, &original);
    std::fs::set_permissions(&log, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let mut c = Ctl::login(&srv, USER, PASS);
    assert!(c.cmd("TYPE I").starts_with("200"));
    // The disk fills about 800 KiB into a 2 MiB append.
    let (first, done) = c.store("APPE upload/full/log.bin", &vec![7u8; 2 << 20]);
    assert!(first.starts_with("150"), "{first}");
    // RFC 959 §5.4: 451 (not 452) is among APPE's completion replies.
    assert!(done.starts_with("451 "), "{done}");
    let now = std::fs::read(&log).unwrap();
    assert!(
        now == original,
        "the failed append is cut off again: {} bytes, not {}",
        now.len(),
        original.len()
    );
    // Every inode taken: creating the file fails before any data, which RFC 959 §4.2.1
    // answers with 452 "Insufficient storage space in system".
    put(&dir.join("other.bin"), b"");
    let (first, _) = c.store("STOR upload/full/new.bin", b"data");
    assert!(first.starts_with("452 "), "{first}");
}

#[test]
fn an_interrupted_appe_leaves_the_file_as_it_was_whatever_keep_partial_says() {
    for keep_partial in ["true", "false"] {
        let srv = FtpServer::start(Opts {
            env: &[("FERRY_FTP__UPLOADS__KEEP_PARTIAL", keep_partial)],
            ..Opts::default()
        });
        let log = srv.root().join("upload/log.bin");
        put(&log, b"first line\n");
        std::fs::set_permissions(&log, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
        let mut c = Ctl::login(&srv, USER, PASS);
        assert!(c.cmd("TYPE I").starts_with("200"));
        let mut data = c.epsv();
        let first = c.cmd("APPE upload/log.bin");
        assert!(first.starts_with("150"), "{first}");
        data.write_all(&[b'y'; 100_000]).unwrap();
        // The client dies mid-append: an abortive close (RST).
        socket2::SockRef::from(&data).set_linger(Some(Duration::ZERO)).unwrap();
        drop(data);
        let done = c.reply();
        assert!(done.starts_with("426") || done.starts_with("451"), "{done}");
        let now = std::fs::read(&log).ok();
        let len = now.as_ref().map(Vec::len);
        assert!(now.as_deref() == Some(b"first line\n"), "keep_partial = {keep_partial}: {len:?} bytes");
    }
}

/// Whether something still listens on `port` of 127.0.0.1: binding it fails while it does.
/// (Connecting would queue connections on the listener and change what is probed.)
fn listening(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
}

/// A server whose passive listeners wait 2 s (vsftpd's accept_timeout; the data timeout,
/// 20 s in these tests, is for stalled transfers), a session, and the port its EPSV opened.
fn passive_with_a_2s_accept_timeout() -> (FtpServer, Ctl, u16) {
    let env = [("FERRY_FTP__PASSIVE__ACCEPT_TIMEOUT_SECS", "2")];
    let srv = FtpServer::start(Opts { env: &env, ..Opts::default() });
    let mut c = Ctl::login(&srv, "anonymous", "guest@");
    let port = c.epsv_port().expect("EPSV");
    (srv, c, port)
}

#[test]
fn a_passive_listener_waits_the_accept_timeout_for_its_connection_then_425_and_frees_the_port() {
    let (_srv, mut c, port) = passive_with_a_2s_accept_timeout();
    let asked = Instant::now();
    let reply = c.cmd("RETR hello.txt");
    let waited = asked.elapsed();
    assert!(reply.starts_with("425 "), "{reply}");
    assert!(waited >= Duration::from_millis(1500) && waited < Duration::from_secs(10), "{waited:?}");
    eventually(Duration::from_secs(5), "the port freed", || (!listening(port)).then_some(()).ok_or(port));
}

#[test]
fn a_passive_listener_without_a_transfer_command_closes_after_the_accept_timeout() {
    let (_srv, mut c, port) = passive_with_a_2s_accept_timeout();
    let opened = Instant::now();
    assert!(listening(port));
    // NOOPs keep the session alive; they are no transfer command.
    eventually(Duration::from_secs(10), "the unused listener closed", || {
        assert!(c.cmd("NOOP").starts_with("200"));
        (!listening(port)).then_some(()).ok_or(opened.elapsed())
    });
    assert!(opened.elapsed() >= Duration::from_millis(1500), "{:?}", opened.elapsed());
    let refused = TcpStream::connect(("127.0.0.1", port)).map(|_| ()).map_err(|e| e.kind());
    assert_eq!(refused, Err(std::io::ErrorKind::ConnectionRefused));
    let reply = c.cmd("RETR hello.txt");
    assert!(reply.starts_with("425 "), "the setup is gone with it: {reply}");
}

#[test]
fn one_address_holds_at_most_max_ports_per_ip_passive_listeners_and_others_get_theirs() {
    let srv =
        FtpServer::start(Opts { env: &[("FERRY_FTP__PASSIVE__MAX_PORTS_PER_IP", "4")], ..Opts::default() });
    let mut sessions: Vec<Ctl> = (0..20).map(|_| Ctl::login(&srv, "anonymous", "guest@")).collect();
    let got: Vec<Result<u16, String>> = sessions.iter_mut().map(Ctl::epsv_port).collect();
    assert_eq!(got.iter().filter(|r| r.is_ok()).count(), 4, "{got:?}");
    for refused in got.iter().filter_map(|r| r.as_ref().err()) {
        assert!(refused.starts_with("425 ") && refused.contains("your address"), "{refused}");
    }
    srv.wait_log("passive listener refused");
    // A new EPSV replaces the session's own listener: it takes no second place.
    let holder = got.iter().position(Result::is_ok).unwrap();
    assert!(sessions[holder].epsv_port().is_ok());
    // Another client address is not held back.
    let mut other = Ctl::login_from(&srv, [127, 0, 0, 2].into(), "anonymous", "guest@");
    assert!(other.epsv_port().is_ok());
    // A session that leaves gives its place back.
    let waiting = got.iter().position(Result::is_err).unwrap();
    assert!(sessions[holder].cmd("QUIT").starts_with("221"));
    drop(sessions.remove(holder));
    let waiting = if waiting > holder { waiting - 1 } else { waiting };
    eventually(Duration::from_secs(5), "a place given back", || sessions[waiting].epsv_port());
}
