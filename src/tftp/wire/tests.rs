//! Tests of the TFTP wire format: parsing and encoding of every packet type, option lists,
//! malformed packets, and property tests that no datagram panics the parser.

use super::*;
use proptest::prelude::*;

#[test]
fn parses_rrq_with_options_case_insensitively() {
    // RFC 2347 §"Packet formats": options follow the mode; names are case-insensitive.
    let bytes = b"\x00\x01pxelinux.0\x00OcTeT\x00BLKSIZE\x001432\x00tsize\x000\x00";
    let Repr::Rrq { filename, mode, options } = Repr::parse_bytes(bytes).unwrap() else {
        panic!("not an RRQ")
    };
    assert_eq!(filename, b"pxelinux.0");
    assert_eq!(mode, b"OcTeT");
    assert_eq!(options.len(), 2);
    assert_eq!(options.get("blksize"), Some(&b"1432"[..]));
    assert_eq!(options.get("TSIZE"), Some(&b"0"[..]));
}

#[test]
fn rejects_malformed_requests() {
    assert_eq!(Repr::parse_bytes(b"\x00"), Err(WireError::Truncated));
    assert_eq!(Repr::parse_bytes(b"\x00\x09"), Err(WireError::UnknownOpcode(9)));
    assert_eq!(Repr::parse_bytes(b"\x00\x01file"), Err(WireError::Unterminated));
    assert_eq!(Repr::parse_bytes(b"\x00\x01file\x00octet"), Err(WireError::Unterminated));
    // A name without a value (RFC 2347 requires pairs).
    assert_eq!(Repr::parse_bytes(b"\x00\x01f\x00octet\x00blksize\x00"), Err(WireError::BadOption));
    assert_eq!(Repr::parse_bytes(b"\x00\x03\x00"), Err(WireError::Truncated));
    let mut long = b"\x00\x01".to_vec();
    long.extend(std::iter::repeat_n(b'a', 600));
    long.extend(b"\x00octet\x00");
    assert_eq!(Repr::parse_bytes(&long), Err(WireError::TooLong));
}

#[test]
fn bounds_option_count_and_length() {
    let mut many = b"\x00\x01f\x00octet\x00".to_vec();
    for i in 0..=MAX_OPTIONS {
        many.extend(format!("o{i}\x001\x00").as_bytes());
    }
    assert_eq!(Repr::parse_bytes(&many), Err(WireError::TooManyOptions));
    let mut long = b"\x00\x01f\x00octet\x00x\x00".to_vec();
    long.extend(std::iter::repeat_n(b'9', MAX_OPTION_LEN + 1));
    long.push(0);
    assert_eq!(Repr::parse_bytes(&long), Err(WireError::BadOption));
}

#[test]
fn tolerates_trailing_nul_padding_after_mode() {
    let Repr::Rrq { options, .. } = Repr::parse_bytes(b"\x00\x01f\x00octet\x00\x00\x00").unwrap() else {
        panic!()
    };
    assert!(options.is_empty());
}

#[test]
fn error_without_nul_is_accepted() {
    assert_eq!(
        Repr::parse_bytes(b"\x00\x05\x00\x08abort").unwrap(),
        Repr::Error { code: 8, message: b"abort" }
    );
}

#[test]
fn data_header_helper_writes_opcode_and_block() {
    let mut buf = [0xffu8; 8];
    write_data_header(&mut buf, 0x1234).unwrap();
    assert_eq!(&buf[..4], &[0, 3, 0x12, 0x34]);
    assert_eq!(write_data_header(&mut [0u8; 3], 1), Err(WireError::BufferTooSmall));
}

#[test]
fn datagram_error_truncates_long_messages() {
    let d = Datagram::error(ErrorCode::NotDefined, &"x".repeat(2000));
    assert_eq!(d.as_bytes().len(), DATAGRAM_CAPACITY);
    assert!(matches!(Repr::parse_bytes(d.as_bytes()), Ok(Repr::Error { code: 0, .. })));
}

fn cstring() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(1u8..=255, 0..40)
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(1u8..=255, 1..20)
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        let p = Packet::new_unchecked(&bytes[..]);
        let _ = (p.opcode(), p.block(), p.error_code(), p.payload(), p.strings());
        if let Ok(repr) = Repr::parse_bytes(&bytes) {
            let mut out = vec![0u8; repr.buffer_len()];
            prop_assert_eq!(repr.emit(&mut out), Ok(out.len()));
        }
    }

    #[test]
    fn request_emit_parse_round_trips(
        write in any::<bool>(),
        filename in name(),
        mode in name(),
        opts in proptest::collection::vec((name(), cstring()), 0..MAX_OPTIONS),
    ) {
        let mut options = OptionList::new();
        for (n, v) in &opts {
            options.push(n, v).unwrap();
        }
        let repr = if write {
            Repr::Wrq { filename: &filename, mode: &mode, options }
        } else {
            Repr::Rrq { filename: &filename, mode: &mode, options }
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut buf).unwrap();
        if buf.len() <= MAX_REQUEST_LEN {
            prop_assert_eq!(Repr::parse_bytes(&buf), Ok(repr));
        } else {
            prop_assert_eq!(Repr::parse_bytes(&buf), Err(WireError::TooLong));
        }
    }

    #[test]
    fn fixed_packets_round_trip(block in any::<u16>(), data in proptest::collection::vec(any::<u8>(), 0..600),
                                message in cstring()) {
        for repr in [
            Repr::Data { block, data: &data },
            Repr::Ack { block },
            Repr::Error { code: block, message: &message },
        ] {
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut buf).unwrap();
            prop_assert_eq!(Repr::parse_bytes(&buf), Ok(repr));
        }
    }
}
