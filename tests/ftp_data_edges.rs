//! FTP data-connection edges against the real server: running out of passive ports gives
//! an immediate 425 (never a hang) and recovers when a port frees; an interrupted upload
//! leaves nothing under its name with `atomic` uploads, the bytes received with
//! `keep_partial`, or nothing at all without it.

mod common;

use common::ftp::{FtpServer, Opts, PASS, USER};
use common::{eventually, free_port, ftp_command, ftp_connect};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

type Control = (BufReader<TcpStream>, TcpStream);

fn login(srv: &FtpServer, user: &str, pass: &str) -> Control {
    let (mut r, mut w, greeting) = ftp_connect(srv.server.ftp_addr());
    assert!(greeting.starts_with("220"), "{greeting}");
    assert!(ftp_command(&mut r, &mut w, &format!("USER {user}")).starts_with("331"));
    let reply = ftp_command(&mut r, &mut w, &format!("PASS {pass}"));
    assert!(reply.starts_with("230"), "{reply}");
    (r, w)
}

/// EPSV: the port from `229 ... (|||port|)`, or the whole reply when refused.
fn epsv(c: &mut Control) -> Result<u16, String> {
    let reply = ftp_command(&mut c.0, &mut c.1, "EPSV");
    if !reply.starts_with("229") {
        return Err(reply);
    }
    let inner = reply.split("(|||").nth(1).and_then(|s| s.split('|').next()).unwrap_or_default();
    inner.parse().map_err(|_| reply.clone())
}

#[test]
fn running_out_of_passive_ports_is_a_quick_425_and_recovers() {
    let port = free_port();
    let range = format!("{port}-{port}");
    let srv = FtpServer::start(Opts { env: &[("FERRY_FTP__PASSIVE__PORTS", &range)], ..Opts::default() });
    let mut a = login(&srv, "anonymous", "guest@");
    assert_eq!(epsv(&mut a), Ok(port), "the one passive port goes to the first session");
    let mut b = login(&srv, "anonymous", "guest@");
    let started = Instant::now();
    let refused = epsv(&mut b).expect_err("no passive port left");
    assert!(refused.starts_with("425"), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(2), "refused at once, not after a timeout");
    // The first session leaves; its listener is freed and the port serves the second.
    assert!(ftp_command(&mut a.0, &mut a.1, "QUIT").starts_with("221"));
    drop(a);
    let again = eventually(Duration::from_secs(5), "the freed passive port", || {
        epsv(&mut b).inspect_err(|e| assert!(e.starts_with("425"), "{e}"))
    });
    assert_eq!(again, port);
}

/// Starts `STOR upload/cut.bin`, sends part of the data, then resets the data connection.
/// Returns what was sent and the final control reply.
fn interrupted_upload(srv: &FtpServer) -> (Vec<u8>, String) {
    let mut c = login(srv, USER, PASS);
    assert!(ftp_command(&mut c.0, &mut c.1, "TYPE I").starts_with("200"));
    let port = epsv(&mut c).expect("EPSV");
    c.1.write_all(b"STOR upload/cut.bin\r\n").unwrap();
    let mut data = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut line = String::new();
    c.0.read_line(&mut line).unwrap();
    assert!(line.starts_with("150"), "{line}");
    let sent: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    data.write_all(&sent).unwrap();
    // An abortive close (RST): the client died mid-upload.
    socket2::SockRef::from(&data).set_linger(Some(Duration::ZERO)).unwrap();
    drop(data);
    let mut reply = String::new();
    c.0.read_line(&mut reply).unwrap();
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
    let mut c = login(&srv, "anonymous", "guest@");
    assert!(ftp_command(&mut c.0, &mut c.1, "TYPE I").starts_with("200"));
    let port = epsv(&mut c).expect("EPSV");
    assert!(ftp_command(&mut c.0, &mut c.1, "RETR missing.bin").starts_with("550"));
    // No new EPSV: the same listener serves the next RETR.
    c.1.write_all(b"RETR present.bin\r\n").unwrap();
    let mut data = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut line = String::new();
    c.0.read_line(&mut line).unwrap();
    assert!(line.starts_with("150"), "{line}");
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut data, &mut got).unwrap();
    assert_eq!(got, b"present\n");
    line.clear();
    c.0.read_line(&mut line).unwrap();
    assert!(line.starts_with("226"), "{line}");
}
