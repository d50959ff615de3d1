//! TFTP remapping and per-client roots end to end: a tftp-hpa rule file served to real
//! clients (tftp-hpa, atftp), rules that try to leave the root, roots chosen by the client's
//! loopback source address and by its MAC (network namespaces), SIGHUP reload of the rules,
//! and `ferry tftp-resolve` telling the same story as the server.

mod common;

use common::netns::{self, Netns};
use common::tftp::*;
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// A classic PXE rule file, plus rules that try to leave the root or never settle.
const RULES: &str = r"# Windows WDS clients
rg \\ /
# old tftpd -s habits
r ^/tftpboot/
ri ^pxelinux\.0$ pxelinux.0
# per-client configuration by address
r ^pxelinux\.cfg/default$ pxelinux.cfg/\x
r ^whoami$ hosts/\i
# escapes
r ^dotdot$ ../secret
r ^abs$ /etc/passwd
r ^link$ outlink
a \.key$
rs ^loop$ loop2
rs ^loop2$ loop
";

/// A served tree: the root (with a secret next to it, outside) and an outside file.
struct Tree {
    _top: tempfile::TempDir,
    root: PathBuf,
    conf: PathBuf,
    rules: PathBuf,
}

fn tree() -> Tree {
    let top = tempfile::Builder::new().prefix("ferry-remap").tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = top.path().join("root");
    for d in ["pxelinux.cfg", "hosts", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(top.path().join("secret"), "outside the root").unwrap();
    std::os::unix::fs::symlink("../secret", root.join("outlink")).unwrap();
    let rules = top.path().join("tftp.remap");
    std::fs::write(&rules, RULES).unwrap();
    let conf = top.path().join("ferry.toml");
    Tree { root, conf, rules, _top: top }
}

impl Tree {
    /// Runs a `ferry` subcommand on this tree's configuration and root.
    fn ferry(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(ferry_bin());
        cmd.arg("--config").arg(&self.conf).arg("--root").arg(&self.root).args(args);
        cmd.output().unwrap()
    }
}

/// Ferry with `extra` TOML (and the rule file) on fresh ports, 2 workers.
fn start(t: &Tree, extra: &str) -> Server {
    let text = format!("[tftp.remap]\nfile = \"{}\"\n{extra}", t.rules.display());
    std::fs::write(&t.conf, text).unwrap();
    let mut cmd = Command::new(ferry_bin());
    cmd.arg("--config").arg(&t.conf);
    Server::start_with(cmd, &t.root, free_port(), free_port(), &["--workers", "2"])
}

/// A raw client whose requests come from `local` (127.0.0.2, 127.0.0.3, ...).
fn raw_from(local: &str, server: &Server) -> Raw {
    let sock = UdpSocket::bind((local, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    Raw { sock, server: v4(server) }
}

/// The ERROR the server answers an RRQ for `name` with.
fn refusal(raw: &Raw, name: &str) -> (u16, String) {
    raw.send(&request(1, name, "octet", &[]));
    let (p, _) = raw.recv();
    error_of(&p).unwrap_or_else(|| panic!("{name}: expected an ERROR, got opcode {}", opcode(&p)))
}

#[test]
fn classic_pxe_rules_with_tftp_hpa_and_atftp() {
    if !have("tftp") || !have("atftp") {
        return;
    }
    let t = tree();
    let boot = random_file(&t.root, "pxelinux.0", 70_000);
    let cfg = random_file(&t.root.join("pxelinux.cfg"), "7F000001", 3_000);
    let mine = random_file(&t.root.join("hosts"), "127.0.0.1", 600);
    let server = start(&t, "");
    let out = tempfile::tempdir().unwrap();
    let port = server.tftp_port.to_string();
    let cases: [(&str, &[u8]); 4] = [
        (r"\tftpboot\PXELINUX.0", &boot),
        ("/tftpboot/pxelinux.0", &boot),
        ("pxelinux.cfg/default", &cfg),
        ("whoami", &mine),
    ];
    for (i, (name, want)) in cases.iter().enumerate() {
        let dest = out.path().join(format!("hpa{i}"));
        let o = run_client(
            60,
            "tftp",
            &["127.0.0.1", &port, "-m", "binary", "-c", "get", name, dest.to_str().unwrap()],
        );
        assert_fetched(&o, &dest, want, &format!("tftp-hpa {name}"), &server);
        let dest = out.path().join(format!("atftp{i}"));
        let args =
            ["--option", "blksize 1468", "-g", "-r", name, "-l", dest.to_str().unwrap(), "127.0.0.1", &port];
        let o = run_client(60, "atftp", &args);
        assert_fetched(&o, &dest, want, &format!("atftp {name}"), &server);
    }
}

#[test]
fn rules_cannot_leave_the_root_and_loops_are_refused() {
    let t = tree();
    std::fs::write(t.root.join("etc/passwd"), "the root's own etc/passwd").unwrap();
    let server = start(&t, "");
    let raw = Raw::new(v4(&server));
    assert_eq!(refusal(&raw, "dotdot"), (2, "`..` in file name".into()), "a rule's `..` is refused");
    // A symlink the rule points at is resolved inside the root: `../secret` stops at it.
    let link = refusal(&raw, "link");
    assert_eq!(link.0, 1, "the link's target is looked up inside the root: {link:?}");
    assert_eq!(refusal(&raw, "host.key"), (2, "refused by a remap rule".into()));
    assert_eq!(refusal(&raw, "loop"), (2, "remap rules loop".into()));
    // An absolute result is taken under the root, as tftp-hpa -s does.
    assert_eq!(raw.get("abs", "octet"), b"the root's own etc/passwd");
    // And the server is still there for honest names (from a new port: a new TID).
    std::fs::write(t.root.join("pxelinux.0"), "boot").unwrap();
    assert_eq!(Raw::new(v4(&server)).get("PXELINUX.0", "octet"), b"boot");
}

#[test]
fn roots_chosen_by_the_clients_loopback_address() {
    let t = tree();
    let (lab2, lab3) = (t.root.join("../lab2"), t.root.join("../lab3"));
    for (dir, text) in [(&lab2, "lab2"), (&lab3, "lab3")] {
        std::fs::create_dir(dir).unwrap();
        std::fs::write(dir.join("pxelinux.0"), text).unwrap();
    }
    std::fs::write(t.root.join("pxelinux.0"), "common").unwrap();
    std::fs::write(t.root.join("only-common"), "fallback").unwrap();
    std::fs::create_dir(t.root.join("127.0.0.4")).unwrap();
    std::fs::write(t.root.join("127.0.0.4/pxelinux.0"), "unique 4").unwrap();
    let extra = format!(
        "[tftp]\nunique_root = \"ip\"\nclient_roots = [\n  {{ root = \"{}\", networks = [\"127.0.0.2/32\"] }},\n  {{ root = \"{}\", networks = [\"127.0.0.3/32\"] }},\n]\n",
        lab2.canonicalize().unwrap().display(),
        lab3.canonicalize().unwrap().display()
    );
    let server = start(&t, &extra);
    let from = |ip: &str| raw_from(ip, &server);
    assert_eq!(from("127.0.0.2").get("pxelinux.0", "octet"), b"lab2");
    assert_eq!(from("127.0.0.3").get("pxelinux.0", "octet"), b"lab3");
    assert_eq!(from("127.0.0.1").get("pxelinux.0", "octet"), b"common");
    // unique_root = "ip": 127.0.0.4 has a directory of its own under the root.
    assert_eq!(from("127.0.0.4").get("pxelinux.0", "octet"), b"unique 4");
    // A file missing in the client's root comes from the common root.
    assert_eq!(from("127.0.0.2").get("only-common", "octet"), b"fallback");
    assert_eq!(from("127.0.0.4").get("only-common", "octet"), b"fallback");
}

#[test]
fn sighup_reloads_the_rules_and_keeps_them_when_the_new_file_is_bad() {
    let t = tree();
    std::fs::write(t.root.join("a"), "file a").unwrap();
    std::fs::write(t.root.join("b"), "file b").unwrap();
    std::fs::write(&t.rules, "r ^x$ a\n").unwrap();
    let server = start(&t, "");
    let raw = Raw::new(v4(&server));
    assert_eq!(raw.get("x", "octet"), b"file a");
    std::fs::write(&t.rules, "r ^x$ b\n").unwrap();
    kill(Pid::from_raw(server.pid()), Signal::SIGHUP).unwrap();
    server.wait_log("configuration reloaded");
    assert_eq!(raw.get("x", "octet"), b"file b", "a changed rule file alone is a change");
    std::fs::write(&t.rules, "r ^x$ a\nr (broken b\n").unwrap();
    kill(Pid::from_raw(server.pid()), Signal::SIGHUP).unwrap();
    let log = server.wait_log("new configuration rejected");
    let place = format!("{}:2:", t.rules.display());
    assert!(log.contains(&place) && log.contains("bad regex"), "names file, line and reason:\n{log}");
    assert_eq!(raw.get("x", "octet"), b"file b", "the running rules stay");
}

#[test]
fn a_bad_rule_file_stops_start_up_naming_file_and_line() {
    let t = tree();
    std::fs::write(&t.rules, "# fine\nrg \\\\ /\nrz a b\n").unwrap();
    std::fs::write(&t.conf, format!("[tftp.remap]\nfile = \"{}\"\n", t.rules.display())).unwrap();
    let out = t.ferry(&["check-config"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let place = format!("{}:3: unknown flag `z`", t.rules.display());
    assert!(err.contains("tftp.remap.file") && err.contains(&place), "{err}");
}

#[test]
fn tftp_resolve_explains_what_the_server_does() {
    let t = tree();
    std::fs::write(t.root.join("pxelinux.0"), "boot").unwrap();
    std::fs::write(&t.conf, format!("[tftp.remap]\nfile = \"{}\"\n", t.rules.display())).unwrap();
    let resolve = |args: &[&str]| {
        let out = t.ferry(&[&["tftp-resolve"], args].concat());
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, text) = resolve(&[r"\tftpboot\PXELINUX.0", "--client", "10.0.0.5"]);
    assert_eq!(code, Some(0), "{text}");
    for needle in ["line 2", "line 4", "line 5", r#"-> "/tftpboot/PXELINUX.0""#, "would be served (4 bytes)"]
    {
        assert!(text.contains(needle), "should mention {needle:?}:\n{text}");
    }
    let served = t.root.join("pxelinux.0");
    assert!(text.contains(&format!("served as: {}", served.display())), "{text}");
    let (code, text) = resolve(&["pxelinux.cfg/default", "--client", "192.168.0.1"]);
    assert_eq!(code, Some(1), "the file is missing: {text}");
    assert!(text.contains("pxelinux.cfg/C0A80001") && text.contains("ERROR 1"), "{text}");
    let (code, text) = resolve(&["loop", "--client", "10.0.0.5"]);
    assert_eq!(code, Some(1));
    assert!(text.contains("did not settle") && text.contains("ERROR 2"), "{text}");
}

/// A server namespace and a client namespace on one veth link; the client's MAC is set.
struct Lan {
    server: Netns,
    client: Netns,
}

const CLIENT_MAC: &str = "52:54:00:12:34:56";

#[test]
fn roots_chosen_by_the_clients_mac_from_the_neighbour_table() {
    if !netns::available() {
        eprintln!("skipped: network namespaces need root and iproute2");
        return;
    }
    let lan = Lan { server: Netns::new("s"), client: Netns::new("c") };
    let (_vs, vc) = netns::link(&lan.server, "10.232.1.1/24", &lan.client, "10.232.1.2/24");
    lan.client.run(&format!("ip link set dev {vc} address {CLIENT_MAC}"));
    let t = tree();
    let kiosk = t.root.join("../kiosk");
    std::fs::create_dir(&kiosk).unwrap();
    std::fs::write(kiosk.join("pxelinux.0"), "kiosk by MAC").unwrap();
    std::fs::create_dir(kiosk.join("52-54-00-12-34-56")).unwrap();
    std::fs::write(kiosk.join("52-54-00-12-34-56/unique"), "unique by MAC").unwrap();
    std::fs::write(t.root.join("pxelinux.0"), "common").unwrap();
    let extra = format!(
        "[tftp]\nunique_root = \"mac\"\nclient_roots = [ {{ root = \"{}\", macs = [\"{CLIENT_MAC}\"] }} ]\n",
        kiosk.canonicalize().unwrap().display()
    );
    let text = format!("[tftp.remap]\nfile = \"{}\"\n{extra}", t.rules.display());
    std::fs::write(&t.conf, text).unwrap();
    let (conf, root) = (t.conf.clone(), t.root.clone());
    let server = lan.server.inside(move || {
        let mut cmd = Command::new(ferry_bin());
        cmd.arg("--config").arg(&conf);
        Server::start_with(cmd, &root, free_port(), free_port(), &["--workers", "2"])
    });
    let port = server.tftp_port;
    let fetch = move |name: &'static str| {
        let to: SocketAddr = format!("10.232.1.1:{port}").parse().unwrap();
        let sock = UdpSocket::bind("10.232.1.2:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        Raw { sock, server: to }.get(name, "octet")
    };
    let got = lan.client.inside(move || (fetch("pxelinux.0"), fetch("unique")));
    assert_eq!(got.0, b"kiosk by MAC", "server log:\n{}", server.stderr());
    assert_eq!(got.1, b"unique by MAC", "unique_root = mac, under the entry's root");
    // tftp-resolve in the server's namespace reads the same neighbour table.
    let out = Command::new("ip")
        .args(["netns", "exec", &lan.server.name, ferry_bin(), "--config"])
        .arg(&t.conf)
        .arg("--root")
        .arg(&t.root)
        .args(["tftp-resolve", "pxelinux.0", "--client", "10.232.1.2"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("{CLIENT_MAC} (kernel neighbour table)")), "{text}");
    assert!(text.contains("by MAC"), "{text}");
    drop(server);
}
