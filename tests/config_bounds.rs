//! Values that parse but would fail later (a timer overflowing in a worker, a password hash
//! that allocates without bound, a listen port the kernel picks) are refused at load time.

mod common;

use ferry::config::bounds::BOUNDS;
use ferry::config::{Config, ConfigSource};
use std::process::Command;

/// Loads `root = <a temporary directory>` followed by `toml` through the library loader.
fn load(toml: &str) -> Result<Config, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ferry.toml");
    std::fs::write(&file, format!("root = {:?}\n{toml}", dir.path().display().to_string())).unwrap();
    Config::load(&ConfigSource::Explicit(file), &Default::default()).map_err(|e| e.to_string())
}

/// `key = value` for every bound, as dotted TOML keys.
fn every_key_at(value: impl Fn(u64, u64) -> u64) -> String {
    BOUNDS.iter().map(|b| format!("{} = {}\n", b.key, value(b.min, b.max))).collect()
}

/// Every key path of a TOML document whose value is an integer.
fn integer_keys(v: &toml::Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                integer_keys(v, &path, out);
            }
        }
        toml::Value::Integer(_) => out.push(prefix.to_string()),
        _ => {}
    }
}

#[test]
fn every_integer_key_has_a_bound() {
    let mut keys = Vec::new();
    integer_keys(&toml::from_str(&Config::default().to_toml()).unwrap(), "", &mut keys);
    let bounded: Vec<&str> = BOUNDS.iter().map(|b| b.key).collect();
    let unbounded: Vec<_> = keys.iter().filter(|k| !bounded.contains(&k.as_str())).collect();
    assert!(unbounded.is_empty(), "integer keys without a range: {unbounded:?}");
    let stale: Vec<_> = bounded.iter().filter(|k| !keys.iter().any(|key| key == *k)).collect();
    assert!(stale.is_empty(), "ranges for keys that do not exist: {stale:?}");
}

#[test]
fn each_bound_loads_and_one_past_it_is_refused_naming_the_key() {
    load(&every_key_at(|min, _| min)).expect("every key at its minimum loads");
    load(&every_key_at(|_, max| max)).expect("every key at its maximum loads");
    for b in BOUNDS {
        let range = format!("{} to {}", b.min, b.max);
        let mut past = vec![b.max + 1];
        if b.min > 0 {
            past.push(b.min - 1);
        }
        for value in past {
            let err = load(&format!("{} = {value}\n", b.key)).expect_err(b.key);
            // Past a u8/u16 key's maximum the type refuses it, naming the key too.
            let named = err.contains(&format!("`{}`", b.key));
            assert!(
                named && (err.contains(&range) || err.contains("expected u")),
                "{} = {value}: {err}",
                b.key
            );
        }
    }
}

#[test]
fn check_config_refuses_timeouts_that_would_overflow_a_timer() {
    let dir = common::served_dir();
    for (var, key) in [
        ("FERRY_FTP__LIMITS__IDLE_TIMEOUT_SECS", "ftp.limits.idle_timeout_secs"),
        ("FERRY_FTP__LIMITS__DATA_TIMEOUT_SECS", "ftp.limits.data_timeout_secs"),
        ("FERRY_FTP__ACTIVE__CONNECT_TIMEOUT_SECS", "ftp.active.connect_timeout_secs"),
        ("FERRY_DRAIN_TIMEOUT_SECS", "drain_timeout_secs"),
    ] {
        let out = Command::new(common::ferry_bin())
            .args(["check-config", "--root"])
            .arg(dir.path())
            .env(var, i64::MAX.to_string())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}: {err}");
        assert!(err.contains(&format!("`{key}`")) && err.contains("out of range"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn the_example_file_states_each_range_next_to_its_key() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/ferry.toml")).unwrap();
    // A key's paragraph: the lines between blank lines around `name = ...` in its section.
    let mut section = String::new();
    let mut paragraph: Vec<&str> = Vec::new();
    let mut documented = Vec::new();
    for line in text.lines().chain([""]) {
        if line.trim().is_empty() {
            for l in &paragraph {
                if let Some((name, _)) = l.split_once(" = ").filter(|_| !l.starts_with('#')) {
                    let key = if section.is_empty() { name.to_string() } else { format!("{section}.{name}") };
                    documented.push((key, paragraph.join("\n")));
                }
            }
            paragraph.clear();
        } else if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = header.to_string();
        } else {
            paragraph.push(line);
        }
    }
    for b in BOUNDS {
        let range = format!("{} to {}", b.min, b.max);
        let (_, text) =
            documented.iter().find(|(k, _)| k == b.key).unwrap_or_else(|| panic!("{} is missing", b.key));
        assert!(text.contains(&range), "config/ferry.toml should give {}'s range `{range}`:\n{text}", b.key);
    }
}

/// A user whose password hash has `algorithm`, `version` and `params` (never verified here).
fn user_with_hash(algorithm: &str, version: &str, params: &str) -> String {
    format!(
        "[[ftp.users]]\nname = \"alice\"\npassword_hash = \
         \"${algorithm}${version}${params}$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObGmMdFRA4sSA0\"\n"
    )
}

#[test]
fn argon2_costs_are_bounded_at_load_not_at_the_first_login() {
    for params in ["m=262144,t=16,p=8", "m=19456,t=2,p=1"] {
        load(&user_with_hash("argon2id", "v=19", params)).expect(params);
    }
    load(&user_with_hash("argon2i", "v=16", "m=4096,t=3,p=1")).expect("argon2i, version 16");
    load(&user_with_hash("argon2d", "v=19", "m=4096,t=3,p=1")).expect("argon2d");
    for (algorithm, version, params, reason) in [
        // 256 GiB a login: the allocation aborts the process.
        ("argon2id", "v=19", "m=268435455,t=2,p=1", "262144 KiB"),
        ("argon2id", "v=19", "m=262145,t=2,p=1", "262144 KiB"),
        ("argon2id", "v=19", "m=19456,t=17,p=1", "16"),
        ("argon2id", "v=19", "m=19456,t=2,p=9", "8"),
        ("argon2id", "v=19", "m=4,t=2,p=1", "parameters"),
        ("argon2id", "v=20", "m=19456,t=2,p=1", "version"),
        ("argon2x", "v=19", "m=19456,t=2,p=1", "argon2x"),
    ] {
        let err = load(&user_with_hash(algorithm, version, params)).expect_err(params);
        assert!(err.contains("`ftp.users[0].password_hash`") && err.contains(reason), "{params}: {err}");
    }
}

#[test]
fn port_0_in_a_listen_address_is_refused_naming_the_key() {
    const WHY: &str = "port 0 is not allowed: each worker would bind a different port";
    for (toml, key, why) in [
        ("ftp.listen = [\"127.0.0.1:2121\", \"127.0.0.1:0\"]\n", "ftp.listen[1]", WHY),
        ("tftp.listen = [\"[::]:0\"]\n", "tftp.listen[0]", WHY),
        // One socket, but no scraper would know its port. Refused even while disabled:
        // enabling it later must not be what reveals the mistake.
        ("metrics.listen = \"127.0.0.1:0\"\n", "metrics.listen", "port 0 is not allowed"),
    ] {
        let err = load(toml).expect_err(key);
        assert!(err.contains(&format!("`{key}`")) && err.contains(why), "{err}");
    }
    let dir = common::served_dir();
    let out = Command::new(common::ferry_bin())
        .args(["check-config", "--ftp-port", "0", "--root"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("`ftp.listen[0]`") && err.contains(WHY), "{err}");
}
