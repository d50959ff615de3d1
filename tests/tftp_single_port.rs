//! TFTP single-port mode (`tftp.single_port`): replies leave from the request port, transfers
//! are told apart by the client's address and port, and it works through a NAT without a
//! TFTP conntrack helper where the per-transfer-port mode (RFC 1350's fresh server TID) fails.

mod common;

use common::netns::{self, Netns};
use common::tftp::*;
use common::{eventually, ferry_bin, served_dir, wait_exit, Text};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::Duration;

const SINGLE: &[(&str, &str)] = &[("FERRY_TFTP__SINGLE_PORT", "true")];

#[test]
fn every_reply_comes_from_the_request_port_over_both_families() {
    let (f, want) = Fixture::new(&[("boot.img", 5000)], SINGLE);
    let mut servers = vec![v4(&f.server)];
    if have_ipv6() {
        servers.push(v6(&f.server));
    }
    for server in servers {
        let c = Raw::new(server);
        c.send(&request(1, "boot.img", "octet", &[]));
        let (first, from) = c.recv();
        assert_eq!(from, server, "DATA 1 must come from the request port itself");
        assert_eq!(c.continue_get(&first, from), want[0], "content over {server}");
    }
}

#[test]
fn real_clients_read_and_write_in_single_port_mode() {
    let dir = served_dir();
    let big = random_file(dir.path(), "kernel", 2_000_003);
    let up = upload_dir(dir.path(), "up");
    let server = start_tftp(
        dir.path(),
        &[("FERRY_TFTP__SINGLE_PORT", "true"), ("FERRY_TFTP__WRITE__ENABLED", "true")],
    );
    let port = server.tftp_port.to_string();
    let out = tempfile::tempdir().unwrap();
    if have("tftp") {
        let dst = out.path().join("hpa");
        let o = run_client(
            60,
            "tftp",
            &["127.0.0.1", &port, "-m", "binary", "-c", "get", "kernel", dst.to_str().unwrap()],
        );
        assert_fetched(&o, &dst, &big, "tftp-hpa get, single port", &server);
        // An upload: the client's DATA reaches the transfer through the request socket.
        let src = out.path().join("upload.bin");
        std::fs::write(&src, &big[..300_001]).unwrap();
        let o = run_client(
            60,
            "tftp",
            &["127.0.0.1", &port, "-m", "binary", "-c", "put", src.to_str().unwrap(), "up/u.bin"],
        );
        assert!(o.status.success(), "tftp-hpa put: {o:?}\n{}", server.stderr());
        eventually(Duration::from_secs(5), "the upload committed", || {
            let got = std::fs::read(up.join("u.bin")).unwrap_or_default();
            (got == big[..300_001]).then_some(()).ok_or(got.len())
        });
    }
    if have("atftp") {
        for (what, opts) in
            [("lock-step", vec![]), ("windowed", vec!["blksize 1468", "windowsize 16", "tsize 0"])]
        {
            let dst = out.path().join(what);
            let mut args: Vec<&str> = opts.iter().flat_map(|o| ["--option", *o]).collect();
            args.extend(["-g", "-r", "kernel", "-l", dst.to_str().unwrap(), "127.0.0.1", &port]);
            let o = run_client(60, "atftp", &args);
            assert_fetched(&o, &dst, &big, &format!("atftp {what}, single port"), &server);
        }
    }
}

#[test]
fn clients_are_told_apart_by_address_and_port() {
    let (f, want) = Fixture::new(&[("a", 3000), ("b", 2000)], SINGLE);
    let server = v4(&f.server);
    let (one, two) = (Raw::new(server), Raw::new(server));
    one.send(&request(1, "a", "octet", &[]));
    two.send(&request(1, "b", "octet", &[]));
    let (p1, from1) = one.recv();
    let (p2, from2) = two.recv();
    assert_eq!((from1, from2), (server, server));
    // Interleaved ACKs from the two client ports each move their own transfer.
    assert_eq!(&p1[4..], &want[0][..512]);
    assert_eq!(&p2[4..], &want[1][..512]);
    assert_eq!(one.continue_get(&p1, from1), want[0]);
    assert_eq!(two.continue_get(&p2, from2), want[1]);
}

#[test]
fn strays_get_error_5_and_errors_get_nothing() {
    let (f, _) = Fixture::new(&[("f", 100)], SINGLE);
    let server = v4(&f.server);
    let c = Raw::new(server);
    for stray in [ack(1), data(1, b"x")] {
        c.send(&stray);
        let (p, from) = c.recv();
        assert_eq!(from, server);
        assert_eq!(error_of(&p).map(|e| e.0), Some(5), "stray {stray:?} -> {p:?}");
    }
    c.send(&error(0, "bye"));
    assert!(c.recv_within(Duration::from_millis(300)).is_none(), "never an ERROR in answer to an ERROR");
    // A flood of strays gets a bounded number of answers (the reflection guard).
    for _ in 0..500 {
        c.send(&ack(7));
    }
    let answers = c.collect_for(Duration::from_millis(500)).len();
    assert!(answers <= 60, "{answers} answers to 500 stray ACKs within half a second");
}

/// Ferry in a namespace with TFTP on port 69, killed on drop.
struct NsFerry {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl NsFerry {
    fn start(ns: &Netns, root: &std::path::Path, single: bool) -> NsFerry {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = ns.command(ferry_bin());
        cmd.arg("--root").arg(root).args(["--workers", "2", "--user", "nobody", "--ftp-port", "2121"]);
        cmd.env_remove("RUST_LOG").env_remove("FERRY_CONFIG");
        cmd.env("FERRY_TFTP__SINGLE_PORT", single.to_string());
        cmd.env("FERRY_TFTP__LISTEN", "[\"0.0.0.0:69\"]");
        let child =
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log.reopen().unwrap()).spawn().unwrap();
        let server = NsFerry { child, log };
        eventually(Duration::from_secs(10), "ferry listening on UDP 69", || {
            let up = ns.try_run("ss -Hlun 'sport = :69' | grep -q 69").status.success();
            up.then_some(())
                .ok_or_else(|| Text(std::fs::read_to_string(server.log.path()).unwrap_or_default()))
        });
        server
    }
}

impl Drop for NsFerry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = wait_exit(&mut self.child, Duration::from_secs(5));
    }
}

#[test]
fn single_port_crosses_a_nat_that_per_transfer_ports_cannot() {
    if !netns::available() || !have("tftp") {
        eprintln!("skipped: needs root, ip and tftp-hpa for network namespaces");
        return;
    }
    let (client, router, server) = (Netns::new("c"), Netns::new("r"), Netns::new("s"));
    netns::link(&client, "10.77.1.2/24", &router, "10.77.1.1/24");
    netns::link(&router, "10.77.2.1/24", &server, "10.77.2.2/24");
    client.run("ip route add default via 10.77.1.1");
    server.run("ip route add default via 10.77.2.1");
    router.enable_forwarding();
    // Source NAT of the clients, as a home router or a Kubernetes node does; no TFTP helper
    // (the kernel assigns none automatically since 4.7, and this test loads none).
    let nat = router.try_run("iptables -t nat -A POSTROUTING -s 10.77.1.0/24 -o $(ip -o addr show to 10.77.2.1 | cut -d\" \" -f2) -j MASQUERADE");
    if !nat.status.success() {
        eprintln!("skipped: iptables NAT unavailable: {}", String::from_utf8_lossy(&nat.stderr));
        return;
    }
    let root = served_dir();
    let want = random_file(root.path(), "boot.efi", 200_000);
    let fetch = |what: &str| {
        let out = client.try_run(&format!(
            "cd /tmp && rm -f nat-{what} && timeout 12 tftp 10.77.2.2 -m binary -c get boot.efi nat-{what} && cat nat-{what} && rm -f nat-{what}"
        ));
        (out.status.success(), out.stdout)
    };
    {
        let _ferry = NsFerry::start(&server, root.path(), false);
        let (ok, got) = fetch("multi");
        assert!(
            !ok || got != want,
            "per-transfer ports unexpectedly crossed the NAT (a TFTP helper is active?)"
        );
    }
    let ferry = NsFerry::start(&server, root.path(), true);
    let (ok, got) = fetch("single");
    let log = std::fs::read_to_string(ferry.log.path()).unwrap_or_default();
    assert!(ok && got == want, "single-port mode through NAT: ok={ok}, {} bytes\n{log}", got.len());
}

#[test]
fn single_port_is_off_by_default() {
    let (f, _) = Fixture::new(&[("f", 100)], &[]);
    let server: SocketAddr = v4(&f.server);
    let c = Raw::new(server);
    c.send(&request(1, "f", "octet", &[]));
    let (_, from) = c.recv();
    assert_ne!(from, server, "by default a transfer answers from a port of its own (RFC 1350 §4)");
}
