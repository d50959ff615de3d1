//! Deployment artefacts: the systemd unit verifies and readiness reaches systemd, the
//! container image's way of granting the capability works (file capability, non-root,
//! bounding set of one), and the Containerfile and Kubernetes manifests have the shape the
//! documentation promises.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn repo_file(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

#[test]
fn systemd_unit_verifies_cleanly() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let unit = repo_file("deploy/systemd/ferry.service");
    for needle in [
        "Type=notify",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "RestrictAddressFamilies=",
        "LimitNOFILE=",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.contains(needle), "unit lacks {needle}");
    }
    // verify checks that ExecStart exists, so point it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.service");
    std::fs::write(&path, unit.replace("/usr/sbin/ferry", ferry_bin())).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let ours: Vec<&str> = text.lines().filter(|l| l.contains("ferry.service")).collect();
    assert!(out.status.success() && ours.is_empty(), "systemd-analyze verify complains:\n{text}");
}

#[test]
fn systemd_unit_lets_the_xferlog_be_written_at_its_default_path() {
    // ProtectSystem=strict makes /var/log read-only; enabling the xferlog must not need a
    // unit edit beyond the config key.
    let unit = repo_file("deploy/systemd/ferry.service");
    let dir = ferry::config::Config::default().xferlog.path.parent().unwrap().to_path_buf();
    let writable: Vec<std::path::PathBuf> = unit
        .lines()
        .filter_map(|l| {
            if let Some(v) = l.strip_prefix("LogsDirectory=") {
                Some(v.split_whitespace().map(|d| Path::new("/var/log").join(d)).collect::<Vec<_>>())
            } else {
                l.strip_prefix("ReadWritePaths=").map(|v| v.split_whitespace().map(Into::into).collect())
            }
        })
        .flatten()
        .collect();
    assert!(writable.iter().any(|w| dir.starts_with(w)), "{} is read-only under the unit", dir.display());
}

#[test]
fn readiness_and_stopping_reach_notify_socket() {
    let dir = served_dir();
    let sock_dir = tempfile::tempdir().unwrap();
    let sock_path = sock_dir.path().join("notify");
    let listener = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    listener.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(sock_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = Command::new(ferry_bin());
    cmd.env("NOTIFY_SOCKET", &sock_path);
    let mut server = Server::start_with(cmd, dir.path(), free_port(), free_port(), &["--workers", "1"]);
    let mut buf = [0u8; 512];
    let n = listener.recv(&mut buf).expect("READY=1 notification");
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(msg.contains("READY=1") && msg.contains(&format!("MAINPID={}", server.pid())), "{msg}");
    assert_eq!(server.signal_and_wait(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(10)), Some(0));
    let n = listener.recv(&mut buf).expect("STOPPING=1 notification");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
}

#[test]
fn file_capability_start_as_non_root_like_the_container_image() {
    if !is_root() || Command::new("setcap").arg("-h").output().is_err() {
        eprintln!("skipped: needs root and setcap");
        return;
    }
    // The image: a copy of the binary with cap_net_bind_service=+ep, run by a non-root user
    // whose bounding set holds nothing else (--cap-drop ALL --cap-add NET_BIND_SERVICE).
    let bin_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = bin_dir.path().join("ferry");
    std::fs::copy(ferry_bin(), &bin).unwrap();
    let status = Command::new("setcap").arg("cap_net_bind_service=+ep").arg(&bin).status().unwrap();
    if !status.success() {
        eprintln!("skipped: this filesystem does not take file capabilities");
        return;
    }
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all,+net_bind_service",
    ])
    .arg(&bin)
    .args(["--workers", "2"]);
    let dir = served_dir();
    let server = Server::start_with(cmd, dir.path(), free_low_port(), free_low_port(), &[]);
    for t in thread_status(server.pid()) {
        assert_eq!(t["CapEff"], "0000000000000000", "{} CapEff", t["Name"]);
        assert_eq!(t["CapPrm"], "0000000000000000", "{} CapPrm", t["Name"]);
        assert_eq!(t["Uid"].split_whitespace().next(), Some("65534"));
    }
    let kids = children(server.pid());
    assert_eq!(kids.len(), 1, "one binder");
    let binder = process_status(kids[0]);
    assert_eq!(binder["CapEff"], "0000000000000400");
}

#[test]
fn containerfile_is_multi_stage_non_root_and_grants_only_the_bind_capability() {
    let text = repo_file("deploy/container/Containerfile");
    let instructions: Vec<(String, String)> = text
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (op, rest) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (op.to_uppercase(), rest.trim().to_string())
        })
        .collect();
    const KNOWN: &[&str] =
        &["FROM", "RUN", "COPY", "WORKDIR", "USER", "EXPOSE", "ENV", "ENTRYPOINT", "CMD", "ARG", "LABEL"];
    for (op, _) in &instructions {
        assert!(KNOWN.contains(&op.as_str()), "unknown instruction {op}");
    }
    let froms: Vec<_> = instructions.iter().filter(|(op, _)| op == "FROM").collect();
    assert!(froms.len() >= 2 && froms[0].1.contains(" AS "), "multi-stage build");
    let user = instructions.iter().rev().find(|(op, _)| op == "USER").expect("a USER line");
    assert!(!user.1.starts_with("root") && !user.1.starts_with('0'), "runs as non-root: {}", user.1);
    assert!(text.contains("setcap cap_net_bind_service=+ep"), "grants the one capability");
    for port in ["20/tcp", "21/tcp", "69/udp"] {
        assert!(text.contains(port), "EXPOSE {port}");
    }
    assert_eq!(instructions.last().unwrap().0, "CMD");
}

#[test]
fn kubernetes_manifests_drop_everything_but_the_bind_capability() {
    let script = r#"
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kinds = {d["kind"]: d for d in docs}
for k in ("ConfigMap", "DaemonSet", "Service"):
    assert k in kinds, "missing " + k
pod = kinds["DaemonSet"]["spec"]["template"]["spec"]
c = pod["containers"][0]
# A Service named ferry would otherwise inject FERRY_SERVICE_HOST, FERRY_PORT, ...
assert pod.get("enableServiceLinks") is False, "enableServiceLinks: false"
sc = c["securityContext"]
assert sc["capabilities"]["drop"] == ["ALL"], sc
assert sc["capabilities"]["add"] == ["NET_BIND_SERVICE"], sc
assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
assert "readinessProbe" in c and "livenessProbe" in c
env = {e["name"]: e for e in c["env"]}
assert "FERRY_FTP__PASSIVE__ADDRESS" in env
cfg = kinds["ConfigMap"]["data"]["ferry.toml"]
import re
lo, hi = map(int, re.search(r'ports = "(\d+)-(\d+)"', cfg).groups())
svc_ports = {p["port"] for p in kinds["Service"]["spec"]["ports"]}
missing = [p for p in range(lo, hi + 1) if p not in svc_ports]
assert not missing, "passive ports missing from the Service: %r" % missing
print("ok")
"#;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/ferry.yaml");
    let out = Command::new("python3").arg("-c").arg(script).arg(&path).output().expect("python3");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The embedded ferry.toml must be a valid configuration (bar the root, which is a
    // mount in the pod).
    let yaml = repo_file("deploy/kubernetes/ferry.yaml");
    let start = yaml.find("ferry.toml: |").unwrap();
    let body: String = yaml[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| l.trim_start_matches("    "))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = served_dir();
    let file = dir.path().join("k8s.toml");
    std::fs::write(&file, body.replace("/srv/ferry", &dir.path().display().to_string())).unwrap();
    let out = Command::new(ferry_bin()).arg("check-config").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
