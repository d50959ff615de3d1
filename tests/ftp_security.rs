//! Security refusals against the real server, each checked on the wire (tests/ftp/security.py)
//! and in the server's log: path traversal, FTP bounce, foreign passive connections,
//! anonymous writes, password guessing, session limits, pipelining and overlong lines.

mod common;

use common::ftp::*;

fn case(srv: &FtpServer, name: &str) {
    let port = srv.server.ftp_port.to_string();
    let out = python(include_str!("ftp/security.py"), &[name, "127.0.0.1", &port, s(srv.root())]);
    ok(&out, name);
}

#[test]
fn traversal_and_symlinks_stay_inside_the_root() {
    let dir = common::served_dir();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("escape")).unwrap();
    std::os::unix::fs::symlink("../..", dir.path().join("uplink")).unwrap();
    let srv = FtpServer::start_in(dir, Opts::default());
    case(&srv, "traversal");
}

#[test]
fn bounce_targets_are_refused_and_logged() {
    let srv = FtpServer::start(Opts::default());
    case(&srv, "bounce");
    let log = srv.wait_log("EPRT refused");
    assert!(log.contains("PORT refused") && log.contains("EPRT refused"), "{log}");
}

#[test]
fn passive_connection_from_another_ip_is_closed() {
    let srv = FtpServer::start(Opts::default());
    case(&srv, "foreign_passive");
    let log = srv.wait_log("foreign address refused");
    assert!(log.contains("passive data connection from a foreign address refused"), "{log}");
    assert!(log.contains("from=127.0.0.2:"), "{log}");
}

#[test]
fn anonymous_cannot_write() {
    let srv = FtpServer::start(Opts::default());
    case(&srv, "anonymous_write");
    let log = srv.wait_log("RNFR denied");
    for verb in ["STOR denied", "MKD denied", "DELE denied", "RNFR denied"] {
        assert!(log.contains(verb), "{verb} not logged:\n{log}");
    }
}

#[test]
fn wrong_passwords_are_delayed_then_the_session_closes() {
    let srv = FtpServer::start(Opts::default());
    case(&srv, "brute_force");
    let failed = |log: &str| log.matches("login failed: wrong password").count();
    let log = srv.server.wait_log_until("3 failed logins in the log", |log| failed(log) >= 3);
    assert_eq!(failed(&log), 3, "{log}");
}

#[test]
fn session_limits_refuse_with_421() {
    let env = [("FERRY_FTP__LIMITS__MAX_SESSIONS", "3"), ("FERRY_FTP__LIMITS__MAX_SESSIONS_PER_IP", "2")];
    let srv = FtpServer::start(Opts { env: &env, ..Opts::default() });
    case(&srv, "limits");
    let log = srv.wait_log("too many sessions in total");
    assert!(log.contains("session refused reason=too many sessions from this address"), "{log}");
    assert!(log.contains("session refused reason=too many sessions in total"), "{log}");
}

#[test]
fn pipelined_commands_and_overlong_lines() {
    let srv = FtpServer::start(Opts::default());
    case(&srv, "pipelining");
}
