//! Resource bounds under hostile peers, measured on the running server's /proc entry: idle,
//! slowloris and non-reading control clients, repeated PASV, stalled data connections, huge
//! listings, TFTP request floods and netascii memory, descriptor exhaustion, random bytes.

mod common;

use common::ftp::{FtpServer, Opts};
use common::tftp::*;
use common::*;
use rand::{Rng, RngCore};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// Open descriptors of `pid`.
fn fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = process_status(pid);
    status["VmRSS"].trim_end_matches(" kB").parse().unwrap()
}

/// The descriptor count once the start-up probe connection is gone and every worker has its
/// ring: the first 220 comes from one worker, and on a loaded machine another may still be
/// starting. Settled when it has not changed for 400 ms.
fn baseline(pid: i32) -> usize {
    let (mut last, mut since) = (fds(pid), Instant::now());
    eventually(Duration::from_secs(10), "the descriptor count to settle", || {
        let n = fds(pid);
        if n != last {
            (last, since) = (n, Instant::now());
        }
        check(n, |_| since.elapsed() >= Duration::from_millis(400))
    })
}

/// Waits up to `within` for the descriptor count to fall back to `base` (+1 for timing slack).
fn assert_fds_back(pid: i32, base: usize, within: Duration, what: &str) {
    if let Err(n) = poll(within, || check(fds(pid), |&n| n <= base + 1)) {
        panic!("{what}: {n} descriptors open after {within:?}, baseline {base}: {:?}", fd_targets(pid));
    }
}

/// What each open descriptor of `pid` refers to, TCP sockets with their addresses and state
/// from /proc/PID/net/tcp{,6} (for failure messages).
fn fd_targets(pid: i32) -> Vec<String> {
    let mut tcp = std::collections::HashMap::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for f in text.lines().skip(1).map(|l| l.split_whitespace().collect::<Vec<_>>()) {
            if f.len() > 9 {
                tcp.insert(format!("socket:[{}]", f[9]), format!("{} {}->{} st={}", table, f[1], f[2], f[3]));
            }
        }
    }
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    dir.filter_map(|e| e.ok())
        .map(|e| {
            let target = std::fs::read_link(e.path()).map(|t| t.display().to_string()).unwrap_or_default();
            let detail = tcp.get(&target).map(|d| format!(" ({d})")).unwrap_or_default();
            format!("{}={target}{detail}", e.file_name().to_string_lossy())
        })
        .collect()
}

/// Reads until the server closes the connection; what it sent, or `None` if still open
/// after `within`.
fn read_until_closed(mut s: &TcpStream, within: Duration) -> Option<String> {
    s.set_read_timeout(Some(within)).unwrap();
    let mut text = Vec::new();
    match s.read_to_end(&mut text) {
        Ok(_) => Some(String::from_utf8_lossy(&text).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            Some(String::from_utf8_lossy(&text).into())
        }
        Err(_) => None,
    }
}

type Control = (BufReader<TcpStream>, TcpStream);

/// A session of the writable test user, in binary type.
fn login(srv: &FtpServer) -> Control {
    let (mut r, mut w, _) = ftp_connect(srv.server.ftp_addr());
    ftp_command(&mut r, &mut w, &format!("USER {}", common::ftp::USER));
    assert!(ftp_command(&mut r, &mut w, &format!("PASS {}", common::ftp::PASS)).starts_with("230"));
    assert!(ftp_command(&mut r, &mut w, "TYPE I").starts_with("200"));
    (r, w)
}

/// PASV: a connected data socket, its receive buffer set small first (`rcvbuf`).
fn pasv_connect(c: &mut Control, rcvbuf: Option<usize>) -> TcpStream {
    let reply = ftp_command(&mut c.0, &mut c.1, "PASV");
    let inner = reply.split('(').nth(1).and_then(|s| s.split(')').next()).expect(&reply);
    let n: Vec<u16> = inner.split(',').map(|x| x.trim().parse().unwrap()).collect();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if let Some(size) = rcvbuf {
        sock.set_recv_buffer_size(size).unwrap();
    }
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], n[4] * 256 + n[5]).into();
    sock.connect(&addr.into()).unwrap();
    sock.into()
}

fn read_line(c: &mut Control) -> String {
    let mut line = String::new();
    c.0.read_line(&mut line).unwrap();
    line
}

#[test]
fn silent_and_slowloris_control_connections_end_at_the_idle_timeout() {
    let env = [("FERRY_FTP__LIMITS__IDLE_TIMEOUT_SECS", "1")];
    let srv = FtpServer::start(Opts { env: &env, ..Opts::default() });
    let pid = srv.server.pid();
    let base = baseline(pid);
    let silent: Vec<_> = (0..10).map(|_| TcpStream::connect(srv.server.ftp_addr()).unwrap()).collect();
    // One byte every 200 ms, never a newline: bytes alone must not count as activity.
    let slow = TcpStream::connect(srv.server.ftp_addr()).unwrap();
    let mut w = slow.try_clone().unwrap();
    let dripper = std::thread::spawn(move || {
        for _ in 0..25 {
            if w.write_all(b"N").is_err() {
                return true;
            }
            // Pacing the slowloris client (the point of the test), not a wait for an effect.
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    });
    for s in &silent {
        let text = read_until_closed(s, Duration::from_secs(4)).expect("silent session still open");
        assert!(text.contains("421 Timeout."), "{text}");
    }
    assert!(read_until_closed(&slow, Duration::from_secs(4)).is_some(), "slowloris still open");
    assert!(dripper.join().unwrap(), "the server kept reading the slowloris bytes");
    assert_fds_back(pid, base, Duration::from_secs(2), "idle sessions");
}

/// A test server whose stalled data and reply writes give up after one second.
fn with_data_timeout_1s() -> FtpServer {
    FtpServer::start(Opts { env: &[("FERRY_FTP__LIMITS__DATA_TIMEOUT_SECS", "1")], ..Opts::default() })
}

#[test]
fn a_client_that_never_reads_replies_is_dropped_with_memory_bounded() {
    let srv = with_data_timeout_1s();
    let pid = srv.server.pid();
    let (base, rss) = (baseline(pid), rss_kib(pid));
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&srv.server.ftp_addr().into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
    // Pipeline HELP (a multi-line reply) until the server stops taking commands: our writes
    // stay blocked for 1.5 s. One blocked write is not enough on a loaded machine, where the
    // server may only be slow, and would then answer everything into its send buffer.
    let batch = b"HELP\r\n".repeat(200);
    // Not a poll: the client writes as fast as it can (a pause between writes would take
    // minutes to fill the buffers); 30 s only bounds it.
    let started = Instant::now();
    let mut blocked_since = None;
    while started.elapsed() < Duration::from_secs(30) {
        match s.write(&batch) {
            Ok(_) => blocked_since = None,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if blocked_since.get_or_insert_with(Instant::now).elapsed() >= Duration::from_millis(1500) {
                    break;
                }
            }
            Err(_) => break, // closed already
        }
    }
    let grown = rss_kib(pid).saturating_sub(rss);
    assert!(grown < 16 * 1024, "RSS grew by {grown} KiB for one non-reading client");
    // Still not reading (reading would unblock it): the blocked reply write times out after
    // data_timeout_secs and the session ends, which shows as its socket closing in the server.
    if let Err(n) = poll(Duration::from_secs(15), || check(fds(pid), |&n| n <= base)) {
        panic!("the stuck session was never closed: {n} descriptors, baseline {base}: {:?}", fd_targets(pid));
    }
    assert!(read_until_closed(&s, Duration::from_secs(5)).is_some(), "the client never saw the close");
}

#[test]
fn repeated_pasv_and_epsv_hold_one_listener() {
    let srv = FtpServer::start(Opts::default());
    let pid = srv.server.pid();
    let base = baseline(pid);
    let mut c = login(&srv);
    for i in 0..2000 {
        let reply = ftp_command(&mut c.0, &mut c.1, if i % 2 == 0 { "PASV" } else { "EPSV" });
        assert!(reply.starts_with("22"), "{i}: {reply}");
    }
    // The control connection and the one current listener.
    assert!(fds(pid) <= base + 3, "{} descriptors after 2000 PASV, baseline {base}", fds(pid));
    // Connections to it wait in the kernel's small backlog until a transfer command: none
    // is accepted into a descriptor before that.
    let port = ftp_command(&mut c.0, &mut c.1, "PASV");
    let n: Vec<u16> = port.split(['(', ')']).nth(1).unwrap().split(',').map(|x| x.parse().unwrap()).collect();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], n[4] * 256 + n[5]));
    let waiting: Vec<_> =
        (0..20).filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()).collect();
    assert!(!waiting.is_empty());
    assert!(fds(pid) <= base + 3, "{} descriptors with connections waiting, baseline {base}", fds(pid));
    drop(c);
    assert_fds_back(pid, base, Duration::from_secs(2), "PASV session closed");
}

#[test]
fn failed_active_connects_and_stalled_data_connections_are_freed() {
    let srv = with_data_timeout_1s();
    let pid = srv.server.pid();
    let mut data = vec![0u8; 32 << 20];
    rand::thread_rng().fill_bytes(&mut data);
    std::fs::write(srv.root().join("big.bin"), &data).unwrap();
    let base = baseline(pid);
    let mut c = login(&srv);
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for _ in 0..100 {
        let port = format!("PORT 127,0,0,1,{},{}", closed >> 8, closed & 0xff);
        assert!(ftp_command(&mut c.0, &mut c.1, &port).starts_with("200"));
        let reply = ftp_command(&mut c.0, &mut c.1, "NLST");
        assert!(reply.starts_with("425"), "{reply}");
    }
    // A download nobody reads, then an upload nobody sends: each ends at the data timeout.
    let stalled = pasv_connect(&mut c, Some(4096));
    assert!(ftp_command(&mut c.0, &mut c.1, "RETR big.bin").starts_with("150"));
    let started = Instant::now();
    let end = read_line(&mut c);
    assert!(end.starts_with("426") && started.elapsed() < Duration::from_secs(5), "{end}");
    drop(stalled);
    let silent = pasv_connect(&mut c, None);
    assert!(ftp_command(&mut c.0, &mut c.1, "STOR upload/never.bin").starts_with("150"));
    let end = read_line(&mut c);
    assert!(end.starts_with("426"), "{end}");
    drop(silent);
    // The control connection is the only descriptor left.
    assert_fds_back(pid, base + 1, Duration::from_secs(2), "stalled transfers");
    assert!(ftp_command(&mut c.0, &mut c.1, "NOOP").starts_with("200"));
}

#[test]
fn a_huge_directory_lists_completely_and_listings_never_recurse() {
    let srv = FtpServer::start(Opts::default());
    let many = srv.root().join("many");
    std::fs::create_dir(&many).unwrap();
    for i in 0..20_000 {
        std::fs::File::create(many.join(format!("file-{i:05}"))).unwrap();
    }
    let pid = srv.server.pid();
    let (base, rss) = (baseline(pid), rss_kib(pid));
    let mut c = login(&srv);
    for (cmd, lines) in [("LIST many", 20_000), ("NLST many", 20_000), ("MLSD many", 20_000), ("LIST -R", 3)]
    {
        let mut d = pasv_connect(&mut c, None);
        assert!(ftp_command(&mut c.0, &mut c.1, cmd).starts_with("150"), "{cmd}");
        let mut text = String::new();
        d.read_to_string(&mut text).unwrap();
        assert!(read_line(&mut c).starts_with("226"), "{cmd}");
        let count = text.lines().filter(|l| !l.starts_with("total") && !l.contains("type=cdir")).count();
        let count = count - usize::from(cmd == "MLSD many" && text.contains("type=pdir"));
        assert_eq!(count, lines, "{cmd}: {}", &text[..text.len().min(500)]);
        assert!(!text.contains("file-00000") || cmd != "LIST -R", "LIST -R recursed");
    }
    let grown = rss_kib(pid).saturating_sub(rss);
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB listing 20,000 entries");
    drop(c);
    assert_fds_back(pid, base, Duration::from_secs(2), "listings");
}

#[test]
fn a_tftp_request_flood_is_answered_busy_never_silently_and_freed() {
    let dir = served_dir();
    random_file(dir.path(), "f", 100_000);
    let env = [("FERRY_TFTP__MAX_TRANSFERS", "8"), ("FERRY_TFTP__REQUESTS_PER_SECOND_PER_IP", "0")];
    let server = start_tftp(dir.path(), &env);
    let pid = server.pid();
    let base = baseline(pid);
    let clients: Vec<_> = (0..100).map(|_| Raw::new(v4(&server))).collect();
    for c in &clients {
        c.send(&request(1, "f", "octet", &[]));
    }
    let mut holders = Vec::new();
    let mut busy = 0;
    for c in &clients {
        let (p, tid) = c.recv();
        match (opcode(&p), error_of(&p)) {
            (3, _) => holders.push((c, tid)),
            (5, Some((0, msg))) if msg == "server busy" => busy += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!((holders.len(), busy), (8, 92));
    // The holders abort: every transfer socket and slot is freed at once.
    for (c, tid) in holders {
        c.send_to(&error(0, "bye"), tid);
    }
    assert_fds_back(pid, base, Duration::from_secs(2), "aborted TFTP transfers");
    let c = Raw::new(v4(&server));
    c.send(&request(1, "f", "octet", &[]));
    assert_eq!(opcode(&c.recv().0), 3, "slots were not freed");
}

#[test]
fn random_bytes_on_both_ports_do_not_stop_the_server() {
    let dir = served_dir();
    // No request rate limit: the junk requests must not make the final check "busy".
    let mut server = start_tftp(dir.path(), &[("FERRY_TFTP__REQUESTS_PER_SECOND_PER_IP", "0")]);
    let mut rng = rand::thread_rng();
    // Three seconds of junk is the load under test; the loop does not wait for anything.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let mut junk = vec![0u8; rng.gen_range(1..2048)];
        rng.fill_bytes(&mut junk);
        if let Ok(mut s) = TcpStream::connect(server.ftp_addr()) {
            let _ = s.write_all(&junk);
            let _ = s.write_all(b"\r\nUSER anonymous\r\nPASS x\r\nEPRT |9|x|0|\r\nREST -1\r\nRETR \xff\r\n");
            let _ = s.shutdown(Shutdown::Write);
        }
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..20 {
            let mut p = vec![0u8; rng.gen_range(0..600)];
            rng.fill_bytes(&mut p);
            if rng.gen_bool(0.5) && p.len() >= 2 {
                p[0] = 0;
                p[1] = rng.gen_range(0..8);
            }
            let _ = udp.send_to(&p, v4(&server));
        }
    }
    assert_eq!(server.child.try_wait().unwrap(), None, "ferry exited:\n{}", server.stderr());
    let (mut r, mut w, greeting) = ftp_connect(server.ftp_addr());
    assert!(greeting.starts_with("220"), "{greeting}");
    assert!(ftp_command(&mut r, &mut w, "NOOP").starts_with("200"));
    assert!(Raw::new(v4(&server)).get("hello.txt", "octet").starts_with(b"hello from ferry"));
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

#[test]
fn netascii_reads_share_a_memory_budget() {
    // Each netascii read holds its encoded file in memory: 20 requests a second for a 16 MiB
    // file used to take gigabytes. One 1 MB file (charged 2 MB) fits in a 3 MB budget.
    let dir = served_dir();
    random_file(dir.path(), "f", 1_000_000);
    let env =
        [("FERRY_TFTP__NETASCII_MEMORY_BYTES", "3000000"), ("FERRY_TFTP__REQUESTS_PER_SECOND_PER_IP", "0")];
    let server = start_tftp(dir.path(), &env);
    let first = Raw::new(v4(&server));
    first.send(&request(1, "f", "netascii", &[]));
    let (p, tid) = first.recv();
    assert_eq!(opcode(&p), 3, "the first netascii read fits");
    let second = Raw::new(v4(&server));
    second.send(&request(1, "f", "netascii", &[]));
    assert_eq!(error_of(&second.recv().0), Some((0, "server busy".into())));
    let octet = Raw::new(v4(&server));
    octet.send(&request(1, "f", "octet", &[]));
    assert_eq!(opcode(&octet.recv().0), 3, "octet reads need no budget");
    // The first transfer ends: its share of the budget is returned.
    first.send_to(&error(0, "bye"), tid);
    eventually(Duration::from_secs(2), "the budget returned (a third netascii read admitted)", || {
        let third = Raw::new(v4(&server));
        third.send(&request(1, "f", "netascii", &[]));
        check(third.recv().0, |p| opcode(p) == 3).map_err(|p| error_of(&p))
    });
}

/// User plus system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn running_out_of_descriptors_neither_spins_nor_stops_accepting_later() {
    let dir = served_dir();
    let mut cmd = std::process::Command::new("prlimit");
    cmd.args(["--nofile=80:80", ferry_bin()]);
    // Every connection comes from 127.0.0.1: past the per-IP limit (50) the server would
    // answer 421 and close, and the descriptor count would never settle at the limit.
    cmd.env("FERRY_FTP__LIMITS__MAX_SESSIONS_PER_IP", "500");
    let server = Server::start_with(cmd, dir.path(), free_port(), free_port(), &["--workers", "2"]);
    let pid = server.pid();
    let base = baseline(pid);
    let held: Vec<_> = (0..120).filter_map(|_| TcpStream::connect(server.ftp_addr()).ok()).collect();
    eventually(Duration::from_secs(5), "the descriptor limit reached (78 of 80)", || {
        check(fds(pid), |&n| n >= 78)
    });
    // accept(2) fails with EMFILE while the backlog is full: that must not become a busy loop.
    // The sleep is the measuring window for the CPU the server spends, not a wait for an effect.
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_ticks(pid) - before;
    assert!(spent < 50, "{spent} ticks of CPU in 2 s with every descriptor in use");
    drop(held);
    // Connections whose handshake finished while the accept queue was full sit in SYN_RECV
    // until a SYN-ACK retransmission (1, 2, then 4 s apart) completes them; only then are
    // they accepted, greeted and closed. So this waits longer than the other checks.
    assert_fds_back(pid, base, Duration::from_secs(10), "after the flood");
    let (_, _, greeting) = ftp_connect(server.ftp_addr());
    assert!(greeting.starts_with("220"), "{greeting}");
}
