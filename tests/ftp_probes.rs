//! Raw-socket probes of the FTP rules that need the real file system behind the core: SIZE in
//! both TYPEs, REST past the end of a file, MLSD of a file, LIST of a file, NLST of an empty
//! directory, STOU's `150 FILE:` reply, and the multi-line reply framing of FEAT and MLST.

mod common;

use common::ftp::{put, Ctl, FtpServer, Opts, PASS, USER};

#[test]
fn size_is_the_file_length_in_either_type() {
    let srv = FtpServer::start(Opts::default());
    put(&srv.root().join("lines.txt"), b"one\ntwo\r\nthree\n");
    let mut c = Ctl::login(&srv, "anonymous", "guest@");
    // As vsftpd: the length on disk in TYPE A (the default) too, although RETR in TYPE A
    // sends a CR before each bare LF.
    assert_eq!(c.cmd("SIZE lines.txt"), "213 15\r\n");
    let (_, ascii, done) = c.transfer("RETR lines.txt");
    assert_eq!((ascii.as_slice(), done.get(..4)), (&b"one\r\ntwo\r\nthree\r\n"[..], Some("226 ")));
    assert_eq!(c.cmd("TYPE I"), "200 Switching to Binary mode.\r\n");
    assert_eq!(c.cmd("SIZE lines.txt"), "213 15\r\n");
    assert!(c.cmd("SIZE /").starts_with("550 "), "SIZE of a directory");
    assert!(c.cmd("MDTM nope").starts_with("550 "), "MDTM of a missing file");
}

#[test]
fn rest_past_the_end_is_554_and_at_the_end_sends_nothing() {
    let srv = FtpServer::start(Opts::default());
    put(&srv.root().join("ten.bin"), b"0123456789");
    let mut c = Ctl::login(&srv, "anonymous", "guest@");
    c.cmd("TYPE I");
    assert!(c.cmd("REST 11").starts_with("350 "));
    let (first, _, _) = c.transfer("RETR ten.bin");
    assert!(first.starts_with("554 "), "RFC 3659 §5: {first}");
    assert!(c.cmd("REST 10").starts_with("350 "));
    let (first, data, done) = c.transfer("RETR ten.bin");
    assert!(first.starts_with("150 ") && data.is_empty() && done.starts_with("226 "), "{first}{done}");
    assert!(c.cmd("REST 4").starts_with("350 "));
    let (_, data, _) = c.transfer("RETR ten.bin");
    assert_eq!(data, b"456789");
}

#[test]
fn listings_of_files_and_empty_directories() {
    let srv = FtpServer::start(Opts::default());
    std::fs::create_dir(srv.root().join("empty")).unwrap();
    let mut c = Ctl::login(&srv, "anonymous", "guest@");
    // RFC 3659 §7.2: MLSD of a file is 501 (MLST is the command for one object).
    let (first, _, _) = c.transfer("MLSD hello.txt");
    assert!(first.starts_with("501 "), "{first}");
    // RFC 959 §4.1.3: LIST of a file shows that file.
    let (_, data, done) = c.transfer("LIST hello.txt");
    let text = String::from_utf8(data).unwrap();
    assert!(
        text.ends_with(" hello.txt\r\n") && text.lines().count() == 1 && done.starts_with("226 "),
        "{text}"
    );
    // An empty directory: 150, no bytes, 226.
    let (first, data, done) = c.transfer("NLST empty");
    assert!(first.starts_with("150 ") && data.is_empty() && done.starts_with("226 "), "{first}{done}");
    let (_, data, _) = c.transfer("LIST -la empty");
    assert!(data.is_empty(), "{}", String::from_utf8_lossy(&data));
}

#[test]
fn multi_line_replies_feat_mlst_and_stou_names_its_file() {
    let srv = FtpServer::start(Opts::default());
    let mut c = Ctl::login(&srv, USER, PASS);
    // RFC 2389 §3.2: 211- first line, each feature line starting with a space, 211 last.
    let feat = c.cmd("FEAT");
    let lines: Vec<&str> = feat.lines().collect();
    assert_eq!((lines[0], *lines.last().unwrap()), ("211-Features:", "211 End"), "{feat}");
    assert!(lines[1..lines.len() - 1].iter().all(|l| l.starts_with(' ')), "{feat}");
    // RFC 3659 §7.2: MLST's fact line starts with a space; facts are name=value; pairs.
    let mlst = c.cmd("MLST hello.txt");
    let fact = mlst.lines().nth(1).unwrap();
    assert!(mlst.starts_with("250-") && mlst.ends_with("\r\n250 End\r\n"), "{mlst}");
    assert!(fact.starts_with(" type=file;size=17;modify=") && fact.ends_with("; /hello.txt"), "{fact}");
    let modify = fact.split("modify=").nth(1).unwrap().split(';').next().unwrap();
    assert!(modify.len() == 14 && modify.bytes().all(|b| b.is_ascii_digit()), "{fact}");
    // RFC 1123 §4.1.2.9: STOU's 150 names the file it creates.
    assert!(c.cmd("CWD upload").starts_with("250 "));
    let (first, done) = c.store("STOU", b"unique");
    let name = first.strip_prefix("150 FILE: ").unwrap_or_else(|| panic!("{first}")).trim_end();
    assert!(done.starts_with("226 "));
    assert_eq!(std::fs::read(srv.root().join("upload").join(name)).unwrap(), b"unique");
}

#[test]
fn rest_beyond_a_file_position_or_its_end_never_writes_elsewhere() {
    // A user who may append but not delete: before the fix, REST 2^64-1 reached the kernel
    // as offset -1 ("current position") and STOR overwrote the file from byte 0 with a 226.
    let toml = format!(
        "[[ftp.users]]\nname = \"bob\"\npassword_hash = \"{}\"\npermissions = [\"read\", \"write\", \"append\"]\n",
        ferry::auth::hash_password("builder").unwrap()
    );
    let srv = FtpServer::start(Opts { toml: &toml, ..Opts::default() });
    let file = srv.root().join("upload").join("keep.bin");
    put(&file, b"original");
    // The server runs as an unprivileged user; the file must be writable for it.
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let mut c = Ctl::login(&srv, "bob", "builder");
    c.cmd("TYPE I");
    assert!(c.cmd("CWD upload").starts_with("250 "));
    // RFC 3659 §5.3: a marker that cannot be a file position is refused at once.
    for rest in ["REST 18446744073709551615", "REST 9223372036854775808"] {
        let reply = c.cmd(rest);
        assert!(reply.starts_with("501 "), "{rest}: {reply}");
        let (first, _) = c.store("STOR keep.bin", b"x");
        assert!(first.starts_with("550 "), "after a refused REST, STOR is a plain overwrite: {first}");
    }
    // A position past the end would leave a hole: 554, like RETR past the end.
    assert!(c.cmd("REST 9").starts_with("350 "));
    let (first, _) = c.store("STOR keep.bin", b"x");
    assert!(first.starts_with("554 "), "{first}");
    assert_eq!(std::fs::read(&file).unwrap(), b"original", "nothing written");
    // At the end is a real resume.
    assert!(c.cmd("REST 8").starts_with("350 "));
    let (first, done) = c.store("STOR keep.bin", b"+more");
    assert!(first.starts_with("150 ") && done.starts_with("226 "), "{first}{done}");
    assert_eq!(std::fs::read(&file).unwrap(), b"original+more");
}

#[test]
fn site_chmod_never_sets_setuid_setgid_or_sticky() {
    use std::os::unix::fs::PermissionsExt;
    let srv = FtpServer::start(Opts::default());
    let mut c = Ctl::login(&srv, USER, PASS);
    assert!(c.cmd("CWD upload").starts_with("250 "));
    // chmod(2) needs the owner: the server's own user creates both.
    assert!(c.cmd("MKD dir").starts_with("257 "));
    let (_, done) = c.store("STOR tool", b"#!/bin/sh\n");
    assert!(done.starts_with("226 "), "{done}");
    for (cmd, path, want) in [
        ("SITE CHMOD 4755 tool", "tool", 0o755),
        ("SITE CHMOD 2777 dir", "dir", 0o777),
        ("SITE CHMOD 1700 dir", "dir", 0o700),
    ] {
        let reply = c.cmd(cmd);
        assert!(reply.starts_with("200 "), "{cmd}: {reply}");
        let mode = std::fs::metadata(srv.root().join("upload").join(path)).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, want, "{cmd}: mode {mode:o}");
    }
}
