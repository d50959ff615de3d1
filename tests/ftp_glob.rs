//! Globbing in LIST and NLST (`*`, `?`, `[...]` in the last component, as vsftpd): the
//! classic `ftp` client's and ncftp's `mget` fetch exactly the matching files, byte-exact;
//! patterns stay inside the root; a pattern over a huge directory is quick and small.

mod common;

use common::ftp::*;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Files under `glob/` in the served root: which the `*.bin` tests must fetch and which not.
fn populate(root: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let files = vec![
        ("glob/a.bin", random_bytes(300_001)),
        ("glob/b.bin", random_bytes(17)),
        ("glob/c.txt", random_bytes(10)),
        ("glob/.h.bin", random_bytes(10)),
        ("glob/sub/d.bin", random_bytes(5)),
    ];
    for (name, data) in &files {
        put(&root.join(name), data);
    }
    files
}

/// The files of `dir`, by name.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

/// The NLST lines of a data transfer.
fn lines(data: &[u8]) -> Vec<String> {
    let text = String::from_utf8(data.to_vec()).unwrap();
    let mut v: Vec<String> = text.split_terminator("\r\n").map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn raw_nlst_and_list_patterns() {
    let srv = FtpServer::start(Opts::default());
    populate(srv.root());
    let mut c = Ctl::login(&srv, USER, PASS);
    let (first, data, last) = c.transfer("NLST glob/*.bin");
    assert!(first.starts_with("150") && last.starts_with("226"), "{first}{last}");
    assert_eq!(lines(&data), ["glob/a.bin", "glob/b.bin"], "dot files and other names are left out");
    let (_, data, _) = c.transfer("NLST -a glob/[.a]*");
    assert_eq!(lines(&data), ["glob/.h.bin", "glob/a.bin"]);
    let (_, data, _) = c.transfer("LIST glob/?.txt");
    let text = String::from_utf8(data).unwrap();
    assert!(
        text.starts_with("-") && text.trim_end().ends_with(" c.txt") && text.lines().count() == 1,
        "{text}"
    );
    // vsftpd's answer to a pattern matching nothing: an empty listing, 226.
    let (first, data, last) = c.transfer("NLST glob/*.none");
    assert!(first.starts_with("150") && data.is_empty() && last.starts_with("226"), "{first}{last}");
    // A wildcard in a directory component is literal: no directory is named `*`.
    let (first, _, _) = c.transfer("NLST */d.bin");
    assert!(first.starts_with("550"), "{first}");
    // Nor is a file a directory to match in; a missing directory is an error, not no match.
    for line in ["NLST glob/c.txt/*", "NLST nowhere/*"] {
        let (first, _, _) = c.transfer(line);
        assert!(first.starts_with("550"), "{line}: {first}");
    }
}

#[test]
fn patterns_stay_inside_the_root() {
    let srv = FtpServer::start(Opts::default());
    put(&srv.root().join("etc/inside.txt"), b"x");
    let mut c = Ctl::login(&srv, USER, PASS);
    let (_, data, last) = c.transfer("NLST ../*");
    assert!(last.starts_with("226"), "{last}");
    let got = lines(&data);
    let want: Vec<String> = names(srv.root()).into_iter().map(|n| format!("../{n}")).collect();
    assert_eq!(got, want, "`..` at the root is the root");
    let (_, data, _) = c.transfer("NLST /../../etc/*");
    assert_eq!(lines(&data), ["/../../etc/inside.txt"], "the root's etc, not the host's");
    let (_, data, _) = c.transfer("LIST /../../../*");
    assert!(!String::from_utf8_lossy(&data).contains(" proc"), "the host's / is never listed");
}

/// Runs the classic `ftp` client (tnftp or inetutils-ftp) non-interactively on `script`.
fn classic_ftp(srv: &FtpServer, script: &str) -> Option<Output> {
    if Command::new("ftp").arg("-?").output().is_err() {
        eprintln!("skipping: no `ftp` client (tests/run-all.sh installs Debian's tnftp)");
        return None;
    }
    let mut cmd = Command::new("ftp");
    // -n: no auto-login (the script logs in), -i: no mget prompts, -p: passive, -v: replies,
    // -d: the commands sent.
    cmd.args(["-n", "-i", "-p", "-v", "-d", "127.0.0.1", &srv.server.ftp_port.to_string()]);
    Some(run(cmd, script.as_bytes(), Duration::from_secs(60)))
}

#[test]
fn classic_ftp_mget_fetches_matching_files() {
    let srv = FtpServer::start(Opts::default());
    let files = populate(srv.root());
    let dest = scratch();
    std::fs::create_dir(dest.path().join("sub")).unwrap();
    let script = format!(
        "user {USER} {PASS}\nbinary\nlcd {}\ncd glob\nmget *.bin\nmget sub/*.bin\nquit\n",
        s(dest.path())
    );
    let Some(out) = classic_ftp(&srv, &script) else { return };
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(names(dest.path()), ["a.bin", "b.bin", "sub"], "{log}");
    assert_eq!(names(&dest.path().join("sub")), ["d.bin"], "{log}");
    // The client expanded the patterns with the server's NLST.
    assert!(log.contains("NLST *.bin") && log.contains("NLST sub/*.bin"), "{log}");
    for (name, data) in &files {
        if let Some(local) = name.strip_prefix("glob/").filter(|n| n.ends_with(".bin") && !n.starts_with('.'))
        {
            assert!(read(dest.path().join(local)) == *data, "{local} differs\n{log}");
        }
    }
}

#[test]
fn ncftpget_fetches_matching_files() {
    let srv = FtpServer::start(Opts::default());
    let files = populate(srv.root());
    let (home, dest) = (scratch(), scratch());
    let mut cmd = Command::new("ncftpget");
    cmd.env("HOME", home.path()).args(["-t", "30", "-V", "-u", USER, "-p", PASS]);
    let debug = home.path().join("debug.log");
    cmd.arg("-d").arg(&debug);
    cmd.args(["-P", &srv.server.ftp_port.to_string(), "127.0.0.1", s(dest.path()), "/glob/*.bin"]);
    let out = run(cmd, b"", Duration::from_secs(60));
    ok(&out, "ncftpget /glob/*.bin");
    // ncftp expands the pattern server-side: it sends NLST with it, then RETRs each name.
    let debug = String::from_utf8_lossy(&read(&debug)).into_owned();
    assert!(debug.contains("Cmd: NLST /glob/*.bin"), "{debug}");
    assert_eq!(names(dest.path()), ["a.bin", "b.bin"]);
    for (name, data) in &files[..2] {
        assert!(read(dest.path().join(&name[5..])) == *data, "{name} differs");
    }
}

#[test]
fn a_pattern_over_a_huge_directory_is_quick() {
    const N: usize = 100_000;
    let srv = FtpServer::start(Opts::default());
    let big = srv.root().join("big");
    std::fs::create_dir(&big).unwrap();
    let t = Instant::now();
    for i in 0..N {
        std::fs::File::create(big.join(format!("f{i}"))).unwrap();
    }
    eprintln!("created {N} files in {:?}", t.elapsed());
    let mut c = Ctl::login(&srv, USER, PASS);
    let t = Instant::now();
    let (first, data, last) = c.transfer("NLST big/*7");
    let took = t.elapsed();
    assert!(first.starts_with("150") && last.starts_with("226"), "{first}{last}");
    let got = lines(&data);
    assert_eq!(got.len(), N / 10);
    assert!(got.iter().all(|n| n.starts_with("big/f") && n.ends_with('7')));
    eprintln!("NLST big/*7 over {N} entries: {} names, {} bytes, {took:?}", got.len(), data.len());
    let t = Instant::now();
    let (_, all, _) = c.transfer("NLST big");
    eprintln!("NLST big (all {N}) for comparison: {} bytes, {:?}", all.len(), t.elapsed());
    assert!(took < Duration::from_secs(20), "{took:?}");
}
