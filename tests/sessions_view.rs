//! The live session view end to end: `ferry sessions` reads `/sessions` on the metrics
//! endpoint and lists idle and transferring FTP sessions and held TFTP transfers.

mod common;

use common::ftp::{Ctl, FtpServer, Opts, PASS, USER};
use common::tftp::{error, request, v4, Raw};
use common::*;
use serde_json::Value;
use std::process::{Command, Output};
use std::time::Duration;

/// `ferry sessions ARGS` with `env` (the server's metrics settings), as an operator runs it.
fn ferry_sessions(env: &[(&str, &str)], root: &std::path::Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(ferry_bin());
    cmd.arg("sessions").arg("--root").arg(root).args(args).env_remove("FERRY_CONFIG").env_remove("RUST_LOG");
    cmd.envs(env.iter().copied());
    cmd.output().expect("run ferry sessions")
}

/// The entries of `ferry sessions --json`.
fn entries(env: &[(&str, &str)], root: &std::path::Path) -> Vec<Value> {
    let out = ferry_sessions(env, root, &["--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ferry sessions --json: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str::<Vec<Value>>(&text).unwrap_or_else(|e| panic!("not a JSON array ({e}): {text}"))
}

/// The entry whose client is `addr`.
fn of(seen: &[Value], addr: std::net::SocketAddr) -> Option<&Value> {
    seen.iter().find(|e| e["client"] == addr.to_string())
}

#[test]
fn sessions_lists_ftp_sessions_and_tftp_transfers_until_they_end() {
    let listen = format!("127.0.0.1:{}", free_port());
    let env = [
        ("FERRY_METRICS__ENABLED", "true"),
        ("FERRY_METRICS__LISTEN", listen.as_str()),
        ("FERRY_FTP__LIMITS__RATE_LIMIT_SESSION_BPS", "50000"),
        // An RRQ whose client never ACKs is held 1 + 5 x 10 s before the server gives up.
        ("FERRY_TFTP__DEFAULT_TIMEOUT_SECS", "10"),
        ("FERRY_TFTP__UNPROVEN_RETRANSMITS", "5"),
    ];
    let srv = FtpServer::start(Opts { env: &env, ..Opts::default() });
    std::fs::write(srv.root().join("big.bin"), vec![7u8; 4 << 20]).unwrap();
    let root = srv.root().to_path_buf();

    let idle = Ctl::login(&srv, USER, PASS);
    let mut busy = Ctl::login(&srv, USER, PASS);
    let data = busy.epsv();
    let first = busy.cmd("RETR big.bin");
    assert!(first.starts_with("150"), "{first}");
    let tftp = Raw::new(v4(&srv.server));
    tftp.send(&request(1, "big.bin", "octet", &[]));
    let (_, tid) = tftp.recv();
    let (idle_addr, busy_addr) = (idle.w.local_addr().unwrap(), busy.w.local_addr().unwrap());
    let tftp_addr = tftp.sock.local_addr().unwrap();

    // The start-up probe's session may still be listed for a moment: wait for the three.
    let seen = eventually(Duration::from_secs(10), "the three entries", || {
        check(entries(&env, &root), |s| {
            s.len() == 3 && of(s, busy_addr).is_some_and(|e| e["bytes"].as_u64() > Some(0))
        })
    });
    let i = of(&seen, idle_addr).expect("the idle session");
    assert_eq!(
        (&i["protocol"], &i["user"], &i["state"], &i["file"]),
        (&"ftp".into(), &USER.into(), &"idle".into(), &Value::Null),
        "{i}"
    );
    let b = of(&seen, busy_addr).expect("the downloading session");
    assert_eq!(
        (&b["user"], &b["state"], &b["file"]),
        (&USER.into(), &"RETR".into(), &"/big.bin".into()),
        "{b}"
    );
    assert!(b["rate_bps"].as_u64() > Some(0) && b["age_secs"].as_f64() > Some(0.0), "{b}");
    let t = of(&seen, tftp_addr).expect("the TFTP transfer");
    assert_eq!(
        (&t["protocol"], &t["user"], &t["state"], &t["file"]),
        (&"tftp".into(), &Value::Null, &"RRQ".into(), &"/big.bin".into()),
        "{t}"
    );
    let before = b["bytes"].as_u64().unwrap();
    eventually(Duration::from_secs(10), "the RETR's byte count growing", || {
        let now = entries(&env, &root);
        check(of(&now, busy_addr).and_then(|e| e["bytes"].as_u64()), |n| *n > Some(before))
    });

    let out = ferry_sessions(&env, &root, &[]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("PROTO") && lines[0].contains("RATE") && lines[0].contains("AGE"),
        "{table}"
    );
    assert_eq!(lines.len(), 4, "a header and one line per entry:\n{table}");
    let busy_line = lines.iter().find(|l| l.contains(&busy_addr.to_string())).expect("the RETR line");
    assert!(
        busy_line.contains("alice") && busy_line.contains("RETR") && busy_line.contains("/big.bin"),
        "{table}"
    );
    assert!(lines.iter().any(|l| l.starts_with("tftp") && l.contains(" - ") && l.contains("RRQ")), "{table}");

    drop((idle, busy, data));
    tftp.send_to(&error(0, "done"), tid);
    eventually(Duration::from_secs(10), "the view emptied", || check(entries(&env, &root), Vec::is_empty));
}

#[test]
fn sessions_without_the_metrics_endpoint_says_why_and_fails() {
    let dir = served_dir();
    let out = ferry_sessions(&[("FERRY_METRICS__ENABLED", "false")], dir.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("metrics endpoint") && err.contains("enabled = true"), "{err}");

    // Enabled, but nothing listens there: unreachable, said as such.
    let listen = format!("127.0.0.1:{}", free_port());
    let env = [("FERRY_METRICS__ENABLED", "true"), ("FERRY_METRICS__LISTEN", listen.as_str())];
    let out = ferry_sessions(&env, dir.path(), &["--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("cannot reach the metrics endpoint") && err.contains(&listen), "{err}");
}
