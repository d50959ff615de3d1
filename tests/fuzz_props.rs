//! The fuzz targets' bodies (`tests/fuzz/targets.rs`) under proptest, so every test run
//! checks what `tests/fuzz/run.sh` fuzzes, without a nightly toolchain: each body gets
//! arbitrary bytes and near-valid inputs built with the structure it parses (requests with
//! mutated options, command lines with mutated arguments, TFTP exchanges with reordering,
//! duplication and garbage).

#[path = "fuzz/targets.rs"]
mod targets;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use targets::op;

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig { cases: n, failure_persistence: None, ..ProptestConfig::default() }
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}

/// A piece of text from `choices`, or random bytes now and then.
fn piece(choices: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => select(choices).prop_map(|s| s.as_bytes().to_vec()),
        1 => bytes(12),
    ]
}

fn concat(parts: Vec<Vec<u8>>) -> Vec<u8> {
    parts.concat()
}

// ----- FTP ---------------------------------------------------------------------------------

const VERBS: &[&str] = &[
    "USER", "PASS", "ACCT", "REIN", "QUIT", "CWD", "XCWD", "CDUP", "XCUP", "PWD", "XPWD", "TYPE", "MODE",
    "STRU", "PORT", "PASV", "EPRT", "EPSV", "RETR", "STOR", "STOU", "APPE", "REST", "ALLO", "RNFR", "RNTO",
    "DELE", "MKD", "XMKD", "RMD", "XRMD", "LIST", "NLST", "MLSD", "MLST", "SIZE", "MDTM", "MFMT", "SITE",
    "SYST", "STAT", "HELP", "NOOP", "FEAT", "OPTS", "HOST", "ABOR", "AUTH", "LPRT", "retr", "Stor", "XYZZY",
    "",
];

const ARGS: &[&str] = &[
    "",
    " ",
    "a",
    "I",
    "A N",
    "L 8",
    "E",
    "S",
    "B",
    "F",
    "R",
    "1",
    "2",
    "ALL",
    "0",
    "-la",
    "-a dir",
    "-",
    "127,0,0,1,4,1",
    "127,0,0,1,0,0",
    "1,2,3,4,5",
    "1,2,3,4,5,6,7",
    "256,0,0,1,1,1",
    " 10 , 0,0 ,1,1,1",
    "|1|127.0.0.1|2121|",
    "|2|::1|2121|",
    "|2|::1|0|",
    "|3|x|1|",
    "!1!1.2.3.4!65535!",
    "|1|1.2.3.4|65536|",
    "|1|1.2.3.4|21",
    "20240101120000 f",
    "20240101120000.123 f",
    "99999999999999 f",
    "2024 f",
    "CHMOD 755 f",
    "CHMOD",
    "UMASK 022",
    "IDLE 60",
    "HELP",
    "MLST size;type;",
    "UTF8 ON",
    "UTF8",
    "ftp.example.com",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551616",
    "dir/../x",
    "\u{e9}t\u{e9}",
    "/",
    "a b  c",
];

/// A command line: a verb, a separator and an argument, each perhaps mangled.
fn command_line() -> impl Strategy<Value = Vec<u8>> {
    (piece(VERBS), select(&[" ", "", "  ", "\t", " \0"][..]), vec(piece(ARGS), 0..3), bytes(3)).prop_map(
        |(verb, sep, args, tail)| {
            let mut line = verb;
            line.extend_from_slice(sep.as_bytes());
            line.extend(concat(args));
            line.extend(tail);
            line
        },
    )
}

/// A control stream: command lines with Telnet sequences, CR LF or bare LF, overlong lines.
fn control_stream() -> impl Strategy<Value = Vec<u8>> {
    let telnet = prop_oneof![
        4 => Just(vec![]),
        1 => Just(vec![0xff, 0xf4, 0xff, 0xf2]),            // IAC IP IAC DM
        1 => Just(vec![0xff, 0xff]),                        // escaped 255
        1 => (251u8..=254, any::<u8>()).prop_map(|(c, o)| vec![0xff, c, o]),
        1 => bytes(6).prop_map(|b| [&[0xff, 0xfa][..], &b, &[0xff, 0xf0]].concat()),
        1 => Just(vec![0xff]),
        1 => Just(vec![0]),
    ];
    let line =
        (telnet.clone(), command_line(), telnet, select(&["\r\n", "\n", "\r\n", "", "\r"][..]), 0..40usize)
            .prop_map(|(a, cmd, b, end, pad)| {
                let mut l = a;
                l.extend(cmd);
                l.extend(b);
                l.extend(std::iter::repeat_n(b'x', if pad > 30 { 300 } else { 0 }));
                l.extend_from_slice(end.as_bytes());
                l
            });
    vec(line, 0..8).prop_map(concat)
}

proptest! {
    #![proptest_config(cases(3000))]

    #[test]
    fn ftp_line_any_bytes(data in bytes(600)) {
        targets::ftp_line(&data);
    }

    #[test]
    fn ftp_line_command_streams(max in any::<u8>(), splits in vec(any::<u8>(), 0..=16), stream in control_stream()) {
        let mut data = vec![max, splits.len() as u8];
        data.extend(splits);
        data.extend(stream);
        targets::ftp_line(&data);
    }

    #[test]
    fn ftp_command_any_bytes(data in bytes(300)) {
        targets::ftp_command(&data);
    }

    #[test]
    fn ftp_command_near_valid_lines(line in command_line()) {
        targets::ftp_command(&line);
    }
}

// ----- TFTP requests and options -----------------------------------------------------------

const NAMES: &[&str] =
    &["a", "boot/pxelinux.0", "/x", "..", ".", "a/../b", "a\\b", "//", "./a/./", "", "C:\\x"];
const MODES: &[&str] = &["octet", "netascii", "OCTET", "NetAscii", "mail", "binary", ""];
const OPTION_NAMES: &[&str] =
    &["blksize", "timeout", "tsize", "windowsize", "BLKSIZE", "TSize", "multicast", "x"];
const OPTION_VALUES: &[&str] = &[
    "512",
    "1468",
    "8",
    "7",
    "65464",
    "65465",
    "0",
    "1",
    "255",
    "256",
    "64",
    "65535",
    "65536",
    "0100",
    "18446744073709551616",
    "99999999999999999999999",
    "-1",
    "1.5",
    "",
    "abc",
];

/// A request datagram: RRQ or WRQ (now and then another opcode) with mutated options,
/// sometimes truncated, padded or with a byte changed.
fn request_datagram() -> impl Strategy<Value = Vec<u8>> {
    let option = (piece(OPTION_NAMES), piece(OPTION_VALUES));
    (
        prop_oneof![8 => 1u16..=2, 1 => 0u16..=7],
        piece(NAMES),
        piece(MODES),
        vec(option, 0..20),
        prop_oneof![6 => Just(0usize), 1 => 1usize..4],
        prop_oneof![6 => Just(None), 1 => any::<(u16, u8)>().prop_map(Some)],
        prop_oneof![8 => Just(usize::MAX), 1 => 0usize..600],
        prop_oneof![6 => Just(0usize), 1 => Just(300)],
    )
        .prop_map(|(opcode, name, mode, options, nuls, flip, cut, long)| {
            let mut d = opcode.to_be_bytes().to_vec();
            for s in [&name, &mode] {
                d.extend_from_slice(s);
                d.push(0);
            }
            for (n, v) in options {
                d.extend(n);
                d.extend(std::iter::repeat_n(b'9', long));
                d.push(0);
                d.extend(v);
                d.push(0);
            }
            d.extend(std::iter::repeat_n(0, nuls));
            if let Some((at, b)) = flip {
                let i = usize::from(at) % d.len();
                d[i] = b;
            }
            d.truncate(cut);
            d
        })
}

/// `tftp_options` input: flags and caps, then name/value pairs (a one-byte name 1..=6
/// stands for a known one).
fn options_input() -> impl Strategy<Value = Vec<u8>> {
    let name = prop_oneof![3 => (1u8..=6).prop_map(|i| vec![i]), 1 => piece(OPTION_NAMES)];
    (vec(any::<u8>(), 21), vec((name, piece(OPTION_VALUES)), 0..20)).prop_map(|(head, pairs)| {
        let mut d = head;
        for (n, v) in pairs {
            d.extend(n);
            d.push(0);
            d.extend(v);
            d.push(0);
        }
        d
    })
}

proptest! {
    #![proptest_config(cases(3000))]

    #[test]
    fn tftp_request_any_bytes(data in bytes(700)) {
        targets::tftp_request(&data);
    }

    #[test]
    fn tftp_request_near_valid(policy in any::<u8>(), datagram in request_datagram()) {
        targets::tftp_request(&[&[policy][..], &datagram].concat());
    }

    #[test]
    fn tftp_options_any_bytes(data in bytes(300)) {
        targets::tftp_options(&data);
    }

    #[test]
    fn tftp_options_near_valid(data in options_input()) {
        targets::tftp_options(&data);
    }
}

// ----- TFTP transfers ----------------------------------------------------------------------

/// A transfer set-up (see `transfer_setup`) whose options are always granted: uploads get
/// the largest quota and a `tsize` inside it.
fn setup() -> impl Strategy<Value = Vec<u8>> {
    (any::<u8>(), any::<u8>(), 0u8..16, 8u16..600, any::<u8>(), 0u16..1000, 1u8..32, vec(any::<u8>(), 5))
        .prop_map(|(flags, max_blk, max_win, blksize, timeout, tsize, window, timers)| {
            let mut d = vec![flags & 0x1f, max_blk, max_win, 0xff, 0xff];
            d.extend(blksize.to_be_bytes());
            d.push(timeout);
            d.extend(tsize.to_be_bytes());
            d.push(window);
            d.extend(timers);
            assert_eq!(d.len(), targets::SETUP_LEN);
            d
        })
}

/// The shape byte of a correct datagram: for uploads a full block, 1 in 16 a short last one.
fn shape() -> impl Strategy<Value = u8> {
    prop_oneof![15 => 32u8..=255, 1 => 0u8..32]
}

/// Events of a client that does the right thing (`REPLY`) with noise mixed in: late,
/// repeated, off-by-some and stray datagrams and timeouts; in about a third of the runs also
/// one garbage datagram, peer ERROR or abort (each ends the transfer).
fn events() -> impl Strategy<Value = Vec<u8>> {
    let common = prop_oneof![
        40 => shape().prop_map(|s| vec![op::REPLY, s]),
        2 => shape().prop_map(|s| vec![op::HOLD, s]),
        2 => any::<u8>().prop_map(|i| vec![op::RELEASE, i]),
        2 => Just(vec![op::DUPLICATE]),
        2 => (-3i8..=3, any::<u8>()).prop_map(|(d, l)| vec![op::NUDGE, d as u8, l]),
        2 => shape().prop_map(|s| vec![op::STRAY, s]),
        2 => any::<u8>().prop_map(|t| vec![op::TIME, t]),
    ];
    let rare = prop_oneof![
        bytes(12).prop_map(|b| [&[op::RAW, b.len() as u8][..], &b].concat()),
        any::<u8>().prop_map(|c| vec![op::ERROR, c]),
        (0u8..8).prop_map(|x| vec![op::ABORT, x]),
    ];
    (vec(common, 0..100), proptest::option::weighted(0.3, (rare, any::<proptest::sample::Index>()))).prop_map(
        |(mut events, rare)| {
            if let Some((event, at)) = rare {
                events.insert(at.index(events.len() + 1), event);
            }
            concat(events)
        },
    )
}

/// A clean upload: full blocks, then a short last one.
fn clean_upload(blocks: usize) -> Vec<u8> {
    let mut d = Vec::new();
    for _ in 0..blocks {
        d.extend([op::REPLY, 255]);
    }
    d.extend([op::REPLY, 5]);
    d
}

proptest! {
    #![proptest_config(cases(3000))]

    #[test]
    fn tftp_read_transfer_any_bytes(data in bytes(400)) {
        targets::tftp_read_transfer(&data);
    }

    #[test]
    fn tftp_read_transfer_noisy(len in 0u16..1500, setup in setup(), events in events()) {
        targets::tftp_read_transfer(&[&len.to_be_bytes()[..], &setup, &events].concat());
    }

    #[test]
    fn tftp_read_transfer_clean_completes(len in 0u16..2000, setup in setup()) {
        // One ACK per block is enough, whatever the block size and window.
        let acks = [op::REPLY, 0].repeat(usize::from(len) / 8 + 2);
        let outcome = targets::tftp_read_transfer(&[&len.to_be_bytes()[..], &setup, &acks].concat());
        prop_assert_eq!(outcome, Some(targets_outcome_complete(u64::from(len))));
    }

    #[test]
    fn tftp_write_transfer_any_bytes(data in bytes(400)) {
        targets::tftp_write_transfer(&data);
    }

    #[test]
    fn tftp_write_transfer_noisy(setup in setup(), events in events()) {
        targets::tftp_write_transfer(&[setup, events].concat());
    }

    #[test]
    fn tftp_write_transfer_clean_completes(setup in setup(), blocks in 0usize..40) {
        let outcome = targets::tftp_write_transfer(&[setup, clean_upload(blocks)].concat());
        prop_assert!(matches!(outcome, Some(ferry::tftp::Outcome::Complete { confirmed: true, .. })), "{:?}", outcome);
    }
}

fn targets_outcome_complete(bytes: u64) -> ferry::tftp::Outcome {
    ferry::tftp::Outcome::Complete { bytes, confirmed: true }
}

// ----- Binder, metrics endpoint, configuration -------------------------------------------

/// An encoded binder message with one byte changed, or cut short, or grown.
fn binder_message() -> impl Strategy<Value = Vec<u8>> {
    use ferry::binder::proto::{BindRequest, BindResponse};
    let valid = prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| {
            BindRequest { addr: (std::net::Ipv4Addr::from(ip), port).into() }.encode().to_vec()
        }),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| {
            BindRequest { addr: (std::net::Ipv6Addr::from(ip), port).into() }.encode().to_vec()
        }),
        (0u8..5, any::<i32>()).prop_map(|(s, e)| {
            let r =
                [BindResponse::Granted, BindResponse::Refused, BindResponse::Failed(e), BindResponse::Ready];
            r.get(usize::from(s)).map_or(vec![s; 8], |r| r.encode().to_vec())
        }),
    ];
    (valid, any::<(u8, u8)>(), 0u8..4).prop_map(|(mut m, (at, b), how)| {
        match how {
            0 => {}
            1 => {
                let i = usize::from(at) % m.len();
                m[i] = b;
            }
            2 => m.truncate(usize::from(at) % m.len()),
            _ => m.push(b),
        }
        m
    })
}

const REQUEST_LINES: &[&str] = &[
    "GET /metrics HTTP/1.1",
    "GET /healthz HTTP/1.0",
    "GET / HTTP/1.1",
    "POST /metrics HTTP/1.1",
    "get /metrics HTTP/1.1",
    "GET  /metrics HTTP/1.1",
    "GET /metrics",
    "GET",
    "",
    "HEAD /healthz HTTP/1.1",
    "GET /metrics?x=1 HTTP/1.1",
];

/// A request head: request line, some headers, line ends of either kind, maybe over the cap.
fn http_head() -> impl Strategy<Value = Vec<u8>> {
    let end = select(&["\r\n", "\n", "\r"][..]);
    let header = select(&["Host: x", "Accept: */*", "User-Agent: Prometheus/2", "X: y"][..]);
    let huge = proptest::bool::weighted(0.05);
    (piece(REQUEST_LINES), end.clone(), vec((header, end.clone()), 0..4), end, huge, 1u8..=255).prop_map(
        |(line, e1, headers, e2, huge, chunk)| {
            // Over the cap in small reads is quadratic in a debug build: read it in big ones.
            let mut d = vec![if huge { chunk.max(200) } else { chunk }];
            d.extend(line);
            d.extend_from_slice(e1.as_bytes());
            for (h, e) in headers {
                d.extend_from_slice(h.as_bytes());
                d.extend_from_slice(e.as_bytes());
            }
            if huge {
                d.extend(std::iter::repeat_n(b'h', ferry::observe::http::MAX_REQUEST));
            }
            d.extend_from_slice(e2.as_bytes());
            d
        },
    )
}

const TOML_VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "65535",
    "65536",
    "18446744073709551615",
    "18446744073709551616",
    "1e3",
    "true",
    "\"\"",
    "\"x\"",
    "\"/tmp\"",
    "\"127.0.0.1:2121\"",
    "[\"[::1]:21\"]",
    "[]",
    "{}",
    "\"info,ferry=debug\"",
    "\"ferry=[\"",
    "\"10.0.0.0/8\"",
    "\"1000-1010\"",
    "\"2000-1000\"",
    "\"0.0.0.0:0\"",
    "nan",
];

/// The default configuration (served from /tmp, so it validates) as TOML, with lines given
/// new values, dropped or repeated, and random lines added.
fn config_text() -> impl Strategy<Value = Vec<u8>> {
    let mut base = ferry::config::Config { root: "/tmp".into(), ..Default::default() };
    base.ftp.listen = vec!["127.0.0.1:2121".parse().expect("address")];
    let lines: Vec<String> = base.to_toml().lines().map(str::to_owned).collect();
    let n = lines.len();
    let edit = (0..n, 0u8..4, piece(TOML_VALUES));
    vec(edit, 0..4).prop_map(move |edits| {
        let mut lines = lines.clone();
        for (i, how, value) in edits {
            let value = String::from_utf8_lossy(&value).into_owned();
            let Some(line) = lines.get(i).cloned() else { continue };
            match how {
                0 => {
                    if let Some((key, _)) = line.split_once(" = ") {
                        lines[i] = format!("{key} = {value}");
                    }
                }
                1 => lines[i].clear(),
                2 => lines.insert(i, line),
                _ => lines.insert(i, value),
            }
        }
        lines.join("\n").into_bytes()
    })
}

proptest! {
    #![proptest_config(cases(3000))]

    #[test]
    fn binder_proto_any_bytes(data in bytes(40)) {
        targets::binder_proto(&data);
    }

    #[test]
    fn binder_proto_near_valid(data in binder_message()) {
        targets::binder_proto(&data);
    }

    #[test]
    fn http_request_any_bytes(data in bytes(300)) {
        targets::http_request(&data);
    }

    #[test]
    fn http_request_near_valid(data in http_head()) {
        targets::http_request(&data);
    }
}

proptest! {
    #![proptest_config(cases(500))]

    #[test]
    fn config_toml_any_bytes(data in bytes(200)) {
        targets::config_toml(&data);
    }

    #[test]
    fn config_toml_near_valid(data in config_text()) {
        targets::config_toml(&data);
    }
}

#[test]
fn the_default_configuration_round_trips() {
    // The near-valid generator's base must load, or it only ever tests errors.
    let mut base = ferry::config::Config { root: "/tmp".into(), ..Default::default() };
    base.ftp.listen = vec!["127.0.0.1:2121".parse().expect("address")];
    let loaded = ferry::config::Config::from_toml_str(&base.to_toml()).expect("the base loads");
    assert_eq!(loaded, base);
    targets::config_toml(base.to_toml().as_bytes());
}
