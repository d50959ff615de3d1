//! Smoke test of the benchmark harness: runs `ferry-loadgen` against small FTP and TFTP
//! servers started inside the test, and the comparison script's smoke profile against Ferry,
//! and checks that they complete and report sane numbers.
//! Timing goals live in benches/compare.sh (see issue 5), never as assertions here.

mod common;
#[path = "../benches/loadgen/minisrv.rs"]
mod minisrv;

use std::path::Path;
use std::process::Command;

/// Runs the load generator (arguments split on spaces) with JSON on stdout; returns it.
fn loadgen(args: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry-loadgen"))
        .args(["--json", "-", "--threads", "2"])
        .args(args.split_whitespace())
        .output()
        .expect("run ferry-loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ferry-loadgen {args} failed: {stderr}\n{stdout}");
    stdout
}

/// The first number after `"key": ` at or after `from` in a flat JSON report.
fn num(json: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\": ");
    let at = json.find(&pat).unwrap_or_else(|| panic!("no {key} in {json}")) + pat.len();
    let end = json[at..].find([',', '}']).map_or(json.len(), |e| at + e);
    json[at..end].trim().parse().unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}

fn latency(json: &str) -> (f64, f64, f64) {
    let at = json.find("\"latency_ms\": ").expect("latency_ms");
    let part = &json[at..];
    (num(part, "p50"), num(part, "p99"), num(part, "max"))
}

fn write(dir: &Path, name: &str, len: usize) -> String {
    let data: Vec<u8> = (0..len).map(|i| (i * 31 + i / 251) as u8).collect();
    let p = dir.join(name);
    std::fs::write(&p, data).expect("write test file");
    p.display().to_string()
}

fn assert_sane(json: &str, ok: f64, bytes_each: f64) {
    assert_eq!(num(json, "ok"), ok, "{json}");
    assert_eq!(num(json, "failed"), 0.0, "{json}");
    assert_eq!(num(json, "bytes"), ok * bytes_each, "{json}");
    assert!(num(json, "per_s") > 0.0 && num(json, "elapsed_s") > 0.0, "{json}");
    let (p50, p99, max) = latency(json);
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{json}");
    // Its own CPU time is part of every report, so a saturated client can be told apart.
    assert!(json.contains("\"loadgen_cpu_s\": {\"user\": "), "{json}");
}

#[test]
fn ftp_download_upload_and_idle_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("up")).expect("mkdir");
    let file = write(dir.path(), "f", 100_000);
    let srv = minisrv::ftp(dir.path().to_path_buf()).expect("mini ftp");
    let addr = srv.addr;

    for mode in ["epsv", "pasv", "port"] {
        let j =
            loadgen(&format!("ftp-get --addr {addr} --path f --expect-file {file} --mode {mode} -c 4 -n 12"));
        assert_sane(&j, 12.0, 100_000.0);
        assert!(num(&j, "sessions_per_s") > 0.0, "{j}");
    }
    let j = loadgen(&format!(
        "ftp-get --addr {addr} --path f --expect-size 100000 -c 2 -n 2 --retrs-per-session 3"
    ));
    assert_sane(&j, 6.0, 100_000.0);

    let j = loadgen(&format!("ftp-put --addr {addr} --path up/x-{{n}} --size 64K --check-size -c 2 -n 4"));
    assert_sane(&j, 4.0, 65536.0);
    assert_eq!(std::fs::metadata(dir.path().join("up/x-3")).expect("uploaded").len(), 65536);

    let ready = dir.path().join("ready");
    let j = loadgen(&format!(
        "ftp-idle --addr {addr} --sessions 40 -c 8 --hold 0.2 --ready-file {}",
        ready.display()
    ));
    assert_eq!((num(&j, "accepted"), num(&j, "held"), num(&j, "failed")), (40.0, 40.0, 0.0), "{j}");
    assert_eq!(std::fs::read_to_string(&ready).expect("ready file"), "40");
}

#[test]
fn ftps_explicit_and_implicit_with_resumed_data_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("up")).expect("mkdir");
    let file = write(dir.path(), "f", 100_000);
    let explicit = minisrv::ftps(dir.path().to_path_buf(), minisrv::Tls::Explicit).expect("mini ftps");
    let implicit = minisrv::ftps(dir.path().to_path_buf(), minisrv::Tls::Implicit).expect("mini ftps");
    let (ea, ia) = (explicit.addr, implicit.addr);

    // Two sessions of three RETRs each: every data connection resumes the control session's
    // TLS session (the mini server refuses one that does not, with 522).
    let j = loadgen(&format!(
        "ftp-get --tls explicit --addr {ea} --path f --expect-file {file} -c 2 -n 2 --retrs-per-session 3"
    ));
    assert_sane(&j, 6.0, 100_000.0);
    assert_eq!((num(&j, "tls_data_handshakes"), num(&j, "tls_data_resumed")), (6.0, 6.0), "{j}");
    let j = loadgen(&format!(
        "ftp-get --tls implicit --tls-version 1.2 --addr {ia} --path f --expect-size 100000 --mode pasv -c 2 -n 4"
    ));
    assert_sane(&j, 4.0, 100_000.0);
    assert_eq!(num(&j, "tls_data_resumed"), 4.0, "{j}");
    // An upload over TLS completes only with close_notify.
    let j = loadgen(&format!(
        "ftp-put --tls explicit --addr {ea} --path up/t-{{n}} --size 64K --check-size -n 2"
    ));
    assert_sane(&j, 2.0, 65536.0);
    let j = loadgen(&format!("ftp-idle --tls implicit --addr {ia} --sessions 10 -c 5 --hold 0.1"));
    assert_eq!((num(&j, "held"), num(&j, "failed")), (10.0, 0.0), "{j}");
    // The plain path reports no TLS handshakes.
    let plain = minisrv::ftp(dir.path().to_path_buf()).expect("mini ftp");
    let j = loadgen(&format!("ftp-get --addr {} --path f --expect-size 100000", plain.addr));
    assert_eq!(num(&j, "tls_data_handshakes"), 0.0, "{j}");
}

#[test]
fn tftp_windows_wraparound_and_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "t", 200_000);
    let wrap = write(dir.path(), "w", 600_000);
    let srv = minisrv::tftp(dir.path().to_path_buf()).expect("mini tftp");
    let base = format!("tftp-get --addr {} --path t --expect-file {file} --tsize -c 4 -n 8", srv.addr);

    let j = loadgen(&format!("{base} --blksize 1468 --windowsize 16"));
    assert_sane(&j, 8.0, 200_000.0);
    let j = loadgen(&base);
    assert_sane(&j, 8.0, 200_000.0);
    let j =
        loadgen(&format!("{base} --blksize 512 --windowsize 4 --loss 0.05 --retransmit-ms 50 --retries 40"));
    assert_sane(&j, 8.0, 200_000.0);
    assert!(num(&j, "retransmits") > 0.0, "loss should force client retransmissions: {j}");
    // 600,000 bytes in 8-byte blocks (the RFC 2348 minimum) = 75,000 blocks: numbers wrap past 65535.
    let j = loadgen(&format!(
        "tftp-get --addr {} --path w --expect-file {wrap} --blksize 8 --windowsize 64 -c 2 -n 2",
        srv.addr
    ));
    assert_sane(&j, 2.0, 600_000.0);
}

#[test]
fn failures_are_reported_by_kind_not_crashes() {
    // A port nobody listens on: every session fails to connect, and the report says so.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = unused.local_addr().expect("addr");
    drop(unused);
    let j = loadgen(&format!("ftp-get --addr {addr} --path f -c 2 -n 5"));
    assert_eq!((num(&j, "ok"), num(&j, "failed")), (0.0, 5.0), "{j}");
    assert!(j.contains("\"errors\": {\"connect\": 5}"), "{j}");

    // A TFTP server that is missing the file answers ERROR 1.
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = minisrv::tftp(dir.path().to_path_buf()).expect("mini tftp");
    let j = loadgen(&format!("tftp-get --addr {} --path nope -n 2", srv.addr));
    assert!(j.contains("\"tftp-error-1\": 2"), "{j}");
}

#[test]
fn loadgen_self_test_passes() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_ferry-loadgen")).arg("self-test").output().expect("run self-test");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn compare_script_runs_every_scenario_against_ferry() {
    // Like benches/compare.sh, it runs as root (servers drop to `nobody`; cgroups).
    if !common::is_root() || Command::new("python3").arg("-V").output().is_err() {
        eprintln!("skipped: needs root and python3");
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("results");
    let (ftp_port, tftp_port) = (common::free_port(), common::free_port());
    let run = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/compare.py"))
        .args(["--smoke", "--servers", "ferry,ferry-w1,ferry-w2"])
        .args(["--ferry", env!("CARGO_BIN_EXE_ferry"), "--loadgen", env!("CARGO_BIN_EXE_ferry-loadgen")])
        .arg("--work")
        .arg(work.path())
        .arg("--out")
        .arg(&out)
        .args(["--ftp-port", &ftp_port.to_string(), "--tftp-port", &tftp_port.to_string()])
        .output()
        .expect("run compare.py");
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "compare.py --smoke failed:\n{log}");
    // Every scenario ran against Ferry, every transfer or session succeeded.
    let check = r#"
import json, sys
d = json.load(open(sys.argv[1]))
for s in d["scenarios"]:
    for name, r in s["runs"].items():
        L = r.get("load") or {}
        print(s["id"], name, L.get("ok", 0), L.get("failed", "missing"), r.get("error", ""))
"#;
    let json = out.join("latest-smoke.json");
    let report = Command::new("python3").args(["-c", check]).arg(&json).output().expect("read the report");
    let report = String::from_utf8_lossy(&report.stdout).to_string();
    let lines: Vec<&str> = report.lines().collect();
    assert!(lines.len() >= 12, "a run per scenario expected:\n{report}\n{log}");
    for line in lines {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert!(f.len() == 4 && f[2] != "0" && f[3] == "0", "run failed: {line}\n{log}");
    }
    let table = std::fs::read_to_string(out.join("latest-smoke.md")).expect("the table");
    assert!(table.contains("| tftp-storm | ferry |"), "{table}");
}
