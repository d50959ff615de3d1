//! Resolution against real directories: rules, client roots, unique roots, fallbacks and the
//! case-insensitive lookup, each step visible in the explanation.

use super::*;
use crate::tftp::remap::RuleSet;
use crate::tftp::request::parse_request;
use crate::tftp::roots::{ClientRoot, UniqueRoot};

struct Tree {
    _dir: tempfile::TempDir,
    common: PathBuf,
    lab: PathBuf,
}

fn tree() -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let (common, lab) = (dir.path().join("common"), dir.path().join("lab"));
    for d in
        [common.join("pxelinux.cfg"), common.join("10.0.0.5"), common.join("52-54-00-00-00-01"), lab.clone()]
    {
        std::fs::create_dir_all(d).unwrap();
    }
    for f in ["pxelinux.0", "pxelinux.cfg/default", "10.0.0.5/pxelinux.0", "52-54-00-00-00-01/pxelinux.0"] {
        std::fs::write(common.join(f), f).unwrap();
    }
    std::fs::write(lab.join("pxelinux.0"), "lab").unwrap();
    std::fs::write(dir.path().join("secret"), "outside").unwrap();
    Tree { _dir: dir, common, lab }
}

fn resolver(t: &Tree, cfg: &TftpConfig) -> Resolver {
    let roots = Resolver::open_client_roots(cfg).unwrap();
    Resolver::new(Arc::new(Root::open(&t.common).unwrap()), roots)
}

fn request(op: u8, name: &str) -> Request {
    let bytes = [&[0, op][..], name.as_bytes(), b"\0octet\0"].concat();
    parse_request(&bytes).unwrap()
}

/// (root directory, path) a read of `name` from `ip` resolves to, or the ERROR.
fn read(res: &Resolver, cfg: &TftpConfig, ip: &str, name: &str) -> Result<(PathBuf, String), Refusal> {
    let (root, req) = res.resolve(ip.parse().unwrap(), request(1, name), cfg)?;
    Ok((root.path().to_path_buf(), req.path.display().to_string()))
}

/// A configuration whose one client root, `lab`, serves 10.1.0.0/16.
fn lab_for_10_1(lab: &Path) -> TftpConfig {
    let entry =
        ClientRoot { root: lab.to_path_buf(), networks: vec!["10.1.0.0/16".parse().unwrap()], macs: vec![] };
    TftpConfig { client_roots: vec![entry], ..TftpConfig::default() }
}

fn with_rules(text: &str) -> TftpConfig {
    let mut cfg = TftpConfig::default();
    cfg.remap.rules = Some(Arc::new(RuleSet::parse(text).unwrap()));
    cfg
}

#[test]
fn without_remapping_the_request_is_untouched_and_nothing_is_probed() {
    let t = tree();
    let cfg = TftpConfig::default();
    let res = resolver(&t, &cfg);
    let r = res.explain("10.0.0.9".parse().unwrap(), None, request(1, "/missing"), &cfg);
    let (root, req) = r.outcome.unwrap();
    assert_eq!((root.path(), req.path.to_str().unwrap()), (t.common.as_path(), "missing"));
    assert_eq!(r.tried.len(), 1);
    assert_eq!(r.tried[0].result, "not checked", "one candidate: the open answers");
}

#[test]
fn rules_run_before_confinement_and_cannot_leave_the_root() {
    let t = tree();
    let cfg = with_rules("rg \\\\ /\nr ^/tftpboot/ /\nr ^evil ../secret\nr ^abs /etc/passwd\n");
    let res = resolver(&t, &cfg);
    assert_eq!(read(&res, &cfg, "10.0.0.9", r"\tftpboot\pxelinux.0").unwrap().1, "pxelinux.0");
    let e = read(&res, &cfg, "10.0.0.9", "evil").unwrap_err();
    assert_eq!(e.code, ErrorCode::AccessViolation, "`..` from a rule is refused like any other");
    // An absolute result is taken under the root, as tftp-hpa's -s chroot does.
    let (root, path) = read(&res, &cfg, "10.0.0.9", "abs").unwrap();
    assert_eq!((root, path.as_str()), (t.common.clone(), "etc/passwd"));
    let looping = with_rules("rs ^a$ b\nrs ^b$ a\n");
    assert_eq!(read(&res, &looping, "10.0.0.9", "a").unwrap_err().message, "remap rules loop");
}

#[test]
fn backslash_to_slash_happens_before_the_rules() {
    let t = tree();
    let mut cfg = with_rules("re ^/boot/.* pxelinux.0\n");
    let res = resolver(&t, &cfg);
    assert_eq!(read(&res, &cfg, "10.0.0.9", r"\boot\x").unwrap().1, "boot/x", "rules see the name as sent");
    cfg.remap.backslash_to_slash = true;
    assert_eq!(read(&res, &cfg, "10.0.0.9", r"\boot\x").unwrap().1, "pxelinux.0");
}

#[test]
fn client_roots_by_network_with_read_fallback() {
    let t = tree();
    let cfg = lab_for_10_1(&t.lab);
    let res = resolver(&t, &cfg);
    assert_eq!(read(&res, &cfg, "10.1.2.3", "pxelinux.0").unwrap().0, t.lab);
    assert_eq!(read(&res, &cfg, "10.9.2.3", "pxelinux.0").unwrap().0, t.common, "other clients");
    // Missing in the client's root: the common root's file.
    let r = res.explain("10.1.2.3".parse().unwrap(), None, request(1, "pxelinux.cfg/default"), &cfg);
    assert_eq!(r.outcome.as_ref().unwrap().0.path(), t.common);
    assert_eq!(r.tried.iter().map(|t| t.result.as_str()).collect::<Vec<_>>(), ["not found", "found"]);
    assert_eq!(r.choice.unwrap().entry.map(|e| e.0), Some(0));
    // An upload stays in the client's root.
    let (root, _) =
        res.resolve("10.1.2.3".parse().unwrap(), request(2, "pxelinux.cfg/default"), &cfg).unwrap();
    assert_eq!(root.path(), t.lab);
}

#[test]
fn unique_roots_by_ip_and_mac_when_the_directory_exists() {
    let t = tree();
    let mut cfg = TftpConfig { unique_root: UniqueRoot::Ip, ..TftpConfig::default() };
    let res = resolver(&t, &cfg);
    assert_eq!(read(&res, &cfg, "10.0.0.5", "pxelinux.0").unwrap().1, "10.0.0.5/pxelinux.0");
    assert_eq!(read(&res, &cfg, "::ffff:10.0.0.5", "pxelinux.0").unwrap().1, "10.0.0.5/pxelinux.0");
    assert_eq!(read(&res, &cfg, "10.0.0.6", "pxelinux.0").unwrap().1, "pxelinux.0", "no directory: the root");
    // A file missing in the client's directory comes from the root.
    assert_eq!(read(&res, &cfg, "10.0.0.5", "pxelinux.cfg/default").unwrap().1, "pxelinux.cfg/default");
    cfg.unique_root = UniqueRoot::Mac;
    let mac = "52:54:00:00:00:01".parse().ok();
    let r = res.explain("10.0.0.77".parse().unwrap(), mac, request(1, "pxelinux.0"), &cfg);
    assert_eq!(r.outcome.unwrap().1.path, Path::new("52-54-00-00-00-01/pxelinux.0"));
    assert_eq!(r.mac.map(|m| m.1), Some(MacSource::Given));
}

#[test]
fn case_insensitive_lookup_for_reads() {
    let t = tree();
    let mut cfg = TftpConfig::default();
    let res = resolver(&t, &cfg);
    assert_eq!(read(&res, &cfg, "10.0.0.9", "PXELINUX.CFG/Default").unwrap().1, "PXELINUX.CFG/Default");
    cfg.remap.case_insensitive = true;
    assert_eq!(read(&res, &cfg, "10.0.0.9", "PXELINUX.CFG/Default").unwrap().1, "pxelinux.cfg/default");
    assert_eq!(read(&res, &cfg, "10.0.0.9", "pxelinux.0").unwrap().1, "pxelinux.0");
}

#[test]
fn a_client_root_added_later_is_opened_on_first_use() {
    let t = tree();
    let cfg = TftpConfig::default();
    let res = resolver(&t, &cfg);
    let mut reloaded = lab_for_10_1(&t.lab);
    assert_eq!(read(&res, &reloaded, "10.1.2.3", "pxelinux.0").unwrap().0, t.lab);
    reloaded.client_roots[0].root = t.lab.join("gone");
    let e = read(&res, &reloaded, "10.1.2.3", "pxelinux.0").unwrap_err();
    assert_eq!(e, Refusal::new(ErrorCode::AccessViolation, "client root unavailable"));
}
