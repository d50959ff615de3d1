//! `ferry-loadgen self-test`: every scenario against the in-process mini servers, with
//! content checks, wrap-around and simulated loss; fails unless every transfer succeeded.
//! Keeps the load generator from rotting without any external server installed.

use crate::report::Json;
use crate::tls::{TlsMode, TlsVersion};
use crate::{ftp, minisrv, run_scenario, Expect, FtpGet, FtpIdle, FtpPut, Load, Login, Scenario, TftpGet};
use std::path::Path;
use std::sync::atomic::Ordering;

fn load(concurrency: usize, count: u64) -> Load {
    Load { concurrency, count: Some(count), duration: None }
}

fn login(addr: &str, mode: ftp::DataMode) -> Login {
    Login {
        addr: addr.into(),
        user: "anonymous".into(),
        pass: "x@".into(),
        mode,
        io_timeout: 10.0,
        tls: None,
        tls_version: crate::tls::TlsVersion::Any,
    }
}

fn expect(file: &Path) -> Expect {
    Expect { expect_size: None, expect_file: Some(file.to_path_buf()) }
}

fn tftp(
    addr: &str,
    file: &Path,
    name: &str,
    blksize: Option<u16>,
    window: Option<u16>,
    loss: f64,
    gro: bool,
) -> Scenario {
    Scenario::TftpGet(TftpGet {
        addr: addr.into(),
        path: name.into(),
        load: load(4, 8),
        expect: expect(file),
        blksize,
        windowsize: window,
        tsize: true,
        timeout_opt: None,
        retransmit_ms: 100,
        retries: 20,
        loss,
        gro,
        seed: 7,
    })
}

/// Runs the self-test in a temporary directory; `Err` names the first scenario that failed.
pub fn run(threads: usize) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("ferry-loadgen-selftest-{}", std::process::id()));
    let result = run_in(&dir, threads);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(dir: &Path, threads: usize) -> Result<(), String> {
    std::fs::create_dir_all(dir.join("up")).map_err(|e| e.to_string())?;
    let small = dir.join("1k");
    let mid = dir.join("300k");
    let big = dir.join("600k");
    for (p, n) in [(&small, 1024), (&mid, 300 << 10), (&big, 600 << 10)] {
        std::fs::write(p, ftp::pattern(n)).map_err(|e| e.to_string())?;
    }
    let f = minisrv::ftp(dir.to_path_buf()).map_err(|e| e.to_string())?;
    let t = minisrv::tftp(dir.to_path_buf()).map_err(|e| e.to_string())?;
    let (fa, ta) = (f.addr.to_string(), t.addr.to_string());
    let get = |mode, file: &Path, name: &str, load, retrs| {
        Scenario::FtpGet(FtpGet {
            login: login(&fa, mode),
            load,
            expect: expect(file),
            path: name.into(),
            retrs_per_session: retrs,
            buf_size: 64 << 10,
        })
    };
    let cases = [
        ("ftp-get epsv 1k x40", get(ftp::DataMode::Epsv, &small, "1k", load(8, 40), 1), 40),
        ("ftp-get pasv 300k, 3 per session", get(ftp::DataMode::Pasv, &mid, "/300k", load(2, 4), 3), 12),
        ("ftp-get port", get(ftp::DataMode::Port, &small, "1k", load(2, 4), 1), 4),
        (
            "ftp-put",
            Scenario::FtpPut(FtpPut {
                login: login(&fa, ftp::DataMode::Epsv),
                load: load(2, 4),
                path: "up/f-{n}".into(),
                size: 200 << 10,
                check_size: true,
                buf_size: 64 << 10,
            }),
            4,
        ),
        (
            "ftp-idle",
            Scenario::FtpIdle(FtpIdle {
                login: login(&fa, ftp::DataMode::Epsv),
                sessions: 50,
                concurrency: 10,
                hold: 0.2,
                ready_file: None,
            }),
            50,
        ),
        ("tftp blksize 1468 window 8", tftp(&ta, &mid, "300k", Some(1468), Some(8), 0.0, false), 8),
        ("tftp window 8, UDP_GRO receive", tftp(&ta, &mid, "300k", Some(1468), Some(8), 0.0, true), 8),
        ("tftp plain 512 lock-step", tftp(&ta, &small, "1k", None, None, 0.0, false), 8),
        ("tftp wrap-around (blksize 8)", tftp(&ta, &big, "600k", Some(8), Some(64), 0.0, false), 8),
        ("tftp 3% loss window 4", tftp(&ta, &mid, "300k", Some(512), Some(4), 0.03, false), 8),
    ];
    for (name, scenario, want_ok) in cases {
        check(name, &scenario, threads, want_ok)?;
    }
    ftps(dir, threads, &mid)?;
    eprintln!("self-test: all scenarios passed");
    Ok(())
}

/// Runs `scenario` against a mini server; `Err` unless exactly `want_ok` units succeeded.
fn check(name: &str, scenario: &Scenario, threads: usize, want_ok: u64) -> Result<(), String> {
    let mut report = run_scenario(scenario, threads, "mini")?;
    let json: Json = report.json();
    let (ok, failed) = (report.stats.ok, report.stats.failed());
    eprintln!("self-test: {name}: ok {ok}, failed {failed}");
    if ok != want_ok || failed != 0 {
        return Err(format!("{name}: expected {want_ok} ok and no failures, got {json}"));
    }
    Ok(())
}

/// FTPS against mini servers that refuse a data connection not resuming a TLS session:
/// explicit and implicit, TLS 1.2 and 1.3, several transfers per session, an upload (which
/// must end with close_notify) and idle protected sessions.
fn ftps(dir: &Path, threads: usize, mid: &Path) -> Result<(), String> {
    let explicit = minisrv::ftps(dir.to_path_buf(), minisrv::Tls::Explicit).map_err(|e| e.to_string())?;
    let implicit = minisrv::ftps(dir.to_path_buf(), minisrv::Tls::Implicit).map_err(|e| e.to_string())?;
    let secure = |srv: &minisrv::Mini, mode, version| Login {
        tls: Some(mode),
        tls_version: version,
        ..login(&srv.addr.to_string(), ftp::DataMode::Epsv)
    };
    let get = |login| {
        Scenario::FtpGet(FtpGet {
            login,
            load: load(2, 4),
            expect: expect(mid),
            path: "300k".into(),
            retrs_per_session: 3,
            buf_size: 64 << 10,
        })
    };
    let cases = [
        ("ftps explicit get, 3 per session", get(secure(&explicit, TlsMode::Explicit, TlsVersion::Any)), 12),
        ("ftps explicit get, TLS 1.2", get(secure(&explicit, TlsMode::Explicit, TlsVersion::V12)), 12),
        ("ftps implicit get, TLS 1.3", get(secure(&implicit, TlsMode::Implicit, TlsVersion::V13)), 12),
        (
            "ftps put (ends with close_notify)",
            Scenario::FtpPut(FtpPut {
                login: secure(&explicit, TlsMode::Explicit, TlsVersion::Any),
                load: load(2, 4),
                path: "up/tls-{n}".into(),
                size: 200 << 10,
                check_size: true,
                buf_size: 64 << 10,
            }),
            4,
        ),
        (
            "ftps idle",
            Scenario::FtpIdle(FtpIdle {
                login: secure(&implicit, TlsMode::Implicit, TlsVersion::Any),
                sessions: 20,
                concurrency: 5,
                hold: 0.1,
                ready_file: None,
            }),
            20,
        ),
    ];
    for (name, scenario, want_ok) in cases {
        check(name, &scenario, threads, want_ok)?;
    }
    // Every data connection resumed (the mini servers refuse the others with 522).
    let resumed = explicit.resumed.load(Ordering::Relaxed) + implicit.resumed.load(Ordering::Relaxed);
    if resumed != 40 {
        return Err(format!("expected 40 resumed data connections, the servers saw {resumed}"));
    }
    Ok(())
}
