//! The password verifier under load, end to end: a swarm of guessing sessions from several
//! addresses neither locks the real user out nor has its refusals counted as failed logins,
//! many password checks leave the server's memory bounded, and an unknown user's 530 takes
//! as long as a wrong password's.

mod common;

use common::ftp::{FtpServer, Opts, PASS, USER};
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

type Control = (BufReader<TcpStream>, TcpStream);

/// A control connection from `ip` (a loopback address of its own, so that each simulated
/// client has its own address), with its greeting.
fn connect_from(ip: Ipv4Addr, server: SocketAddr) -> std::io::Result<(Control, String)> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::from((ip, 0)).into())?;
    sock.connect_timeout(&server.into(), Duration::from_secs(10))?;
    let stream: TcpStream = sock.into();
    // Generous: on a loaded machine a debug build's argon2 takes most of a second.
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let greeting = line(&mut reader)?;
    Ok(((reader, writer), greeting))
}

fn line(r: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut text = String::new();
    r.read_line(&mut text)?;
    Ok(text.trim_end().to_string())
}

/// Failed logins after which the server closes a session (`max_login_failures`' default):
/// clients reconnect then rather than write to a closing connection.
const MAX_FAILURES: u32 = 3;

/// USER then PASS, each awaited: the reply to PASS, or the reply to USER when it was not 331.
fn login(c: &mut Control, user: &str, pass: &str) -> std::io::Result<String> {
    c.1.write_all(format!("USER {user}\r\n").as_bytes())?;
    let reply = line(&mut c.0)?;
    if !reply.starts_with("331") {
        return Ok(reply);
    }
    c.1.write_all(format!("PASS {pass}\r\n").as_bytes())?;
    line(&mut c.0)
}

fn loopback(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn http_get(addr: &str, path: &str) -> String {
    http(addr, &format!("GET {path} HTTP/1.0\r\n\r\n"))
}

/// What the guessing sessions were answered.
#[derive(Default)]
struct Tally {
    /// 530 to a wrong password.
    wrong: AtomicU64,
    /// 421 from a busy verifier.
    busy: AtomicU64,
    /// Anything else, for the failure message.
    odd: Mutex<Vec<String>>,
}

/// Guesses `user`'s password from `ip` until `stop`, reconnecting whenever the server closes
/// (after the failure limit, or a busy refusal). Every PASS sent is answered before it looks
/// at `stop`, so the server's counters match the tally once all sessions have ended.
fn guess(ip: Ipv4Addr, server: SocketAddr, user: &str, stop: &AtomicBool, tally: &Tally) {
    let odd = |what: String| tally.odd.lock().unwrap().push(format!("{ip}: {what}"));
    let mut n = 0u64;
    while !stop.load(Relaxed) {
        let mut c = match connect_from(ip, server) {
            Ok((c, greeting)) if greeting.starts_with("220") => c,
            Ok((_, greeting)) => return odd(greeting),
            Err(e) => return odd(format!("connect: {e}")),
        };
        for _ in 0..MAX_FAILURES {
            if stop.load(Relaxed) {
                break;
            }
            n += 1;
            match login(&mut c, user, &format!("guess{n}")) {
                Ok(r) if r.starts_with("530") => {
                    tally.wrong.fetch_add(1, Relaxed);
                }
                Ok(r) if r.starts_with("421") && r.contains("login attempts") => {
                    tally.busy.fetch_add(1, Relaxed);
                    // A breather before reconnecting, so the test's own reconnect storm does
                    // not take the CPU the verifier needs on a small machine.
                    std::thread::sleep(Duration::from_millis(20));
                    break;
                }
                other => {
                    odd(format!("{other:?}"));
                    break;
                }
            }
        }
        let _ = c.1.write_all(b"QUIT\r\n");
    }
}

/// A PHC string for `password` with argon2id at 4 MiB and one pass: a debug build checks it in
/// tens of milliseconds, so the swarm saturates the verifier while the test stays short.
fn cheap_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(4096, 1, 1, None).unwrap();
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"ferry-swarm-salt").unwrap();
    argon.hash_password(password.as_bytes(), &salt).unwrap().to_string()
}

#[test]
fn a_guessing_swarm_neither_locks_the_real_user_out_nor_counts_its_refusals_as_failures() {
    let toml = format!(
        "[[ftp.users]]\nname = \"carol\"\npassword_hash = \"{}\"\npermissions = [\"read\"]\n",
        cheap_hash(PASS)
    );
    let listen = format!("127.0.0.1:{}", free_port());
    let env = [("FERRY_METRICS__ENABLED", "true"), ("FERRY_METRICS__LISTEN", listen.as_str())];
    let srv = FtpServer::start(Opts { toml: &toml, args: &["--workers", "1"], env: &env });
    let server = srv.server.ftp_addr();
    let stop = AtomicBool::new(false);
    let tally = Tally::default();
    let began = Instant::now();
    let mut real = Vec::new();
    std::thread::scope(|s| {
        // 60 guessing sessions, 15 from each of 4 addresses.
        for i in 0..60u8 {
            let (stop, tally) = (&stop, &tally);
            s.spawn(move || guess(loopback(2 + i % 4), server, "carol", stop, tally));
        }
        // Let the swarm fill the verifier's queue first.
        std::thread::sleep(Duration::from_secs(2));
        for _ in 0..10 {
            // Bounds the test's run time even if logins hang.
            if began.elapsed() > Duration::from_secs(40) {
                break;
            }
            let start = Instant::now();
            let reply = connect_from(loopback(9), server)
                .and_then(|(mut c, _)| {
                    let reply = login(&mut c, "carol", PASS);
                    let _ = c.1.write_all(b"QUIT\r\n");
                    reply
                })
                .unwrap_or_else(|e| format!("error: {e}"));
            real.push((reply, start.elapsed()));
        }
        stop.store(true, Relaxed);
    });
    let (wrong, busy) = (tally.wrong.load(Relaxed), tally.busy.load(Relaxed));
    let summary = format!("real user: {real:?}\nguesses: {wrong} wrong, {busy} refused busy");
    eprintln!("{summary}");
    assert_eq!(real.len(), 10, "{summary}");
    assert!(real.iter().all(|(reply, _)| reply.starts_with("230")), "{summary}");
    let odd = tally.odd.lock().unwrap();
    assert!(odd.is_empty(), "guessers got unexpected answers: {odd:?}\n{summary}");
    assert!(busy > 0, "the swarm never saturated the verifier: {summary}");

    // Counted on the server as on the wire: each 530 a failed login, each busy 421 a refusal.
    let open = "ferry_ftp_sessions_active{worker=\"all\"}";
    let page = eventually(Duration::from_secs(10), "no FTP session open", || {
        check(http_get(&listen, "/metrics"), |p| metric(p, open) == 0).map_err(|p| metric(&p, open))
    });
    assert_eq!(metric(&page, "ferry_ftp_login_failures_total{worker=\"all\"}") as u64, wrong, "{summary}");
    assert_eq!(
        metric(&page, "ferry_ftp_logins_refused_busy_total{worker=\"all\"}") as u64,
        busy,
        "{summary}"
    );
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: i32) -> u64 {
    process_status(pid)["VmRSS"].trim_end_matches(" kB").parse().unwrap()
}

#[test]
fn password_checks_keep_the_servers_memory_bounded() {
    // Two workers, and `alice`'s hash has argon2's default cost: 19 MiB per check.
    let srv = FtpServer::start(Opts::default());
    let (pid, server) = (srv.server.pid(), srv.server.ftp_addr());
    let before = rss_kib(pid);
    // 30 wrong passwords, from 5 addresses at once (each its own share of the verifier).
    let (started, failed) = (AtomicU64::new(0), AtomicU64::new(0));
    let odd = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for i in 0..5u8 {
            let (started, failed, odd) = (&started, &failed, &odd);
            s.spawn(move || {
                while started.load(Relaxed) < 30 {
                    let mut c = match connect_from(loopback(20 + i), server) {
                        Ok((c, _)) => c,
                        Err(e) => return odd.lock().unwrap().push(format!("connect: {e}")),
                    };
                    for _ in 0..MAX_FAILURES {
                        if started.fetch_add(1, Relaxed) >= 30 {
                            started.fetch_sub(1, Relaxed);
                            break;
                        }
                        match login(&mut c, USER, "not-the-password") {
                            Ok(r) if r.starts_with("530") => {
                                failed.fetch_add(1, Relaxed);
                            }
                            // The verifier was busy: this attempt did not count.
                            Ok(r) if r.starts_with("421") => {
                                started.fetch_sub(1, Relaxed);
                                break;
                            }
                            other => {
                                started.fetch_sub(1, Relaxed);
                                odd.lock().unwrap().push(format!("{other:?}"));
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    let after = rss_kib(pid);
    eprintln!("VmRSS before {before} KiB, after 30 failed logins {after} KiB");
    let odd = odd.into_inner().unwrap();
    assert!(odd.is_empty(), "unexpected answers: {odd:?}");
    assert_eq!(failed.load(Relaxed), 30);
    // One 19 MiB block kept per worker, and some slack. Allocating the block per check left
    // about 90 MiB per worker in the allocator's arenas.
    let grown = after.saturating_sub(before);
    assert!(grown < 50 * 1024, "VmRSS grew by {grown} KiB to {after} KiB after 30 failed logins");
}

#[test]
fn an_unknown_users_530_takes_as_long_as_a_wrong_passwords() {
    // The unknown name is checked against a dummy hash of the same cost, in the same queue and
    // memory block; skipping that check would answer it in the 200 ms delay alone, where a
    // wrong password adds argon2's (most of a second in a debug build).
    let srv = FtpServer::start(Opts::default());
    let time_to_530 = |user: &str| {
        let (mut c, _) = connect_from(loopback(1), srv.server.ftp_addr()).unwrap();
        let start = Instant::now();
        let reply = login(&mut c, user, "not-the-password").unwrap();
        assert!(reply.starts_with("530"), "{user}: {reply}");
        start.elapsed()
    };
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        known.push(time_to_530(USER));
        unknown.push(time_to_530("mallory"));
    }
    // The fastest of each: other load on the machine only ever adds time.
    let fastest = |v: &[Duration]| v.iter().min().unwrap().as_secs_f64();
    let ratio = fastest(&unknown) / fastest(&known);
    assert!((0.5..2.0).contains(&ratio), "unknown {unknown:?}, known {known:?}");
}
