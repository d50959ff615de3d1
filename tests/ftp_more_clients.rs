//! Two more real clients against Ferry: busybox `ftpget`/`ftpput` (PASV, binary, resume with
//! `-c`) and ncftp's `ncftpget`/`ncftpput`/`ncftpls` (passive and active, listings, resume),
//! byte-exact against the files on disk.

mod common;

use common::ftp::*;
use std::process::{Command, Output};
use std::time::Duration;

/// Runs `busybox APPLET args`, 60 s at most.
fn busybox(applet: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new("busybox");
    cmd.arg(applet).args(args);
    run(cmd, b"", Duration::from_secs(60))
}

/// Runs an ncftp tool with a private HOME (it keeps preferences and a spool there), 60 s at most.
fn ncftp(tool: &str, home: &std::path::Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(tool);
    cmd.env("HOME", home).args(["-t", "30"]);
    if tool != "ncftpls" {
        cmd.arg("-V"); // no progress meter (ncftpls has none)
    }
    cmd.args(args);
    run(cmd, b"", Duration::from_secs(60))
}

#[test]
fn busybox_ftpget_and_ftpput_are_byte_exact() {
    let srv = FtpServer::start(Opts::default());
    let port = srv.server.ftp_port.to_string();
    let data = random_bytes((2 << 20) + 777);
    put(&srv.root().join("pub/fw.bin"), &data);
    let tmp = scratch();
    let out = tmp.path().join("fw.bin");

    // Anonymous download (ftpget logs in as anonymous, PASV, TYPE I, RETR).
    ok(&busybox("ftpget", &["-P", &port, "127.0.0.1", s(&out), "/pub/fw.bin"]), "ftpget");
    assert!(read(&out) == data, "ftpget download differs");

    // Continue a partial download (-c: SIZE, REST, RETR).
    std::fs::write(&out, &data[..123_457]).unwrap();
    ok(&busybox("ftpget", &["-c", "-P", &port, "127.0.0.1", s(&out), "/pub/fw.bin"]), "ftpget -c");
    assert!(read(&out) == data, "ftpget -c resumed download differs");

    // Upload as the writable user, then read it back.
    let up = random_bytes((1 << 20) + 3);
    let local = tmp.path().join("up.bin");
    std::fs::write(&local, &up).unwrap();
    let login = ["-u", USER, "-p", PASS, "-P", &port, "127.0.0.1"];
    ok(&busybox("ftpput", &[&login[..], &["/upload/up.bin", s(&local)]].concat()), "ftpput");
    assert!(read(srv.root().join("upload/up.bin")) == up, "ftpput upload differs");

    // Anonymous is read-only: ftpput fails and nothing is written.
    let refused = busybox("ftpput", &["-P", &port, "127.0.0.1", "/upload/anon.bin", s(&local)]);
    assert!(!refused.status.success(), "anonymous upload must be refused");
    assert!(!srv.root().join("upload/anon.bin").exists());

    // A missing file is an error, not an empty download.
    let missing = busybox("ftpget", &["-P", &port, "127.0.0.1", s(&tmp.path().join("m")), "/nope"]);
    assert!(!missing.status.success(), "missing file must fail");
}

#[test]
fn ncftp_get_put_and_list_passive_and_active() {
    let srv = FtpServer::start(Opts::default());
    let port = srv.server.ftp_port.to_string();
    let data = random_bytes((3 << 20) + 4321);
    put(&srv.root().join("pub/img.bin"), &data);
    put(&srv.root().join("pub/notes.txt"), b"notes\n");
    let home = scratch();
    let tmp = scratch();

    // Downloads, passive (-F, the default) and active (-E).
    for mode in ["-F", "-E"] {
        let dest = tmp.path().join(mode.trim_start_matches('-'));
        std::fs::create_dir_all(&dest).unwrap();
        let out = ncftp("ncftpget", home.path(), &[mode, "-P", &port, "127.0.0.1", s(&dest), "/pub/img.bin"]);
        ok(&out, &format!("ncftpget {mode}"));
        assert!(read(dest.join("img.bin")) == data, "ncftpget {mode} download differs");
    }

    // Resume a partial download (-z is the default: SIZE/MDTM, REST, RETR).
    let dest = tmp.path().join("resume");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(dest.join("img.bin"), &data[..1_000_000]).unwrap();
    let out = ncftp("ncftpget", home.path(), &["-z", "-P", &port, "127.0.0.1", s(&dest), "/pub/img.bin"]);
    ok(&out, "ncftpget -z");
    assert!(read(dest.join("img.bin")) == data, "ncftpget resumed download differs");

    // Listings: names (NLST) and long form (LIST or MLSD).
    let url = format!("ftp://127.0.0.1:{port}/pub/");
    let names = ncftp("ncftpls", home.path(), &["-1", &url]);
    ok(&names, "ncftpls -1");
    let names = String::from_utf8_lossy(&names.stdout);
    assert!(names.contains("img.bin") && names.contains("notes.txt"), "{names}");
    let long = ncftp("ncftpls", home.path(), &["-l", &url]);
    ok(&long, "ncftpls -l");
    let long = String::from_utf8_lossy(&long.stdout);
    let line = long.lines().find(|l| l.contains("img.bin")).unwrap_or_else(|| panic!("{long}"));
    assert!(line.contains(&data.len().to_string()), "size shown in the long listing: {line}");
    let machine = ncftp("ncftpls", home.path(), &["-m", &url]);
    ok(&machine, "ncftpls -m");
    let machine = String::from_utf8_lossy(&machine.stdout);
    assert!(machine.contains("type=file;") && machine.contains("notes.txt"), "MLSD listing: {machine}");

    // Upload as the writable user, then resume an upload that is half there.
    let up = random_bytes((2 << 20) + 99);
    let local = tmp.path().join("up.bin");
    std::fs::write(&local, &up).unwrap();
    let login = ["-u", USER, "-p", PASS, "-P", &port, "127.0.0.1", "/upload"];
    ok(&ncftp("ncftpput", home.path(), &[&login[..], &[s(&local)]].concat()), "ncftpput");
    assert!(read(srv.root().join("upload/up.bin")) == up, "ncftpput upload differs");
    std::fs::write(srv.root().join("upload/up.bin"), &up[..700_000]).unwrap();
    // `-s`: ncftpput's sendfile path sends the whole file after its REST (a client bug).
    ok(
        &ncftp("ncftpput", home.path(), &[&["-z", "-s"][..], &login[..], &[s(&local)]].concat()),
        "ncftpput -z",
    );
    assert!(read(srv.root().join("upload/up.bin")) == up, "ncftpput resumed upload differs");
}
