//! The hidden temporary files of atomic uploads: clients cannot make names of that pattern,
//! and names up to NAME_MAX upload atomically (the temporary name always fits).

mod common;

use common::ftp::{put, Ctl, FtpServer, Opts, PASS, USER};
use common::tftp::{error_of, request, v4, Raw};
use std::path::Path;

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
