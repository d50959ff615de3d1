//! Python ftplib against Ferry: the commands scripts and tools rely on (see tests/ftp/*.py),
//! checked against the files on disk.

mod common;

use common::ftp::*;

#[test]
fn ftplib_commands_facts_and_abort() {
    let srv = FtpServer::start(Opts::default());
    // Big enough that the transfer is still running when ABOR arrives.
    put(&srv.root().join("big.bin"), &random_bytes(32 << 20));
    let script = include_str!("ftp/features.py");
    let port = srv.server.ftp_port.to_string();
    let out = python(script, &["127.0.0.1", &port, USER, PASS, s(srv.root())]);
    ok(&out, "features.py");
    let log = srv.log();
    assert!(
        log.contains("FTP transfer ended") && log.contains("Aborted"),
        "the aborted RETR is logged:\n{log}"
    );
}
