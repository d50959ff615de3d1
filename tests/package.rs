//! The Debian package and the container image, used the way an operator uses them.
//!
//! Package: `cargo deb` (cargo-deb, pinned below; installed with `cargo install` when missing)
//! builds `ferry_<version>_amd64.deb` once, lintian reports no error, `dpkg -i` installs it
//! (user, conffile, unit, logrotate file, directories), the installed binary accepts the
//! installed configuration and serves a file over FTP and TFTP as the user `ferry`, logrotate
//! plus SIGHUP move the xferlog, `dpkg -r` keeps the configuration, and `dpkg --purge` leaves
//! nothing but non-empty data. A guard purges the package whatever happens.
//!
//! Lintian (2.116, Debian 12) warnings the package is known to get, tolerated (only `E:`
//! lines fail the test): `no-manual-page [usr/sbin/ferry]`, and
//! `wrong-name-for-changelog-of-native-package` (a version without a Debian revision is a
//! native one, whose changelog lintian wants as changelog.gz; cargo-deb writes
//! changelog.Debian.gz).
//!
//! Container: deploy/container/Containerfile built with podman from a binary of this build
//! (its Rust build stage replaced by `--build-context`: no registry is reachable here) on a
//! Debian base made with debootstrap, then run as its non-root user with only
//! NET_BIND_SERVICE, serving a file over FTP and TFTP on privileged ports. Ferry is PID 1
//! there; a third test checks that start in a PID namespace where podman is missing.
//!
//! The first two need root and change the machine while they run; each test reports itself
//! skipped, with the reason, where it cannot run.

mod common;

use common::ftp::{ok, run, s};
use common::tftp::run_client;
use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The cargo-deb release the package is built with.
const CARGO_DEB_VERSION: &str = "3.8.0";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn has(program: &str, arg: &str) -> bool {
    Command::new(program).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// `program args`, killed after `secs` seconds (a failure then).
fn sh(program: &str, args: &[&str], secs: u64) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    run(cmd, b"", Duration::from_secs(secs))
}

/// dpkg with `args`, waiting while another dpkg or apt holds the lock.
fn dpkg(args: &[&str]) -> Output {
    let mut out = sh("dpkg", args, 120);
    for _ in 0..60 {
        if out.status.success() || !text(&out).contains("lock") {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
        out = sh("dpkg", args, 120);
    }
    out
}

/// What dpkg knows of the package `ferry`: "" when nothing.
fn dpkg_status() -> String {
    let out = sh("dpkg-query", &["-W", "-f=${Status}", "ferry"], 30);
    if out.status.success() {
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    } else {
        String::new()
    }
}

/// The last `n` lines of a command's output, on one line.
fn tail(out: &Output, n: usize) -> String {
    let t = text(out);
    let mut last: Vec<&str> = t.lines().rev().take(n).collect();
    last.reverse();
    last.join(" | ")
}

/// Fetches hello.txt (see `served_dir`) from 127.0.0.1 over FTP with curl and over TFTP with
/// tftp-hpa; `context` says what else to show on failure.
fn fetch_hello(ftp_port: u16, tftp_port: u16, context: &dyn Fn() -> String) {
    let got = common::ftp::curl(&[&format!("ftp://127.0.0.1:{ftp_port}/hello.txt")]);
    ok(&got, "curl over FTP");
    assert_eq!(got.stdout, b"hello from ferry\n", "{}", context());
    let scratch = tempfile::tempdir().unwrap();
    let local = scratch.path().join("hello.txt");
    let port = tftp_port.to_string();
    let args = ["127.0.0.1", &port, "-m", "binary", "-c", "get", "hello.txt", s(&local)];
    let got = run_client(60, "tftp", &args);
    let fetched = std::fs::read(&local).unwrap_or_default();
    assert_eq!(fetched, b"hello from ferry\n", "tftp: {}\n{}", text(&got), context());
}

fn passwd_has(name: &str, file: &str) -> bool {
    std::fs::read_to_string(file).unwrap_or_default().lines().any(|l| l.split(':').next() == Some(name))
}

/// cargo-deb at the pinned version, installed with `cargo install` when missing; the reason
/// when it cannot be had.
fn cargo_deb() -> Result<(), String> {
    let want = format!("cargo-deb {CARGO_DEB_VERSION}");
    let have = || {
        Command::new(cargo())
            .args(["deb", "--version"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == want)
    };
    if have() {
        return Ok(());
    }
    eprintln!("package: installing {want} (cargo install --locked)");
    let out = sh(&cargo(), &["install", "cargo-deb", "--version", CARGO_DEB_VERSION, "--locked"], 1800);
    if !out.status.success() || !have() {
        return Err(format!("cargo install cargo-deb failed: {}", tail(&out, 5)));
    }
    Ok(())
}

/// Purges the package (and the probe file the purge test leaves in /srv/ferry) on drop, so a
/// failing test leaves the machine as it found it.
struct Purge {
    probe: PathBuf,
}

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.probe);
        if !dpkg_status().is_empty() {
            let out = dpkg(&["--purge", "ferry"]);
            eprintln!("package: cleanup purge: {}", text(&out).trim());
        }
        let _ = std::fs::remove_dir("/srv/ferry/incoming");
        let _ = std::fs::remove_dir("/srv/ferry");
    }
}

/// Held by each test here: while the package is installed, a Ferry started as root by another
/// test would read /etc/ferry/ferry.toml and run as the user ferry (and userdel refuses to
/// remove a user with running processes).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Seconds since `t`, for the phase timings the test prints.
fn secs(t: Instant) -> u64 {
    t.elapsed().as_secs()
}

#[test]
fn debian_package_builds_installs_serves_and_purges_cleanly() {
    let _serial = one_at_a_time();
    let started = Instant::now();
    if !is_root() {
        eprintln!("skipped: installing a package needs root");
        return;
    }
    if !has("dpkg", "--version") || !has("dpkg-deb", "--version") {
        eprintln!("skipped: dpkg is not installed (not a Debian system)");
        return;
    }
    let status = dpkg_status();
    if !status.is_empty() && !status.contains("not-installed") {
        eprintln!("skipped: a package ferry is already on this machine ({status}); not touching it");
        return;
    }
    let before: Vec<&str> = ["/etc/ferry", "/srv/ferry", "/var/log/ferry"]
        .into_iter()
        .filter(|p| Path::new(p).exists())
        .chain(passwd_has("ferry", "/etc/passwd").then_some("user ferry"))
        .chain(passwd_has("ferry", "/etc/group").then_some("group ferry"))
        .collect();
    if !before.is_empty() {
        eprintln!("skipped: {before:?} already exist, and a purge would remove them");
        return;
    }
    if let Err(why) = cargo_deb() {
        eprintln!("skipped: cargo-deb cannot be installed: {why}");
        return;
    }
    let t_tool = secs(started);

    // Build. The command deploy/README.md gives is `cargo deb --locked --strip` (--strip: the
    // release profile keeps debug info), and PACKAGE_RELEASE_BUILD=1 runs it as is. Its release
    // build takes about 3 minutes on 2 cores, and CI tests a debug build; so by default the
    // package is made from this test build's binary, put where cargo-deb looks for it (release/
    // in a target directory of its own) and packaged with --no-build.
    let t = Instant::now();
    let out_dir = tempfile::tempdir().unwrap();
    let changelog = std::fs::read_to_string(repo().join("deploy/debian/changelog")).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert!(changelog.starts_with(&format!("ferry ({version}) ")), "deploy/debian/changelog: add {version}");
    let mut cmd = Command::new(cargo());
    cmd.current_dir(repo()).args(["deb", "--locked", "--strip", "--output", s(out_dir.path())]);
    let staged = tempfile::tempdir().unwrap();
    if std::env::var_os("PACKAGE_RELEASE_BUILD").is_some_and(|v| v == "1") {
        eprintln!("package: PACKAGE_RELEASE_BUILD=1: a release build");
    } else {
        std::fs::create_dir(staged.path().join("release")).unwrap();
        std::fs::copy(ferry_bin(), staged.path().join("release/ferry")).unwrap();
        cmd.arg("--no-build").env("CARGO_TARGET_DIR", staged.path());
    }
    let build = run(cmd, b"", Duration::from_secs(2400));
    ok(&build, "cargo deb");
    let deb = out_dir.path().join(format!("ferry_{version}_amd64.deb"));
    assert!(deb.exists(), "no {}:\n{}", deb.display(), text(&build));
    let deb = deb.to_str().unwrap();
    let t_build = secs(t);

    let contents = text(&sh("dpkg-deb", &["--contents", deb], 60));
    for path in [
        "./usr/sbin/ferry",
        "./etc/ferry/ferry.toml",
        "./etc/logrotate.d/ferry",
        "./usr/lib/systemd/system/ferry.service",
        "./usr/share/doc/ferry/copyright",
    ] {
        assert!(contents.lines().any(|l| l.ends_with(path)), "the package lacks {path}:\n{contents}");
    }
    assert!(!contents.contains("./srv/"), "Debian packages ship nothing under /srv:\n{contents}");
    let conffiles = text(&sh("dpkg-deb", &["--info", deb, "conffiles"], 60));
    assert!(conffiles.contains("/etc/ferry/ferry.toml"), "conffiles: {conffiles}");

    // Lintian: errors fail, warnings are listed.
    let t = Instant::now();
    if has("lintian", "--version") {
        let lint = sh("lintian", &["--allow-root", "--tag-display-limit", "0", deb], 600);
        let report = text(&lint);
        let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("E: ")).collect();
        assert!(errors.is_empty(), "lintian errors:\n{report}");
        eprintln!("package: lintian:\n{}", report.trim());
    } else {
        eprintln!("package: lintian is not installed (tests/run-all.sh installs it): not checked");
    }
    let t_lint = secs(t);

    // Install.
    let t = Instant::now();
    let _purge = Purge { probe: PathBuf::from("/srv/ferry/incoming/kept-by-purge") };
    let install = dpkg(&["-i", deb]);
    ok(&install, "dpkg -i");
    assert_eq!(dpkg_status(), "install ok installed");
    let user = text(&sh("getent", &["passwd", "ferry"], 30));
    let fields: Vec<&str> = user.trim().split(':').collect();
    assert_eq!(fields.len(), 7, "user ferry: {user}");
    let uid: u32 = fields[2].parse().unwrap();
    assert!(uid < 1000, "a system user: {user}");
    assert_eq!((fields[5], fields[6]), ("/srv/ferry", "/usr/sbin/nologin"), "{user}");
    assert!(passwd_has("ferry", "/etc/group"), "group ferry");
    for (dir, owner) in [("/srv/ferry", 0), ("/srv/ferry/incoming", uid), ("/var/log/ferry", uid)] {
        let meta = std::fs::metadata(dir).unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert!(meta.is_dir() && meta.uid() == owner, "{dir} owned by {}, not {owner}", meta.uid());
    }
    let unit = std::fs::read_to_string("/usr/lib/systemd/system/ferry.service").unwrap();
    assert!(unit.contains("\nExecStart=/usr/sbin/ferry --config /etc/ferry/ferry.toml\n"), "{unit}");
    // Enabled even where systemd is not running (and so not started).
    assert!(
        Path::new("/etc/systemd/system/multi-user.target.wants/ferry.service").exists(),
        "deb-systemd-helper enabled the unit"
    );
    if has("systemd-analyze", "--version") {
        let verify = sh("systemd-analyze", &["verify", "/usr/lib/systemd/system/ferry.service"], 60);
        let ours: Vec<String> =
            text(&verify).lines().filter(|l| l.contains("ferry.service")).map(String::from).collect();
        assert!(ours.is_empty(), "systemd-analyze verify: {ours:?}");
    }

    // The installed binary accepts the installed configuration ...
    let checked = sh("/usr/sbin/ferry", &["check-config", "/etc/ferry/ferry.toml"], 60);
    ok(&checked, "ferry check-config /etc/ferry/ferry.toml");
    assert!(String::from_utf8_lossy(&checked.stdout).contains("user = \"ferry\""), "{}", text(&checked));

    // ... and serves with it, as the user ferry, writing the xferlog at its default path.
    let dir = served_dir();
    let mut cmd = Command::new("/usr/sbin/ferry");
    cmd.args(["--config", "/etc/ferry/ferry.toml"]).env("FERRY_XFERLOG__ENABLED", "true");
    let mut server = Server::start_with(cmd, dir.path(), free_port(), free_port(), &["--workers", "1"]);
    for t in thread_status(server.pid()) {
        assert_eq!(t["Uid"].split_whitespace().next(), Some(uid.to_string().as_str()), "dropped to ferry");
    }
    let fetch_both = |server: &Server| fetch_hello(server.ftp_port, server.tftp_port, &|| server.stderr());
    fetch_both(&server);
    let xferlog = Path::new("/var/log/ferry/xferlog");
    let lines = |p: &Path| std::fs::read_to_string(p).unwrap_or_default().matches("hello.txt").count();
    eventually(Duration::from_secs(10), "two xferlog lines", || check(lines(xferlog), |n| *n == 2));

    // logrotate moves the file; SIGHUP (what the postrotate's `systemctl reload` sends) makes
    // the server write a new one.
    if has("logrotate", "--version") {
        let state = tempfile::NamedTempFile::new().unwrap();
        let args = ["--force", "--state", state.path().to_str().unwrap(), "/etc/logrotate.d/ferry"];
        ok(&sh("logrotate", &args, 60), "logrotate --force /etc/logrotate.d/ferry");
        assert_eq!(lines(Path::new("/var/log/ferry/xferlog.1")), 2, "rotated to xferlog.1");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.pid()), nix::sys::signal::SIGHUP);
        server.wait_log("xferlog reopened");
        fetch_both(&server);
        eventually(Duration::from_secs(10), "two lines in the new xferlog", || {
            check(lines(xferlog), |n| *n == 2)
        });
        assert_eq!(std::fs::metadata(xferlog).unwrap().uid(), uid, "the new xferlog belongs to ferry");
    } else {
        eprintln!("package: logrotate is not installed: the rotation is not checked");
    }
    assert_eq!(server.signal_and_wait(nix::sys::signal::SIGTERM, Duration::from_secs(20)), Some(0));

    // Remove keeps the configuration and the user; purge removes them, and keeps data.
    ok(&dpkg(&["-r", "ferry"]), "dpkg -r");
    assert_eq!(dpkg_status(), "deinstall ok config-files");
    assert!(!Path::new("/usr/sbin/ferry").exists(), "the binary is gone");
    assert!(Path::new("/etc/ferry/ferry.toml").exists(), "remove keeps the conffile");
    assert!(passwd_has("ferry", "/etc/passwd"), "remove keeps the user");
    std::fs::write("/srv/ferry/incoming/kept-by-purge", b"an upload\n").unwrap();
    ok(&dpkg(&["--purge", "ferry"]), "dpkg --purge");
    assert!(Path::new("/srv/ferry/incoming/kept-by-purge").exists(), "purge keeps data");
    std::fs::remove_file("/srv/ferry/incoming/kept-by-purge").unwrap();
    std::fs::remove_dir("/srv/ferry/incoming").unwrap();
    std::fs::remove_dir("/srv/ferry").unwrap();
    assert_eq!(dpkg_status(), "");
    assert!(!dpkg(&["-L", "ferry"]).status.success(), "dpkg -L still lists ferry");
    for path in [
        "/usr/sbin/ferry",
        "/etc/ferry",
        "/etc/logrotate.d/ferry",
        "/var/log/ferry",
        "/usr/lib/systemd/system/ferry.service",
        "/etc/systemd/system/multi-user.target.wants/ferry.service",
        "/etc/systemd/system/ferry.service",
        "/var/lib/systemd/deb-systemd-helper-enabled/ferry.service.dsh-also",
        "/var/lib/systemd/deb-systemd-helper-masked/ferry.service",
    ] {
        assert!(std::fs::symlink_metadata(path).is_err(), "{path} is left after purge");
    }
    assert!(!passwd_has("ferry", "/etc/passwd"), "user ferry is left after purge");
    assert!(!passwd_has("ferry", "/etc/group"), "group ferry is left after purge");
    eprintln!(
        "package: took {} s: cargo-deb {t_tool} s, build {t_build} s, lintian {t_lint} s, \
         install to purge {} s",
        secs(started),
        secs(t)
    );
}

/// The podman flags every `podman build` and `podman run` here takes. runc: crun 1.8
/// (Debian 12) refuses this machine's hybrid cgroup v1 layout ("cgroups in hybrid mode not
/// supported"). Limits: podman asks for 1048576 open files and processes, which a runner
/// without CAP_SYS_RESOURCE cannot grant ("setrlimit `RLIMIT_NOFILE`: Operation not
/// permitted").
fn podman_flags() -> Vec<&'static str> {
    let mut flags = vec!["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"];
    if has("runc", "--version") {
        flags.extend(["--runtime", "runc"]);
    }
    flags
}

fn podman(args: &[&str], secs: u64) -> Output {
    sh("podman", args, secs)
}

/// A local Debian 12 image to build on (no registry is reachable), made once with
/// debootstrap and kept in podman's store for later runs.
const BASE_IMAGE: &str = "localhost/ferry-test-base:bookworm";

fn base_image() -> Result<(), String> {
    if podman(&["image", "exists", BASE_IMAGE], 60).status.success() {
        return Ok(());
    }
    if !has("debootstrap", "--version") {
        return Err("debootstrap is not installed (tests/run-all.sh installs it)".into());
    }
    let root = tempfile::Builder::new().prefix("ferry-rootfs").tempdir_in("/var/tmp").unwrap();
    let rootfs = root.path().join("rootfs");
    let boot = sh("debootstrap", &["--variant=minbase", "bookworm", s(&rootfs)], 1200);
    if !boot.status.success() {
        return Err(format!("debootstrap failed: {}", tail(&boot, 3)));
    }
    let import = format!("tar -C {} -c . | podman import - {BASE_IMAGE}", s(&rootfs));
    let out = sh("sh", &["-c", &import], 600);
    if !out.status.success() {
        return Err(format!("podman import failed: {}", text(&out)));
    }
    Ok(())
}

/// Removes the test's container and image on drop.
struct Podman {
    container: String,
    image: String,
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "5", &self.container], 60);
        let _ = podman(&["rmi", "--force", &self.image], 60);
    }
}

#[test]
fn container_image_runs_non_root_with_only_the_bind_capability() {
    let _serial = one_at_a_time();
    let started = Instant::now();
    if !is_root() || !has("podman", "--version") {
        eprintln!("skipped: needs root and podman (tests/run-all.sh installs podman)");
        return;
    }
    if let Err(why) = base_image() {
        eprintln!("skipped: no base image: {why}");
        return;
    }
    let flags = podman_flags();
    let probe =
        podman(&[&["run", "--rm", "--network", "none"], &flags[..], &[BASE_IMAGE, "true"]].concat(), 120);
    if !probe.status.success() {
        eprintln!("skipped: podman cannot run a container here: {}", text(&probe).trim());
        return;
    }

    // The Containerfile as is, but with this build's binary for its build stage.
    let t = Instant::now();
    let context = tempfile::tempdir().unwrap();
    let bin = context.path().join("src/target/release/ferry");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(ferry_bin(), &bin).unwrap();
    ok(&sh("strip", &[s(&bin)], 120), "strip");
    let tag = format!("localhost/ferry-test:{}", std::process::id());
    let name = format!("ferry-test-{}", std::process::id());
    let _cleanup = Podman { container: name.clone(), image: tag.clone() };
    let containerfile = repo().join("deploy/container/Containerfile");
    let base_arg = format!("BASE_IMAGE={BASE_IMAGE}");
    let build_context = format!("build={}", s(context.path()));
    let build = podman(
        &[
            &["build", "--file", s(&containerfile), "--tag", &tag, "--build-arg", &base_arg],
            &["--build-context", &build_context][..],
            &flags[..],
            &[s(context.path())],
        ]
        .concat(),
        1200,
    );
    ok(&build, "podman build");
    let t_build = secs(t);

    // Run it as its image says: its own user, only NET_BIND_SERVICE, io_uring allowed; on
    // the host's network (as deploy/README.md recommends for TFTP) and privileged ports.
    let dir = served_dir();
    let (ftp_port, tftp_port) = (free_low_port(), free_low_port());
    let volume = format!("{}:/srv/ferry:ro", s(dir.path()));
    let (ftp, tftp) = (ftp_port.to_string(), tftp_port.to_string());
    let run_args = [
        &["run", "--detach", "--name", &name, "--network", "host", "--cap-drop", "ALL"][..],
        &["--cap-add", "NET_BIND_SERVICE", "--security-opt", "seccomp=unconfined", "--volume", &volume],
        &flags[..],
        &[&tag, "--root", "/srv/ferry", "--ftp-port", &ftp, "--tftp-port", &tftp, "--workers", "1"],
    ]
    .concat();
    ok(&podman(&run_args, 120), "podman run");
    let logs = || text(&podman(&["logs", &name], 30));
    eventually(Duration::from_secs(20), "the container's FTP greeting", || {
        let greeting = std::net::TcpStream::connect(("127.0.0.1", ftp_port)).ok().and_then(|mut c| {
            use std::io::Read;
            c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            let mut buf = [0u8; 3];
            c.read_exact(&mut buf).ok().map(|_| buf)
        });
        check(Text(logs()), |_| greeting == Some(*b"220"))
    });
    let pid = String::from_utf8_lossy(&podman(&["inspect", "--format", "{{.State.Pid}}", &name], 30).stdout)
        .trim()
        .parse::<i32>()
        .unwrap();
    for t in thread_status(pid) {
        assert_eq!(
            t["Uid"].split_whitespace().next(),
            Some("10021"),
            "{} runs as the image's user",
            t["Name"]
        );
        assert_eq!(t["CapEff"], "0000000000000000", "{} CapEff", t["Name"]);
        assert_eq!(t["CapPrm"], "0000000000000000", "{} CapPrm", t["Name"]);
        assert_eq!(t["CapBnd"], "0000000000000400", "{} CapBnd: NET_BIND_SERVICE only", t["Name"]);
    }
    let kids = children(pid);
    assert_eq!(kids.len(), 1, "one binder");
    assert_eq!(process_status(kids[0])["CapEff"], "0000000000000400", "the binder keeps the one capability");

    fetch_hello(ftp_port, tftp_port, &logs);
    eprintln!("container: took {} s (image build {t_build} s)", secs(started));
}

/// The image's entrypoint is PID 1 in its container. Ferry starts its port-20 binder there
/// too, which once took its parent (PID 1) for init and exited. Checked without podman, in
/// a new PID namespace.
#[test]
fn starts_as_pid_1_like_a_container_entrypoint() {
    let _serial = one_at_a_time();
    if !is_root() || !has("unshare", "--version") {
        eprintln!("skipped: needs root and unshare");
        return;
    }
    let dir = served_dir();
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--kill-child"]).arg(ferry_bin());
    let server = Server::start_with(cmd, dir.path(), free_port(), free_port(), &["--workers", "1"]);
    // Killing unshare does not reach Ferry: `--kill-child` is a parent-death signal, which the
    // kernel clears when Ferry drops privileges. Ferry is the namespace's init, so killing it
    // ends the namespace (its binder too); the guard does that on every exit path.
    struct KillOnDrop(Vec<i32>);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            for pid in &self.0 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    let _inner = KillOnDrop(children(server.pid()));
    assert_eq!(_inner.0.len(), 1, "unshare's one child, Ferry");
    server.wait_log("binder ready");
}
