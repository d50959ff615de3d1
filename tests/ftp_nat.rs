//! FTP across NAT, in network namespaces the test builds (client, router, server). Passive
//! mode crosses a client-side NAT; active mode works only where the router runs the FTP
//! conntrack helper and fails cleanly otherwise; a server behind NAT needs the advertised
//! passive address (or a per-network override) for PASV clients that honour it.

mod common;

use common::netns::{self, Netns};
use common::{eventually, ferry_bin, served_dir, wait_exit, Text};
use std::io::Write;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// Ferry running inside a namespace, killed on drop.
struct NsServer {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl NsServer {
    fn start(
        ns: &Netns,
        root: &std::path::Path,
        env: &[(&str, &str)],
        probe_from: &Netns,
        addr: &str,
    ) -> NsServer {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = ns.command(ferry_bin());
        cmd.arg("--root").arg(root).args(["--workers", "1", "--user", "nobody"]);
        cmd.env("FERRY_FTP__PASSIVE__PORTS", "50000-50009").env_remove("RUST_LOG").env_remove("FERRY_CONFIG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child =
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log.reopen().unwrap()).spawn().unwrap();
        let server = NsServer { child, log };
        let probe = format!(
            "python3 -c \"import socket; s=socket.create_connection(('{addr}', 21), 1); assert s.recv(3) == b'220'\""
        );
        eventually(Duration::from_secs(10), "ferry's greeting in the namespace", || {
            let up = probe_from.try_run(&probe).status.success();
            up.then_some(()).ok_or_else(|| Text(server.log()))
        });
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for NsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = wait_exit(&mut self.child, Duration::from_secs(5));
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A served file with random content.
fn payload(dir: &std::path::Path) -> Vec<u8> {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::File::create(dir.join("fw.bin")).unwrap().write_all(&data).unwrap();
    data
}

/// curl from `ns`, downloading to a file it returns the bytes of (None on failure).
fn curl_get(ns: &Netns, args: &str, url: &str) -> (Option<Vec<u8>>, String) {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out");
    let res = ns.try_run(&format!("curl -sS -v --max-time 20 {args} -o {} {url}", out.display()));
    let body = res.status.success().then(|| std::fs::read(&out).unwrap_or_default());
    (body, text(&res))
}

/// client 10.77.1.2 -- [10.77.1.1 router 10.77.2.1] -- 10.77.2.2 server; the router
/// masquerades the client and lets nothing from outside in unless conntrack relates it.
struct ClientNat {
    client: Netns,
    router: Netns,
    server: Netns,
    inside_if: String,
}

fn client_behind_nat() -> ClientNat {
    let (client, router, server) = (Netns::new("c"), Netns::new("r"), Netns::new("s"));
    let (_, inside_if) = netns::link(&client, "10.77.1.2/24", &router, "10.77.1.1/24");
    let (outside_if, _) = netns::link(&router, "10.77.2.1/24", &server, "10.77.2.2/24");
    client.run("ip route add default via 10.77.1.1");
    server.run("ip route add default via 10.77.2.1");
    router.enable_forwarding();
    router.run(&format!("iptables -t nat -A POSTROUTING -o {outside_if} -j MASQUERADE"));
    router.run(&format!(
        "iptables -A FORWARD -i {outside_if} -o {inside_if} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
    ));
    router.run(&format!("iptables -A FORWARD -i {outside_if} -o {inside_if} -j DROP"));
    ClientNat { client, router, server, inside_if }
}

#[test]
fn passive_mode_crosses_a_client_side_nat() {
    if !netns::available() {
        eprintln!("skipped: needs root and iproute2");
        return;
    }
    let net = client_behind_nat();
    let dir = served_dir();
    let data = payload(dir.path());
    let srv = NsServer::start(&net.server, dir.path(), &[], &net.client, "10.77.2.2");
    for args in ["", "--disable-epsv"] {
        let (body, log) = curl_get(&net.client, args, "ftp://10.77.2.2/fw.bin");
        assert!(
            body.as_deref() == Some(&data[..]),
            "passive {args:?} failed:\n{log}\nserver:\n{}",
            srv.log()
        );
    }
}

#[test]
fn active_mode_through_nat_fails_cleanly_without_the_conntrack_helper() {
    if !netns::available() {
        eprintln!("skipped: needs root and iproute2");
        return;
    }
    let net = client_behind_nat();
    let dir = served_dir();
    payload(dir.path());
    let srv = NsServer::start(&net.server, dir.path(), &[], &net.client, "10.77.2.2");
    // The client announces its private address: that is not the control peer (the
    // router), so bounce protection refuses it.
    let (body, log) = curl_get(&net.client, "-P - --disable-eprt", "ftp://10.77.2.2/fw.bin");
    assert!(body.is_none(), "must fail:\n{log}");
    assert!(log.contains("< 500") || log.contains("< 504"), "PORT refused:\n{log}");
    // Announcing the router's public address passes the check, but nothing on the router
    // forwards the connection: a clean 425, not a hang.
    let started = Instant::now();
    let (body, log) = curl_get(&net.client, "-P 10.77.2.1 --disable-eprt", "ftp://10.77.2.2/fw.bin");
    assert!(body.is_none(), "must fail:\n{log}");
    assert!(log.contains("< 425"), "425 for the unreachable data connection:\n{log}\nserver:\n{}", srv.log());
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn active_mode_through_nat_works_with_the_conntrack_helper() {
    if !netns::available() {
        eprintln!("skipped: needs root and iproute2");
        return;
    }
    let net = client_behind_nat();
    let helper = net.router.try_run(&format!(
        "iptables -t raw -A PREROUTING -i {} -p tcp --dport 21 -j CT --helper ftp",
        net.inside_if
    ));
    if !helper.status.success() {
        eprintln!("skipped: the FTP conntrack helper is not available: {}", text(&helper));
        return;
    }
    let dir = served_dir();
    let data = payload(dir.path());
    let srv = NsServer::start(&net.server, dir.path(), &[], &net.client, "10.77.2.2");
    for args in ["-P - --disable-eprt", "-P -"] {
        let (body, log) = curl_get(&net.client, args, "ftp://10.77.2.2/fw.bin");
        assert!(body.as_deref() == Some(&data[..]), "active {args:?} failed:\n{log}\nserver:\n{}", srv.log());
    }
}

/// client 10.78.1.2 -- [10.78.1.1 router 10.78.2.1] -- 10.78.2.2 server; the router
/// forwards 21 and the passive range to the server and nothing else inward.
fn server_behind_nat() -> (Netns, Netns, Netns) {
    let (client, router, server) = (Netns::new("c"), Netns::new("r"), Netns::new("s"));
    let (_, outside_if) = netns::link(&client, "10.78.1.2/24", &router, "10.78.1.1/24");
    let (inside_if, _) = netns::link(&router, "10.78.2.1/24", &server, "10.78.2.2/24");
    client.run("ip route add default via 10.78.1.1");
    server.run("ip route add default via 10.78.2.1");
    router.enable_forwarding();
    for ports in ["21", "50000:50009"] {
        router.run(&format!(
            "iptables -t nat -A PREROUTING -i {outside_if} -p tcp --dport {ports} -j DNAT --to-destination 10.78.2.2"
        ));
    }
    router.run(&format!("iptables -A FORWARD -i {outside_if} -o {inside_if} -m conntrack --ctstate DNAT,ESTABLISHED,RELATED -j ACCEPT"));
    router.run(&format!("iptables -A FORWARD -i {outside_if} -o {inside_if} -j DROP"));
    (client, router, server)
}

#[test]
fn a_server_behind_nat_needs_its_advertised_address() {
    if !netns::available() {
        eprintln!("skipped: needs root and iproute2");
        return;
    }
    let (client, router, server) = server_behind_nat();
    let dir = served_dir();
    let data = payload(dir.path());
    // curl honours the 227 address only with --no-ftp-skip-pasv-ip.
    let pasv = "--disable-epsv --no-ftp-skip-pasv-ip --connect-timeout 3";

    let srv = NsServer::start(&server, dir.path(), &[], &client, "10.78.1.1");
    let (body, log) = curl_get(&client, pasv, "ftp://10.78.1.1/fw.bin");
    assert!(body.is_none(), "the private address must not be reachable:\n{log}");
    assert!(log.contains("10,78,2,2"), "advertised the private address:\n{log}");
    drop(srv);

    let srv = NsServer::start(
        &server,
        dir.path(),
        &[("FERRY_FTP__PASSIVE__ADDRESS", "10.78.1.1")],
        &client,
        "10.78.1.1",
    );
    let (body, log) = curl_get(&client, pasv, "ftp://10.78.1.1/fw.bin");
    assert!(body.as_deref() == Some(&data[..]), "with passive.address:\n{log}\nserver:\n{}", srv.log());
    drop(srv);

    // Per-network override: outside clients get the public address, inside ones (the
    // router itself, 10.78.2.1) keep the private one.
    let overrides = "[{network = \"10.78.1.0/24\", address = \"10.78.1.1\"}]";
    let srv = NsServer::start(
        &server,
        dir.path(),
        &[("FERRY_FTP__PASSIVE__OVERRIDES", overrides)],
        &client,
        "10.78.1.1",
    );
    let (body, log) = curl_get(&client, pasv, "ftp://10.78.1.1/fw.bin");
    assert!(
        body.as_deref() == Some(&data[..]),
        "override for the outside network:\n{log}\nserver:\n{}",
        srv.log()
    );
    let (body, log) = curl_get(&router, pasv, "ftp://10.78.2.2/fw.bin");
    assert!(body.as_deref() == Some(&data[..]), "inside client:\n{log}");
    assert!(log.contains("10,78,2,2"), "inside client told the private address:\n{log}");
}
