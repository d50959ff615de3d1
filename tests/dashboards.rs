//! The operator files in deploy/ against the real server: the alert rules pass `promtool check
//! rules` and their own unit tests (`promtool test rules`), a live scrape passes `promtool
//! check metrics`, and the Grafana dashboard and the rules name only metrics Ferry exports
//! while the dashboard shows every one of them.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(rel)
}

/// promtool, from Debian's prometheus package (tests/run-all.sh installs it).
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: promtool not found (Debian package prometheus; tests/run-all.sh installs it)");
    }
    found.then_some("promtool")
}

/// Every `ferry_*` metric name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("ferry_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

fn scrape(listen: &str) -> String {
    let mut s = TcpStream::connect(listen).expect("metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut page = String::new();
    let _ = s.read_to_string(&mut page);
    page.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or(page)
}

#[test]
fn alert_rules_are_valid_and_each_fires_on_its_own_unit_test() {
    let Some(promtool) = promtool() else { return };
    let dir = deploy("prometheus");
    for args in [&["check", "rules", "ferry-alerts.yml"][..], &["test", "rules", "ferry-alerts.test.yml"][..]]
    {
        let out = Command::new(promtool).args(args).current_dir(&dir).output().unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "promtool {args:?}:\n{text}");
    }
    // The unit tests cover every alert the file defines.
    let rules = std::fs::read_to_string(dir.join("ferry-alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("ferry-alerts.test.yml")).unwrap();
    for alert in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(tests.contains(&format!("alertname: {alert}")), "no promtool unit test for {alert}");
    }
}

#[test]
fn a_live_scrape_passes_promtool_and_matches_the_dashboard_and_rules() {
    let dir = served_dir();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(ferry_bin());
    cmd.env("FERRY_METRICS__ENABLED", "true").env("FERRY_METRICS__LISTEN", &listen);
    let _server = Server::start_with(cmd, dir.path(), free_port(), free_port(), &["--workers", "2"]);
    let page = scrape(&listen);
    let exported = metric_names(&page);
    assert!(exported.len() >= 10, "{page}");

    let dashboard = std::fs::read_to_string(deploy("grafana/ferry-dashboard.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    let panels = json["panels"].as_array().expect("panels");
    let exprs: Vec<&str> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    let shown = metric_names(&exprs.join("\n"));
    let missing: Vec<_> = exported.difference(&shown).collect();
    assert!(missing.is_empty(), "metrics with no dashboard panel: {missing:?}");
    let stale: Vec<_> = shown.difference(&exported).collect();
    assert!(stale.is_empty(), "dashboard names metrics Ferry does not export: {stale:?}");
    let rules = std::fs::read_to_string(deploy("prometheus/ferry-alerts.yml")).unwrap();
    let stale: Vec<_> = metric_names(&rules).into_iter().filter(|m| !exported.contains(m)).collect();
    assert!(stale.is_empty(), "alert rules name metrics Ferry does not export: {stale:?}");

    let Some(promtool) = promtool() else { return };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // promtool exits non-zero on format errors and on lint problems (names, HELP texts).
    assert!(out.status.success(), "promtool check metrics:\n{text}\n--- page:\n{page}");
}

fn series(page: &str, name: &str) -> i64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {name} in\n{page}"))
}

#[test]
fn passive_ports_in_use_free_and_refused_follow_the_listeners() {
    use common::ftp::{Ctl, FtpServer, Opts, PASS, USER};
    let listen = format!("127.0.0.1:{}", free_port());
    let env = [
        ("FERRY_METRICS__ENABLED", "true"),
        ("FERRY_METRICS__LISTEN", listen.as_str()),
        ("FERRY_FTP__PASSIVE__MAX_PORTS_PER_IP", "2"),
    ];
    let srv = FtpServer::start(Opts { env: &env, ..Opts::default() });
    let range = i64::from(srv.passive.1 - srv.passive.0) + 1;
    let (in_use, free) =
        ("ferry_ftp_passive_ports_in_use{worker=\"all\"}", "ferry_ftp_passive_ports_free{worker=\"all\"}");
    let refused = "ferry_refusals_total{worker=\"all\",proto=\"ftp\",reason=\"passive_per_ip\"}";
    let page = scrape(&listen);
    assert_eq!((series(&page, in_use), series(&page, free)), (0, range), "{page}");
    let mut sessions: Vec<Ctl> = (0..3).map(|_| Ctl::login(&srv, USER, PASS)).collect();
    for (i, c) in sessions.iter_mut().enumerate() {
        let reply = c.cmd("EPSV");
        assert_eq!(reply.starts_with("229 "), i < 2, "session {i}: {reply}");
    }
    let page = scrape(&listen);
    assert_eq!(
        (series(&page, in_use), series(&page, free), series(&page, refused)),
        (2, range - 2, 1),
        "{page}"
    );
    drop(sessions);
    eventually(Duration::from_secs(5), "the listeners' ports given back", || {
        let page = scrape(&listen);
        check((series(&page, in_use), series(&page, free)), |s| *s == (0, range))
    });
}
