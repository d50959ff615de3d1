//! Configuration layering (defaults < file < FERRY_* environment < flags) and every class of
//! configuration error, each of which must name the key at fault.
#![allow(clippy::result_large_err)] // figment::Jail fixes the closure error type

mod common;

use ferry::cli::Overrides;
use ferry::config::{Config, ConfigSource};
use figment::Jail;
use std::path::PathBuf;
use std::process::Command;

fn overrides(args: &[&str]) -> Overrides {
    use clap::Parser;
    let mut argv = vec!["ferry"];
    argv.extend_from_slice(args);
    ferry::cli::Cli::parse_from(argv).overrides
}

fn load(jail: &Jail, file: Option<&str>, args: &[&str]) -> Result<Config, String> {
    let source = match file {
        Some(f) => ConfigSource::Explicit(jail.directory().join(f)),
        None => ConfigSource::None,
    };
    overrides(args).load(&source).map_err(|e| e.to_string())
}

#[test]
fn defaults_serve_from_srv_ferry_on_privileged_ports() {
    let d = Config::default();
    assert_eq!(d.root, PathBuf::from("/srv/ferry"));
    assert_eq!(d.ftp.listen, vec!["[::]:21".parse().unwrap()]);
    assert_eq!(d.tftp.listen, vec!["[::]:69".parse().unwrap()]);
    assert_eq!(d.ftp.active_source_port, 20);
    assert_eq!(d.user, "ferry");
    assert_eq!(d.workers, 0);
}

#[test]
fn each_layer_overrides_the_one_below() {
    Jail::expect_with(|jail| {
        jail.create_dir("served")?;
        jail.create_dir("other")?;
        let served = jail.directory().join("served");
        jail.create_file(
            "ferry.toml",
            &format!(
                "root = {:?}\nworkers = 3\nuser = \"filer\"\n[ftp]\nlisten = [\"127.0.0.1:2121\"]\n[log]\nlevel = \"debug\"\n",
                served.display().to_string()
            ),
        )?;
        // File over defaults.
        let c = load(jail, Some("ferry.toml"), &[]).unwrap();
        assert_eq!((c.workers, c.user.as_str(), c.log.level.as_str()), (3, "filer", "debug"));
        assert_eq!(c.ftp.listen, vec!["127.0.0.1:2121".parse().unwrap()]);
        assert_eq!(c.tftp.listen, vec!["[::]:69".parse().unwrap()], "untouched keys keep their default");

        // Environment over file, including nested keys with `__`.
        jail.set_env("FERRY_WORKERS", "5");
        jail.set_env("FERRY_FTP__LISTEN", "[\"127.0.0.2:2121\"]");
        let c = load(jail, Some("ferry.toml"), &[]).unwrap();
        assert_eq!(c.workers, 5);
        assert_eq!(c.ftp.listen, vec!["127.0.0.2:2121".parse().unwrap()]);

        // Flags over environment; --ftp-port rewrites the port of the merged listen list.
        let other = jail.directory().join("other");
        let c = load(
            jail,
            Some("ferry.toml"),
            &[
                "--workers",
                "7",
                "--root",
                other.to_str().unwrap(),
                "--ftp-port",
                "3000",
                "--tftp-port",
                "3001",
            ],
        )
        .unwrap();
        assert_eq!(c.workers, 7);
        assert_eq!(c.root, other);
        assert_eq!(c.ftp.listen, vec!["127.0.0.2:3000".parse().unwrap()]);
        assert_eq!(c.tftp.listen, vec!["[::]:3001".parse().unwrap()]);
        Ok(())
    });
}

fn expect_error(toml: &str, env: &[(&str, &str)], needles: &[&str]) {
    Jail::expect_with(|jail| {
        jail.create_dir("served")?;
        let root = jail.directory().join("served").display().to_string();
        jail.create_file("ferry.toml", &toml.replace("ROOT", &root))?;
        for (k, v) in env {
            jail.set_env(k, v);
        }
        let err = load(jail, Some("ferry.toml"), &[]).expect_err("must be refused");
        for n in needles {
            assert!(err.contains(n), "error `{err}` should mention `{n}`");
        }
        Ok(())
    });
}

#[test]
fn unknown_keys_are_refused_with_their_name() {
    expect_error("rot = \"/srv\"\n", &[], &["rot", "unknown field"]);
    expect_error("root = \"ROOT\"\n[ftp]\nlisen = []\n", &[], &["ftp", "lisen"]);
    expect_error("root = \"ROOT\"\n[log]\nlevle = \"x\"\n", &[], &["log", "levle"]);
    expect_error("root = \"ROOT\"\n", &[("FERRY_WROKERS", "2")], &["wrokers", "FERRY_WROKERS"]);
}

/// What Kubernetes puts in the environment of every pod in a namespace with service links on
/// (the default): here for a Service `ferry` with named ports `ftp`, `tftp` and `pasv-50000`,
/// and a Service `ferry-metrics` on an IPv6 cluster address.
const SERVICE_LINKS: &[(&str, &str)] = &[
    ("FERRY_SERVICE_HOST", "10.96.0.10"),
    ("FERRY_SERVICE_PORT", "21"),
    ("FERRY_SERVICE_PORT_FTP", "21"),
    ("FERRY_SERVICE_PORT_TFTP", "69"),
    ("FERRY_SERVICE_PORT_PASV_50000", "50000"),
    ("FERRY_PORT", "tcp://10.96.0.10:21"),
    ("FERRY_PORT_21_TCP", "tcp://10.96.0.10:21"),
    ("FERRY_PORT_21_TCP_PROTO", "tcp"),
    ("FERRY_PORT_21_TCP_PORT", "21"),
    ("FERRY_PORT_21_TCP_ADDR", "10.96.0.10"),
    ("FERRY_PORT_69_UDP", "udp://10.96.0.10:69"),
    ("FERRY_PORT_69_UDP_PROTO", "udp"),
    ("FERRY_PORT_69_UDP_PORT", "69"),
    ("FERRY_PORT_69_UDP_ADDR", "10.96.0.10"),
    ("FERRY_PORT_50000_TCP", "tcp://10.96.0.10:50000"),
    ("FERRY_PORT_50000_TCP_PROTO", "tcp"),
    ("FERRY_PORT_50000_TCP_PORT", "50000"),
    ("FERRY_PORT_50000_TCP_ADDR", "10.96.0.10"),
    ("FERRY_METRICS_SERVICE_HOST", "fd00::a"),
    ("FERRY_METRICS_SERVICE_PORT", "9121"),
    ("FERRY_METRICS_PORT", "tcp://[fd00::a]:9121"),
    ("FERRY_METRICS_PORT_9121_SCTP", "sctp://[fd00::a]:9121"),
    ("FERRY_METRICS_PORT_9121_SCTP_PROTO", "sctp"),
    ("FERRY_METRICS_PORT_9121_SCTP_PORT", "9121"),
    ("FERRY_METRICS_PORT_9121_SCTP_ADDR", "fd00::a"),
];

#[test]
fn kubernetes_service_links_are_not_configuration() {
    let dir = common::served_dir();
    let check = |env: &[(&str, &str)]| {
        let out = Command::new(common::ferry_bin())
            .args(["check-config", "--root"])
            .arg(dir.path())
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = check(SERVICE_LINKS);
    assert_eq!(code, Some(0), "{err}");
    // Among them, a typo in a real key is still refused, by its variable's name.
    let typo = [SERVICE_LINKS, &[("FERRY_FTP__BANER", "x")]].concat();
    let (code, err) = check(&typo);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("FERRY_FTP__BANER") && err.contains("unknown field"), "{err}");
}

#[test]
fn look_alikes_of_service_links_are_refused() {
    // The names Kubernetes uses, with values it never writes: someone meant a setting.
    for (var, value) in [
        ("FERRY_PORT", "2121"),
        ("FERRY_FTP_PORT", "2121"),
        ("FERRY_SERVICE_HOST", "ferry.example"),
        ("FERRY_SERVICE_PORT_FTP", "ftp"),
        ("FERRY_PORT_21_TCP", "tcp://10.96.0.10:22"),
        ("FERRY_PORT_21_TCP_PROTO", "udp"),
        ("FERRY_PORT_21_TCP_PORT", "2121"),
    ] {
        expect_error("root = \"ROOT\"\n", &[(var, value)], &[var, "unknown field"]);
    }
}

#[test]
fn wrong_types_are_refused_with_their_name() {
    expect_error("root = \"ROOT\"\nworkers = \"many\"\n", &[], &["workers"]);
    expect_error("root = \"ROOT\"\n[ftp]\nlisten = \"not an address\"\n", &[], &["ftp.listen"]);
    expect_error("root = \"ROOT\"\n[ftp]\nlisten = [\"localhost\"]\n", &[], &["ftp.listen"]);
    expect_error("root = \"ROOT\"\n[log]\ntarget = \"syslog\"\n", &[], &["log.target"]);
    expect_error("root = \"ROOT\"\n[ftp]\nactive_source_port = 70000\n", &[], &["ftp.active_source_port"]);
}

#[test]
fn impossible_values_are_refused_with_key_and_reason() {
    expect_error("root = \"/nonexistent/ferry\"\n", &[], &["`root`", "does not exist"]);
    expect_error("root = \"ROOT\"\nworkers = 5000\n", &[], &["`workers`"]);
    expect_error("root = \"ROOT\"\nuser = \"\"\n", &[], &["`user`"]);
    expect_error("root = \"ROOT\"\n[log]\nlevel = \"ferry=lots\"\n", &[], &["`log.level`"]);
    expect_error("root = \"ROOT\"\n[ftp]\nlisten = []\n", &[], &["`ftp.listen`"]);
    expect_error("root = \"ROOT\"\n[tftp]\nlisten = []\n", &[], &["`tftp.listen`"]);
    expect_error(
        "root = \"ROOT\"\n[ftp]\nenabled = false\n[tftp]\nenabled = false\n",
        &[],
        &["nothing to serve"],
    );
}

#[test]
fn a_missing_explicit_file_is_an_error() {
    Jail::expect_with(|jail| {
        let err = load(jail, Some("absent.toml"), &[]).expect_err("missing file");
        assert!(err.contains("absent.toml"), "{err}");
        Ok(())
    });
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let dir = common::served_dir();
    let out = Command::new(common::ferry_bin())
        .args(["check-config", "--root"])
        .arg(dir.path())
        .args(["--ftp-port", "2121"])
        .env("FERRY_WORKERS", "4")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let parsed: Config = toml::from_str(&text).expect("check-config prints valid TOML");
    assert_eq!(parsed.workers, 4);
    assert_eq!(parsed.root, dir.path());
    assert_eq!(parsed.ftp.listen, vec!["[::]:2121".parse().unwrap()]);
}

#[test]
fn check_config_on_a_bad_file_names_the_key_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, format!("root = {:?}\n[tftp]\nlisen = []\n", dir.path().display().to_string()))
        .unwrap();
    let out = Command::new(common::ferry_bin()).arg("check-config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lisen") && err.contains("tftp"), "{err}");
    assert!(err.contains("bad.toml"), "the file at fault is named, as the README shows: {err}");
}

#[test]
fn toml_syntax_errors_are_one_line_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let root = format!("root = {:?}\n", dir.path().display().to_string());
    for (name, body, place) in [
        ("dup.toml", "[ftp]\nbanner = \"a\"\nbanner = \"b\"\n", ":4:1: duplicate key `banner`"),
        ("header.toml", "workers = 2\n[ftp\n", ":3:5: invalid table header"),
        ("string.toml", "user = \"ferry\n", ":2:"),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, format!("{root}{body}")).unwrap();
        let out = Command::new(common::ferry_bin()).arg("check-config").arg(&file).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{name}: one line:\n{err}");
        let expected = format!("ferry: configuration error: {}{place}", file.display());
        assert!(err.starts_with(&expected), "{name}: expected `{expected}...`, got {err}");
    }
}

/// Every key path of a TOML document (tables recursed, arrays are leaves).
fn key_paths(v: &toml::Value, prefix: &str, out: &mut Vec<String>) {
    if let toml::Value::Table(t) = v {
        for (k, v) in t {
            let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            key_paths(v, &path, out);
            out.push(path);
        }
    }
}

#[test]
fn the_shipped_example_file_documents_every_key_with_its_default() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/ferry.toml")).unwrap();
    let from_file: Config = toml::from_str(&text).expect("config/ferry.toml parses with no unknown keys");
    assert_eq!(from_file, Config::default(), "config/ferry.toml must state the defaults exactly");
    let (mut shipped, mut known) = (Vec::new(), Vec::new());
    key_paths(&toml::from_str(&text).unwrap(), "", &mut shipped);
    key_paths(&toml::from_str(&Config::default().to_toml()).unwrap(), "", &mut known);
    let missing: Vec<_> = known.iter().filter(|k| !shipped.contains(k)).collect();
    assert!(missing.is_empty(), "config/ferry.toml does not document {missing:?}");
}

#[test]
fn hash_password_prints_a_verifiable_argon2id_hash() {
    use std::io::Write;
    let mut child = Command::new(common::ferry_bin())
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"correct horse\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let phc = String::from_utf8(out.stdout).unwrap();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    assert!(ferry::auth::verify_password(phc.trim(), "correct horse"));
}

#[test]
fn a_bad_remap_rule_names_the_file_the_line_and_the_reason() {
    Jail::expect_with(|jail| {
        jail.create_dir("served")?;
        let root = jail.directory().join("served").display().to_string();
        let rules = jail.directory().join("tftp.remap");
        jail.create_file("tftp.remap", "# WDS\nrg \\\\ /\nr ^/tftpboot/ \nri (unclosed x\n")?;
        let text = format!("root = \"{root}\"\n[tftp.remap]\nfile = \"{}\"\n", rules.display());
        jail.create_file("ferry.toml", &text)?;
        let err = load(jail, Some("ferry.toml"), &[]).expect_err("a bad regex must be refused");
        let place = format!("{}:4:", rules.display());
        for needle in ["tftp.remap.file", place.as_str(), "bad regex"] {
            assert!(err.contains(needle), "`{err}` should mention `{needle}`");
        }
        jail.create_file("tftp.remap", "rq a b\n")?;
        let err = load(jail, Some("ferry.toml"), &[]).expect_err("an unknown flag must be refused");
        assert!(err.contains(":1: unknown flag `q`"), "{err}");
        jail.create_file("tftp.remap", "r a b\\z\n")?;
        let err = load(jail, Some("ferry.toml"), &[]).expect_err("a bad escape must be refused");
        assert!(err.contains(":1: unknown escape `\\z`"), "{err}");
        std::fs::remove_file(&rules).unwrap();
        let err = load(jail, Some("ferry.toml"), &[]).expect_err("a missing file must be refused");
        assert!(err.contains("cannot read the rule file"), "{err}");
        // A good file loads, and its rules come with the configuration.
        jail.create_file("tftp.remap", "rg \\\\ /\n# comment\nr ^/tftpboot/\n")?;
        let c = load(jail, Some("ferry.toml"), &[]).unwrap();
        assert_eq!(c.tftp.remap.rules.as_ref().map(|r| r.len()), Some(2));
        Ok(())
    });
}

#[test]
fn client_roots_and_unique_root_are_checked() {
    expect_error(
        "root = \"ROOT\"\n[[tftp.client_roots]]\nroot = \"ROOT\"\n",
        &[],
        &["tftp.client_roots[0]", "names no client"],
    );
    expect_error(
        "root = \"ROOT\"\n[[tftp.client_roots]]\nroot = \"/nonexistent/ferry\"\nnetworks = [\"10.0.0.0/8\"]\n",
        &[],
        &["tftp.client_roots[0].root", "not an existing directory"],
    );
    expect_error(
        "root = \"ROOT\"\n[[tftp.client_roots]]\nroot = \"ROOT\"\nmacs = [\"52:54:00\"]\n",
        &[],
        &["macs", "not a MAC address"],
    );
    expect_error("root = \"ROOT\"\n[tftp]\nunique_root = \"host\"\n", &[], &["unique_root", "host"]);
}
