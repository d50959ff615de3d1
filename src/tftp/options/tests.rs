//! Tests of option negotiation (RFC 2347-2349, 7440): accepted, capped and refused values,
//! and what goes into the OACK.

use super::*;
use crate::tftp::wire::OptionList;

fn req(pairs: &[(&str, &str)]) -> RequestedOptions {
    let mut list = OptionList::new();
    for (n, v) in pairs {
        list.push(n.as_bytes(), v.as_bytes()).unwrap();
    }
    RequestedOptions::from_list(&list)
}

fn caps() -> ServerCaps {
    ServerCaps { max_blksize: 1468, max_windowsize: 64, upload_quota: 1000 }
}

fn read(pairs: &[(&str, &str)]) -> Negotiation {
    negotiate(Direction::Read, &req(pairs), &caps(), Some(4242)).unwrap()
}

/// The OACK's options as strings, in order.
fn oack(n: &Negotiation) -> Vec<(String, String)> {
    let Some(d) = n.oack else { return vec![] };
    let Ok(Repr::Oack { options }) = Repr::parse_bytes(d.as_bytes()) else { panic!("not an OACK") };
    options
        .as_slice()
        .iter()
        .map(|(a, b)| (String::from_utf8_lossy(a).into(), String::from_utf8_lossy(b).into()))
        .collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.into(), b.into())
}

#[test]
fn blksize_edges_rfc_2348() {
    assert_eq!(read(&[("blksize", "7")]).values.blksize, 512);
    assert_eq!(read(&[("blksize", "7")]).oack, None);
    assert_eq!(read(&[("blksize", "8")]).values.blksize, 8);
    assert_eq!(oack(&read(&[("blksize", "8")])), vec![pair("blksize", "8")]);
    // Above the cap but in the RFC's range, the cap is the answer.
    assert_eq!(read(&[("blksize", "1469")]).values.blksize, 1468);
    assert_eq!(read(&[("blksize", "65464")]).values.blksize, 1468);
    // Above 65464 the value is invalid: left out of the OACK, 512-byte blocks.
    assert_eq!(read(&[("blksize", "65465")]).values.blksize, 512);
    assert_eq!(read(&[("blksize", "65465")]).oack, None);
    assert_eq!(read(&[("blksize", "99999999999999999999999")]).oack, None);
    let big = ServerCaps { max_blksize: 65464, ..caps() };
    let n = negotiate(Direction::Read, &req(&[("blksize", "65464")]), &big, None).unwrap();
    assert_eq!(n.values.blksize, 65464);
    let n = negotiate(Direction::Read, &req(&[("blksize", "65465")]), &big, None).unwrap();
    assert_eq!((n.values.blksize, n.oack), (512, None));
    assert_eq!(read(&[("blksize", "abc")]).oack, None);
    assert_eq!(read(&[("blksize", "")]).oack, None);
    assert_eq!(read(&[("blksize", "-1")]).oack, None);
}

#[test]
fn timeout_edges_rfc_2349() {
    assert_eq!(read(&[("timeout", "0")]).oack, None);
    assert_eq!(read(&[("timeout", "1")]).values.timeout_secs, Some(1));
    assert_eq!(oack(&read(&[("timeout", "255")])), vec![pair("timeout", "255")]);
    assert_eq!(read(&[("timeout", "256")]).values.timeout_secs, None);
    assert_eq!(read(&[("timeout", "256")]).oack, None);
}

#[test]
fn windowsize_edges_rfc_7440() {
    assert_eq!(read(&[("windowsize", "0")]).oack, None);
    assert_eq!(read(&[("windowsize", "1")]).values.windowsize, 1);
    assert_eq!(oack(&read(&[("windowsize", "65")])), vec![pair("windowsize", "64")]);
    assert_eq!(read(&[("windowsize", "65535")]).values.windowsize, 64);
    assert_eq!(read(&[("windowsize", "65536")]).values.windowsize, 1);
    assert_eq!(read(&[("windowsize", "65536")]).oack, None);
    assert_eq!(read(&[("windowsize", "x")]).oack, None);
}

#[test]
fn tsize_rrq_reports_size_wrq_checks_quota() {
    // RFC 2349: RRQ carries 0, the OACK carries the size.
    let n = read(&[("tsize", "0")]);
    assert_eq!((n.values.tsize, oack(&n)), (Some(4242), vec![pair("tsize", "4242")]));
    // A client that sends a non-zero tsize on an RRQ still gets the real size.
    assert_eq!(oack(&read(&[("TSIZE", "123456")])), vec![pair("tsize", "4242")]);
    let w = negotiate(Direction::Write, &req(&[("tsize", "1000")]), &caps(), None).unwrap();
    assert_eq!(oack(&w), vec![pair("tsize", "1000")]);
    let over = negotiate(Direction::Write, &req(&[("tsize", "1001")]), &caps(), None).unwrap_err();
    assert_eq!(over.code, ErrorCode::DiskFull);
    assert_eq!(over.message, "disk full or allocation exceeded");
}

#[test]
fn unknown_options_ignored_and_duplicates_first_wins() {
    let n = read(&[("multicast", ""), ("BlkSize", "1024"), ("blksize", "512"), ("rollover", "0")]);
    assert_eq!(n.values.blksize, 1024);
    assert_eq!(oack(&n), vec![pair("blksize", "1024")]);
    // A repeated option whose first value is unusable is still ignored, not retried.
    assert_eq!(read(&[("blksize", "x"), ("blksize", "800")]).values.blksize, 512);
}

#[test]
fn client_quirks_from_the_field() {
    // iPXE: blksize 1432 tsize 0 -> both granted, in the client's order.
    let n = read(&[("blksize", "1432"), ("tsize", "0")]);
    assert_eq!(oack(&n), vec![pair("blksize", "1432"), pair("tsize", "4242")]);
    // UEFI: tsize 0 blksize 1468.
    let n = read(&[("tsize", "0"), ("blksize", "1468")]);
    assert_eq!(oack(&n), vec![pair("tsize", "4242"), pair("blksize", "1468")]);
    // U-Boot: blksize 1468, windowsize 1.
    let n = read(&[("blksize", "1468"), ("windowsize", "1")]);
    assert_eq!((n.values.blksize, n.values.windowsize), (1468, 1));
}

#[test]
fn decimal_parser() {
    assert_eq!(parse_decimal(b"0"), Some(0));
    assert_eq!(parse_decimal(b"00512"), Some(512));
    assert_eq!(parse_decimal(b"1 "), None);
    assert_eq!(parse_decimal(b"+1"), None);
    assert_eq!(parse_decimal(b"99999999999999999999999"), Some(u64::MAX));
}
