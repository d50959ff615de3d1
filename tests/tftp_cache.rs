//! The TFTP file cache end to end: a file two clients read at once is read into memory and
//! later reads come from there byte-exact, a file one client at a time reads stays out, a file
//! replaced or rewritten in place is never served stale, memory stays within `cache_bytes`,
//! and the metrics say what happened.

mod common;

use common::tftp::*;
use common::*;
use std::time::Duration;

/// Ferry with metrics on and the given TFTP settings: (server, metrics address).
fn start(root: &std::path::Path, env: &[(&str, &str)]) -> (Server, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut cmd = std::process::Command::new(ferry_bin());
    cmd.env("FERRY_METRICS__ENABLED", "true").env("FERRY_METRICS__LISTEN", &listen);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let server = Server::start_with(cmd, root, free_port(), free_port(), &["--workers", "2"]);
    (server, listen)
}

fn lookups(listen: &str, result: &str) -> i64 {
    let page = http(listen, "GET /metrics HTTP/1.0\r\n\r\n");
    metric(&page, &format!("ferry_tftp_cache_lookups_total{{worker=\"all\",result=\"{result}\"}}"))
}

fn cached_bytes(listen: &str) -> i64 {
    metric(&http(listen, "GET /metrics HTTP/1.0\r\n\r\n"), "ferry_tftp_cache_bytes{worker=\"all\"}")
}

/// A lock-step read with blksize 1468 (the boot firmware's shape) from a fresh client port.
fn get(server: &Server, file: &str) -> Vec<u8> {
    let c = Raw::new(v4(server));
    c.send(&request(1, file, "octet", &[("blksize", "1468")]));
    let (oack, tid) = c.recv();
    assert_eq!(opcode(&oack), 6, "OACK expected, got {oack:?}");
    c.send_to(&ack(0), tid);
    c.receive_blocks(1468, 1)
}

/// A read made while another client's read of the same file runs (what loads the cache):
/// the first client stops at its OACK, the second reads the whole file, then the first does.
fn get_shared(server: &Server, file: &str) -> Vec<u8> {
    let first = Raw::new(v4(server));
    first.send(&request(1, file, "octet", &[("blksize", "1468")]));
    let (oack, tid) = first.recv();
    assert_eq!(opcode(&oack), 6, "OACK expected, got {oack:?}");
    let second = get(server, file);
    // The OACK the first transfer repeated meanwhile.
    while first.recv_within(Duration::from_millis(50)).is_some() {}
    first.send_to(&ack(0), tid);
    assert_eq!(first.receive_blocks(1468, 1), second, "the two reads differ");
    second
}

#[test]
fn a_file_read_by_one_client_at_a_time_stays_out_of_memory() {
    let dir = served_dir();
    let want = random_file(dir.path(), "kernel", 500_000);
    let (server, listen) = start(dir.path(), &[]);
    for _ in 0..3 {
        assert_eq!(get(&server, "kernel"), want);
    }
    assert_eq!((lookups(&listen, "miss"), lookups(&listen, "hit"), cached_bytes(&listen)), (3, 0, 0));
}

#[test]
fn repeated_reads_come_from_memory_and_stay_exact() {
    let dir = served_dir();
    let want = random_file(dir.path(), "ipxe.efi", 1_000_000);
    let (server, listen) = start(dir.path(), &[]);
    assert_eq!(get_shared(&server, "ipxe.efi"), want, "two reads at once (from the file, loading the cache)");
    eventually(Duration::from_secs(5), "the file in the cache", || {
        let held = cached_bytes(&listen);
        (held == 1_000_000).then_some(()).ok_or(held)
    });
    for _ in 0..3 {
        assert_eq!(get(&server, "ipxe.efi"), want, "a read from the cache");
    }
    assert!(lookups(&listen, "hit") >= 3, "hits: {}", lookups(&listen, "hit"));
    assert_eq!(lookups(&listen, "miss"), 2, "the two reads at once");
}

#[test]
fn a_replaced_or_rewritten_file_is_never_served_stale() {
    let dir = served_dir();
    let old = random_file(dir.path(), "kernel", 300_000);
    let (server, listen) = start(dir.path(), &[]);
    assert_eq!(get_shared(&server, "kernel"), old);
    eventually(Duration::from_secs(5), "the file cached", || {
        let held = cached_bytes(&listen);
        (held > 0).then_some(()).ok_or(held)
    });
    assert_eq!(get(&server, "kernel"), old);
    // rsync --delay-updates style: a new file renamed over the old one (a new inode).
    let new = random_file(dir.path(), "kernel.tmp", 300_000);
    std::fs::rename(dir.path().join("kernel.tmp"), dir.path().join("kernel")).unwrap();
    assert_eq!(get_shared(&server, "kernel"), new, "after a rename over the file");
    assert_eq!(get(&server, "kernel"), new, "after a rename over the file, cached");
    // Rewritten in place, same size: the same inode with a new mtime/ctime.
    std::thread::sleep(Duration::from_millis(20));
    let mut again = new.clone();
    again[..1000].copy_from_slice(&[0xAB; 1000]);
    std::fs::write(dir.path().join("kernel"), &again).unwrap();
    assert_eq!(get_shared(&server, "kernel"), again, "after a rewrite in place");
    assert_eq!(get(&server, "kernel"), again, "after a rewrite in place, cached");
}

#[test]
fn memory_stays_within_cache_bytes() {
    let dir = served_dir();
    let files: Vec<Vec<u8>> = (0..5).map(|i| random_file(dir.path(), &format!("f{i}"), 400_000)).collect();
    let budget = 1_000_000;
    let (server, listen) = start(
        dir.path(),
        &[("FERRY_TFTP__CACHE_BYTES", "1000000"), ("FERRY_TFTP__CACHE_MAX_FILE_BYTES", "500000")],
    );
    for round in 0..3 {
        for (i, want) in files.iter().enumerate() {
            assert_eq!(&get_shared(&server, &format!("f{i}")), want, "round {round}, f{i}");
            let held = cached_bytes(&listen);
            assert!(held <= budget, "{held} bytes cached, over the {budget} budget");
        }
    }
    // Over the per-file limit: never cached, never counted as a lookup.
    let big = random_file(dir.path(), "big", 600_000);
    let before = lookups(&listen, "hit") + lookups(&listen, "miss");
    assert_eq!(get(&server, "big"), big);
    assert_eq!(lookups(&listen, "hit") + lookups(&listen, "miss"), before);
}

#[test]
fn cache_bytes_zero_turns_it_off() {
    let dir = served_dir();
    let want = random_file(dir.path(), "f", 100_000);
    let (server, listen) = start(dir.path(), &[("FERRY_TFTP__CACHE_BYTES", "0")]);
    for _ in 0..3 {
        assert_eq!(get_shared(&server, "f"), want);
    }
    assert_eq!((lookups(&listen, "hit"), lookups(&listen, "miss"), cached_bytes(&listen)), (0, 0, 0));
}
