//! The bodies of the fuzz targets, one function per peer-facing parser. Each takes the raw
//! input, must never panic on any of it, and asserts what the parser promises. Shared by the
//! cargo-fuzz targets (`tests/fuzz/fuzz_targets/*.rs`, run by `tests/fuzz/run.sh`) and by
//! `tests/fuzz_props.rs`, which runs every body under proptest in each test run.
//!
//! Inputs with structure read it front to back through [`Input`]; past the end every byte
//! reads as 0, so any input is a valid one. The [`op`] codes drive the transfer targets.

use ferry::binder::proto::{BindRequest, BindResponse, REQUEST_LEN, RESPONSE_LEN};
use ferry::config::Config;
use ferry::ftp::command::{self, Command};
use ferry::ftp::line::{Line, LineReader};
use ferry::observe::http::{self, Route};
use ferry::tftp::options::{negotiate, Direction, Negotiation, RequestedOptions, ServerCaps};
use ferry::tftp::request::{normalize_path, parse_request, plan, AccessPolicy};
use ferry::tftp::wire::{ErrorCode, OptionList, Repr, MAX_REQUEST_LEN};
use ferry::tftp::{BlockWrap, Outcome, ReadTransfer, TransferSettings, Transmit, WriteTransfer};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

/// Fuzz input read front to back; past its end every byte reads as 0.
pub struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input(data)
    }

    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// The next `n` bytes, fewer at the end.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

// ---------------------------------------------------------------------------------------
// FTP control channel
// ---------------------------------------------------------------------------------------

/// Largest number of chunk boundaries [`ftp_line`] reads from its input.
pub const LINE_MAX_SPLITS: u8 = 16;

/// `LineReader::push`: input is `[limit, n, n chunk lengths..., stream...]`. The stream fed
/// whole and fed in those chunks yields the same lines; the reader never holds more than its
/// limit; without Telnet IAC bytes the lines are the stream split at LF, too-long ones
/// replaced by `TooLong`.
pub fn ftp_line(data: &[u8]) {
    let mut input = Input::new(data);
    // Small limits reach the overlong path often; the reader raises any limit below 3.
    let max = 3 + usize::from(input.u8());
    let splits = input.u8() % (LINE_MAX_SPLITS + 1);
    let lens: Vec<usize> = (0..splits).map(|_| usize::from(input.u8())).collect();
    let stream = input.take(usize::MAX);

    let whole = read_lines(max, std::iter::once(stream));
    let mut rest = stream;
    let mut chunks = Vec::new();
    for len in lens {
        let (chunk, after) = rest.split_at(len.min(rest.len()));
        chunks.push(chunk);
        rest = after;
    }
    chunks.push(rest);
    assert_eq!(read_lines(max, chunks.into_iter()), whole, "lines depend on how the stream was split");

    for line in &whole {
        if let Line::Command(text) = line {
            assert!(text.len() < max, "a line of {} bytes passed the limit {max}", text.len());
        }
    }
    if !stream.contains(&0xff) {
        assert_eq!(whole, reference_lines(max, stream), "lines differ from the plain LF split");
    }
}

fn read_lines<'a>(max: usize, chunks: impl Iterator<Item = &'a [u8]>) -> Vec<Line> {
    let mut reader = LineReader::new(max);
    let mut out = Vec::new();
    for chunk in chunks {
        reader.push(chunk, |l| out.push(l));
        assert!(reader.buffered() <= max, "{} bytes buffered with limit {max}", reader.buffered());
    }
    out
}

/// RFC 959 lines of a stream without Telnet commands: LF ends a line, one CR before it is
/// dropped, NUL reads as LF, a line of `max` bytes or more (before its LF) is too long.
fn reference_lines(max: usize, stream: &[u8]) -> Vec<Line> {
    let mut pieces: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    pieces.pop(); // the unterminated rest
    pieces
        .into_iter()
        .map(|p| {
            if p.len() >= max {
                return Line::TooLong;
            }
            let p = p.strip_suffix(b"\r").unwrap_or(p);
            Line::Command(p.iter().map(|&b| if b == 0 { b'\n' } else { b }).collect())
        })
        .collect()
}

/// `command::parse`: every error has a reply code the session knows and a one-line reply;
/// parsed arguments keep their promises; the verb's case and stray non-letters before it
/// change nothing.
pub fn ftp_command(line: &[u8]) {
    let parsed = command::parse(line);
    match &parsed {
        Err(e) => {
            let reply = e.reply();
            assert!(matches!(reply.code, 500 | 501 | 502 | 504 | 522), "{e:?} -> {}", reply.code);
            let wire = reply.to_bytes();
            assert!(wire.ends_with(b"\r\n") && !wire[..wire.len() - 2].contains(&b'\n'), "{wire:?}");
        }
        Ok(cmd) => {
            let _ = (cmd.is_out_of_band(), cmd.keeps_restart_offset(), cmd.allowed_before_login());
            match cmd {
                Command::Port(a) | Command::Eprt(a) => assert_ne!(a.port(), 0, "{cmd:?}"),
                Command::Rest(n) => assert!(i64::try_from(*n).is_ok(), "{cmd:?}"),
                Command::User(p)
                | Command::Cwd(p)
                | Command::Retr(p)
                | Command::Stor(p)
                | Command::Appe(p)
                | Command::Rnfr(p)
                | Command::Rnto(p)
                | Command::Dele(p)
                | Command::Mkd(p)
                | Command::Rmd(p)
                | Command::Size(p)
                | Command::Mdtm(p)
                | Command::Host(p)
                | Command::Mfmt { path: p, .. } => assert!(!p.is_empty(), "{cmd:?}"),
                _ => {}
            }
        }
    }
    // Verbs are letters and compare ignoring case.
    let start = line.iter().position(u8::is_ascii_alphabetic).unwrap_or(line.len());
    let end = line[start..].iter().position(|&b| b == b' ').map_or(line.len(), |i| start + i);
    let mut flipped = line.to_vec();
    for b in &mut flipped[start..end] {
        *b = if b.is_ascii_uppercase() { b.to_ascii_lowercase() } else { b.to_ascii_uppercase() };
    }
    let reparsed = command::parse(&flipped);
    match (&parsed, &reparsed) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "verb case changed the command"),
        (Err(a), Err(b)) => assert_eq!(a.reply().code, b.reply().code, "verb case changed the error"),
        _ => panic!("verb case changed the outcome: {parsed:?} vs {reparsed:?}"),
    }
    // Stray Telnet bytes before the verb are skipped.
    let prefixed = [&b"\xf2\xff \x00"[..], line].concat();
    assert_eq!(command::parse(&prefixed), parsed, "a non-letter prefix changed the parse");
}

// ---------------------------------------------------------------------------------------
// TFTP requests and options
// ---------------------------------------------------------------------------------------

/// `parse_request` and `plan`: input is `[policy, datagram...]`. A request is planned only
/// when it parses and the policy admits the client; a parsed path is relative, normalized and
/// free of `..`; a refusal is an ERROR that parses; negotiating its options never fails for
/// an RRQ, and any OACK is a valid one.
pub fn tftp_request(data: &[u8]) {
    let Some((&sel, bytes)) = data.split_first() else { return };
    let net = |s: &str| vec![s.parse().expect("literal network")];
    let policy = AccessPolicy {
        read_allow: if sel & 1 != 0 { net("192.0.2.0/24") } else { vec![] },
        read_deny: if sel & 2 != 0 { net("198.51.100.0/24") } else { vec![] },
        write_enabled: sel & 4 != 0,
        overwrite: sel & 8 != 0,
        write_allow: if sel & 16 != 0 { net("2001:db8::/32") } else { vec![] },
        write_deny: if sel & 32 != 0 { net("192.0.2.128/25") } else { vec![] },
    };
    let client: IpAddr = match sel >> 6 {
        0 => "192.0.2.200".parse(),
        1 => "198.51.100.7".parse(),
        2 => "::ffff:192.0.2.9".parse(),
        _ => "2001:db8::1".parse(),
    }
    .expect("literal address");

    let parsed = parse_request(bytes);
    let planned = plan(client, bytes, &policy);
    match (&parsed, &planned) {
        (Err(a), Err(b)) => assert_eq!(a, b, "plan refused differently from parse_request"),
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Ok(_), Err(r)) => assert_eq!(r.code, ErrorCode::AccessViolation, "{r:?}"),
        (Err(_), Ok(_)) => panic!("plan accepted what parse_request refused"),
    }
    match parsed {
        Err(refusal) => {
            assert!(
                matches!(
                    refusal.code,
                    ErrorCode::IllegalOperation
                        | ErrorCode::OptionNegotiation
                        | ErrorCode::FileNotFound
                        | ErrorCode::AccessViolation
                ),
                "{refusal:?}"
            );
            let datagram = refusal.datagram();
            let repr = Repr::parse_bytes(datagram.as_bytes()).expect("the refusal parses");
            assert!(matches!(repr, Repr::Error { code, .. } if code == refusal.code as u16));
        }
        Ok(request) => {
            let op = u16::from_be_bytes([bytes[0], bytes[1]]);
            let direction = if op == 1 { Direction::Read } else { Direction::Write };
            assert!(matches!(op, 1 | 2) && request.direction == direction, "{op} -> {request:?}");
            assert!(bytes.len() <= MAX_REQUEST_LEN);
            let path = request.path.as_os_str().as_bytes();
            assert!(!path.is_empty() && !path.contains(&0) && !path.contains(&b'\\'), "{path:?}");
            assert!(
                path.split(|&b| b == b'/').all(|c| !matches!(c, b"" | b"." | b"..")),
                "path not normalized: {:?}",
                request.path
            );
            assert_eq!(normalize_path(path).as_ref(), Ok(&request.path), "normalizing twice differs");
            for file_size in [None, Some(bytes.len() as u64)] {
                match negotiate(request.direction, &request.options, &ServerCaps::default(), file_size) {
                    Ok(n) => check_oack(&n),
                    Err(r) => {
                        assert_eq!(request.direction, Direction::Write, "an RRQ's options refused: {r:?}");
                        assert_eq!(r.code, ErrorCode::DiskFull);
                    }
                }
            }
        }
    }
}

/// Option names [`tftp_options`] picks from; the rest of a name byte's range is random text.
pub const OPTION_NAMES: [&str; 6] = ["blksize", "timeout", "tsize", "windowsize", "BlkSize", "WINDOWSIZE"];

/// `RequestedOptions::from_list` and `negotiate`: input is
/// `[flags, max_blksize:2, max_windowsize:2, quota:8, file_size:8, options...]`, the options
/// NUL-separated name/value strings (a one-byte string 1..=6 stands for a known name). Granted
/// values stay inside the caps and the RFC ranges, the OACK echoes exactly them, and the
/// only refusal is a WRQ `tsize` over the quota.
pub fn tftp_options(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.u8();
    let direction = if flags & 1 != 0 { Direction::Write } else { Direction::Read };
    // Caps within the configuration's bounds (tftp.max_blksize 8..=65464, windows 1..).
    let caps = ServerCaps {
        max_blksize: input.u16().clamp(8, 65464),
        max_windowsize: input.u16().max(1),
        upload_quota: u64::from_be_bytes(std::array::from_fn(|_| input.u8())),
    };
    let file_size = u64::from_be_bytes(std::array::from_fn(|_| input.u8()));
    let file_size = (flags & 2 != 0).then_some(file_size);
    let rest = input.take(usize::MAX);

    let mut strings = rest.split(|&b| b == 0).map(|s| match s {
        [i] if (1..=OPTION_NAMES.len()).contains(&usize::from(*i)) => {
            OPTION_NAMES[usize::from(*i) - 1].as_bytes()
        }
        s => s,
    });
    let mut list = OptionList::new();
    while let (Some(name), Some(value)) = (strings.next(), strings.next()) {
        if list.push(name, value).is_err() && list.len() == ferry::tftp::wire::MAX_OPTIONS {
            break;
        }
    }
    let requested = RequestedOptions::from_list(&list);
    let first = |name: &str| list.as_slice().iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()));
    let decimal = |v: &[u8]| ferry::tftp::options::parse_decimal(v);
    match negotiate(direction, &requested, &caps, file_size) {
        Err(r) => {
            assert_eq!((direction, r.code), (Direction::Write, ErrorCode::DiskFull), "{r:?}");
            let tsize = first("tsize").and_then(|(_, v)| decimal(v));
            assert!(tsize.is_some_and(|t| t > caps.upload_quota), "refused without a tsize over the quota");
        }
        Ok(n) => {
            let v = n.values;
            let blksize_cap = caps.max_blksize.min(ferry::tftp::options::MAX_BLKSIZE);
            assert!(v.blksize == 512 || (8..=blksize_cap).contains(&v.blksize), "{v:?} {caps:?}");
            assert!((1..=caps.max_windowsize).contains(&v.windowsize), "{v:?} {caps:?}");
            assert!(v.timeout_secs.is_none_or(|t| t >= 1), "{v:?}");
            match direction {
                Direction::Read => assert!(v.tsize.is_none() || v.tsize == file_size, "{v:?}"),
                Direction::Write => assert!(v.tsize.is_none_or(|t| t <= caps.upload_quota), "{v:?}"),
            }
            // The first occurrence of each name decides, whatever its case.
            if first("blksize").is_none() {
                assert_eq!(v.blksize, 512);
            }
            if first("windowsize").is_none() {
                assert_eq!(v.windowsize, 1);
            }
            check_oack(&n);
        }
    }
}

/// The OACK, when there is one, parses, names each known option at most once, and carries
/// exactly the negotiated values.
fn check_oack(n: &Negotiation) {
    let Some(oack) = n.oack else {
        assert_eq!(n.values, ferry::tftp::Negotiated::default(), "values granted without an OACK");
        return;
    };
    assert!(oack.as_bytes().len() <= MAX_REQUEST_LEN);
    let Ok(Repr::Oack { options }) = Repr::parse_bytes(oack.as_bytes()) else { panic!("bad OACK {oack:?}") };
    assert!(!options.is_empty());
    let value = |name: &str| options.get(name).map(|v| std::str::from_utf8(v).expect("digits").to_string());
    let v = n.values;
    assert_eq!(value("blksize").unwrap_or_else(|| "512".into()), v.blksize.to_string());
    assert_eq!(value("windowsize").unwrap_or_else(|| "1".into()), v.windowsize.to_string());
    for (i, (name, _)) in options.as_slice().iter().enumerate() {
        assert!(OPTION_NAMES[..4].iter().any(|k| k.as_bytes() == *name), "unknown name in the OACK");
        assert!(!options.as_slice()[..i].iter().any(|(m, _)| m == name), "repeated name in the OACK");
    }
    assert_eq!(value("timeout"), v.timeout_secs.map(|t| t.to_string()));
    assert_eq!(value("tsize"), v.tsize.map(|t| t.to_string()));
}

// ---------------------------------------------------------------------------------------
// TFTP transfers
// ---------------------------------------------------------------------------------------

/// Event codes of the transfer targets (an input byte modulo [`op::COUNT`]).
pub mod op {
    /// `[shape]`: the next datagram of a correct client: ACK of the newest in-order block,
    /// or the next DATA, a short (last) one of `shape` bytes when `shape` < 32.
    pub const REPLY: u8 = 0;
    /// `[shape]`: the correct datagram, held back (at most 4 held; then sent at once).
    pub const HOLD: u8 = 5;
    /// Sends held datagram `[index]` late: reordering.
    pub const RELEASE: u8 = 6;
    /// Sends the last datagram again.
    pub const DUPLICATE: u8 = 7;
    /// `[delta: i8, len]`: a near miss, `delta` off the correct block number (DATA of
    /// `len` modulo blksize+2 bytes: one over the block size now and then).
    pub const NUDGE: u8 = 8;
    /// `[len, bytes...]` from the peer: garbage.
    pub const RAW: u8 = 9;
    /// `[shape]`: the correct datagram from another port (a stray transfer ID).
    pub const STRAY: u8 = 10;
    /// `[t]`: t < 128 jumps to the transfer's deadline, else waits (t-128) x 100 ms;
    /// then fires the timer.
    pub const TIME: u8 = 11;
    /// `[code]`: an ERROR from the peer.
    pub const ERROR: u8 = 12;
    /// `[x]`: the io layer aborts when x < 8.
    pub const ABORT: u8 = 13;
    /// Number of codes; 1..=4 also mean REPLY.
    pub const COUNT: u8 = 14;
}

/// Events read per input at most.
const MAX_EVENTS: usize = 2000;
/// Timer rounds after the input ends before a silent transfer must have ended.
const MAX_SILENT_ROUNDS: usize = 1000;

/// Bytes [`transfer_setup`] reads.
pub const SETUP_LEN: usize = 16;

const PEER: &str = "192.0.2.2:5000";
const STRAY: &str = "192.0.2.2:5001";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

/// Transfer set-up read from the input, [`SETUP_LEN`] bytes: `[flags, max_blksize-8,
/// max_windowsize-1, quota:2, blksize:2, timeout, tsize:2, windowsize, base timeout,
/// give-up, unproven, final, dally]`; flag bits 0-3 ask blksize, timeout, tsize,
/// windowsize; bit 4 wraps to 1. `None` when the options are refused.
fn transfer_setup(
    input: &mut Input<'_>,
    direction: Direction,
    file_size: Option<u64>,
) -> Option<(Negotiation, TransferSettings)> {
    let flags = input.u8();
    let caps = ServerCaps {
        max_blksize: 8 + u16::from(input.u8()),
        max_windowsize: 1 + u16::from(input.u8() % 16),
        upload_quota: u64::from(input.u16()),
    };
    // In OPTION_NAMES order: blksize, timeout, tsize, windowsize.
    let values =
        [input.u16().to_string(), input.u8().to_string(), input.u16().to_string(), input.u8().to_string()];
    let mut list = OptionList::new();
    for (bit, (name, value)) in OPTION_NAMES.iter().zip(&values).enumerate() {
        if flags & (1 << bit) != 0 {
            list.push(name.as_bytes(), value.as_bytes()).expect("short option");
        }
    }
    let negotiation = negotiate(direction, &RequestedOptions::from_list(&list), &caps, file_size).ok()?;
    let timeout = Duration::from_secs(1 + u64::from(input.u8() % 4));
    let settings = TransferSettings {
        timeout,
        max_retransmit_time: timeout + Duration::from_secs(u64::from(input.u8() % 30)),
        unproven_retransmits: u32::from(input.u8() % 5),
        final_retransmits: u32::from(input.u8() % 5),
        dally: Duration::from_secs(u64::from(input.u8() % 8)),
        block_wrap: if flags & 16 != 0 { BlockWrap::One } else { BlockWrap::Zero },
        upload_quota: caps.upload_quota,
    };
    Some((negotiation, settings))
}

/// The calls `ReadTransfer` and `WriteTransfer` answer alike.
trait Transfer {
    fn handle_timeout(&mut self, now: Instant);
    fn poll_timeout(&self) -> Option<Instant>;
    fn poll_transmit(&mut self) -> Option<Transmit>;
    fn outcome(&self) -> Option<Outcome>;
    fn abort(&mut self, code: ErrorCode, message: &'static str);
}

macro_rules! transfer {
    ($($t:ty),*) => {$(
        impl Transfer for $t {
            fn handle_timeout(&mut self, now: Instant) {
                <$t>::handle_timeout(self, now)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                <$t>::poll_timeout(self)
            }
            fn poll_transmit(&mut self) -> Option<Transmit> {
                <$t>::poll_transmit(self)
            }
            fn outcome(&self) -> Option<Outcome> {
                <$t>::outcome(self)
            }
            fn abort(&mut self, code: ErrorCode, message: &'static str) {
                <$t>::abort(self, code, message)
            }
        }
    )*};
}

transfer!(ReadTransfer, WriteTransfer);

/// A transfer and the client model talking to it, as [`drive`] plays them.
trait Driven {
    type T: Transfer;
    fn transfer(&self) -> &Self::T;
    fn transfer_mut(&mut self) -> &mut Self::T;
    /// Feeds a datagram (checking what the transfer hands back).
    fn datagram(&mut self, from: SocketAddr, bytes: &[u8], now: Instant);
    /// Checks one transmit and lets the client model see it.
    fn sent(&mut self, tx: Transmit);
    /// Most transmits one input may cause.
    fn max_burst(&self) -> usize;
    /// The correct client's next datagram; reads its shape byte.
    fn reply(&mut self, input: &mut Input<'_>) -> Vec<u8>;
    /// A near miss: block number `delta` off the correct one; reads a length byte.
    fn nudge(&mut self, delta: i16, input: &mut Input<'_>) -> Vec<u8>;
    /// Checks that must hold after every event.
    fn consistent(&mut self);

    fn timeout(&mut self, now: Instant) {
        self.transfer_mut().handle_timeout(now);
    }
    fn abort(&mut self) {
        self.transfer_mut().abort(ErrorCode::NotDefined, "fuzz abort");
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.transfer().poll_timeout()
    }
    fn outcome(&self) -> Option<Outcome> {
        self.transfer().outcome()
    }
    /// Drains `poll_transmit`, checking each; returns the count.
    fn drain(&mut self) -> usize {
        let mut n = 0;
        while let Some(tx) = self.transfer_mut().poll_transmit() {
            n += 1;
            assert!(n <= 100_000, "poll_transmit never ends");
            self.sent(tx);
        }
        n
    }
}

fn emit(repr: &Repr<'_>) -> Vec<u8> {
    let mut v = vec![0; repr.buffer_len()];
    repr.emit(&mut v).expect("sized buffer");
    v
}

/// Plays the input's events against `t`, then lets it run silent: returns how it ended.
/// Checked throughout: the burst after each event is bounded, a running transfer always
/// has a deadline, an outcome never changes and silences the transfer, and silence ends a
/// transfer within its give-up time.
fn drive(t: &mut impl Driven, input: &mut Input<'_>, settings: &TransferSettings) -> Outcome {
    let (peer, stray) = (addr(PEER), addr(STRAY));
    let mut now = Instant::now();
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut last: Vec<u8> = Vec::new();
    let mut outcome: Option<Outcome> = None;
    settle(t, now, &mut outcome, settings);
    for _ in 0..MAX_EVENTS {
        if input.is_empty() {
            break;
        }
        match input.u8() % op::COUNT {
            op::HOLD if held.len() < 4 => held.push(t.reply(input)),
            op::RELEASE if !held.is_empty() => {
                last = held.remove(usize::from(input.u8()) % held.len());
                t.datagram(peer, &last, now);
            }
            op::DUPLICATE => t.datagram(peer, &last, now),
            op::NUDGE => {
                let delta = i16::from(input.u8() as i8);
                last = t.nudge(delta, input);
                t.datagram(peer, &last, now);
            }
            op::RAW => {
                let len = usize::from(input.u8());
                last = input.take(len).to_vec();
                t.datagram(peer, &last, now);
            }
            op::STRAY => {
                let d = t.reply(input);
                t.datagram(stray, &d, now);
            }
            op::TIME => {
                let step = input.u8();
                if step < 128 {
                    now = now.max(t.poll_timeout().unwrap_or(now));
                } else {
                    now += Duration::from_millis(100 * u64::from(step - 128));
                }
                t.timeout(now);
            }
            op::ERROR => {
                let code = u16::from(input.u8() % 10);
                t.datagram(peer, &emit(&Repr::Error { code, message: b"fuzz" }), now);
            }
            op::ABORT => {
                if input.u8() < 8 {
                    t.abort();
                }
            }
            _ => {
                last = t.reply(input);
                t.datagram(peer, &last, now);
            }
        }
        settle(t, now, &mut outcome, settings);
    }

    // Silence: timers alone must end the transfer, within its give-up time.
    let quiet = now;
    let rounds = settings.unproven_retransmits + settings.final_retransmits + 2;
    let limit = settings.max_retransmit_time + settings.dally + settings.timeout * rounds;
    for _ in 0..MAX_SILENT_ROUNDS {
        if let Some(o) = t.outcome() {
            settle(t, now, &mut outcome, settings);
            // Once ended, nothing more goes out, whoever sends what.
            t.datagram(peer, &last, now);
            t.datagram(stray, &last, now);
            t.timeout(now + limit);
            assert_eq!(t.drain(), 0, "an ended transfer still sends");
            assert_eq!(t.poll_timeout(), None, "an ended transfer still has a deadline");
            return o;
        }
        now = now.max(t.poll_timeout().expect("a running transfer without a deadline"));
        assert!(now - quiet <= limit, "still running {:?} after the peer fell silent", now - quiet);
        t.timeout(now);
        settle(t, now, &mut outcome, settings);
    }
    panic!("{MAX_SILENT_ROUNDS} timer rounds without an outcome");
}

/// Checks after each event: a bounded burst, a consistent transfer, an outcome that never
/// changes once set, and a running transfer's deadline set and within its give-up time.
fn settle(t: &mut impl Driven, now: Instant, outcome: &mut Option<Outcome>, settings: &TransferSettings) {
    let n = t.drain();
    assert!(n <= t.max_burst(), "{n} transmits in one burst");
    t.consistent();
    match (&*outcome, t.outcome()) {
        (Some(before), after) => assert_eq!(Some(before), after.as_ref(), "the outcome changed"),
        (None, Some(o)) => *outcome = Some(o),
        (None, None) => {
            let deadline = t.poll_timeout().expect("a running transfer without a deadline");
            let horizon = settings.max_retransmit_time + settings.dally + settings.timeout;
            assert!(deadline <= now + horizon, "deadline {:?} ahead", deadline - now);
        }
    }
}

/// Checks a datagram the server sent outside the DATA stream: to the peer, the greeting or
/// `expected` or an ERROR; to anyone else, only ERROR 5.
fn check_control(to: SocketAddr, bytes: &[u8], greeting: Option<&[u8]>, ack: Option<u16>) {
    let repr = Repr::parse_bytes(bytes).expect("the server sent a malformed datagram");
    if to != addr(PEER) {
        assert_eq!(to, addr(STRAY));
        assert!(matches!(repr, Repr::Error { code: 5, .. }), "{repr:?} to a stray port");
        return;
    }
    match repr {
        Repr::Error { code, .. } => assert!(code <= 8, "ERROR {code}"),
        _ if greeting == Some(bytes) => {}
        Repr::Ack { block } if ack.is_some() => assert_eq!(Some(block), ack, "ACK of a block not received"),
        other => panic!("unexpected {other:?} to the peer"),
    }
}

/// The RRQ sender and an RFC 1350/7440 client that ACKs the newest in-order block.
struct ReadSide {
    t: ReadTransfer,
    negotiation: Negotiation,
    wrap: BlockWrap,
    file_len: u64,
    blksize: u64,
    /// In-order blocks the client holds.
    got: u64,
    acknowledged: u64,
}

impl Driven for ReadSide {
    type T = ReadTransfer;
    fn transfer(&self) -> &ReadTransfer {
        &self.t
    }
    fn transfer_mut(&mut self) -> &mut ReadTransfer {
        &mut self.t
    }
    fn datagram(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) {
        self.t.handle_datagram(from, bytes, now);
    }
    fn sent(&mut self, tx: Transmit) {
        match tx {
            Transmit::Data { to, block, offset, len } => {
                assert_eq!(to, addr(PEER));
                let len = len as u64;
                assert!(len <= self.blksize && offset % self.blksize == 0, "{tx:?}");
                assert!(offset + len <= self.file_len, "{tx:?} past the end {}", self.file_len);
                assert!(len == self.blksize || offset + len == self.file_len, "short block mid-file");
                let abs = offset / self.blksize + 1;
                assert_eq!(block, self.wrap.wire(abs), "{tx:?}");
                // RFC 7440: never past the window after the acknowledged block.
                let acked = self.t.bytes_acknowledged() / self.blksize;
                let window = u64::from(self.negotiation.values.windowsize);
                assert!(abs <= acked + window, "{tx:?} past the window");
                if abs == self.got + 1 {
                    self.got = abs;
                }
            }
            Transmit::Datagram { to, packet } => {
                let oack = self.negotiation.oack;
                check_control(to, packet.as_bytes(), oack.as_ref().map(|o| o.as_bytes()), None);
            }
        }
    }
    fn max_burst(&self) -> usize {
        usize::from(self.negotiation.values.windowsize) + 1
    }
    fn reply(&mut self, input: &mut Input<'_>) -> Vec<u8> {
        input.u8(); // the shape byte, for DATA only
        emit(&Repr::Ack { block: self.wrap.wire(self.got) })
    }
    fn nudge(&mut self, delta: i16, input: &mut Input<'_>) -> Vec<u8> {
        input.u8(); // the length byte, for DATA only
        emit(&Repr::Ack { block: self.wrap.wire(self.got).wrapping_add_signed(delta) })
    }
    fn consistent(&mut self) {
        let acked = self.t.bytes_acknowledged();
        assert!(acked <= self.file_len && acked >= self.acknowledged, "acknowledged {acked}");
        self.acknowledged = acked;
        if let Some(Outcome::Complete { bytes, confirmed: true }) = self.t.outcome() {
            assert_eq!((bytes, acked), (self.file_len, self.file_len));
        }
        if self.t.outcome() == Some(Outcome::OptionsDeclined) {
            assert!(self.negotiation.oack.is_some());
        }
    }
}

/// `ReadTransfer` against `[file_len:2, set-up (see transfer_setup), events...]` (see
/// [`op`]): DATA stays inside the file and the window, the client is never sent what it
/// did not ask for, and silence ends the transfer. Returns its outcome.
pub fn tftp_read_transfer(data: &[u8]) -> Option<Outcome> {
    let mut input = Input::new(data);
    let file_len = u64::from(input.u16());
    let (negotiation, settings) = transfer_setup(&mut input, Direction::Read, Some(file_len))?;
    let t = ReadTransfer::new(addr(PEER), &negotiation, file_len, &settings, Instant::now());
    let mut side = ReadSide {
        t,
        negotiation,
        wrap: settings.block_wrap,
        file_len,
        blksize: u64::from(negotiation.values.blksize),
        got: 0,
        acknowledged: 0,
    };
    let outcome = drive(&mut side, &mut input, &settings);
    Some(outcome)
}

/// The WRQ receiver and a client that sends the next block (a short one when the input says).
struct WriteSide {
    t: WriteTransfer,
    negotiation: Negotiation,
    wrap: BlockWrap,
    blksize: usize,
    window: u64,
    quota: u64,
    /// Payload bytes and blocks the server handed back to store.
    stored: u64,
    blocks: u64,
    last_stored: bool,
    /// Newest block the server acknowledged, and newest the client sent.
    acked: u64,
    sent: u64,
}

impl WriteSide {
    fn data(&self, block: u16, len: usize) -> Vec<u8> {
        let payload = vec![0x5a; len];
        emit(&Repr::Data { block, data: &payload })
    }
}

impl Driven for WriteSide {
    type T = WriteTransfer;
    fn transfer(&self) -> &WriteTransfer {
        &self.t
    }
    fn transfer_mut(&mut self) -> &mut WriteTransfer {
        &mut self.t
    }
    fn datagram(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) {
        let Some(chunk) = self.t.handle_datagram(from, bytes, now) else { return };
        assert_eq!(from, addr(PEER));
        assert!(!self.last_stored, "a block stored after the last one");
        assert!(chunk.data.start <= chunk.data.end && chunk.data.end <= bytes.len(), "{chunk:?}");
        let len = chunk.data.len();
        assert!(len <= self.blksize && chunk.last == (len < self.blksize), "{chunk:?}");
        assert_eq!(chunk.offset, self.stored, "a block stored out of order");
        self.stored += len as u64;
        self.blocks += 1;
        self.last_stored = chunk.last;
        assert!(self.stored <= self.quota, "{} bytes stored over the quota {}", self.stored, self.quota);
    }
    fn sent(&mut self, tx: Transmit) {
        let Transmit::Datagram { to, packet } = tx else { panic!("a WRQ receiver sent DATA: {tx:?}") };
        let greeting = self.negotiation.oack.unwrap_or_else(|| ferry::tftp::Datagram::ack(0));
        let ack = self.wrap.wire(self.blocks);
        check_control(to, packet.as_bytes(), Some(greeting.as_bytes()), Some(ack));
        if to == addr(PEER) && matches!(Repr::parse_bytes(packet.as_bytes()), Ok(Repr::Ack { .. })) {
            // RFC 7440: the sender goes on from the acknowledged block.
            (self.acked, self.sent) = (self.blocks, self.blocks);
        }
    }
    fn max_burst(&self) -> usize {
        2
    }
    fn reply(&mut self, input: &mut Input<'_>) -> Vec<u8> {
        let next = if self.sent < self.acked + self.window { self.sent + 1 } else { self.acked + 1 };
        self.sent = next;
        let shape = input.u8();
        let len = if shape < 32 { usize::from(shape) % self.blksize } else { self.blksize };
        self.data(self.wrap.wire(next), len)
    }
    fn nudge(&mut self, delta: i16, input: &mut Input<'_>) -> Vec<u8> {
        let block = self.wrap.wire(self.sent + 1).wrapping_add_signed(delta);
        let len = usize::from(input.u8()) % (self.blksize + 2);
        self.data(block, len)
    }
    fn consistent(&mut self) {
        assert_eq!(self.t.bytes_acknowledged(), self.stored);
        match self.t.outcome() {
            Some(Outcome::Complete { bytes, .. }) => {
                assert!(self.last_stored && bytes == self.stored, "complete without the last block");
            }
            Some(Outcome::OptionsDeclined) => assert!(self.negotiation.oack.is_some() && self.blocks == 0),
            _ => {}
        }
        if self.last_stored {
            assert!(self
                .t
                .outcome()
                .is_none_or(|o| matches!(o, Outcome::Complete { .. } | Outcome::Failed { .. })));
        }
    }
}

/// `WriteTransfer` against `[set-up (see transfer_setup), events...]` (see [`op`]): blocks
/// are stored in order, once, inside the quota and the datagram; ACKs name stored blocks;
/// silence ends the transfer. Returns its outcome.
pub fn tftp_write_transfer(data: &[u8]) -> Option<Outcome> {
    let mut input = Input::new(data);
    let (negotiation, settings) = transfer_setup(&mut input, Direction::Write, None)?;
    let t = WriteTransfer::new(addr(PEER), &negotiation, &settings, Instant::now());
    let mut side = WriteSide {
        t,
        negotiation,
        wrap: settings.block_wrap,
        blksize: usize::from(negotiation.values.blksize),
        window: u64::from(negotiation.values.windowsize),
        quota: settings.upload_quota,
        stored: 0,
        blocks: 0,
        last_stored: false,
        acked: 0,
        sent: 0,
    };
    Some(drive(&mut side, &mut input, &settings))
}

// ---------------------------------------------------------------------------------------
// Binder, metrics endpoint, configuration
// ---------------------------------------------------------------------------------------

/// `BindRequest::decode` and `BindResponse::decode`: only exact-size messages decode, and
/// what decodes encodes back to the same bytes (a request) or the same value (a response).
pub fn binder_proto(data: &[u8]) {
    match BindRequest::decode(data) {
        Ok(req) => assert_eq!(&req.encode()[..], data, "a request decoded from non-canonical bytes"),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Some(resp) = BindResponse::decode(data) {
        assert_eq!(data.len(), RESPONSE_LEN);
        assert_eq!(BindResponse::decode(&resp.encode()), Some(resp));
    }
    // Every fixed-size window of the input, too (the fuzzer rarely hits exact sizes).
    for len in [REQUEST_LEN, RESPONSE_LEN] {
        if let Some(window) = data.get(..len) {
            if let Ok(req) = BindRequest::decode(window) {
                assert_eq!(&req.encode()[..], window);
            }
            if let Some(resp) = BindResponse::decode(window) {
                assert_eq!(BindResponse::decode(&resp.encode()), Some(resp));
            }
        }
    }
}

/// The metrics endpoint's request reading and routing: input is `[chunk, head...]`, read in
/// chunks of `chunk` bytes. The head read stops at its blank line or the size cap, and the
/// route depends on the first line alone.
pub fn http_request(data: &[u8]) {
    let Some((&chunk, stream)) = data.split_first() else { return };
    let mut reader = Chunked { data: stream, chunk: usize::from(chunk).max(1) };
    let head = http::read_head(&mut reader).expect("reading a slice cannot fail");
    match &head {
        None => assert!(stream.len() > http::MAX_REQUEST, "431 for {} bytes", stream.len()),
        Some(h) => {
            assert!(h.len() <= http::MAX_REQUEST && stream.starts_with(h), "read {} bytes", h.len());
            let ended =
                |b: &[u8]| b.windows(4).any(|w| w == b"\r\n\r\n") || b.windows(2).any(|w| w == b"\n\n");
            assert!(h.len() == stream.len() || ended(h), "stopped before the head ended");
        }
    }
    let route = http::parse_request(head.as_deref().unwrap_or(stream));
    let first = stream.split(|&b| b == b'\n').next().unwrap_or_default();
    assert_eq!(
        route,
        http::parse_request(&[first, b"\nX-Fuzz: 1\r\n\r\n"].concat()),
        "headers changed the route"
    );
    let words: Vec<&[u8]> = first.split(|&b| b == b' ').collect();
    let expected = match (words.first().copied(), words.get(1).copied()) {
        (Some(b"GET"), Some(b"/metrics")) => Route::Metrics,
        (Some(b"GET"), Some(b"/healthz")) => Route::Healthz,
        (Some(b"GET"), _) => Route::NotFound,
        _ => Route::NotAllowed,
    };
    assert_eq!(route, expected);
}

/// A reader handing out at most `chunk` bytes a call, as a slow scraper would.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl std::io::Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.chunk.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// `Config::from_toml_str` on arbitrary text: an error, never a panic; a configuration that
/// loads renders (`check-config`) to TOML that loads back to the same configuration.
pub fn config_toml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match Config::from_toml_str(&text) {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(config) => {
            let rendered = config.to_toml();
            match Config::from_toml_str(&rendered) {
                Ok(again) => assert_eq!(again, config, "the rendered configuration loads differently"),
                Err(e) => panic!("the rendered configuration does not load: {e}\n{rendered}"),
            }
        }
    }
}
