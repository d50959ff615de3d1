//! Busy polling for a lone lock-step TFTP client (`tftp.busy_poll_us`): while its worker keeps
//! polling for that client's ACKs, the worker's other clients are still served (their socket
//! and file operations go through the same io_uring, which polling must not hold back), and
//! the download is byte-exact. (A polling round once yielded to tokio without letting
//! tokio-uring submit: a transfer served from memory then held every other ring operation of
//! its worker until its client stopped answering within the budget.)

mod common;

use common::ftp::Ctl;
use common::tftp::*;
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[test]
fn a_polling_worker_still_serves_its_other_clients() {
    let dir = served_dir();
    // Lock-step at blksize 1468: long enough for the FTP session and the second download to
    // run inside it. In netascii mode the file is served from memory, so the transfer itself
    // puts nothing on the ring; without CR or LF its encoding is the file itself.
    let big: Vec<u8> = random_file(dir.path(), "big", 15 << 20)
        .into_iter()
        .map(|b| if b == b'\r' || b == b'\n' { b'x' } else { b })
        .collect();
    std::fs::write(dir.path().join("big"), &big).unwrap();
    let small = random_file(dir.path(), "small", 300_000);
    // One worker, so the transfer that polls and every other client share it; a budget long
    // enough that the worker polls from one ACK to the next the whole time.
    let mut cmd = std::process::Command::new(ferry_bin());
    cmd.env("FERRY_TFTP__BUSY_POLL_US", "10000");
    let server = Server::start_with(cmd, dir.path(), free_port(), free_port(), &["--workers", "1"]);
    let addr = v4(&server);

    let ended = Arc::new(AtomicBool::new(false));
    let lone = {
        let ended = Arc::clone(&ended);
        std::thread::spawn(move || {
            let c = Raw::new(addr);
            c.send(&request(1, "big", "netascii", &[("blksize", "1468")]));
            let (oack, tid) = c.recv();
            assert_eq!(opcode(&oack), 6, "OACK expected");
            c.send_to(&ack(0), tid);
            let got = c.receive_blocks(1468, 1);
            ended.store(true, Ordering::SeqCst);
            got
        })
    };
    // Let the download get going.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!ended.load(Ordering::SeqCst), "the download ended before the other clients came");

    // An FTP session on the same worker: accept, replies, the data connection, the file.
    let mut ctl = Ctl::login_to(&server, "anonymous", "guest@");
    assert!(ctl.cmd("TYPE I").starts_with("200"));
    let (first, bytes, last) = ctl.transfer("RETR small");
    assert!(first.starts_with("150") && last.starts_with("226"), "{first} {last}");
    assert!(bytes == small, "the FTP download differs: {} bytes", bytes.len());
    let ftp_inside = !ended.load(Ordering::SeqCst);

    // A second TFTP download: a request, a file open, its own transfer.
    let second = Raw::new(addr);
    second.send(&request(1, "small", "octet", &[("blksize", "1468")]));
    let (oack, tid) = second.recv();
    assert_eq!(opcode(&oack), 6, "OACK expected");
    second.send_to(&ack(0), tid);
    assert!(second.receive_blocks(1468, 1) == small, "the second TFTP download differs");
    let tftp_inside = !ended.load(Ordering::SeqCst);

    assert!(lone.join().unwrap() == big, "the polled-for download differs");
    assert!(ftp_inside, "the FTP session was only served once the polled-for download ended");
    assert!(tftp_inside, "the second TFTP request was only served once the polled-for download ended");
}
