//! TFTP uploads (WRQ) end to end: refused unless `[tftp.write] enabled`, byte-exact with
//! tftp-hpa and atftp, no overwrite by default, a partial upload never visible under its
//! final name, the quota, and netascii decoding. Raw uploads whose path single-port mode
//! changes run in both modes (`name::per_transfer_ports`, `name::single_port`).

mod common;

use common::tftp::*;
use common::*;
use std::path::Path;
use std::time::Duration;

const WRITE_ON: (&str, &str) = ("FERRY_TFTP__WRITE__ENABLED", "true");

/// Names in `dir` (hidden ones included).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Sends `payload` as a WRQ with window 1 and returns the final ACK's block, or the ERROR.
fn raw_put(c: &Raw, name: &str, payload: &[u8]) -> Result<u16, (u16, String)> {
    c.send(&request(2, name, "octet", &[]));
    let (p, tid) = c.recv();
    if let Some(e) = error_of(&p) {
        return Err(e);
    }
    assert_eq!((opcode(&p), block(&p)), (4, 0));
    let mut n: u16 = 1;
    for chunk in payload.chunks(512).chain((payload.len() % 512 == 0).then_some(&[][..])) {
        c.send_to(&data(n, chunk), tid);
        let (p, _) = c.recv();
        if let Some(e) = error_of(&p) {
            return Err(e);
        }
        assert_eq!((opcode(&p), block(&p)), (4, n));
        n = n.wrapping_add(1);
    }
    Ok(n.wrapping_sub(1))
}

#[test]
fn uploads_are_refused_unless_enabled() {
    let dir = served_dir();
    upload_dir(dir.path(), "up");
    let server = start_tftp(dir.path(), &[]);
    let c = Raw::new(v4(&server));
    assert_eq!(raw_put(&c, "up/x", b"data").unwrap_err().0, 2);
    assert!(names(&dir.path().join("up")).is_empty());
}

#[test]
fn tftp_hpa_and_atftp_upload_byte_exact_and_no_overwrite_by_default() {
    let dir = served_dir();
    let up = upload_dir(dir.path(), "up");
    let src = tempfile::tempdir().unwrap();
    let want = random_file(src.path(), "local.bin", 1_234_567);
    let local = src.path().join("local.bin");
    let local = local.to_str().unwrap();
    let server = start_tftp(dir.path(), &[WRITE_ON]);
    let port = server.tftp_port.to_string();
    let o = run_client(60, "tftp", &["127.0.0.1", &port, "-m", "binary", "-c", "put", local, "up/hpa.bin"]);
    assert_fetched(&o, &up.join("hpa.bin"), &want, "tftp-hpa put", &server);
    let args =
        ["--option", "blksize 1468", "--option", "windowsize 16", "-p", "-l", local, "-r", "up/atftp.bin"];
    let mut args = args.to_vec();
    args.extend(["127.0.0.1", &port]);
    let o = run_client(60, "atftp", &args);
    assert_fetched(&o, &up.join("atftp.bin"), &want, "atftp put with window 16", &server);
    // A second upload to the same name: ERROR 6, the first file untouched.
    let c = Raw::new(v4(&server));
    assert_eq!(raw_put(&c, "up/hpa.bin", b"replacement").unwrap_err().0, 6);
    assert_eq!(std::fs::read(up.join("hpa.bin")).unwrap(), want);
    assert_eq!(names(&up), vec!["atftp.bin", "hpa.bin"], "no temporary file is left behind");
}

#[test]
fn overwrite_allowed_by_config_file_replaces_atomically() {
    let dir = served_dir();
    let up = upload_dir(dir.path(), "up");
    std::fs::write(up.join("cfg"), b"old contents").unwrap();
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = conf_dir.path().join("ferry.toml");
    std::fs::write(&conf, "[tftp.write]\nenabled = true\noverwrite = true\n").unwrap();
    let cmd = std::process::Command::new(ferry_bin());
    let args = ["--workers", "2", "--config", conf.to_str().unwrap()];
    let server = Server::start_with(cmd, dir.path(), free_port(), free_port(), &args);
    let c = Raw::new(v4(&server));
    let new = vec![7u8; 1024];
    // 1024 bytes: two full blocks and the empty final block 3.
    assert_eq!(raw_put(&c, "up/cfg", &new), Ok(3));
    assert_eq!(std::fs::read(up.join("cfg")).unwrap(), new);
}

#[test]
fn a_partial_upload_is_never_visible_and_is_removed() {
    let dir = served_dir();
    let up = upload_dir(dir.path(), "up");
    let env = [WRITE_ON, ("FERRY_TFTP__MAX_RETRANSMIT_TIME_SECS", "2")];
    let server = start_tftp(dir.path(), &env);
    let c = Raw::new(v4(&server));
    c.send(&request(2, "up/part.bin", "octet", &[]));
    let (p, tid) = c.recv();
    assert_eq!((opcode(&p), block(&p)), (4, 0));
    for n in 1..=3u16 {
        c.send_to(&data(n, &[n as u8; 512]), tid);
        assert_eq!(block(&c.recv().0), n);
    }
    let during = names(&up);
    assert!(!during.contains(&"part.bin".to_string()), "final name visible mid-upload: {during:?}");
    assert!(
        during.iter().any(|n| n.starts_with(".ferry-part-") && n.ends_with("-part.bin")),
        "expected a hidden temporary file: {during:?}"
    );
    // The client vanishes: the server gives up after max(max_retransmit_time, 4 timeouts)
    // = 4 s without progress and removes the temporary file; the name never appeared.
    eventually(Duration::from_secs(10), "the temporary file removed", || {
        let left = names(&up);
        assert!(!left.contains(&"part.bin".to_string()), "final name appeared: {left:?}");
        check(left, Vec::is_empty)
    });
}

in_both_modes!(
    quota_refuses_announced_and_actual_oversize,
    a_request_from_the_port_of_a_finished_upload_is_served_at_once,
);

fn quota_refuses_announced_and_actual_oversize(mode: Mode) {
    let dir = served_dir();
    let up = upload_dir(dir.path(), "up");
    let server = mode.start(dir.path(), &[WRITE_ON, ("FERRY_TFTP__WRITE__QUOTA_BYTES", "1000")]);
    let c = Raw::new(v4(&server));
    c.send(&request(2, "up/big", "octet", &[("tsize", "5000")]));
    assert_eq!(error_of(&c.recv().0).map(|e| e.0), Some(3));
    let c = Raw::new(v4(&server));
    assert_eq!(raw_put(&c, "up/big", &[1u8; 1500]).unwrap_err().0, 3);
    eventually(Duration::from_secs(2), "the refused upload's files removed", || {
        check(names(&up), Vec::is_empty)
    });
}

#[test]
fn netascii_upload_is_decoded() {
    let dir = served_dir();
    let up = upload_dir(dir.path(), "up");
    let server = start_tftp(dir.path(), &[WRITE_ON]);
    let c = Raw::new(v4(&server));
    c.send(&request(2, "up/menu.txt", "netascii", &[]));
    let (_, tid) = c.recv();
    // CR LF ends the first block with a CR: the decoder must carry it into block 2.
    let mut first = vec![b'a'; 511];
    first.push(b'\r');
    c.send_to(&data(1, &first), tid);
    assert_eq!(block(&c.recv().0), 1);
    c.send_to(&data(2, b"\nb\r\0c"), tid);
    assert_eq!(block(&c.recv().0), 2);
    let mut want = vec![b'a'; 511];
    want.extend_from_slice(b"\nb\rc");
    assert_eq!(std::fs::read(up.join("menu.txt")).unwrap(), want);
}

fn a_request_from_the_port_of_a_finished_upload_is_served_at_once(mode: Mode) {
    // Clients reuse a port for their next request. While the finished upload dallies to
    // re-ACK a repeated last DATA (RFC 1350 §6), a new request from that port is a new
    // transfer, served at once; it was ignored as a repeat for the 5 s of the dally.
    let dir = served_dir();
    upload_dir(dir.path(), "up");
    let server = mode.start(dir.path(), &[WRITE_ON]);
    let c = Raw::new(v4(&server));
    c.send(&request(2, "up/f", "octet", &[]));
    let (p, upload) = c.recv();
    assert_eq!((opcode(&p), block(&p)), (4, 0));
    mode.assert_transfer_source(upload, v4(&server));
    c.send_to(&data(1, b"hello"), upload);
    let (p, _) = c.recv();
    assert_eq!((opcode(&p), block(&p)), (4, 1), "final ACK");
    // The dallying upload answers a repeated last DATA with the final ACK.
    c.send_to(&data(1, b"hello"), upload);
    assert_eq!(c.recv(), (ack(1), upload), "the final ACK again");
    c.send(&request(1, "up/f", "octet", &[]));
    let (p, fetch) =
        c.recv_within(Duration::from_secs(1)).expect("the RRQ from the upload's port was ignored");
    assert_eq!((opcode(&p), block(&p), &p[4..]), (3, 1, &b"hello"[..]));
    mode.assert_transfer_source(fetch, v4(&server));
    // With a port of its own it still does while the new transfer runs. (In single-port mode
    // both share the client's and the server's port: such a DATA is the new transfer's.)
    if !mode.single() {
        assert_ne!(fetch, upload);
        c.send_to(&data(1, b"hello"), upload);
        let again = c.collect_for(Duration::from_millis(500));
        assert!(again.iter().any(|(p, from)| *from == upload && p == &ack(1)), "{again:?}");
    }
    assert_eq!(c.continue_get(&p, fetch), b"hello");
}
