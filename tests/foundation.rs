//! End-to-end checks of the foundation: workers start and answer, the privilege drop and
//! the binder's capability, the binder's refusals, the clear message for privileged ports,
//! and graceful shutdown. Privilege tests need root (CI runs as root) and say so otherwise.

mod common;

use common::*;
use ferry::binder::client::BinderError;
use nix::sys::signal::Signal;
use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

/// CapEff/CapPrm value of exactly CAP_NET_BIND_SERVICE (bit 10).
const NET_BIND_ONLY: &str = "0000000000000400";
const NO_CAPS: &str = "0000000000000000";

/// A binder for port 20 running as nobody, with its one client; None (skipped) unless root.
fn test_binder() -> Option<(ferry::binder::spawn::Binder, ferry::binder::client::BinderClient)> {
    if !is_root() {
        eprintln!("skipped: needs root");
        return None;
    }
    let mut binder =
        ferry::binder::spawn::spawn(std::path::Path::new(ferry_bin()), 20, "nobody", 1, &Default::default())
            .expect("spawn binder");
    let client = binder.clients.pop().unwrap();
    Some((binder, client))
}

/// setpriv arguments for a user with no capabilities at all.
const NO_CAPS_ARGS: &[&str] = &["--inh-caps=-all", "--bounding-set=-all"];

/// `ferry` started through setpriv as `nobody` with the given capability arguments.
fn as_nobody(cap_args: &[&str]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"]).args(cap_args).arg(ferry_bin());
    cmd
}

fn assert_dropped(pid: i32) {
    let threads = thread_status(pid);
    assert!(threads.len() >= 3, "expected main + workers, got {} threads", threads.len());
    for t in &threads {
        let name = &t["Name"];
        for key in ["Uid", "Gid"] {
            assert!(
                t[key].split_whitespace().all(|id| id != "0"),
                "thread {name} still has {key} 0: {}",
                t[key]
            );
        }
        assert_eq!(t["CapEff"], NO_CAPS, "thread {name} CapEff");
        assert_eq!(t["CapPrm"], NO_CAPS, "thread {name} CapPrm");
        assert_eq!(t["CapAmb"], NO_CAPS, "thread {name} CapAmb");
        assert_eq!(t["NoNewPrivs"], "1", "thread {name} NoNewPrivs");
    }
}

fn binder_of(pid: i32) -> i32 {
    let kids = children(pid);
    assert_eq!(kids.len(), 1, "expected exactly one child (the binder), got {kids:?}");
    kids[0]
}

fn assert_binder_caps(binder: i32) {
    let st = process_status(binder);
    assert_eq!(st["CapEff"], NET_BIND_ONLY, "binder CapEff");
    assert_eq!(st["CapPrm"], NET_BIND_ONLY, "binder CapPrm");
    assert_eq!(st["CapInh"], NO_CAPS, "binder CapInh");
    assert_eq!(st["CapAmb"], NO_CAPS, "binder CapAmb");
    assert_eq!(st["NoNewPrivs"], "1");
    assert!(st["Uid"].split_whitespace().all(|id| id != "0"), "binder uid {}", st["Uid"]);
}

#[test]
fn workers_start_answer_and_are_named() {
    let dir = served_dir();
    let server = Server::start(dir.path(), &["--workers", "3"]);
    // Named at spawn; read until all three show (a loaded machine may list threads mid-start).
    eventually(Duration::from_secs(5), "three named workers", || {
        let names: Vec<String> = thread_status(server.pid()).into_iter().map(|t| t["Name"].clone()).collect();
        check(names, |n| (0..3).all(|w| n.contains(&format!("ferry-w{w}"))))
    });
    // FTP answers its greeting and QUIT; TFTP answers a request with an ERROR packet.
    let (mut r, mut w, greeting) = ftp_connect(server.ftp_addr());
    assert!(greeting.starts_with("220 "), "{greeting}");
    assert!(ftp_command(&mut r, &mut w, "QUIT").starts_with("221"));
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    udp.send_to(b"\x00\x01hello.txt\x00octet\x00", ("127.0.0.1", server.tftp_port)).unwrap();
    let mut buf = [0u8; 600];
    let (n, _) = udp.recv_from(&mut buf).expect("a TFTP answer");
    assert!(n >= 4 && buf[1] >= 3, "a DATA or ERROR packet, got {:?}", &buf[..n]);
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let dir = served_dir();
    let mut server = Server::start(dir.path(), &["--workers", "2"]);
    let code = server.signal_and_wait(Signal::SIGTERM, Duration::from_secs(10));
    assert_eq!(code, Some(0), "stderr:\n{}", server.stderr());
    // The listener is closed after shutdown.
    assert!(std::net::TcpStream::connect(server.ftp_addr()).is_err());
}

#[test]
fn stderr_log_lines_carry_no_colour_codes_when_not_a_terminal() {
    // Container runtimes, `kubectl logs` and log files read stderr as plain text.
    let dir = served_dir();
    let mut server = Server::start(dir.path(), &["--workers", "1"]);
    let code = server.signal_and_wait(Signal::SIGTERM, Duration::from_secs(10));
    assert_eq!(code, Some(0));
    let log = server.stderr();
    assert!(log.contains("INFO") && log.contains("ferry serving"), "{log}");
    assert!(!log.contains('\x1b'), "escape codes in a piped log:\n{log:?}");
}

#[test]
fn json_log_format_covers_the_binder_lines_too() {
    if !is_root() {
        eprintln!("skipped: needs root for the binder");
        return;
    }
    let dir = served_dir();
    let mut server = Server::start(dir.path(), &["--workers", "1", "--log-format", "json"]);
    assert_eq!(server.signal_and_wait(Signal::SIGTERM, Duration::from_secs(10)), Some(0));
    let log = server.stderr();
    assert!(log.contains("binder ready"), "the binder logged:\n{log}");
    for line in log.lines().filter(|l| !l.is_empty()) {
        assert!(line.starts_with('{') && line.ends_with('}'), "not a JSON line: {line}");
    }
}

#[test]
fn sigint_with_an_open_session_waits_at_most_the_drain_timeout() {
    let dir = served_dir();
    // The drain timeout comes from the environment layer here.
    let mut cmd = Command::new(ferry_bin());
    cmd.env("FERRY_DRAIN_TIMEOUT_SECS", "1");
    // A rate-limited download outlives the drain timeout (idle sessions are closed at once).
    cmd.env("FERRY_FTP__LIMITS__RATE_LIMIT_SESSION_BPS", "100000");
    std::fs::write(dir.path().join("slow.bin"), vec![7u8; 1 << 20]).unwrap();
    let mut server = Server::start_with(cmd, dir.path(), free_port(), free_port(), &["--workers", "1"]);
    // Hold a transfer running; the drain timeout bounds how long shutdown waits.
    let (mut r, mut w, _g) = ftp_connect(server.ftp_addr());
    for line in ["USER anonymous", "PASS x", "TYPE I"] {
        ftp_command(&mut r, &mut w, line);
    }
    let epsv = ftp_command(&mut r, &mut w, "EPSV");
    let port: u16 = epsv.split('|').nth(3).and_then(|p| p.parse().ok()).expect("229 reply");
    let _data = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(ftp_command(&mut r, &mut w, "RETR slow.bin").starts_with("150"));
    let started = std::time::Instant::now();
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.pid()), Signal::SIGINT);
    let code = wait_exit(&mut server.child, Duration::from_secs(20));
    assert_eq!(code, Some(0), "stderr:\n{}", server.stderr());
    assert!(started.elapsed() >= Duration::from_millis(900), "waited for the open session");
    assert!(server.stderr().contains("drain timeout reached"), "{}", server.stderr());
}

#[test]
fn root_start_drops_every_thread_and_keeps_only_bind_cap_in_binder() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = served_dir();
    let (ftp, tftp) = (free_low_port(), free_low_port());
    let server = Server::start_with(
        Command::new(ferry_bin()),
        dir.path(),
        ftp,
        tftp,
        &["--workers", "2", "--user", "nobody"],
    );
    assert_dropped(server.pid());
    assert_binder_caps(binder_of(server.pid()));
    assert!(server.stderr().contains("privileges dropped"), "{}", server.stderr());
}

#[test]
fn capability_only_start_splits_the_same_way() {
    if !is_root() {
        eprintln!("skipped: needs root to prepare a capability-only user");
        return;
    }
    // A container: non-root user holding only CAP_NET_BIND_SERVICE (ambient).
    let mut cmd = as_nobody(&[
        "--inh-caps=-all,+net_bind_service",
        "--ambient-caps=-all,+net_bind_service",
        "--bounding-set=-all,+net_bind_service",
    ]);
    cmd.args(["--workers", "2"]);
    let dir = served_dir();
    let (ftp, tftp) = (free_low_port(), free_low_port());
    let server = Server::start_with(cmd, dir.path(), ftp, tftp, &[]);
    assert_dropped(server.pid());
    assert_binder_caps(binder_of(server.pid()));
}

#[test]
fn unprivileged_low_port_start_fails_with_one_clear_message() {
    if !is_root() {
        eprintln!("skipped: needs root to switch to an unprivileged user");
        return;
    }
    let dir = served_dir();
    let out = as_nobody(NO_CAPS_ARGS)
        .args(["--root"])
        .arg(dir.path())
        .args(["--ftp-port", &free_low_port().to_string(), "--tftp-port", &free_port().to_string()])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.matches("cannot bind").count(), 1, "one message, once: {stderr}");
    assert!(stderr.contains("CAP_NET_BIND_SERVICE"), "{stderr}");
    assert!(stderr.contains("--ftp-port"), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
}

#[test]
fn unprivileged_high_port_start_runs_without_binder() {
    if !is_root() {
        eprintln!("skipped: needs root to switch to an unprivileged user");
        return;
    }
    let cmd = as_nobody(NO_CAPS_ARGS);
    let dir = served_dir();
    let server = Server::start_with(cmd, dir.path(), free_port(), free_port(), &["--workers", "1"]);
    assert!(children(server.pid()).is_empty(), "no binder without privilege");
    assert!(server.stderr().contains("ephemeral"), "logged once: {}", server.stderr());
    assert_dropped(server.pid());
}

#[test]
fn binder_grants_port_20_on_our_address_and_refuses_everything_else() {
    let Some((mut binder, client)) = test_binder() else { return };

    let fd = client.bind("127.0.0.1:20".parse().unwrap()).expect("port 20 on loopback is granted");
    let sock = socket2::Socket::from(fd);
    assert_eq!(sock.local_addr().unwrap().as_socket().unwrap(), "127.0.0.1:20".parse().unwrap());

    for refused in ["127.0.0.1:21", "127.0.0.1:1023", "192.0.2.1:20", "0.0.0.0:20", "[2001:db8::1]:20"] {
        match client.bind(refused.parse().unwrap()) {
            Err(BinderError::Refused(_)) => {}
            other => panic!("{refused}: expected a refusal, got {other:?}"),
        }
    }
    assert_binder_caps(binder.child.id() as i32);
    drop(client);
    assert_eq!(
        wait_exit(&mut binder.child, Duration::from_secs(5)),
        Some(0),
        "binder exits when its channel closes"
    );
}

#[test]
fn binder_ends_the_conversation_on_a_malformed_request() {
    let Some((mut binder, client)) = test_binder() else { return };
    // Reach under the client: write garbage on the raw channel.
    let raw = client.raw_channel();
    nix::sys::socket::send(raw, b"GET / HTTP/1.0\r\n", nix::sys::socket::MsgFlags::empty()).unwrap();
    let mut buf = [0u8; 16];
    let n = nix::sys::socket::recv(raw, &mut buf, nix::sys::socket::MsgFlags::empty()).unwrap_or(0);
    assert_eq!(n, 0, "the binder closes the channel instead of answering");
    assert_eq!(wait_exit(&mut binder.child, Duration::from_secs(5)), Some(0));
}

#[test]
fn a_panicking_worker_stops_the_server_with_a_non_zero_exit() {
    let dir = served_dir();
    let mut cmd = Command::new(ferry_bin());
    cmd.env("DEBUG_FERRY_PANIC_WORKER", "1");
    let mut server = Server::start_with(cmd, dir.path(), free_port(), free_port(), &["--workers", "2"]);
    let code = wait_exit(&mut server.child, Duration::from_secs(10));
    assert_eq!(code, Some(70), "stderr:\n{}", server.stderr());
    let log = server.stderr();
    assert!(log.contains("injected test panic in worker 1"), "{log}");
    assert!(log.contains("worker panicked"), "{log}");
}

#[test]
fn serving_is_announced_only_once_every_worker_runs() {
    // READY=1 and the "ferry serving" line follow the last worker's start, even when one
    // worker is late (held back 500 ms here, as a busy pinned CPU can).
    let dir = served_dir();
    let mut cmd = Command::new(ferry_bin());
    cmd.env("DEBUG_FERRY_SLOW_WORKER", "1");
    let server = Server::start_with(cmd, dir.path(), free_port(), free_port(), &["--workers", "2"]);
    server.wait_log("ferry serving");
    let log = server.stderr();
    let late = log.find("worker running worker=1").unwrap_or_else(|| panic!("{log}"));
    assert!(late < log.find("ferry serving").unwrap(), "announced before worker 1 ran:\n{log}");
}

#[test]
fn dual_stack_default_answers_ipv4_and_ipv6_and_listen_lists_are_honoured() {
    let dir = served_dir();
    let server = Server::start(dir.path(), &["--workers", "1"]);
    for addr in [format!("127.0.0.1:{}", server.ftp_port), format!("[::1]:{}", server.ftp_port)] {
        let (_r, _w, greeting) = ftp_connect(addr.parse().unwrap());
        assert!(greeting.starts_with("220"), "{addr}: {greeting}");
    }
    drop(server);

    // An IPv4-only listen list: ::1 is refused, 127.0.0.1 answers.
    let mut cmd = Command::new(ferry_bin());
    cmd.env("FERRY_FTP__LISTEN", "[\"127.0.0.1:21\"]").env("FERRY_TFTP__LISTEN", "[\"127.0.0.1:69\"]");
    let server = Server::start_with(cmd, dir.path(), free_port(), free_port(), &["--workers", "1"]);
    assert!(std::net::TcpStream::connect(("::1", server.ftp_port)).is_err());
    let (_r, _w, greeting) = ftp_connect(server.ftp_addr());
    assert!(greeting.starts_with("220"));
}

#[test]
fn a_second_server_on_the_same_ports_refuses_to_start() {
    // Both bind as the same user before dropping privileges, so without a check the second
    // one's SO_REUSEPORT members would join the first one's group and take half its clients.
    let first_dir = served_dir();
    let first = Server::start(first_dir.path(), &["--workers", "2"]);
    let second_dir = served_dir();
    for (ftp, tftp, proto) in [(first.ftp_port, free_port(), "TCP"), (free_port(), first.tftp_port, "UDP")] {
        let mut cmd = Command::new(ferry_bin());
        cmd.args(["--root"])
            .arg(second_dir.path())
            .args(["--ftp-port", &ftp.to_string(), "--tftp-port", &tftp.to_string(), "--workers", "2"])
            .env_remove("RUST_LOG")
            .env_remove("FERRY_CONFIG");
        // It waits up to 5 s for a dying predecessor's sockets, then refuses. Without the
        // check the second server starts and serves: killed after 30 s, a failure.
        let out = common::ftp::run(cmd, b"", Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{proto}: {stderr}");
        assert_eq!(stderr.matches("address already in use").count(), 1, "{proto}: one message: {stderr}");
        assert!(stderr.contains(proto), "{stderr}");
    }
    // The first server still serves every connection itself.
    for _ in 0..20 {
        let (_, _, greeting) = ftp_connect(first.ftp_addr());
        assert!(greeting.starts_with("220 "), "{greeting}");
    }
}

#[test]
fn the_serving_line_names_what_is_really_bound() {
    // With FTP disabled nothing listens on its address, and the line must not claim it does.
    let dir = served_dir();
    let logs = tempfile::tempdir().unwrap();
    let stderr_path = logs.path().join("stderr.log");
    let tftp = free_port();
    let mut child = Command::new(ferry_bin())
        .args(["--root"])
        .arg(dir.path())
        .args(["--ftp-port", &free_port().to_string(), "--tftp-port", &tftp.to_string(), "--workers", "1"])
        .env("FERRY_FTP__ENABLED", "false")
        .env_remove("RUST_LOG")
        .env_remove("FERRY_CONFIG")
        .stdin(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let line = poll(Duration::from_secs(10), || {
        let log = strip_ansi(&std::fs::read_to_string(&stderr_path).unwrap_or_default());
        log.lines().find(|l| l.contains("ferry serving")).map(str::to_string).ok_or(log)
    });
    let _ = child.kill();
    let _ = child.wait();
    let line = line.unwrap_or_else(|log| panic!("no serving line:\n{log}"));
    assert!(line.contains("ftp=[]"), "{line}");
    assert!(line.contains(&format!(":{tftp}]")), "{line}");
}

#[test]
fn cpu_pinning_is_a_choice_and_auto_leaves_a_shared_host_to_the_scheduler() {
    // Each worker's allowed CPUs, as /proc reads them.
    fn worker_cpus(pid: i32) -> Vec<String> {
        let threads = thread_status(pid);
        let mut cpus: Vec<String> = threads
            .iter()
            .filter(|t| t["Name"].starts_with("ferry-w"))
            .map(|t| t["Cpus_allowed_list"].clone())
            .collect();
        cpus.sort();
        cpus
    }
    let all = process_status(std::process::id() as i32)["Cpus_allowed_list"].clone();
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    if all.trim() != online.trim() || !all.contains(['-', ',']) {
        eprintln!(
            "skipped: this test runs with a restricted CPU set ({all}) or on one CPU (online {online})"
        );
        return;
    }
    let dir = served_dir();
    for (mode, pinned) in [("on", true), ("off", false), ("auto", false)] {
        let mut cmd = Command::new(ferry_bin());
        cmd.env("FERRY_CPU_PINNING", mode);
        let server = Server::start_with(cmd, dir.path(), free_port(), free_port(), &["--workers", "2"]);
        // The greeting comes from the first worker up; wait for both (a loaded machine).
        let cpus = eventually(Duration::from_secs(5), "both workers listed", || {
            check(worker_cpus(server.pid()), |c| c.len() == 2)
        });
        if pinned {
            assert!(cpus.iter().all(|c| !c.contains(['-', ','])), "{mode}: one CPU each: {cpus:?}");
            assert_ne!(cpus[0], cpus[1], "{mode}: different CPUs: {cpus:?}");
        } else {
            assert!(cpus.iter().all(|c| *c == all), "{mode}: every CPU ({all}): {cpus:?}");
        }
        assert!(server.stderr().contains(if pinned { "workers pinned" } else { "workers not pinned" }));
    }
    // Given CPUs of its own (an affinity narrower than the host), auto pins.
    if let Some(first_two) = all.split([',', '-']).next().map(|c| c.to_string()) {
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", &first_two, ferry_bin()]);
        let server = Server::start_with(cmd, dir.path(), free_port(), free_port(), &["--workers", "1"]);
        assert_eq!(worker_cpus(server.pid()), vec![first_two.clone()]);
        assert!(server.stderr().contains("workers pinned"), "{}", server.stderr());
    }
}
