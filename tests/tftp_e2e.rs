//! End-to-end TFTP downloads with real clients (tftp-hpa, atftp, curl) over IPv4 and IPv6
//! loopback, byte-exact on random content, including block-number wrap-around.

mod common;

use common::tftp::*;
use common::*;

/// Skips (with a message) when a client program is missing; CI installs all of them.
fn have(program: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: {program} is not installed (tests/run-all.sh installs it)");
    }
    found
}

#[test]
fn tftp_hpa_gets_binary_plain_and_verbose() {
    if !have("tftp") {
        return;
    }
    let dir = served_dir();
    let want = random_file(dir.path(), "boot.img", 300_000);
    let server = start_tftp(dir.path(), &[]);
    let out_dir = tempfile::tempdir().unwrap();
    let port = server.tftp_port.to_string();
    for (i, verbose) in [false, true].into_iter().enumerate() {
        let out = out_dir.path().join(format!("out{i}"));
        let out_s = out.to_str().unwrap();
        let mut args = vec!["127.0.0.1", &port, "-m", "binary"];
        if verbose {
            args.push("-v");
        }
        args.extend(["-c", "get", "boot.img", out_s]);
        let o = run_client(60, "tftp", &args);
        assert_fetched(&o, &out, &want, &format!("tftp-hpa verbose={verbose}"), &server);
    }
    // An empty file is one empty DATA block (RFC 1350 §6).
    std::fs::write(dir.path().join("empty"), b"").unwrap();
    let out = out_dir.path().join("empty");
    let o = run_client(
        30,
        "tftp",
        &["127.0.0.1", &port, "-m", "binary", "-c", "get", "empty", out.to_str().unwrap()],
    );
    assert_fetched(&o, &out, b"", "tftp-hpa empty file", &server);
}

#[test]
fn atftp_with_blksize_windowsize_and_tsize() {
    if !have("atftp") {
        return;
    }
    let dir = served_dir();
    // Not a multiple of any block size, and an exact multiple of 1468 for the last case.
    let want = random_file(dir.path(), "kernel", 2_000_003);
    let exact = random_file(dir.path(), "exact", 1468 * 300);
    let server = start_tftp(dir.path(), &[]);
    let out_dir = tempfile::tempdir().unwrap();
    let port = server.tftp_port.to_string();
    let cases: &[(&str, &[&str], &[u8])] = &[
        ("blksize", &["--option", "blksize 1468"], &want),
        ("windowsize", &["--option", "windowsize 16"], &want),
        ("tsize", &["--option", "tsize 0"], &want),
        ("all", &["--option", "blksize 1468", "--option", "windowsize 64", "--option", "tsize 0"], &want),
        ("exact multiple", &["--option", "blksize 1468", "--option", "windowsize 8"], &exact),
    ];
    for (i, (what, opts, expected)) in cases.iter().enumerate() {
        let out = out_dir.path().join(format!("out{i}"));
        let file = if expected.len() == exact.len() { "exact" } else { "kernel" };
        let mut args: Vec<&str> = opts.to_vec();
        args.extend(["-g", "-r", file, "-l", out.to_str().unwrap(), "127.0.0.1", &port]);
        let o = run_client(60, "atftp", &args);
        assert_fetched(&o, &out, expected, &format!("atftp {what}"), &server);
    }
}

#[test]
fn curl_with_blksize() {
    if !have("curl") {
        return;
    }
    let dir = served_dir();
    let want = random_file(dir.path(), "pxe.0", 777_777);
    let server = start_tftp(dir.path(), &[]);
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out");
    let url = format!("tftp://127.0.0.1:{}/pxe.0", server.tftp_port);
    let o = run_client(60, "curl", &["-sS", "--tftp-blksize", "1468", "-o", out.to_str().unwrap(), &url]);
    assert_fetched(&o, &out, &want, "curl --tftp-blksize 1468", &server);
}

#[test]
fn ipv6_loopback_with_tftp_hpa_and_atftp() {
    if !have("tftp") || !have("atftp") {
        return;
    }
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    }
    let dir = served_dir();
    let want = random_file(dir.path(), "v6.bin", 400_000);
    let server = start_tftp(dir.path(), &[]);
    let out_dir = tempfile::tempdir().unwrap();
    let port = server.tftp_port.to_string();
    let out = out_dir.path().join("hpa");
    let o =
        run_client(60, "tftp", &["::1", &port, "-m", "binary", "-c", "get", "v6.bin", out.to_str().unwrap()]);
    assert_fetched(&o, &out, &want, "tftp-hpa over ::1", &server);
    let out = out_dir.path().join("atftp");
    let args = ["--option", "windowsize 16", "--option", "blksize 1468", "-g", "-r", "v6.bin", "-l"];
    let mut args = args.to_vec();
    args.extend([out.to_str().unwrap(), "::1", &port]);
    let o = run_client(60, "atftp", &args);
    assert_fetched(&o, &out, &want, "atftp over ::1", &server);
}

#[test]
fn file_over_32_mib_at_blksize_512_wraps_block_numbers() {
    if !have("atftp") {
        return;
    }
    let dir = served_dir();
    // 65535 blocks of 512 bytes end at 32 MiB - 512; this needs block numbers past 65535.
    let want = random_file(dir.path(), "big", (33 << 20) + 123);
    let server = start_tftp(dir.path(), &[]);
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("big");
    let port = server.tftp_port.to_string();
    // A window keeps the test short; the wrap itself is what is checked.
    let args = ["--option", "blksize 512", "--option", "windowsize 32", "-g", "-r", "big", "-l"];
    let mut args = args.to_vec();
    args.extend([out.to_str().unwrap(), "127.0.0.1", &port]);
    let o = run_client(240, "atftp", &args);
    assert_fetched(&o, &out, &want, "atftp 33 MiB at blksize 512", &server);
}

#[test]
fn raw_client_wraps_to_zero_at_window_one() {
    let dir = served_dir();
    // 65536 full blocks plus a short one: block numbers run 1..=65535, 0, 1.
    let want = random_file(dir.path(), "wrap", 65_536 * 512 + 10);
    let server = start_tftp(dir.path(), &[]);
    let raw = Raw::new(v4(&server));
    let got = raw.get("wrap", "octet");
    assert!(got == want, "got {} bytes, expected {}", got.len(), want.len());
}
