//! The hidden temporary files of atomic uploads: one left by a crash (kill -9 mid-upload) is
//! never listed or served over FTP or TFTP, a second process on the same tree leaves a live
//! upload's file alone, and the next start removes the leftover. Clients cannot make names of
//! that pattern. Names up to NAME_MAX upload atomically (the temporary name always fits).

mod common;

use common::ftp::{put, Ctl, FtpServer, Opts, PASS, USER};
use common::tftp::{error_of, request, v4, Raw};
use common::{check, eventually};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

const ATOMIC: &str = "[ftp.uploads]\natomic = true\n[tftp.write]\nenabled = true\n";

/// `(name, size)` of the temporary upload files in `dir`.
fn temps(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().contains("ferry-part"))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len()))
        .collect();
    v.sort();
    v
}

fn atomic() -> FtpServer {
    FtpServer::start(Opts { toml: ATOMIC, ..Default::default() })
}

#[test]
fn a_crashed_uploads_temporary_file_is_never_served_and_goes_at_the_next_start() {
    let mut first = atomic();
    let up = first.root().join("upload");
    // A slow client: the upload has begun, and stays open.
    let mut writer = Ctl::login(&first, USER, PASS);
    writer.cmd("TYPE I");
    let mut data = writer.epsv();
    let reply = writer.cmd("STOR upload/big.bin");
    assert!(reply.starts_with("150 "), "{reply}");
    data.write_all(b"partial upload").unwrap();
    let live = eventually(Duration::from_secs(10), "the upload's temporary file with its bytes", || {
        check(temps(&up), |t| t.len() == 1 && t[0].1 == 14)
    });
    let temp = &live[0].0;

    // A second process starting on the same tree leaves a running upload's file alone.
    let second = first.another();
    assert_eq!(temps(&up), live, "a live upload's file survives another process's start");
    second.wait_log("in_use=1");
    first.server.signal_and_wait(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(10));
    assert!(matches!(first.server.child.try_wait(), Ok(Some(_))), "the first process is gone");
    assert_eq!(temps(&up), live, "kill -9 leaves the temporary file behind");

    // The leftover is never listed...
    let mut c = Ctl::login_to(&second, "anonymous", "guest@");
    for list in ["LIST -a upload", "NLST -a upload", "MLSD upload"] {
        let (first, bytes, done) = c.transfer(list);
        let text = String::from_utf8_lossy(&bytes);
        assert!(first.starts_with("150 ") && done.starts_with("226 "), "{list}: {first}{done}");
        assert!(!text.contains("ferry-part"), "{list} shows the temporary file:\n{text}");
    }
    let stat = c.cmd("STAT upload");
    assert!(stat.starts_with("213-") && !stat.contains("ferry-part"), "STAT shows it:\n{stat}");
    // ...nor found by any path command, nor served...
    let path = format!("upload/{temp}");
    for cmd in ["MLST", "SIZE", "MDTM"] {
        let reply = c.cmd(&format!("{cmd} {path}"));
        assert!(reply.starts_with("550 "), "{cmd}: {reply}");
    }
    let (first_reply, bytes, _) = c.transfer(&format!("RETR {path}"));
    assert!(first_reply.starts_with("550 ") && bytes.is_empty(), "RETR: {first_reply}");
    let tftp = Raw::new(v4(&second));
    tftp.send(&request(1, &path, "octet", &[]));
    assert_eq!(error_of(&tftp.recv().0), Some((1, "file not found".into())), "TFTP RRQ");
    // ...nor touched by a user who may delete and rename.
    let mut alice = Ctl::login_to(&second, USER, PASS);
    for cmd in ["DELE", "RNFR"] {
        let reply = alice.cmd(&format!("{cmd} {path}"));
        assert!(reply.starts_with("550 "), "{cmd}: {reply}");
    }
    assert_eq!(temps(&up), live);

    // The next start removes it, and says so.
    drop(second);
    let third = first.another();
    assert_eq!(temps(&up), vec![], "the crash's leftover is gone after the restart");
    let log = third.wait_log("temporary files of interrupted uploads removed");
    assert!(log.contains("removed=1"), "{log}");
}

#[test]
fn clients_cannot_make_names_of_the_temporary_pattern() {
    let srv = atomic();
    put(&srv.root().join("upload/ok.txt"), b"ok");
    let mut c = Ctl::login(&srv, USER, PASS);
    c.cmd("TYPE I");
    // The pattern, and the one of earlier versions (`.NAME.ferry-part-XXXXXXXX`).
    for name in ["upload/.ferry-part-0123456789abcdef-x.bin", "upload/.x.bin.ferry-part-0123abcd"] {
        for verb in ["STOR", "APPE", "STOU"] {
            let (first, _) = c.store(&format!("{verb} {name}"), b"data");
            assert!(first.starts_with("553 "), "{verb} {name}: {first}");
        }
        let reply = c.cmd(&format!("MKD {name}"));
        assert!(reply.starts_with("553 "), "MKD {name}: {reply}");
        assert!(c.cmd("RNFR upload/ok.txt").starts_with("350 "));
        let reply = c.cmd(&format!("RNTO {name}"));
        assert!(reply.starts_with("553 "), "RNTO {name}: {reply}");
        let tftp = Raw::new(v4(&srv.server));
        tftp.send(&request(2, name, "octet", &[]));
        assert_eq!(error_of(&tftp.recv().0), Some((1, "invalid file name".into())), "TFTP WRQ {name}");
    }
    let names: Vec<_> =
        std::fs::read_dir(srv.root().join("upload")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec!["ok.txt"]);
    // Names that only look alike are ordinary.
    for name in ["upload/.ferry-part-notes", "upload/x.ferry-part-0123abcd"] {
        let (first, done) = c.store(&format!("STOR {name}"), b"data");
        assert!(done.starts_with("226 "), "STOR {name}: {first}{done}");
    }
}

#[test]
fn names_up_to_255_bytes_upload_atomically() {
    let srv = atomic();
    let mut c = Ctl::login(&srv, USER, PASS);
    c.cmd("TYPE I");
    let longest = format!("{}.bin", "n".repeat(251));
    let (first, done) = c.store(&format!("STOR upload/{longest}"), b"all of it");
    assert!(done.starts_with("226 "), "255 bytes: {first}{done}");
    assert_eq!(std::fs::read(srv.root().join("upload").join(&longest)).unwrap(), b"all of it");
    // A multi-byte name cut inside its temporary name still uploads whole.
    let accented = format!("a{}", "é".repeat(127));
    let (first, done) = c.store(&format!("STOR upload/{accented}"), b"accents");
    assert!(done.starts_with("226 "), "255 bytes of UTF-8: {first}{done}");
    assert_eq!(std::fs::read(srv.root().join("upload").join(&accented)).unwrap(), b"accents");
    // One byte more is refused before any data is read.
    let (first, _) = c.store(&format!("STOR upload/{}.bin", "n".repeat(252)), b"too long");
    assert!(first.starts_with("553 "), "256 bytes: {first}");
    assert_eq!(temps(&srv.root().join("upload")), vec![]);
    // TFTP uploads are always atomic.
    let tftp = Raw::new(v4(&srv.server));
    tftp.send(&request(2, &format!("upload/{}.tft", "t".repeat(251)), "octet", &[]));
    let (p, _) = tftp.recv();
    assert_eq!(error_of(&p), None, "TFTP WRQ of a 255-byte name");
}
