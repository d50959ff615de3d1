//! Protocol probes against a running Ferry with a raw UDP client: transfer IDs (RFC 1350 §4),
//! the UEFI tsize probe, repeated requests, the amplification guard, busy and rate limits,
//! path traversal, unknown and out-of-range options, netascii, malformed requests and their ERROR codes,
//! client ERRORs, stray ACKs, oversized DATA, vanished clients and broadcast requests.
//! Probes whose path single-port mode changes run in both modes (`name::per_transfer_ports`,
//! `name::single_port`); there a packet "from a wrong port" is one from an unknown client.

mod common;

use common::tftp::*;
use common::*;
use std::time::Duration;

in_both_modes!(
    wrong_source_port_gets_error_5_and_the_transfer_continues,
    uefi_tsize_probe_then_a_new_request_succeeds,
    a_request_right_behind_a_client_error_from_its_port_is_a_new_transfer,
    repeated_request_from_the_same_port_is_ignored,
    an_unproven_client_gets_at_most_1_plus_unproven_retransmits_packets,
    over_max_transfers_is_answered_busy,
    traversal_and_absolute_names_stay_inside_the_root,
    unknown_options_are_ignored,
    out_of_range_option_values_are_left_out_of_the_oack,
    ipv6_raw_probe_answers_from_the_requested_address,
    transfer_ports_are_used_and_exhaustion_is_answered,
    shutdown_stops_new_requests_and_lets_running_transfers_finish,
    the_request_port_never_answers_an_error_and_refuses_other_non_requests,
    a_boot_storm_of_simultaneous_requests_is_answered_without_retries,
    malformed_and_refused_requests_get_one_error_with_the_rfc_code,
    a_client_error_at_any_point_frees_the_transfer_at_once,
    duplicate_and_future_acks_send_nothing,
    wrq_data_larger_than_the_block_size_is_error_4,
    a_request_to_a_broadcast_address_gets_one_transfer_from_a_unicast_address,
);

fn wrong_source_port_gets_error_5_and_the_transfer_continues(mode: Mode) {
    let dir = served_dir();
    let want = random_file(dir.path(), "f", 2000);
    let server = mode.start(dir.path(), &[]);
    let client = Raw::new(v4(&server));
    let stranger = Raw::new(v4(&server));
    client.send(&request(1, "f", "octet", &[]));
    let (p, tid) = client.recv();
    assert_eq!((opcode(&p), block(&p)), (3, 1));
    mode.assert_transfer_source(tid, v4(&server));
    // The stranger's port is no transfer's client TID: in single-port mode it is an unknown
    // client of the request port.
    stranger.send_to(&ack(1), tid);
    let (e, from) = stranger.recv();
    assert_eq!(error_of(&e).map(|e| e.0), Some(5), "stranger gets ERROR 5, got {e:?}");
    assert_eq!(from, tid);
    assert_eq!(client.continue_get(&p, tid), want);
}

fn uefi_tsize_probe_then_a_new_request_succeeds(mode: Mode) {
    let dir = served_dir();
    let want = random_file(dir.path(), "bootx64.efi", 100_000);
    // One transfer at a time: the probe's transfer must be freed at once by its ERROR 8.
    let server = mode.start(dir.path(), &[("FERRY_TFTP__MAX_TRANSFERS", "1")]);
    let probe = Raw::new(v4(&server));
    probe.send(&request(1, "bootx64.efi", "octet", &[("tsize", "0"), ("blksize", "1468")]));
    let (p, tid) = probe.recv();
    let opts = oack_options(&p);
    assert_eq!(opts, vec![("tsize".into(), "100000".into()), ("blksize".into(), "1468".into())]);
    probe.send_to(&error(8, "tsize probe done"), tid);
    // At once: within 2 s, long before the unanswered OACK's retransmissions (1 s, doubling,
    // 3 of them) would give the slot up. Until then a request is answered "server busy".
    let (fetch, p, tid2) = eventually(Duration::from_secs(2), "the probe's slot freed", || {
        let fetch = Raw::new(v4(&server));
        fetch.send(&request(1, "bootx64.efi", "octet", &[("blksize", "1468")]));
        let (p, tid2) = fetch.recv();
        check(p, |p| opcode(p) == 6).map(|p| (fetch, p, tid2)).map_err(|p| error_of(&p))
    });
    assert_eq!(oack_options(&p), vec![("blksize".into(), "1468".into())]);
    mode.assert_transfer_source(tid2, v4(&server));
    if !mode.single() {
        assert_ne!(tid, tid2, "a new transfer, a new port");
    }
    fetch.send_to(&ack(0), tid2);
    assert_eq!(fetch.receive_blocks(1468, 1), want);
}

fn a_request_right_behind_a_client_error_from_its_port_is_a_new_transfer(mode: Mode) {
    // A size probe ended by ERROR 8, then the real request from the same port at once: the
    // ERROR ends the transfer first, so the request is new, not a repeat left unanswered
    // until the client retransmits it.
    let dir = served_dir();
    let want = random_file(dir.path(), "bootx64.efi", 3000);
    let server = mode.start(dir.path(), &[]);
    let c = Raw::new(v4(&server));
    c.send(&request(1, "bootx64.efi", "octet", &[("tsize", "0")]));
    let (p, tid) = c.recv();
    assert_eq!(oack_options(&p), vec![("tsize".into(), "3000".into())]);
    c.send_to(&error(8, "tsize probe done"), tid);
    c.send(&request(1, "bootx64.efi", "octet", &[]));
    let (p, tid) = c.recv_within(Duration::from_secs(1)).expect("the request was ignored as a repeat");
    mode.assert_transfer_source(tid, v4(&server));
    assert_eq!(c.continue_get(&p, tid), want);
}

fn repeated_request_from_the_same_port_is_ignored(mode: Mode) {
    let dir = served_dir();
    let want = random_file(dir.path(), "f", 1500);
    let server = mode.start(dir.path(), &[]);
    let client = Raw::new(v4(&server));
    client.send(&request(1, "f", "octet", &[]));
    let (first, tid) = client.recv();
    client.send(&request(1, "f", "octet", &[]));
    // Only the running transfer may answer: its own retransmission of DATA 1 after ~1 s. (In
    // single-port mode a second transfer would answer from the same port: it shows as more.)
    let extra = client.collect_for(Duration::from_millis(1500));
    assert!(extra.len() <= 1, "a second transfer was started: {extra:?}");
    for (p, from) in extra {
        assert_eq!((&p, from), (&first, tid), "a second transfer was started");
    }
    assert_eq!(client.continue_get(&first, tid), want);
    let log = server.wait_log("TFTP transfer ended");
    assert_eq!(log.matches("TFTP transfer ended").count(), 1, "one transfer only:\n{log}");
}

fn an_unproven_client_gets_at_most_1_plus_unproven_retransmits_packets(mode: Mode) {
    let dir = served_dir();
    random_file(dir.path(), "big", 1 << 20);
    let server = mode.start(dir.path(), &[("FERRY_TFTP__UNPROVEN_RETRANSMITS", "1")]);
    let cases = [&[("blksize", "1468"), ("windowsize", "64")][..], &[][..]];
    let victims: Vec<Raw> = cases.iter().map(|_| Raw::new(v4(&server))).collect();
    for (victim, opts) in victims.iter().zip(cases) {
        victim.send(&request(1, "big", "octet", opts));
    }
    // Timeouts 1 s then 2 s: the OACK (or DATA 1) goes out twice, then the transfer is
    // dropped; the second victim's packets wait in its socket meanwhile.
    for (i, (victim, opts)) in victims.iter().zip(cases).enumerate() {
        let got = victim.collect_for(Duration::from_millis(if i == 0 { 5000 } else { 300 }));
        assert_eq!(got.len(), 2, "options {opts:?}: expected 2 packets, got {}", got.len());
        let op = if opts.is_empty() { 3 } else { 6 };
        assert!(got.iter().all(|(p, _)| opcode(p) == op), "only the first packet may repeat");
    }
}

fn over_max_transfers_is_answered_busy(mode: Mode) {
    let dir = served_dir();
    random_file(dir.path(), "f", 10_000);
    let server = mode.start(dir.path(), &[("FERRY_TFTP__MAX_TRANSFERS", "1")]);
    let holder = Raw::new(v4(&server));
    holder.send(&request(1, "f", "octet", &[]));
    let _ = holder.recv();
    let other = Raw::new(v4(&server));
    other.send(&request(1, "f", "octet", &[]));
    let (p, from) = other.recv();
    assert_eq!(error_of(&p), Some((0, "server busy".into())));
    assert_eq!(from, v4(&server), "a refusal comes from the request port");
}

#[test]
fn per_ip_request_rate_is_limited() {
    let dir = served_dir();
    let server = start_tftp(dir.path(), &[("FERRY_TFTP__REQUESTS_PER_SECOND_PER_IP", "2")]);
    let mut codes = Vec::new();
    for _ in 0..8 {
        let c = Raw::new(v4(&server));
        c.send(&request(1, "missing", "octet", &[]));
        codes.push(error_of(&c.recv().0).map(|e| e.0));
    }
    // One bucket per IP for all workers (burst 2).
    let busy = codes.iter().filter(|c| **c == Some(0)).count();
    let passed = codes.iter().filter(|c| **c == Some(1)).count();
    assert!(busy >= 4 && passed >= 2 && busy + passed == 8, "codes {codes:?}");
}

#[test]
fn the_rate_limit_holds_across_workers_for_many_source_ports() {
    // SO_REUSEPORT spreads the source ports over both workers; the bucket must still be one.
    let dir = served_dir();
    let server = start_tftp(dir.path(), &[("FERRY_TFTP__REQUESTS_PER_SECOND_PER_IP", "5")]);
    let clients: Vec<_> = (0..40).map(|_| Raw::new(v4(&server))).collect();
    for c in &clients {
        c.send(&request(1, "missing", "octet", &[]));
    }
    let codes: Vec<_> = clients.iter().map(|c| error_of(&c.recv().0).map(|e| e.0)).collect();
    let passed = codes.iter().filter(|c| **c == Some(1)).count();
    let busy = codes.iter().filter(|c| **c == Some(0)).count();
    // Burst 5, plus a refill token or two while a slow (debug, loaded) server takes the 40;
    // per-worker buckets let 10 through.
    assert!((5..=7).contains(&passed) && busy + passed == 40, "codes {codes:?}");
}

fn traversal_and_absolute_names_stay_inside_the_root(mode: Mode) {
    let dir = served_dir();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("escape")).unwrap();
    let server = mode.start(dir.path(), &[]);
    let cases = [
        ("../etc/passwd", 2),
        ("..\\..\\x", 2),
        ("a/../../etc/passwd", 2),
        // Taken relative to the root, where there is no etc/passwd.
        ("/etc/passwd", 1),
        // The link's absolute target is re-rooted, not followed out.
        ("escape", 1),
        ("", 1),
    ];
    for (name, code) in cases {
        let c = Raw::new(v4(&server));
        c.send(&request(1, name, "octet", &[]));
        let (p, _) = c.recv();
        assert_eq!(error_of(&p).map(|e| e.0), Some(code), "{name:?} answered {p:?}");
    }
    // And a directory is no file.
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let c = Raw::new(v4(&server));
    c.send(&request(1, "sub", "octet", &[]));
    assert_eq!(error_of(&c.recv().0).map(|e| e.0), Some(1));
}

fn unknown_options_are_ignored(mode: Mode) {
    let dir = served_dir();
    let want = random_file(dir.path(), "f", 5000);
    let server = mode.start(dir.path(), &[]);
    let c = Raw::new(v4(&server));
    c.send(&request(1, "f", "octet", &[("foo", "bar"), ("blksize", "1024"), ("multicast", "")]));
    let (p, tid) = c.recv();
    assert_eq!(oack_options(&p), vec![("blksize".into(), "1024".into())]);
    mode.assert_transfer_source(tid, v4(&server));
    c.send_to(&ack(0), tid);
    assert_eq!(c.receive_blocks(1024, 1), want);
    // Only unknown options: no OACK at all, plain RFC 1350 DATA 1.
    let c = Raw::new(v4(&server));
    c.send(&request(1, "f", "octet", &[("foo", "bar")]));
    let (p, _) = c.recv();
    assert_eq!((opcode(&p), block(&p)), (3, 1));
}

fn out_of_range_option_values_are_left_out_of_the_oack(mode: Mode) {
    let dir = served_dir();
    let want = random_file(dir.path(), "f", 3000);
    let server = mode.start(dir.path(), &[]);
    // RFC 2348 blksize 8..=65464, RFC 2349 timeout 1..=255, RFC 7440 windowsize 1..=65535:
    // values outside are invalid and ignored, so only tsize is acknowledged.
    let c = Raw::new(v4(&server));
    let bad = [("blksize", "65465"), ("timeout", "256"), ("windowsize", "65536"), ("tsize", "0")];
    c.send(&request(1, "f", "octet", &bad));
    let (p, tid) = c.recv();
    assert_eq!(oack_options(&p), vec![("tsize".into(), "3000".into())]);
    c.send_to(&ack(0), tid);
    assert_eq!(c.receive_blocks(512, 1), want);
    // In range but above the server's cap: answered with the cap.
    let c = Raw::new(v4(&server));
    c.send(&request(1, "f", "octet", &[("blksize", "65464"), ("windowsize", "65535")]));
    let opts = oack_options(&c.recv().0);
    assert_eq!(opts, vec![("blksize".into(), "1468".into()), ("windowsize".into(), "64".into())]);
}

#[test]
fn netascii_read_is_encoded_and_tsize_counts_the_encoding() {
    let dir = served_dir();
    std::fs::write(dir.path().join("menu.txt"), b"line1\nline2\rx\n").unwrap();
    let server = start_tftp(dir.path(), &[]);
    let c = Raw::new(v4(&server));
    assert_eq!(c.get("menu.txt", "netascii"), b"line1\r\nline2\r\0x\r\n");
    let c = Raw::new(v4(&server));
    c.send(&request(1, "menu.txt", "NetASCII", &[("tsize", "0")]));
    assert_eq!(oack_options(&c.recv().0), vec![("tsize".into(), "17".into())]);
    // A bare CR whose CR NUL straddles blocks 1 and 2: the NUL opens block 2.
    let mut text = vec![b'a'; 511];
    text.extend_from_slice(b"\rb\n");
    std::fs::write(dir.path().join("edge.txt"), &text).unwrap();
    let c = Raw::new(v4(&server));
    c.send(&request(1, "edge.txt", "netascii", &[]));
    let (p, tid) = c.recv();
    assert_eq!(&p[4..][510..], b"a\r");
    c.send_to(&ack(1), tid);
    assert_eq!(&c.recv().0[4..], b"\0b\r\n");
    // Over netascii_max_bytes: refused, not converted.
    drop(server);
    let server = start_tftp(dir.path(), &[("FERRY_TFTP__NETASCII_MAX_BYTES", "4")]);
    let c = Raw::new(v4(&server));
    c.send(&request(1, "menu.txt", "netascii", &[]));
    assert_eq!(error_of(&c.recv().0).map(|e| e.0), Some(0));
}

fn ipv6_raw_probe_answers_from_the_requested_address(mode: Mode) {
    if !have_ipv6() {
        return;
    }
    let dir = served_dir();
    let want = random_file(dir.path(), "f", 3000);
    let server = mode.start(dir.path(), &[]);
    let c = Raw::new(v6(&server));
    c.send(&request(1, "f", "octet", &[]));
    let (p, tid) = c.recv();
    mode.assert_transfer_source(tid, v6(&server));
    assert_eq!(c.continue_get(&p, tid), want);
    let c = Raw::new(v6(&server));
    c.send(&request(1, "missing", "octet", &[]));
    let (p, from) = c.recv();
    assert_eq!((error_of(&p).map(|e| e.0), from), (Some(1), v6(&server)));
}

fn transfer_ports_are_used_and_exhaustion_is_answered(mode: Mode) {
    let dir = served_dir();
    random_file(dir.path(), "f", 10_000);
    let port = free_port();
    let range = format!("{port}-{port}");
    let server = mode.start(dir.path(), &[("FERRY_TFTP__TRANSFER_PORTS", &range)]);
    let first = Raw::new(v4(&server));
    first.send(&request(1, "f", "octet", &[]));
    let (_, tid) = first.recv();
    let second = Raw::new(v4(&server));
    second.send(&request(1, "f", "octet", &[]));
    let (p, from) = second.recv();
    if mode.single() {
        // Single-port mode binds no transfer sockets: the range is not consulted.
        assert_eq!((tid, from), (v4(&server), v4(&server)), "a transfer answered from its own port");
        assert_eq!((opcode(&p), block(&p)), (3, 1), "got {p:?}");
    } else {
        assert_eq!(tid.port(), port, "the transfer socket uses the configured range");
        // The only port is taken while the first transfer runs.
        assert_eq!(error_of(&p).map(|e| e.0), Some(0), "got {p:?}");
    }
}

fn shutdown_stops_new_requests_and_lets_running_transfers_finish(mode: Mode) {
    let dir = served_dir();
    let want = random_file(dir.path(), "f", 20_000);
    let mut server = mode.start(dir.path(), &[]);
    let running = Raw::new(v4(&server));
    running.send(&request(1, "f", "octet", &[]));
    let (first, tid) = running.recv();
    let pid = nix::unistd::Pid::from_raw(server.pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    server.wait_log("shutting down");
    // The log line comes just before the workers are told to stop taking requests, and
    // nothing shows when every worker has: this grace is that step, not a wait that can poll.
    std::thread::sleep(Duration::from_millis(300));
    let late = Raw::new(v4(&server));
    late.send(&request(1, "f", "octet", &[]));
    assert!(late.recv_within(Duration::from_secs(1)).is_none(), "a request was served after shutdown began");
    assert_eq!(running.continue_get(&first, tid), want, "the running transfer finishes");
    assert_eq!(wait_exit(&mut server.child, Duration::from_secs(10)), Some(0), "{}", server.stderr());
}

fn the_request_port_never_answers_an_error_and_refuses_other_non_requests(mode: Mode) {
    let dir = served_dir();
    let server = mode.start(dir.path(), &[]);
    let c = Raw::new(v4(&server));
    // RFC 1350 §7: an ERROR is not answered (no error ping-pong, no reflection).
    c.send(&error(0, "stray"));
    assert!(c.recv_within(Duration::from_millis(500)).is_none(), "an ERROR to port 69 gets no reply");
    // A stray ACK gets ERROR 4 (illegal operation), as tftpd-hpa answers; in single-port mode
    // it is a packet for no known transfer: ERROR 5 (RFC 1350 §4). Garbage is ERROR 4 in both.
    c.send(&ack(1));
    assert_eq!(error_of(&c.recv().0).map(|e| e.0), Some(stray_code(mode)));
    c.send(b"\x00\x09junk");
    assert_eq!(error_of(&c.recv().0).map(|e| e.0), Some(4));
}

/// The ERROR code the request port answers a DATA or ACK of no transfer with.
fn stray_code(mode: Mode) -> u16 {
    if mode.single() {
        5
    } else {
        4
    }
}

fn a_boot_storm_of_simultaneous_requests_is_answered_without_retries(mode: Mode) {
    let dir = served_dir();
    random_file(dir.path(), "pxelinux.0", 3000);
    let server = mode.start(
        dir.path(),
        &[("FERRY_TFTP__MAX_TRANSFERS", "2000"), ("FERRY_TFTP__REQUESTS_PER_SECOND_PER_IP", "0")],
    );
    // 800 clients send their request in the same instant; none retransmits.
    let clients: Vec<std::net::UdpSocket> = (0..800)
        .map(|_| {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let rrq = request(1, "pxelinux.0", "octet", &[]);
    for c in &clients {
        c.send_to(&rrq, v4(&server)).unwrap();
    }
    let mut answered = vec![false; clients.len()];
    let mut buf = [0u8; 600];
    eventually(
        Duration::from_secs(15),
        "DATA 1 for all 800 requests (missing ones dropped at the request port?)",
        || {
            for (c, done) in clients.iter().zip(answered.iter_mut()).filter(|(_, done)| !**done) {
                if let Ok((n, _)) = c.recv_from(&mut buf) {
                    *done = opcode(&buf[..n]) == 3 && block(&buf[..n]) == 1;
                }
            }
            let missing = answered.iter().filter(|a| !**a).count();
            check(missing, |&m| m == 0).map_err(|m| format!("{m} of 800 unanswered"))
        },
    );
}

/// Asserts `p` is an ERROR `code` with a non-empty, NUL-terminated message (RFC 1350 §5).
fn assert_error(p: &[u8], code: u16, what: &str) {
    assert_eq!(error_of(p).map(|e| e.0), Some(code), "{what}: answered {p:?}");
    assert!(p.len() > 5 && p.last() == Some(&0), "{what}: message missing or not NUL-terminated: {p:?}");
}

fn malformed_and_refused_requests_get_one_error_with_the_rfc_code(mode: Mode) {
    let dir = served_dir();
    random_file(dir.path(), "f", 100);
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    // All cases at once, each from a port of its own: no rate limit in the way.
    let server = mode.start(dir.path(), &[("FERRY_TFTP__REQUESTS_PER_SECOND_PER_IP", "0")]);
    let long_request = [b"\x00\x01".as_slice(), &[b'a'; 600], b"\x00octet\x00"].concat();
    let huge_request = [b"\x00\x01".as_slice(), &[b'a'; 3000], b"\x00octet\x00"].concat();
    let long_name = request(1, &"n".repeat(300), "octet", &[]);
    let cases: &[(&[u8], u16, &str)] = &[
        (b"\x00\x01f", 4, "no NUL after the file name"),
        (b"\x00\x01f\x00octet", 4, "no NUL after the mode"),
        (b"\x00\x01", 4, "truncated request"),
        (b"\x00", 4, "one byte"),
        (b"\x00\x08f\x00octet\x00", 4, "unknown opcode"),
        (b"\x00\x03\x00\x01data", stray_code(mode), "DATA to the request port"),
        (b"\x00\x06blksize\x00512\x00", 4, "OACK to the request port"),
        (b"\x00\x06blksize\x00", 4, "malformed OACK to the request port"),
        (&long_request, 4, "request over 512 octets"),
        (&huge_request, 4, "request over the receive buffer"),
        (b"\x00\x01f\x00mail\x00", 4, "mail mode"),
        (b"\x00\x01f\x00binary\x00", 4, "unknown mode"),
        (b"\x00\x01fi\x00le\x00octet\x00", 4, "NUL inside the name"),
        (b"\x00\x01missing\x00octet\x00", 1, "missing file"),
        (b"\x00\x01sub\x00octet\x00", 1, "directory"),
        (&long_name, 1, "300-byte name"),
        (b"\x00\x02f\x00octet\x00", 2, "WRQ with uploads disabled"),
        (b"\x00\x01f\x00octet\x00blksize\x00", 8, "option without a value"),
    ];
    let clients: Vec<Raw> = cases.iter().map(|_| Raw::new(v4(&server))).collect();
    for (c, (bytes, _, _)) in clients.iter().zip(cases) {
        c.send(bytes);
    }
    for (c, (_, code, what)) in clients.iter().zip(cases) {
        let (p, from) = c.recv();
        assert_error(&p, *code, what);
        assert_eq!(from, v4(&server), "{what}: a request refusal comes from the request port");
    }
    std::thread::sleep(Duration::from_millis(100));
    for (c, (_, _, what)) in clients.iter().zip(cases) {
        assert!(c.recv_within(Duration::ZERO).is_none(), "{what}: more than one answer");
    }
    // Modes compare ignoring case.
    for name in ["OCTET", "NetAscii"] {
        let c = Raw::new(v4(&server));
        c.send(&request(1, "f", name, &[]));
        assert_eq!(opcode(&c.recv().0), 3, "mode {name}");
    }
}

fn a_client_error_at_any_point_frees_the_transfer_at_once(mode: Mode) {
    let dir = served_dir();
    let want = random_file(dir.path(), "f", 5000);
    let server = mode.start(dir.path(), &[("FERRY_TFTP__MAX_TRANSFERS", "1")]);
    // Mid-transfer, and before the first ACK.
    for acks in [2u16, 0] {
        let c = Raw::new(v4(&server));
        c.send(&request(1, "f", "octet", &[]));
        let (mut p, tid) = c.recv();
        for n in 1..=acks {
            assert_eq!((opcode(&p), block(&p)), (3, n));
            c.send_to(&ack(n), tid);
            p = c.recv().0;
        }
        c.send_to(&error(0, "user cancelled"), tid);
        assert!(c.recv_within(Duration::from_millis(200)).is_none(), "an ERROR is never answered");
        let next = Raw::new(v4(&server));
        assert_eq!(next.get("f", "octet"), want, "the only transfer slot was freed");
    }
}

fn duplicate_and_future_acks_send_nothing(mode: Mode) {
    let dir = served_dir();
    let want = random_file(dir.path(), "f", 3000);
    let server = mode.start(dir.path(), &[]);
    let c = Raw::new(v4(&server));
    c.send(&request(1, "f", "octet", &[]));
    let (p, tid) = c.recv();
    let mut got = p[4..].to_vec();
    c.send_to(&ack(1), tid);
    let (p, _) = c.recv();
    assert_eq!(block(&p), 2);
    got.extend_from_slice(&p[4..]);
    // Sorcerer's Apprentice (RFC 1123 §4.2.3.1): a repeated ACK 1 must not bring DATA 2 again;
    // an ACK for a block never sent is ignored. The retransmit timer is 1 s, so 400 ms is quiet.
    c.send_to(&ack(1), tid);
    c.send_to(&ack(9), tid);
    let extra = c.collect_for(Duration::from_millis(400));
    assert!(extra.is_empty(), "answered a duplicate or future ACK: {extra:?}");
    c.send_to(&ack(2), tid);
    got.extend(c.receive_blocks(512, 3));
    assert_eq!(got, want);
}

fn wrq_data_larger_than_the_block_size_is_error_4(mode: Mode) {
    let dir = served_dir();
    let up = upload_dir(dir.path(), "up");
    let server = mode.start(dir.path(), &[("FERRY_TFTP__WRITE__ENABLED", "true")]);
    let c = Raw::new(v4(&server));
    c.send(&request(2, "up/x", "octet", &[("blksize", "1024")]));
    let (p, tid) = c.recv();
    assert_eq!(oack_options(&p), vec![("blksize".into(), "1024".into())]);
    mode.assert_transfer_source(tid, v4(&server));
    c.send_to(&data(1, &[1u8; 1025]), tid);
    assert_error(&c.recv().0, 4, "1025 bytes at blksize 1024");
    eventually(Duration::from_secs(2), "the failed upload's file removed", || {
        check(std::fs::read_dir(&up).unwrap().count(), |&n| n == 0)
    });
}

/// Asks for `file` from a new port until the only transfer slot is free (a transfer starts
/// instead of ERROR 0 "server busy"); fetches it and returns how long that took. Fails once
/// `limit` has passed.
fn wait_for_the_slot(server: &Server, file: &str, want: &[u8], limit: Duration) -> Duration {
    let started = std::time::Instant::now();
    let (c, p, tid) = eventually(limit, "the only transfer slot freed", || {
        let c = Raw::new(v4(server));
        c.send(&request(1, file, "octet", &[]));
        let (p, tid) = c.recv();
        check(p, |p| opcode(p) == 3).map(|p| (c, p, tid)).map_err(|p| error_of(&p))
    });
    assert_eq!(c.continue_get(&p, tid), want);
    started.elapsed()
}

#[test]
fn a_vanished_client_is_freed_after_the_give_up_time() {
    let dir = served_dir();
    let want = random_file(dir.path(), "f", 3000);
    let env = [("FERRY_TFTP__MAX_TRANSFERS", "1"), ("FERRY_TFTP__MAX_RETRANSMIT_TIME_SECS", "2")];
    let server = start_tftp(dir.path(), &env);
    let gone = Raw::new(v4(&server));
    gone.send(&request(1, "f", "octet", &[]));
    let (_, tid) = gone.recv();
    gone.send_to(&ack(1), tid);
    drop(gone);
    let c = Raw::new(v4(&server));
    c.send(&request(1, "f", "octet", &[]));
    assert_error(&c.recv().0, 0, "busy while the first transfer holds the only slot");
    // Give-up time 2 s of silence (plus room for a loaded machine).
    wait_for_the_slot(&server, "f", &want, Duration::from_secs(10));
}

#[test]
fn a_spoofed_request_with_a_long_timeout_frees_its_slot_on_the_server_clock() {
    // RFC 2349 timeout 255 from a source that never answers: the OACK echoes 255, but the
    // slot is given back after (1 + unproven_retransmits) x the server's 1 s timeout, not
    // after retransmissions 255 s apart.
    let dir = served_dir();
    let want = random_file(dir.path(), "f", 3000);
    let env = [("FERRY_TFTP__MAX_TRANSFERS", "1"), ("FERRY_TFTP__UNPROVEN_RETRANSMITS", "1")];
    let server = start_tftp(dir.path(), &env);
    let spoofed = Raw::new(v4(&server));
    spoofed.send(&request(1, "f", "octet", &[("timeout", "255")]));
    let (p, _) = spoofed.recv();
    assert_eq!(oack_options(&p), vec![("timeout".into(), "255".into())]);
    let took = wait_for_the_slot(&server, "f", &want, Duration::from_secs(8));
    // The OACK went out twice, 1 s apart: the server's clock, not the client's 255 s.
    let again = spoofed.collect_for(Duration::from_millis(100));
    assert_eq!(again.len(), 1, "expected one retransmitted OACK, got {again:?}");
    eprintln!("slot freed {took:?} after the spoofed request");
}

#[test]
fn a_last_block_never_acknowledged_frees_the_slot_within_7_s() {
    // The client takes every block but never acknowledges the last (its final ACK lost, or
    // it is gone): the server resends it a few times on its own timeout, then lets go.
    // tftp-hpa does in about 7 s; Ferry held it 15 s.
    let dir = served_dir();
    let want = random_file(dir.path(), "f", 1000);
    let server = start_tftp(dir.path(), &[("FERRY_TFTP__MAX_TRANSFERS", "1")]);
    let c = Raw::new(v4(&server));
    c.send(&request(1, "f", "octet", &[]));
    let (p, tid) = c.recv();
    assert_eq!((opcode(&p), block(&p)), (3, 1));
    c.send_to(&ack(1), tid);
    let (p, _) = c.recv();
    assert_eq!((opcode(&p), block(&p), p.len() - 4), (3, 2, 1000 - 512));
    let took = wait_for_the_slot(&server, "f", &want, Duration::from_secs(9));
    eprintln!("slot freed {took:?} after the unacknowledged last block");
}

fn a_request_to_a_broadcast_address_gets_one_transfer_from_a_unicast_address(mode: Mode) {
    let dir = served_dir();
    let want = random_file(dir.path(), "f", 700);
    let server = mode.start(dir.path(), &[]);
    let c = Raw::new(v4(&server));
    c.sock.set_broadcast(true).unwrap();
    // 127.255.255.255 is the broadcast address of lo's 127.0.0.0/8.
    let broadcast = std::net::SocketAddr::from(([127, 255, 255, 255], server.tftp_port));
    c.send_to(&request(1, "f", "octet", &[]), broadcast);
    let (p, tid) = c.recv();
    // A port of its own in both modes: in single-port mode the client's unicast ACKs could
    // reach another worker's member of the request port.
    Mode::PerTransferPorts.assert_transfer_source(tid, v4(&server));
    // Every worker's socket gets a copy of a broadcast: still only one transfer may answer.
    let others = c.collect_for(Duration::from_millis(300));
    assert!(others.is_empty(), "a second transfer answered: {others:?}");
    assert_eq!(c.continue_get(&p, tid), want);
}
