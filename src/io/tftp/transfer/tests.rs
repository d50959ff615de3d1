//! The transfer loop against a real socket: what it reads before its timer.

use super::*;
use crate::io::tftp::limits::LiveTransfers;
use crate::tftp::Negotiation;
use std::net::UdpSocket;

#[test]
fn a_queued_ack_goes_before_an_expired_timer() {
    queued_ack_before_timer(Duration::ZERO);
}

#[test]
fn a_queued_ack_goes_before_an_expired_timer_when_polling() {
    queued_ack_before_timer(Duration::from_micros(200));
}

fn queued_ack_before_timer(busy_poll: Duration) {
    // A worker that wakes late finds the client's ACK 1 queued and the timer of DATA 1
    // expired long ago. It must read the ACK and send DATA 2, not resend DATA 1 first.
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (peer, server_addr) = (client.local_addr().unwrap(), server.local_addr().unwrap());
    let file: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
    let settings = TransferSettings::default();
    let negotiation = Negotiation { values: Default::default(), oack: None };
    let long_ago = Instant::now() - Duration::from_secs(5);
    let mut t = ReadTransfer::new(peer, &negotiation, file.len() as u64, &settings, long_ago);
    // DATA 1 went out back then (taken here, not sent), and the client answered it.
    assert!(matches!(t.poll_transmit(), Some(Transmit::Data { block: 1, .. })));
    client.send_to(&[0, 4, 0, 1], server_addr).unwrap();
    // The client: ACK every DATA until the short one; report the blocks it saw.
    let seen = std::thread::spawn(move || {
        let mut blocks = Vec::new();
        let mut buf = [0u8; 600];
        while let Ok((n, from)) = client.recv_from(&mut buf) {
            blocks.push(u16::from_be_bytes([buf[2], buf[3]]));
            client.send_to(&[0, 4, buf[2], buf[3]], from).unwrap();
            if n < 4 + 512 {
                break;
            }
        }
        blocks
    });
    let metrics = crate::observe::metrics::Metrics::new(1);
    let outcome = tokio_uring::start(async {
        let mut job = Job::Read { t, source: Source::Memory(Rc::new(file)), upgrade: None, _charge: None };
        let (mut link, mut inlet) = Port::Own(OwnedFd::from(server)).split(Rc::new(BufPool::new(1024, 8)));
        let tid = Rc::new(LiveTransfers::default()).register(peer).unwrap();
        let outcome = drive(
            &mut job,
            &mut link,
            &mut inlet,
            metrics.worker(0),
            &CutSignal::default(),
            tid,
            &Cell::new(0),
            busy_poll,
        )
        .await;
        inlet.close(&link.pool).await;
        outcome
    });
    assert_eq!(outcome, Outcome::Complete { bytes: 600, confirmed: true });
    assert_eq!(seen.join().unwrap(), [2], "DATA 1 was resent although its ACK was waiting");
    assert_eq!(metrics.total(Metric::TftpRetransmissions), 0);
}
