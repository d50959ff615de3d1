//! Simulated-link tests (in the style of quinn's `Pair` and smoltcp's netsim): the server
//! state machines talk to small RFC 1350/2347/7440 client models over a seeded link with
//! loss, duplication and reordering, stepped on a fake clock.

use super::*;
use crate::tftp::netascii::{Decoder, Encoder};
use crate::tftp::options::{negotiate, ServerCaps};
use crate::tftp::request::{plan, AccessPolicy, Mode};
use crate::tftp::wire::{write_data_header, OptionList, Repr};
use crate::tftp::Direction;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

const SERVER_69: &str = "10.0.0.1:69";
const SERVER_TID: &str = "10.0.0.1:40000";
const CLIENT: &str = "10.0.0.2:5000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Content of synthetic files, computed from the offset so 32 MiB files need no storage.
fn byte_at(offset: u64) -> u8 {
    (offset ^ (offset >> 8) ^ (offset >> 17)) as u8
}

/// The file a transfer serves: synthetic (verified by offset) or real bytes.
#[derive(Clone)]
enum File {
    Synthetic(u64),
    Bytes(Vec<u8>),
}

impl File {
    fn len(&self) -> u64 {
        match self {
            File::Synthetic(n) => *n,
            File::Bytes(b) => b.len() as u64,
        }
    }
    fn read(&self, offset: u64, len: usize, out: &mut Vec<u8>) {
        match self {
            File::Synthetic(_) => out.extend((offset..offset + len as u64).map(byte_at)),
            File::Bytes(b) => out.extend_from_slice(&b[offset as usize..offset as usize + len]),
        }
    }
}

/// Link parameters: probabilities per datagram.
#[derive(Clone, Copy)]
struct LinkConf {
    loss: f64,
    dup: f64,
    reorder: f64,
    /// Drop everything from the client after this many of its datagrams (vanishing client).
    client_budget: Option<usize>,
}

const CLEAN: LinkConf = LinkConf { loss: 0.0, dup: 0.0, reorder: 0.0, client_budget: None };

struct InFlight {
    at: Instant,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

struct Link {
    rng: StdRng,
    conf: LinkConf,
    delay: Duration,
    queue: Vec<InFlight>,
    seq: u64,
    client_sent: usize,
}

impl Link {
    fn send(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        if from.ip() == addr(CLIENT).ip() {
            self.client_sent += 1;
            if self.conf.client_budget.is_some_and(|b| self.client_sent > b) {
                return;
            }
        }
        if self.rng.gen_bool(self.conf.loss) {
            return;
        }
        let copies = if self.rng.gen_bool(self.conf.dup) { 2 } else { 1 };
        for _ in 0..copies {
            let mut at = now + self.delay;
            if self.rng.gen_bool(self.conf.reorder) {
                at += self.delay * self.rng.gen_range(1..4);
            }
            self.seq += 1;
            self.queue.push(InFlight { at, seq: self.seq, from, to, bytes: bytes.clone() });
        }
    }
    fn next_at(&self) -> Option<Instant> {
        self.queue.iter().map(|p| p.at).min()
    }
    fn pop_due(&mut self, now: Instant) -> Option<InFlight> {
        let i = self
            .queue
            .iter()
            .enumerate()
            .filter(|(_, p)| p.at <= now)
            .min_by_key(|(_, p)| (p.at, p.seq))
            .map(|(i, _)| i)?;
        Some(self.queue.swap_remove(i))
    }
}

/// A client model driven by the simulator.
trait Client {
    fn start(&mut self, now: Instant, out: &mut Vec<(SocketAddr, Vec<u8>)>);
    fn on_datagram(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        now: Instant,
        out: &mut Vec<(SocketAddr, Vec<u8>)>,
    );
    fn on_timeout(&mut self, now: Instant, out: &mut Vec<(SocketAddr, Vec<u8>)>);
    fn deadline(&self) -> Option<Instant>;
}

fn emit(repr: &Repr<'_>) -> Vec<u8> {
    let mut v = vec![0; repr.buffer_len()];
    repr.emit(&mut v).unwrap();
    v
}

fn request(write: bool, name: &str, mode: &str, opts: &[(&str, &str)]) -> Vec<u8> {
    let mut options = OptionList::new();
    for (n, v) in opts {
        options.push(n.as_bytes(), v.as_bytes()).unwrap();
    }
    let (filename, mode) = (name.as_bytes(), mode.as_bytes());
    emit(&if write { Repr::Wrq { filename, mode, options } } else { Repr::Rrq { filename, mode, options } })
}

/// RFC 1350 §4: the first reply fixes the server's TID; anything from another port gets
/// ERROR 5. Returns whether `from` is the server's TID.
fn same_tid(tid: &mut Option<SocketAddr>, from: SocketAddr, out: &mut Vec<(SocketAddr, Vec<u8>)>) -> bool {
    if *tid.get_or_insert(from) != from {
        out.push((from, emit(&Repr::error(ErrorCode::UnknownTransferId, "unknown TID"))));
        return false;
    }
    true
}

/// RFC 1350/2347/7440 reading client.
struct ReadClient {
    rrq: Vec<u8>,
    wants_oack: bool,
    expected: File,
    netascii: Option<(Decoder, Vec<u8>)>,
    wrap: BlockWrap,
    tid: Option<SocketAddr>,
    blksize: u64,
    window: u64,
    received: u64,
    bytes: u64,
    since_ack: u64,
    done: bool,
    /// Never send the ACK for the final block (tests the sender's final-ACK wait).
    skip_final_ack: bool,
    /// Answer the OACK with this ERROR instead of ACK 0 (UEFI tsize probe).
    abort_on_oack: Option<u16>,
    timeout: Duration,
    deadline: Option<Instant>,
    tries: u32,
    oack_tsize: Option<u64>,
    wire_blocks_seen_zero_after_wrap: bool,
    error: Option<u16>,
}

impl ReadClient {
    fn new(expected: File, opts: &[(&str, &str)]) -> ReadClient {
        ReadClient {
            rrq: request(false, "boot.img", "octet", opts),
            wants_oack: !opts.is_empty(),
            expected,
            netascii: None,
            wrap: BlockWrap::Zero,
            tid: None,
            blksize: 512,
            window: 1,
            received: 0,
            bytes: 0,
            since_ack: 0,
            done: false,
            skip_final_ack: false,
            abort_on_oack: None,
            timeout: Duration::from_millis(1500),
            deadline: None,
            tries: 0,
            oack_tsize: None,
            wire_blocks_seen_zero_after_wrap: false,
            error: None,
        }
    }

    fn ack(&self, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        if let Some(tid) = self.tid {
            out.push((tid, emit(&Repr::Ack { block: self.wrap.wire(self.received) })));
        }
    }
}

impl Client for ReadClient {
    fn start(&mut self, now: Instant, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        out.push((addr(SERVER_69), self.rrq.clone()));
        self.deadline = Some(now + self.timeout);
    }

    fn on_datagram(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        now: Instant,
        out: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) {
        if !same_tid(&mut self.tid, from, out) {
            return;
        }
        match Repr::parse_bytes(bytes).expect("server sent a malformed packet") {
            Repr::Oack { options } if self.received == 0 => {
                assert!(self.wants_oack, "OACK to a request without options");
                if let Some(code) = self.abort_on_oack {
                    out.push((from, emit(&Repr::Error { code, message: b"tsize probe" })));
                    self.done = true;
                    self.deadline = None;
                    return;
                }
                let num = |n| options.get(n).map(|v| std::str::from_utf8(v).unwrap().parse::<u64>().unwrap());
                self.blksize = num("blksize").unwrap_or(512);
                self.window = num("windowsize").unwrap_or(1);
                self.oack_tsize = num("tsize");
                self.ack(out);
            }
            Repr::Oack { .. } => {}
            Repr::Data { block, data } => {
                if self.done {
                    // Dallying (RFC 1350 §6): the server missed our final ACK.
                    if block == self.wrap.wire(self.received) && !self.skip_final_ack {
                        self.ack(out);
                    }
                    return;
                }
                if block != self.wrap.wire(self.received + 1) {
                    // RFC 1350 lock-step clients re-ACK every repeat (what makes the Sorcerer's
                    // Apprentice); RFC 7440 receivers ACK the last in-order block on every gap
                    // (a block ahead of the expected one) and drop stale repeats.
                    let ahead = self.wrap.distance(self.received, block);
                    if self.window == 1 || (ahead > 1 && ahead <= self.window) {
                        self.since_ack = 0;
                        self.ack(out);
                    }
                    return;
                }
                assert!(data.len() as u64 <= self.blksize);
                if let Some((dec, buf)) = &mut self.netascii {
                    dec.decode(data, buf);
                } else {
                    let mut want = Vec::with_capacity(data.len());
                    // Verify every byte of small files, the ends of each block of big ones.
                    let n = data.len();
                    if self.expected.len() <= 4 << 20 || n < 32 {
                        self.expected.read(self.bytes, n, &mut want);
                        assert_eq!(data, &want[..], "payload at offset {}", self.bytes);
                    } else {
                        self.expected.read(self.bytes, 16, &mut want);
                        self.expected.read(self.bytes + n as u64 - 16, 16, &mut want);
                        assert_eq!([&data[..16], &data[n - 16..]].concat(), want);
                    }
                }
                if self.received >= 65535 && block == 0 {
                    self.wire_blocks_seen_zero_after_wrap = true;
                }
                self.received += 1;
                self.bytes += data.len() as u64;
                self.since_ack += 1;
                self.tries = 0;
                self.deadline = Some(now + self.timeout);
                if (data.len() as u64) < self.blksize {
                    self.done = true;
                    if let Some((dec, buf)) = &mut self.netascii {
                        dec.finish(buf);
                    }
                    if !self.skip_final_ack {
                        self.ack(out);
                    }
                    // Dally for a few of the server's timeouts, then stop.
                    self.deadline = Some(now + Duration::from_secs(10));
                } else if self.since_ack >= self.window {
                    self.since_ack = 0;
                    self.ack(out);
                }
            }
            Repr::Error { code, .. } => {
                self.error = Some(code);
                self.done = true;
                self.deadline = None;
            }
            other => panic!("unexpected packet for a reader: {other:?}"),
        }
    }

    fn on_timeout(&mut self, now: Instant, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        if self.done {
            self.deadline = None;
            return;
        }
        self.tries += 1;
        if self.tries > 12 {
            self.deadline = None;
            return;
        }
        match self.tid {
            None => out.push((addr(SERVER_69), self.rrq.clone())),
            Some(_) => {
                self.since_ack = 0;
                self.ack(out);
            }
        }
        self.deadline = Some(now + self.timeout);
    }

    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

/// RFC 1350/2347/7440 writing client.
struct WriteClient {
    wrq: Vec<u8>,
    file: File,
    wants_oack: bool,
    wrap: BlockWrap,
    tid: Option<SocketAddr>,
    blksize: u64,
    window: u64,
    last_block: u64,
    acked: u64,
    started: bool,
    done: bool,
    timeout: Duration,
    deadline: Option<Instant>,
    tries: u32,
    error: Option<u16>,
}

impl WriteClient {
    fn new(file: File, opts: &[(&str, &str)]) -> WriteClient {
        WriteClient {
            wrq: request(true, "upload.bin", "octet", opts),
            file,
            wants_oack: !opts.is_empty(),
            wrap: BlockWrap::Zero,
            tid: None,
            blksize: 512,
            window: 1,
            last_block: 0,
            acked: 0,
            started: false,
            done: false,
            timeout: Duration::from_millis(1500),
            deadline: None,
            tries: 0,
            error: None,
        }
    }

    fn send_window(&mut self, now: Instant, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        let Some(tid) = self.tid else { return };
        let end = (self.acked + self.window).min(self.last_block);
        for n in self.acked + 1..=end {
            let offset = (n - 1) * self.blksize;
            let len = (self.file.len() - offset).min(self.blksize) as usize;
            let mut pkt = vec![0u8; 4];
            write_data_header(&mut pkt, self.wrap.wire(n)).unwrap();
            self.file.read(offset, len, &mut pkt);
            out.push((tid, pkt));
        }
        self.deadline = Some(now + self.timeout);
    }
}

impl Client for WriteClient {
    fn start(&mut self, now: Instant, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        out.push((addr(SERVER_69), self.wrq.clone()));
        self.deadline = Some(now + self.timeout);
    }

    fn on_datagram(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        now: Instant,
        out: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) {
        if !same_tid(&mut self.tid, from, out) {
            return;
        }
        let start = |c: &mut WriteClient, blksize: u64, window: u64, out: &mut Vec<_>| {
            if !c.started {
                c.started = true;
                c.blksize = blksize;
                c.window = window;
                c.last_block = c.file.len() / blksize + 1;
            }
            c.send_window(now, out);
        };
        match Repr::parse_bytes(bytes).expect("server sent a malformed packet") {
            Repr::Oack { options } if self.acked == 0 => {
                assert!(self.wants_oack);
                let num = |n| options.get(n).map(|v| std::str::from_utf8(v).unwrap().parse::<u64>().unwrap());
                start(self, num("blksize").unwrap_or(512), num("windowsize").unwrap_or(1), out);
            }
            Repr::Ack { block: 0 } if !self.started => start(self, 512, 1, out),
            Repr::Ack { block } if self.started && !self.done => {
                let ahead = self.wrap.distance(self.acked, block);
                if ahead == 0 || self.acked + ahead > self.last_block {
                    return;
                }
                self.acked += ahead;
                self.tries = 0;
                if self.acked == self.last_block {
                    self.done = true;
                    self.deadline = None;
                } else {
                    self.send_window(now, out);
                }
            }
            Repr::Error { code, .. } => {
                self.error = Some(code);
                self.done = true;
                self.deadline = None;
            }
            _ => {}
        }
    }

    fn on_timeout(&mut self, now: Instant, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        self.tries += 1;
        if self.done || self.tries > 12 {
            self.deadline = None;
            return;
        }
        if self.started {
            self.send_window(now, out);
        } else {
            out.push((addr(SERVER_69), self.wrq.clone()));
            self.deadline = Some(now + self.timeout);
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

enum Server {
    Read(ReadTransfer),
    Write(WriteTransfer),
}

/// What the simulated server did.
#[derive(Default, Debug)]
struct Stats {
    /// Every datagram the server sent, by kind.
    data: u64,
    control: u64,
    errors: Vec<(SocketAddr, u16)>,
    /// DATA sends per absolute block index (wire numbers repeat after a wrap).
    data_per_block: HashMap<(u64, u16), u32>,
    disk: Vec<u8>,
    netascii_disk: Option<(Decoder, Vec<u8>)>,
    committed: bool,
    oack: Option<Vec<u8>>,
    refusal: Option<ErrorCode>,
    /// When each DATA (by the same key as `data_per_block`) first went out.
    first_data_at: HashMap<(u64, u16), Instant>,
    /// When the server's outcome was set (the client model may run on after it).
    ended_at: Option<Instant>,
}

struct Sim {
    now: Instant,
    start: Instant,
    link: Link,
    caps: ServerCaps,
    settings: TransferSettings,
    file: File,
    netascii_file: Option<Vec<u8>>,
    server: Option<Server>,
    stats: Stats,
}

impl Sim {
    fn new(seed: u64, conf: LinkConf, file: File) -> Sim {
        let now = Instant::now();
        Sim {
            now,
            start: now,
            link: Link {
                rng: StdRng::seed_from_u64(seed),
                conf,
                delay: Duration::from_millis(5),
                queue: Vec::new(),
                seq: 0,
                client_sent: 0,
            },
            caps: ServerCaps { max_blksize: 65464, max_windowsize: 64, upload_quota: 1 << 30 },
            settings: TransferSettings::default(),
            file,
            netascii_file: None,
            server: None,
            stats: Stats::default(),
        }
    }

    /// The listener: plans the request and starts a transfer, as the io layer will.
    fn on_request(&mut self, from: SocketAddr, bytes: &[u8]) {
        if self.server.is_some() {
            return; // A repeated request for a live transfer is dropped.
        }
        let policy = AccessPolicy { write_enabled: true, ..AccessPolicy::default() };
        let refuse = |sim: &mut Sim, r: crate::tftp::Refusal| {
            sim.stats.refusal = Some(r.code);
            sim.link.send(sim.now, addr(SERVER_69), from, r.datagram().as_bytes().to_vec());
        };
        let req = match plan(from.ip(), bytes, &policy) {
            Ok(r) => r,
            Err(r) => return refuse(self, r),
        };
        let size = match (req.mode, &self.netascii_file) {
            (Mode::Netascii, Some(enc)) => enc.len() as u64,
            _ => self.file.len(),
        };
        let n = match negotiate(req.direction, &req.options, &self.caps, Some(size)) {
            Ok(n) => n,
            Err(r) => return refuse(self, r),
        };
        self.stats.oack = n.oack.map(|d| d.as_bytes().to_vec());
        if req.mode == Mode::Netascii && req.direction == Direction::Write {
            self.stats.netascii_disk = Some((Decoder::new(), Vec::new()));
        }
        self.server = Some(match req.direction {
            Direction::Read => Server::Read(ReadTransfer::new(from, &n, size, &self.settings, self.now)),
            Direction::Write => Server::Write(WriteTransfer::new(from, &n, &self.settings, self.now)),
        });
    }

    fn flush_server(&mut self) {
        let tid = addr(SERVER_TID);
        loop {
            let t = match &mut self.server {
                Some(Server::Read(r)) => r.poll_transmit(),
                Some(Server::Write(w)) => w.poll_transmit(),
                None => None,
            };
            let Some(t) = t else { break };
            match t {
                Transmit::Datagram { to, packet } => {
                    self.stats.control += 1;
                    if let Ok(Repr::Error { code, .. }) = Repr::parse_bytes(packet.as_bytes()) {
                        self.stats.errors.push((to, code));
                    }
                    self.link.send(self.now, tid, to, packet.as_bytes().to_vec());
                }
                Transmit::Data { to, block, offset, len } => {
                    self.stats.data += 1;
                    *self.stats.data_per_block.entry((offset, block)).or_default() += 1;
                    self.stats.first_data_at.entry((offset, block)).or_insert(self.now);
                    let mut buf = vec![0u8; 4];
                    write_data_header(&mut buf, block).unwrap();
                    match &self.netascii_file {
                        Some(enc) => buf.extend_from_slice(&enc[offset as usize..offset as usize + len]),
                        None => self.file.read(offset, len, &mut buf),
                    }
                    self.link.send(self.now, tid, to, buf);
                }
            }
        }
    }

    fn server_deliver(&mut self, from: SocketAddr, bytes: &[u8]) {
        let now = self.now;
        match &mut self.server {
            Some(Server::Read(r)) => r.handle_datagram(from, bytes, now),
            Some(Server::Write(w)) => {
                if let Some(chunk) = w.handle_datagram(from, bytes, now) {
                    let data = &bytes[chunk.data.clone()];
                    match &mut self.stats.netascii_disk {
                        Some((dec, out)) => dec.decode(data, out),
                        None => {
                            assert_eq!(chunk.offset, self.stats.disk.len() as u64, "writes are sequential");
                            self.stats.disk.extend_from_slice(data);
                        }
                    }
                    if chunk.last {
                        assert!(!self.stats.committed, "commit once");
                        if let Some((dec, out)) = &mut self.stats.netascii_disk {
                            dec.finish(out);
                        }
                        self.stats.committed = true;
                    }
                }
            }
            None => {}
        }
    }

    fn outcome(&self) -> Option<Outcome> {
        match &self.server {
            Some(Server::Read(r)) => r.outcome(),
            Some(Server::Write(w)) => w.outcome(),
            None => None,
        }
    }

    fn server_deadline(&self) -> Option<Instant> {
        match &self.server {
            Some(Server::Read(r)) => r.poll_timeout(),
            Some(Server::Write(w)) => w.poll_timeout(),
            None => None,
        }
    }

    /// Runs until nothing is left to happen; returns the server's outcome.
    fn run(&mut self, client: &mut dyn Client) -> Option<Outcome> {
        let mut out = Vec::new();
        client.start(self.now, &mut out);
        for _ in 0..5_000_000u64 {
            for (to, bytes) in out.drain(..) {
                self.link.send(self.now, addr(CLIENT), to, bytes);
            }
            self.flush_server();
            if self.stats.ended_at.is_none() && self.outcome().is_some() {
                self.stats.ended_at = Some(self.now);
            }
            let next =
                [self.link.next_at(), self.server_deadline(), client.deadline()].into_iter().flatten().min();
            let Some(next) = next else { return self.outcome() };
            assert!(next - self.start < Duration::from_secs(3600), "simulation ran away");
            self.now = self.now.max(next);
            if let Some(p) = self.link.pop_due(self.now) {
                if p.to == addr(SERVER_69) {
                    self.on_request(p.from, &p.bytes);
                } else if p.to == addr(SERVER_TID) {
                    self.server_deliver(p.from, &p.bytes);
                } else {
                    client.on_datagram(p.from, &p.bytes, self.now, &mut out);
                }
            } else if self.server_deadline().is_some_and(|d| d <= self.now) {
                let now = self.now;
                match &mut self.server {
                    Some(Server::Read(r)) => r.handle_timeout(now),
                    Some(Server::Write(w)) => w.handle_timeout(now),
                    None => {}
                }
            } else {
                client.on_timeout(self.now, &mut out);
            }
        }
        panic!("simulation did not settle");
    }
}

fn blocks(len: u64, blksize: u64) -> u64 {
    len / blksize + 1
}

fn lossy(loss: f64) -> LinkConf {
    LinkConf { loss, dup: 0.05, reorder: 0.1, client_budget: None }
}

fn complete(bytes: u64) -> Option<Outcome> {
    Some(Outcome::Complete { bytes, confirmed: true })
}

#[test]
fn rrq_clean_link_sends_each_block_once() {
    // RFC 1350 lock-step: exactly one DATA per block, including the empty final block.
    for len in [0u64, 1, 511, 512, 513, 5000] {
        let mut sim = Sim::new(1, CLEAN, File::Synthetic(len));
        let mut client = ReadClient::new(File::Synthetic(len), &[]);
        assert_eq!(sim.run(&mut client), complete(len), "len {len}");
        assert_eq!(client.bytes, len);
        assert_eq!(sim.stats.data, blocks(len, 512), "len {len}");
    }
}

#[test]
fn rrq_windows_under_loss_duplication_and_reordering() {
    for (seed, loss, window) in
        [(1, 0.1, "1"), (2, 0.1, "8"), (3, 0.3, "8"), (4, 0.2, "64"), (5, 0.3, "64"), (6, 0.3, "1")]
    {
        let len = 300_000 + seed * 77;
        let mut sim = Sim::new(seed, lossy(loss), File::Synthetic(len));
        let mut client =
            ReadClient::new(File::Synthetic(len), &[("blksize", "1024"), ("windowsize", window)]);
        // Under heavy loss the client's final ACKs can all be lost after it got everything;
        // the sender then ends unconfirmed, which is still a delivery.
        let outcome = sim.run(&mut client);
        assert!(
            matches!(outcome, Some(Outcome::Complete { bytes, .. }) if bytes == len),
            "seed {seed}: {outcome:?}"
        );
        assert!(client.done && client.bytes == len);
        // Bounded sends: windows resend at most a window per timeout or sliding ACK.
        let n = blocks(len, 1024);
        let w: u64 = window.parse().unwrap();
        eprintln!("seed {seed} loss {loss} window {w}: {} DATA sends for {n} blocks", sim.stats.data);
        // Go-back-N costs about (1 + p(w-1)) / (1-p) sends per block at loss p; allow 50%
        // over that. A Sorcerer's Apprentice bug would grow without bound instead.
        let expect = (1.0 + loss * (w as f64 - 1.0)) / (1.0 - loss) * n as f64;
        assert!(
            (sim.stats.data as f64) < 1.5 * expect + 64.0,
            "seed {seed}: {} sends for {n} blocks",
            sim.stats.data
        );
    }
}

#[test]
fn rrq_wraps_block_numbers_past_65535() {
    // 32 MiB + a bit at 512-byte blocks: 65539 blocks, wire numbers wrap to 0 (default).
    let len = (32 << 20) + 1000;
    let mut sim = Sim::new(7, CLEAN, File::Synthetic(len));
    let mut client = ReadClient::new(File::Synthetic(len), &[("windowsize", "16")]);
    assert_eq!(sim.run(&mut client), complete(len));
    assert!(client.wire_blocks_seen_zero_after_wrap);
    assert_eq!(sim.stats.data, blocks(len, 512));
}

#[test]
fn rrq_wrap_to_one_when_configured() {
    let len = (32 << 20) + 10;
    let mut sim = Sim::new(8, LinkConf { loss: 0.02, ..CLEAN }, File::Synthetic(len));
    sim.settings.block_wrap = BlockWrap::One;
    let mut client = ReadClient::new(File::Synthetic(len), &[("windowsize", "32")]);
    client.wrap = BlockWrap::One;
    assert_eq!(sim.run(&mut client), complete(len));
    assert!(!client.wire_blocks_seen_zero_after_wrap);
}

#[test]
fn sorcerers_apprentice_duplicate_acks_never_resend() {
    // Every datagram duplicated, nothing lost: each block must go out exactly once
    // (RFC 1123 §4.2.3.1), although the client receives and answers everything twice.
    let len = 100_000;
    let mut sim = Sim::new(9, LinkConf { dup: 1.0, ..CLEAN }, File::Synthetic(len));
    let mut client = ReadClient::new(File::Synthetic(len), &[]);
    assert_eq!(sim.run(&mut client), complete(len));
    assert_eq!(sim.stats.data, blocks(len, 512));
    assert!(sim.stats.data_per_block.values().all(|&c| c == 1));
}

#[test]
fn lost_final_ack_ends_after_a_short_dally() {
    let len = 2000;
    let mut sim = Sim::new(10, CLEAN, File::Synthetic(len));
    let mut client = ReadClient::new(File::Synthetic(len), &[]);
    client.skip_final_ack = true;
    let outcome = sim.run(&mut client);
    assert_eq!(outcome, Some(Outcome::Complete { bytes: len, confirmed: false }));
    assert_eq!(client.bytes, len);
    let last = sim.stats.data_per_block.iter().filter(|((o, _), _)| *o == 1536).map(|(_, c)| *c).sum::<u32>();
    assert_eq!(last, 1 + sim.settings.final_retransmits);
    assert!(sim.now - sim.start < sim.settings.max_retransmit_time);
}

#[test]
fn an_unacknowledged_last_block_is_held_for_a_few_short_timeouts() {
    // Once every block was sent, silence means the client is gone (its final ACK lost):
    // the last block is resent on the server's own timeout, without growing backoff, and
    // the transfer ends after `final_retransmits` of them, whatever `timeout` was asked.
    let len = 5000;
    type Opts<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Opts, u64); 4] =
        [(&[], 1), (&[("timeout", "255")], 1), (&[("windowsize", "8")], 1), (&[("timeout", "5")], 2)];
    for (i, (opts, server_timeout)) in cases.into_iter().enumerate() {
        let mut sim = Sim::new(16, CLEAN, File::Synthetic(len));
        sim.settings.timeout = Duration::from_secs(server_timeout);
        let mut client = ReadClient::new(File::Synthetic(len), opts);
        client.skip_final_ack = true;
        let outcome = sim.run(&mut client);
        assert_eq!(outcome, Some(Outcome::Complete { bytes: len, confirmed: false }), "case {i}");
        let last = (len / 512 * 512, (len / 512 + 1) as u16);
        let held = sim.stats.ended_at.unwrap() - sim.stats.first_data_at[&last];
        let bound = sim.settings.timeout * (1 + sim.settings.final_retransmits);
        assert!(held <= bound + Duration::from_millis(50), "case {i}: held {held:?}, bound {bound:?}");
        if server_timeout == 1 {
            // tftp-hpa gives up on a lost final ACK in about 7 s; so must the defaults.
            assert!(held <= Duration::from_secs(7), "case {i}: held {held:?}");
        }
        assert_eq!(sim.stats.data_per_block[&last], 1 + sim.settings.final_retransmits, "case {i}");
    }
}

#[test]
fn a_spoofed_long_timeout_request_is_dropped_on_the_server_clock() {
    // RFC 2349 timeout 255 from a client that never answers (a spoofed source): the OACK
    // still echoes 255, but the unproven phase runs on the server's own timeout, so the
    // transfer is dropped after 1 + unproven_retransmits of them, not 4 x 255 s.
    for write in [false, true] {
        let mut sim = Sim::new(17, LinkConf { client_budget: Some(1), ..CLEAN }, File::Synthetic(1 << 20));
        let opts = [("timeout", "255"), ("blksize", "1024")];
        let outcome = if write {
            sim.run(&mut WriteClient::new(File::Synthetic(1 << 20), &opts))
        } else {
            sim.run(&mut ReadClient::new(File::Synthetic(1 << 20), &opts))
        };
        assert_eq!(outcome, Some(Outcome::Failed { reason: FailReason::Unproven }), "write {write}");
        let oack = sim.stats.oack.clone().unwrap();
        assert!(oack.windows(12).any(|w| w == b"timeout\x00255\0"), "RFC 2349: the OACK echoes the value");
        let n = 1 + sim.settings.unproven_retransmits;
        assert_eq!(sim.stats.data + sim.stats.control, u64::from(n), "write {write}");
        let held = sim.stats.ended_at.unwrap() - sim.start;
        let bound = sim.settings.timeout * n + Duration::from_millis(50);
        assert!(held <= bound, "write {write}: held {held:?}, bound {bound:?}");
    }
}

#[test]
fn a_proven_transfer_never_outlives_max_retransmit_time_whatever_its_timeout() {
    // The client proves itself (ACK 0, ACK 1), then vanishes. Its RFC 2349 timeout of 255 s
    // paces retransmissions, but the slot is given back after max_retransmit_time of
    // silence; the timer is also capped so at least one retransmission happens before.
    let mut sim = Sim::new(18, LinkConf { client_budget: Some(3), ..CLEAN }, File::Synthetic(1 << 20));
    let mut client = ReadClient::new(File::Synthetic(1 << 20), &[("timeout", "255")]);
    let outcome = sim.run(&mut client);
    assert_eq!(outcome, Some(Outcome::Failed { reason: FailReason::TimedOut }));
    let last_progress = sim.stats.first_data_at[&(512, 2)];
    let held = sim.stats.ended_at.unwrap() - last_progress;
    let max = sim.settings.max_retransmit_time;
    assert!(held <= max + Duration::from_millis(50), "held {held:?} after the last ACK");
    assert!(sim.stats.data_per_block[&(512, 2)] >= 2, "no retransmission before giving up");
}

#[test]
fn vanished_client_times_out() {
    let len = 100_000;
    let mut sim = Sim::new(11, LinkConf { client_budget: Some(20), ..CLEAN }, File::Synthetic(len));
    let mut client = ReadClient::new(File::Synthetic(len), &[]);
    let outcome = sim.run(&mut client);
    assert_eq!(outcome, Some(Outcome::Failed { reason: FailReason::TimedOut }));
    let elapsed = sim.now - sim.start;
    assert!(elapsed >= sim.settings.max_retransmit_time && elapsed < Duration::from_secs(60), "{elapsed:?}");
}

#[test]
fn amplification_guard_bounds_a_spoofed_request() {
    // A spoofed RRQ: the "client" never answers. With or without options, and even when
    // asking for a 64-block window, the server sends 1 + unproven_retransmits packets.
    for opts in [&[][..], &[("windowsize", "64"), ("blksize", "1468")][..]] {
        let mut sim = Sim::new(12, LinkConf { client_budget: Some(1), ..CLEAN }, File::Synthetic(1 << 20));
        let mut client = ReadClient::new(File::Synthetic(1 << 20), opts);
        let outcome = sim.run(&mut client);
        assert_eq!(outcome, Some(Outcome::Failed { reason: FailReason::Unproven }));
        assert_eq!(sim.stats.data + sim.stats.control, 1 + u64::from(sim.settings.unproven_retransmits));
    }
}

#[test]
fn uefi_tsize_probe_error_8_frees_at_once() {
    let len = 12345;
    let mut sim = Sim::new(13, CLEAN, File::Synthetic(len));
    let mut client = ReadClient::new(File::Synthetic(len), &[("tsize", "0"), ("blksize", "1468")]);
    client.abort_on_oack = Some(8);
    let outcome = sim.run(&mut client);
    // RFC 2347: ERROR 8 to the OACK declines the options; nothing moved, nothing failed.
    assert_eq!(outcome, Some(Outcome::OptionsDeclined));
    assert_eq!(client.oack_tsize, None, "client aborted before reading the OACK");
    assert_eq!((sim.stats.data, sim.stats.control), (0, 1));
    // Freed at once: ended one link delay after the OACK, no timer left.
    assert_eq!(sim.server_deadline(), None);
    assert!(sim.now - sim.start < Duration::from_millis(50));
}

#[test]
fn error_8_declines_options_only_as_the_answer_to_an_oack() {
    let now = Instant::now();
    let peer = addr(CLIENT);
    let error_8 = emit(&Repr::error(ErrorCode::OptionNegotiation, "option negotiation refused"));
    let declined = |r: Option<Outcome>| r == Some(Outcome::OptionsDeclined);
    let aborted = |r: Option<Outcome>| {
        matches!(r, Some(Outcome::Failed { reason: FailReason::PeerAborted { code: 8, .. } }))
    };
    // WRQ: the answer to the OACK.
    let mut w = write_transfer(&[("blksize", "1024")], now);
    assert_eq!(w.handle_datagram(peer, &error_8, now), None);
    assert!(declined(w.outcome()), "{:?}", w.outcome());
    // RRQ after the OACK was accepted with ACK 0: a transfer the client ended.
    let mut r = ReadTransfer::new(peer, &negotiation(&[("tsize", "0")]), 10_000, &Default::default(), now);
    let _ = drain(&mut r);
    r.handle_datagram(peer, &emit(&Repr::Ack { block: 0 }), now);
    r.handle_datagram(peer, &error_8, now);
    assert!(aborted(r.outcome()), "{:?}", r.outcome());
    // No OACK was sent (RFC 1350 DATA 1 first): there were no options to decline.
    let mut r = ReadTransfer::new(peer, &negotiation(&[]), 10_000, &Default::default(), now);
    let _ = drain(&mut r);
    r.handle_datagram(peer, &error_8, now);
    assert!(aborted(r.outcome()), "{:?}", r.outcome());
    let mut w = write_transfer(&[], now);
    assert_eq!(w.handle_datagram(peer, &error_8, now), None);
    assert!(aborted(w.outcome()), "{:?}", w.outcome());
}

#[test]
fn ipxe_blksize_1432_tsize_0() {
    let len = 1_000_000;
    let mut sim = Sim::new(14, lossy(0.1), File::Synthetic(len));
    sim.caps.max_blksize = 1468;
    let mut client = ReadClient::new(File::Synthetic(len), &[("blksize", "1432"), ("tsize", "0")]);
    assert_eq!(sim.run(&mut client), complete(len));
    assert_eq!((client.blksize, client.oack_tsize), (1432, Some(len)));
}

#[test]
fn uboot_blksize_1468_window_1_wraps_to_zero() {
    // 65536 blocks of 1468 bytes end past the wrap: U-Boot expects 65535 -> 0.
    let len = 1468 * 65_540 + 3;
    let mut sim = Sim::new(15, CLEAN, File::Synthetic(len));
    sim.caps.max_blksize = 1468;
    let mut client = ReadClient::new(File::Synthetic(len), &[("blksize", "1468"), ("windowsize", "1")]);
    assert_eq!(sim.run(&mut client), complete(len));
    assert!(client.wire_blocks_seen_zero_after_wrap);
    assert_eq!(sim.stats.data, blocks(len, 1468));
}

#[test]
fn option_edges_over_the_link() {
    let len = 40_000;
    // (options, whether an OACK comes back, blksize and window the client ends up with)
    type Opts<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Opts, bool, u64, u64); 9] = [
        (&[("blksize", "7")], false, 512, 1),
        (&[("blksize", "8")], true, 8, 1),
        (&[("blksize", "65464")], true, 1468, 1),
        (&[("blksize", "65465")], false, 512, 1),
        (&[("timeout", "0"), ("blksize", "600")], true, 600, 1),
        (&[("timeout", "1")], true, 512, 1),
        (&[("timeout", "255"), ("windowsize", "0")], true, 512, 1),
        (&[("timeout", "256"), ("windowsize", "65")], true, 512, 64),
        (&[("tsize", "0"), ("windowsize", "1")], true, 512, 1),
    ];
    for (i, (opts, oack, blksize, window)) in cases.into_iter().enumerate() {
        let mut sim = Sim::new(20 + i as u64, lossy(0.1), File::Synthetic(len));
        sim.caps.max_blksize = 1468;
        let mut client = ReadClient::new(File::Synthetic(len), opts);
        // With every option ignored the server starts with DATA 1, not an OACK (RFC 2347).
        client.wants_oack = oack;
        let outcome = sim.run(&mut client);
        assert!(
            matches!(outcome, Some(Outcome::Complete { bytes, .. }) if bytes == len),
            "case {i}: {outcome:?}"
        );
        assert_eq!(sim.stats.oack.is_some(), oack, "case {i}");
        assert_eq!((client.blksize, client.window), (blksize, window), "case {i}");
    }
}

#[test]
fn netascii_read_round_trip() {
    let text: Vec<u8> = b"line one\nline two\r\nbare\rcr\n".iter().copied().cycle().take(20_000).collect();
    let mut encoded = Vec::new();
    Encoder.encode(&text, &mut encoded);
    let mut sim = Sim::new(30, lossy(0.1), File::Bytes(text.clone()));
    sim.netascii_file = Some(encoded.clone());
    let mut client = ReadClient::new(File::Bytes(encoded.clone()), &[("tsize", "0"), ("blksize", "100")]);
    client.rrq = request(false, "motd.txt", "netascii", &[("tsize", "0"), ("blksize", "100")]);
    client.netascii = Some((Decoder::new(), Vec::new()));
    assert_eq!(sim.run(&mut client), complete(encoded.len() as u64));
    assert_eq!(client.oack_tsize, Some(encoded.len() as u64));
    assert_eq!(client.netascii.unwrap().1, text);
}

#[test]
fn wrq_under_loss_commits_exact_bytes() {
    for (seed, loss, window) in [(40, 0.1, "1"), (41, 0.2, "8"), (42, 0.3, "4"), (43, 0.2, "16")] {
        let data: Vec<u8> = (0..150_000 + seed).map(byte_at).collect();
        let mut sim = Sim::new(seed, lossy(loss), File::Synthetic(0));
        let mut client =
            WriteClient::new(File::Bytes(data.clone()), &[("blksize", "1000"), ("windowsize", window)]);
        assert_eq!(sim.run(&mut client), complete(data.len() as u64), "seed {seed}");
        assert!(sim.stats.committed);
        assert_eq!(sim.stats.disk, data, "seed {seed}");
        assert!(client.done && client.error.is_none());
    }
}

#[test]
fn wrq_without_options_rfc_1350() {
    for len in [0usize, 512, 1500] {
        let data: Vec<u8> = (0..len as u64).map(byte_at).collect();
        let mut sim = Sim::new(44, CLEAN, File::Synthetic(0));
        let mut client = WriteClient::new(File::Bytes(data.clone()), &[]);
        assert_eq!(sim.run(&mut client), complete(len as u64));
        assert_eq!(sim.stats.disk, data);
        assert_eq!(sim.stats.control, blocks(len as u64, 512) + 1, "ACK 0 plus one ACK per block");
    }
}

#[test]
fn wrq_netascii_decodes_across_blocks() {
    let text: Vec<u8> = b"a\r\nb\nc\r".iter().copied().cycle().take(5000).collect();
    let mut encoded = Vec::new();
    Encoder.encode(&text, &mut encoded);
    let mut sim = Sim::new(45, lossy(0.1), File::Synthetic(0));
    let mut client = WriteClient::new(File::Bytes(encoded.clone()), &[("blksize", "33")]);
    client.wrq = request(true, "notes.txt", "NETASCII", &[("blksize", "33")]);
    assert_eq!(sim.run(&mut client), complete(encoded.len() as u64));
    assert_eq!(sim.stats.netascii_disk.unwrap().1, text);
}

#[test]
fn wrq_quota_refused_by_tsize_and_enforced_without_it() {
    let data: Vec<u8> = (0..5000).map(byte_at).collect();
    // RFC 2349 tsize over the quota: ERROR 3 before any transfer exists.
    let mut sim = Sim::new(46, CLEAN, File::Synthetic(0));
    sim.caps.upload_quota = 4000;
    let mut client = WriteClient::new(File::Bytes(data.clone()), &[("tsize", "5000")]);
    assert_eq!(sim.run(&mut client), None);
    assert_eq!(sim.stats.refusal, Some(ErrorCode::DiskFull));
    assert_eq!(client.error, Some(ErrorCode::DiskFull as u16));
    // No tsize: the transfer stops with ERROR 3 at the block that crosses the quota.
    let mut sim = Sim::new(47, CLEAN, File::Synthetic(0));
    sim.settings.upload_quota = 4000;
    let mut client = WriteClient::new(File::Bytes(data), &[]);
    let outcome = sim.run(&mut client);
    assert!(matches!(
        outcome,
        Some(Outcome::Failed { reason: FailReason::Local { code: ErrorCode::DiskFull, .. } })
    ));
    assert_eq!(sim.stats.disk.len(), 3584, "seven whole blocks stored, the eighth refused");
    assert_eq!(client.error, Some(3));
    assert!(!sim.stats.committed);
}

fn negotiation(opts: &[(&str, &str)]) -> crate::tftp::Negotiation {
    let bytes = request(false, "f", "octet", opts);
    let req = crate::tftp::request::parse_request(&bytes).unwrap();
    negotiate(Direction::Read, &req.options, &ServerCaps::default(), Some(10_000)).unwrap()
}

fn drain(r: &mut ReadTransfer) -> Vec<Transmit> {
    std::iter::from_fn(|| r.poll_transmit()).collect()
}

#[test]
fn wrong_tid_gets_error_5_and_transfer_continues() {
    let now = Instant::now();
    let peer = addr(CLIENT);
    let stranger = addr("10.0.0.2:5001");
    let mut r = ReadTransfer::new(peer, &negotiation(&[]), 10_000, &TransferSettings::default(), now);
    assert!(matches!(drain(&mut r)[..], [Transmit::Data { block: 1, offset: 0, len: 512, .. }]));
    r.handle_datagram(stranger, &emit(&Repr::Ack { block: 1 }), now);
    let out = drain(&mut r);
    let [Transmit::Datagram { to, packet }] = out[..] else { panic!("{out:?}") };
    assert_eq!(to, stranger);
    assert_eq!(
        Repr::parse_bytes(packet.as_bytes()).unwrap(),
        Repr::Error { code: 5, message: b"unknown transfer ID" }
    );
    // An ERROR from a stranger is not answered and does not end the transfer.
    r.handle_datagram(stranger, &emit(&Repr::error(ErrorCode::NotDefined, "x")), now);
    assert!(drain(&mut r).is_empty() && r.outcome().is_none());
    // The real peer carries on.
    r.handle_datagram(peer, &emit(&Repr::Ack { block: 1 }), now);
    assert!(matches!(drain(&mut r)[..], [Transmit::Data { block: 2, offset: 512, .. }]));
}

#[test]
fn peer_error_mid_transfer_and_illegal_packets() {
    let now = Instant::now();
    let peer = addr(CLIENT);
    let settings = TransferSettings::default();
    let mut r = ReadTransfer::new(peer, &negotiation(&[]), 10_000, &settings, now);
    let _ = drain(&mut r);
    r.handle_datagram(peer, &emit(&Repr::error(ErrorCode::DiskFull, "full")), now);
    assert!(matches!(r.outcome(), Some(Outcome::Failed { reason: FailReason::PeerAborted { code: 3, .. } })));
    assert!(drain(&mut r).is_empty());
    // RFC 1350: a DATA sent to a reader is an illegal operation: ERROR 4 and end.
    let mut r = ReadTransfer::new(peer, &negotiation(&[]), 10_000, &settings, now);
    let _ = drain(&mut r);
    r.handle_datagram(peer, &emit(&Repr::Data { block: 1, data: b"x" }), now);
    let out = drain(&mut r);
    assert!(matches!(out[..], [Transmit::Datagram { .. }]));
    assert!(matches!(
        r.outcome(),
        Some(Outcome::Failed { reason: FailReason::Local { code: ErrorCode::IllegalOperation, .. } })
    ));
}

#[test]
fn window_slides_to_an_ack_inside_it() {
    // RFC 7440 §4: ACK 3 of a 1..=8 window restarts at 4; a later ACK 3 is a duplicate.
    let now = Instant::now();
    let peer = addr(CLIENT);
    let n = negotiation(&[("windowsize", "8")]);
    let mut r = ReadTransfer::new(peer, &n, 100_000, &TransferSettings::default(), now);
    assert_eq!(drain(&mut r).len(), 1, "only the OACK before ACK 0");
    r.handle_datagram(peer, &emit(&Repr::Ack { block: 0 }), now);
    assert_eq!(drain(&mut r).len(), 8);
    r.handle_datagram(peer, &emit(&Repr::Ack { block: 3 }), now);
    let out = drain(&mut r);
    assert_eq!(out.len(), 8);
    assert!(matches!(out[0], Transmit::Data { block: 4, .. }));
    r.handle_datagram(peer, &emit(&Repr::Ack { block: 3 }), now);
    assert!(drain(&mut r).is_empty(), "duplicate ACK must not resend");
    // Timeout resends from the first unacknowledged block.
    let t = r.poll_timeout().unwrap();
    r.handle_timeout(t);
    let out = drain(&mut r);
    assert!(matches!(out[0], Transmit::Data { block: 4, .. }) && out.len() == 8);
}

#[test]
fn write_abort_replaces_the_pending_ack() {
    let now = Instant::now();
    let peer = addr(CLIENT);
    let mut w = WriteTransfer::new(
        peer,
        &crate::tftp::Negotiation { values: Default::default(), oack: None },
        &TransferSettings::default(),
        now,
    );
    let first: Vec<_> = std::iter::from_fn(|| w.poll_transmit()).collect();
    assert!(matches!(first[..], [Transmit::Datagram { .. }]));
    let pkt = emit(&Repr::Data { block: 1, data: b"tail" });
    let chunk = w.handle_datagram(peer, &pkt, now).unwrap();
    assert_eq!((chunk.offset, &pkt[chunk.data.clone()], chunk.last), (0, &b"tail"[..], true));
    w.abort(ErrorCode::DiskFull, "disk full or allocation exceeded");
    let out: Vec<_> = std::iter::from_fn(|| w.poll_transmit()).collect();
    let [Transmit::Datagram { packet, .. }] = out[..] else { panic!("{out:?}") };
    assert!(matches!(Repr::parse_bytes(packet.as_bytes()), Ok(Repr::Error { code: 3, .. })));
}

#[test]
fn spoofed_request_with_long_timeout_is_still_bounded() {
    // RFC 2349 timeout 255 from an unproven client: still 1 + N packets, and extreme
    // settings cannot overflow the clock arithmetic.
    let now = Instant::now();
    let settings = TransferSettings {
        unproven_retransmits: 10,
        max_retransmit_time: Duration::MAX,
        ..Default::default()
    };
    let mut r = ReadTransfer::new(addr(CLIENT), &negotiation(&[("timeout", "255")]), 1 << 20, &settings, now);
    let mut sent = drain(&mut r).len();
    while let Some(t) = r.poll_timeout() {
        r.handle_timeout(t);
        sent += drain(&mut r).len();
    }
    assert!((2..=11).contains(&sent), "{sent}");
    assert_eq!(r.outcome(), Some(Outcome::Failed { reason: FailReason::Unproven }));
}

#[test]
fn acks_for_blocks_not_yet_sent_are_ignored() {
    // RFC 1350 window 1: only DATA 1 is out; ACK 2 (or any later block) asks for nothing.
    let now = Instant::now();
    let peer = addr(CLIENT);
    let mut r = ReadTransfer::new(peer, &negotiation(&[]), 10_000, &TransferSettings::default(), now);
    let _ = drain(&mut r);
    for block in [2, 9, 65535] {
        r.handle_datagram(peer, &emit(&Repr::Ack { block }), now);
        assert!(drain(&mut r).is_empty() && r.outcome().is_none(), "ACK {block} before ACK 1");
    }
    r.handle_datagram(peer, &emit(&Repr::Ack { block: 1 }), now);
    r.handle_datagram(peer, &emit(&Repr::Ack { block: 3 }), now);
    let out = drain(&mut r);
    assert!(matches!(out[..], [Transmit::Data { block: 2, .. }]), "{out:?}");
    // With an OACK, only ACK 0 opens the transfer.
    let mut r =
        ReadTransfer::new(peer, &negotiation(&[("blksize", "1024")]), 10_000, &Default::default(), now);
    let _ = drain(&mut r);
    r.handle_datagram(peer, &emit(&Repr::Ack { block: 1 }), now);
    assert!(drain(&mut r).is_empty());
    r.handle_datagram(peer, &emit(&Repr::Ack { block: 0 }), now);
    assert!(matches!(drain(&mut r)[..], [Transmit::Data { block: 1, len: 1024, .. }]));
}

fn write_transfer(opts: &[(&str, &str)], now: Instant) -> WriteTransfer {
    let bytes = request(true, "f", "octet", opts);
    let req = crate::tftp::request::parse_request(&bytes).unwrap();
    let n = negotiate(Direction::Write, &req.options, &ServerCaps::default(), None).unwrap();
    let mut w = WriteTransfer::new(addr(CLIENT), &n, &TransferSettings::default(), now);
    assert_eq!(std::iter::from_fn(|| w.poll_transmit()).count(), 1, "one OACK or ACK 0");
    w
}

#[test]
fn wrq_data_over_the_negotiated_block_size_is_error_4() {
    let now = Instant::now();
    for (opts, len) in [(&[][..], 513), (&[("blksize", "1024")][..], 1025)] {
        let mut w = write_transfer(opts, now);
        let pkt = emit(&Repr::Data { block: 1, data: &vec![7u8; len] });
        assert_eq!(w.handle_datagram(addr(CLIENT), &pkt, now), None);
        let out: Vec<_> = std::iter::from_fn(|| w.poll_transmit()).collect();
        let [Transmit::Datagram { packet, .. }] = out[..] else { panic!("{out:?}") };
        assert!(matches!(Repr::parse_bytes(packet.as_bytes()), Ok(Repr::Error { code: 4, .. })));
        assert!(matches!(w.outcome(), Some(Outcome::Failed { .. })));
    }
}

#[test]
fn wrq_repeated_data_is_acked_once_and_never_stored_twice() {
    let now = Instant::now();
    let peer = addr(CLIENT);
    let mut w = write_transfer(&[], now);
    let block1 = emit(&Repr::Data { block: 1, data: &[1u8; 512] });
    assert!(w.handle_datagram(peer, &block1, now).is_some());
    let acks = |w: &mut WriteTransfer| std::iter::from_fn(|| w.poll_transmit()).count();
    assert_eq!(acks(&mut w), 1);
    // The client missed ACK 1 and repeats DATA 1 three times: one re-ACK, nothing stored.
    for _ in 0..3 {
        assert_eq!(w.handle_datagram(peer, &block1, now), None);
    }
    assert_eq!(acks(&mut w), 1);
    // A DATA from the future is not stored either.
    assert_eq!(w.handle_datagram(peer, &emit(&Repr::Data { block: 5, data: b"x" }), now), None);
    let chunk = w.handle_datagram(peer, &emit(&Repr::Data { block: 2, data: b"end" }), now).unwrap();
    assert_eq!((chunk.offset, chunk.last), (512, true));
}

#[test]
fn wrq_settles_with_the_final_ack_and_dallies_on() {
    // RFC 1350 §6: after the final ACK the server dallies to re-ACK a repeated last DATA.
    // The outcome is settled from the moment that ACK went out (the io layer then frees the
    // client's TID for new requests), and nothing during the dally can turn it into a failure.
    let now = Instant::now();
    let peer = addr(CLIENT);
    let mut w = write_transfer(&[], now);
    let last = emit(&Repr::Data { block: 1, data: b"tail" });
    assert!(w.handle_datagram(peer, &last, now).unwrap().last);
    assert!(!w.settled(), "the final ACK is not out yet: a failed commit still aborts");
    assert_eq!(std::iter::from_fn(|| w.poll_transmit()).count(), 1);
    assert!(w.settled() && w.outcome().is_none(), "settled, still dallying");
    // A repeated last DATA is ACKed again; the dally ends complete.
    assert_eq!(w.handle_datagram(peer, &last, now), None);
    assert_eq!(std::iter::from_fn(|| w.poll_transmit()).count(), 1);
    // A shutdown during the dally ends it quietly: no ERROR after the final ACK.
    w.abort(ErrorCode::NotDefined, "server shutting down");
    assert_eq!(std::iter::from_fn(|| w.poll_transmit()).count(), 0);
    assert_eq!(w.outcome(), Some(Outcome::Complete { bytes: 4, confirmed: true }));
    // Without an abort the dally timer ends it the same way.
    let mut w = write_transfer(&[], now);
    assert!(w.handle_datagram(peer, &last, now).is_some());
    let _ = std::iter::from_fn(|| w.poll_transmit()).count();
    let t = w.poll_timeout().unwrap();
    w.handle_timeout(t);
    assert_eq!(w.outcome(), Some(Outcome::Complete { bytes: 4, confirmed: true }));
}
