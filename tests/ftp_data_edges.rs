//! FTP data-connection edges against the real server: running out of passive ports gives
//! an immediate 425 (never a hang) and recovers when a port frees; an interrupted upload
//! leaves nothing under its name with `atomic` uploads, the bytes received with
//! `keep_partial`, or nothing at all without it; a file cut short during RETR ends in 451.

mod common;

use common::ftp::{Ctl, FtpServer, Opts, PASS, USER};
use common::{eventually, free_port};
use std::io::{BufRead, Write};
use std::net::TcpStream;
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
    common::ftp::put(&path, &vec![b'x'; FULL]);
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
