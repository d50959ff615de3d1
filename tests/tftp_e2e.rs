//! End-to-end TFTP transfers with real clients (tftp-hpa, atftp, curl, busybox) over IPv4
//! and IPv6 loopback, byte-exact on random content, including block-number wrap-around.

mod common;

use common::tftp::*;

#[test]
fn tftp_hpa_gets_binary_plain_and_verbose() {
    if !have("tftp") {
        return;
    }
    let (f, want) = Fixture::new(&[("boot.img", 300_000), ("empty", 0)], &[]);
    let cases = [("boot.img", false, &want[0]), ("boot.img", true, &want[0]), ("empty", false, &want[1])];
    for (i, (file, verbose, expected)) in cases.into_iter().enumerate() {
        let out = f.out_path(&format!("out{i}"));
        let mut args = vec!["127.0.0.1", &f.port, "-m", "binary"];
        if verbose {
            args.push("-v");
        }
        args.extend(["-c", "get", file, out.to_str().unwrap()]);
        let o = run_client(60, "tftp", &args);
        // An empty file is one empty DATA block (RFC 1350 §6).
        assert_fetched(&o, &out, expected, &format!("tftp-hpa {file} verbose={verbose}"), &f.server);
    }
}

/// Fetches `file` with atftp and `opts` from `host`, checking the bytes.
fn atftp_get(f: &Fixture, host: &str, file: &str, opts: &[&str], expected: &[u8], what: &str, secs: u32) {
    let out = f.out_path(&format!("{what}.out").replace(' ', "_"));
    let mut args: Vec<&str> = opts.iter().flat_map(|o| ["--option", o]).collect();
    args.extend(["-g", "-r", file, "-l", out.to_str().unwrap(), host, &f.port]);
    let o = run_client(secs, "atftp", &args);
    assert_fetched(&o, &out, expected, what, &f.server);
}

#[test]
fn atftp_with_blksize_windowsize_and_tsize() {
    if !have("atftp") {
        return;
    }
    // Not a multiple of any block size, and an exact multiple of 1468 for the last case.
    let (f, want) = Fixture::new(&[("kernel", 2_000_003), ("exact", 1468 * 300)], &[]);
    let cases: &[(&str, &[&str], usize)] = &[
        ("blksize", &["blksize 1468"], 0),
        ("windowsize", &["windowsize 16"], 0),
        ("tsize", &["tsize 0"], 0),
        ("all", &["blksize 1468", "windowsize 64", "tsize 0"], 0),
        ("exact multiple", &["blksize 1468", "windowsize 8"], 1),
    ];
    for (what, opts, file) in cases {
        let name = if *file == 0 { "kernel" } else { "exact" };
        atftp_get(&f, "127.0.0.1", name, opts, &want[*file], &format!("atftp {what}"), 60);
    }
}

#[test]
fn curl_with_blksize() {
    if !have("curl") {
        return;
    }
    let (f, want) = Fixture::new(&[("pxe.0", 777_777)], &[]);
    let out = f.out_path("out");
    let url = format!("tftp://127.0.0.1:{}/pxe.0", f.port);
    let o = run_client(60, "curl", &["-sS", "--tftp-blksize", "1468", "-o", out.to_str().unwrap(), &url]);
    assert_fetched(&o, &out, &want[0], "curl --tftp-blksize 1468", &f.server);
}

#[test]
fn ipv6_loopback_with_tftp_hpa_and_atftp() {
    if !have("tftp") || !have("atftp") || !have_ipv6() {
        return;
    }
    let (f, want) = Fixture::new(&[("v6.bin", 400_000)], &[]);
    let out = f.out_path("hpa");
    let o = run_client(
        60,
        "tftp",
        &["::1", &f.port, "-m", "binary", "-c", "get", "v6.bin", out.to_str().unwrap()],
    );
    assert_fetched(&o, &out, &want[0], "tftp-hpa over ::1", &f.server);
    atftp_get(&f, "::1", "v6.bin", &["windowsize 16", "blksize 1468"], &want[0], "atftp over ::1", 60);
}

#[test]
fn file_over_32_mib_at_blksize_512_wraps_block_numbers() {
    if !have("atftp") {
        return;
    }
    // 65535 blocks of 512 bytes end at 32 MiB - 512; this needs block numbers past 65535.
    // A window keeps the test short; the wrap itself is what is checked.
    let (f, want) = Fixture::new(&[("big", (33 << 20) + 123)], &[]);
    atftp_get(&f, "127.0.0.1", "big", &["blksize 512", "windowsize 32"], &want[0], "atftp 33 MiB", 240);
}

#[test]
fn raw_client_wraps_to_zero_at_window_one() {
    // 65536 full blocks plus a short one: block numbers run 1..=65535, 0, 1.
    let (f, want) = Fixture::new(&[("wrap", 65_536 * 512 + 10)], &[]);
    let got = Raw::new(v4(&f.server)).get("wrap", "octet");
    assert!(got == want[0], "got {} bytes, expected {}", got.len(), want[0].len());
}

/// Runs `busybox tftp` with `args` then `127.0.0.1 PORT`.
fn busybox_tftp(f: &Fixture, args: &[&str]) -> std::process::Output {
    let mut args = [&["tftp"], args].concat();
    args.extend(["127.0.0.1", &f.port]);
    run_client(60, "busybox", &args)
}

#[test]
fn busybox_gets_with_and_without_blksize() {
    if !have("busybox") {
        return;
    }
    // Not a block multiple, an exact multiple of 512 and of 1468, and an empty file.
    let files = [("fw.bin", 1_000_001), ("x512", 512 * 40), ("x1468", 1468 * 30), ("empty", 0)];
    let (f, want) = Fixture::new(&files, &[]);
    for ((name, _), expected) in files.iter().zip(&want) {
        for blksize in [None, Some("1468")] {
            let out = f.out_path(&format!("{name}.{}", blksize.unwrap_or("512")));
            let local = out.to_str().unwrap();
            let mut args = vec!["-g", "-r", name, "-l", local];
            if let Some(b) = blksize {
                args.extend(["-b", b]);
            }
            let o = busybox_tftp(&f, &args);
            assert_fetched(
                &o,
                &out,
                expected,
                &format!("busybox tftp {name} blksize {blksize:?}"),
                &f.server,
            );
        }
    }
}

#[test]
fn busybox_puts_with_and_without_blksize() {
    if !have("busybox") {
        return;
    }
    let (f, _) = Fixture::new(&[], &[("FERRY_TFTP__WRITE__ENABLED", "true")]);
    let up = upload_dir(f.dir.path(), "up");
    let src = tempfile::tempdir().unwrap();
    for (i, (len, blksize)) in
        [(777_777, None), (1468 * 20, Some("1468")), (0, Some("1468"))].into_iter().enumerate()
    {
        let want = random_file(src.path(), &format!("in{i}"), len);
        let local = src.path().join(format!("in{i}"));
        let remote = format!("up/out{i}");
        let mut args = vec!["-p", "-l", local.to_str().unwrap(), "-r", &remote];
        if let Some(b) = blksize {
            args.extend(["-b", b]);
        }
        let o = busybox_tftp(&f, &args);
        assert_fetched(
            &o,
            &up.join(format!("out{i}")),
            &want,
            &format!("busybox put {len} blksize {blksize:?}"),
            &f.server,
        );
    }
}
