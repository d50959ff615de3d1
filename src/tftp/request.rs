//! Turns a request datagram from port 69 into a [`Request`] plan, or the ERROR to answer.
//! Checks mode, filename shape and the client's address against the operator's lists; the
//! io layer's `openat2(RESOLVE_IN_ROOT)` is the real confinement, this is the logical check.

use super::options::{is_known_option, Direction, RequestedOptions};
use super::wire::{ErrorCode, Opcode, OptionList, Packet, Repr, WireError};
use super::Refusal;
use ipnet::IpNet;
use std::ffi::OsStr;
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Transfer mode (RFC 1350 §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Raw bytes.
    Octet,
    /// Netascii: the io layer converts with [`super::netascii`].
    Netascii,
}

/// A validated request: what to open and how to negotiate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// RRQ or WRQ.
    pub direction: Direction,
    /// Normalized path relative to the TFTP root: no leading `/`, no `.` or `..`, `/` separators.
    pub path: PathBuf,
    /// The name as the client sent it, for remap rules (which see it before normalization).
    pub name: Vec<u8>,
    /// Transfer mode.
    pub mode: Mode,
    /// Known options the client asked for, to pass to [`super::options::negotiate`].
    pub options: RequestedOptions,
}

/// Who may read and write, from the `[tftp.read]` and `[tftp.write]` sections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Networks allowed to read; empty allows everyone not denied.
    pub read_allow: Vec<IpNet>,
    /// Networks never allowed to read (wins over allow).
    pub read_deny: Vec<IpNet>,
    /// Uploads accepted at all.
    pub write_enabled: bool,
    /// Uploads may replace an existing file.
    pub overwrite: bool,
    /// Networks allowed to write; empty allows everyone not denied.
    pub write_allow: Vec<IpNet>,
    /// Networks never allowed to write (wins over allow).
    pub write_deny: Vec<IpNet>,
}

/// The message for a request over RFC 2347's 512 octets, however the io layer noticed.
pub const REQUEST_TOO_LONG: &str = "request longer than 512 octets";

fn refuse(code: ErrorCode, message: &'static str) -> Refusal {
    Refusal::new(code, message)
}

/// Parses and checks a request datagram received from `client`.
///
/// The io layer then opens `path` under the root (for a WRQ calling [`check_overwrite`]
/// once it knows whether the file exists) and negotiates with the file size.
pub fn plan(client: IpAddr, bytes: &[u8], policy: &AccessPolicy) -> Result<Request, Refusal> {
    let request = parse_request(bytes)?;
    check_access(client, request.direction, policy)?;
    Ok(request)
}

/// True for an ERROR packet, which is never answered (RFC 1350 §7: errors are not
/// acknowledged), so two peers cannot bounce errors and a spoofed one reflects nothing.
/// Checked before anything that would reply (rate limits, size), not only in [`plan`].
pub fn must_not_answer(bytes: &[u8]) -> bool {
    matches!(bytes, [hi, lo, ..] if Opcode::from_u16(u16::from_be_bytes([*hi, *lo])) == Some(Opcode::Error))
}

/// Parses a request datagram (RFC 1350 §5, RFC 2347) without looking at the client.
pub fn parse_request(bytes: &[u8]) -> Result<Request, Refusal> {
    let (direction, filename, mode, options) = match Repr::parse_bytes(bytes) {
        Ok(Repr::Rrq { filename, mode, options }) => (Direction::Read, filename, mode, options),
        Ok(Repr::Wrq { filename, mode, options }) => (Direction::Write, filename, mode, options),
        // RFC 1350 §5: only RRQ and WRQ open a transfer, whatever the rest of the packet
        // holds (a stray OACK with a broken option list is still ERROR 4, not ERROR 8).
        Ok(_) => return Err(refuse(ErrorCode::IllegalOperation, "expected RRQ or WRQ")),
        Err(_) if !is_request(bytes) => {
            return Err(refuse(ErrorCode::IllegalOperation, "expected RRQ or WRQ"))
        }
        // RFC 2347: unknown options are ignored however many or long they are; only a list
        // that does not pair up ends the request with ERROR 8, once the mode (checked first,
        // as RFC 1350 servers do) is known to be good.
        Err(WireError::BadOption | WireError::TooManyOptions) => {
            parse_mode(mode_of(bytes))?;
            known_options_only(bytes)
                .ok_or_else(|| refuse(ErrorCode::OptionNegotiation, "malformed option list"))?
        }
        Err(WireError::TooLong) => return Err(refuse(ErrorCode::IllegalOperation, REQUEST_TOO_LONG)),
        Err(_) => return Err(refuse(ErrorCode::IllegalOperation, "malformed request")),
    };
    let mode = parse_mode(mode)?;
    let path = normalize_path(filename)?;
    let name = filename.to_vec();
    Ok(Request { direction, path, name, mode, options: RequestedOptions::from_list(&options) })
}

/// Re-reads a request whose option list exceeds the wire parser's bounds (more than
/// `MAX_OPTIONS` pairs, or a string over `MAX_OPTION_LEN`), keeping only the options Ferry
/// knows; `None` when the list does not pair up.
fn known_options_only(bytes: &[u8]) -> Option<(Direction, &[u8], &[u8], OptionList<'_>)> {
    let direction = match Packet::new_unchecked(bytes).opcode()? {
        Opcode::Rrq => Direction::Read,
        Opcode::Wrq => Direction::Write,
        _ => return None,
    };
    // Every string ends with a NUL: without the last one, the pieces are the strings.
    let mut parts = bytes.get(2..)?.strip_suffix(&[0])?.split(|&b| b == 0);
    let (filename, mode) = (parts.next()?, parts.next()?);
    let mut options = OptionList::new();
    while let Some(name) = parts.next() {
        if name.is_empty() {
            // Trailing NUL padding (old clients) ends the list; nothing may follow it.
            return parts.all(<[u8]>::is_empty).then_some((direction, filename, mode, options));
        }
        let value = parts.next()?;
        if is_known_option(name) {
            // A full list holds the first occurrences, the ones that count; an over-long
            // value is no number and would be ignored anyway.
            let _ = options.push(name, value);
        }
    }
    Some((direction, filename, mode, options))
}

/// True when the opcode is RRQ or WRQ, however malformed the rest.
pub fn is_request(bytes: &[u8]) -> bool {
    matches!(Packet::new_unchecked(bytes).opcode(), Some(Opcode::Rrq | Opcode::Wrq))
}

/// True when the opcode is DATA or ACK: a packet of a running transfer (RFC 1350 §4).
pub fn is_data_or_ack(bytes: &[u8]) -> bool {
    matches!(Packet::new_unchecked(bytes).opcode(), Some(Opcode::Data | Opcode::Ack))
}

/// The mode string of a request whose option list did not parse (empty when absent).
fn mode_of(bytes: &[u8]) -> &[u8] {
    bytes.get(2..).unwrap_or(&[]).split(|&b| b == 0).nth(1).unwrap_or(&[])
}

/// Mode names compare ignoring case (RFC 1350 §5).
fn parse_mode(mode: &[u8]) -> Result<Mode, Refusal> {
    if mode.eq_ignore_ascii_case(b"octet") {
        Ok(Mode::Octet)
    } else if mode.eq_ignore_ascii_case(b"netascii") {
        Ok(Mode::Netascii)
    } else if mode.eq_ignore_ascii_case(b"mail") {
        // RFC 1350 §1: mail mode "is obsolete and should not be implemented or used".
        Err(refuse(ErrorCode::IllegalOperation, "mail mode is not supported"))
    } else {
        Err(refuse(ErrorCode::IllegalOperation, "unknown transfer mode"))
    }
}

/// Normalizes a requested name into a path relative to the root.
///
/// Backslashes count as `/` (Windows and some PXE menus send them), a leading `/` means
/// the root, empty and `.` components are dropped, and any `..` is an access violation
/// (RFC 1350 ERROR 2) rather than being resolved: a name that needs it is not honest.
pub fn normalize_path(name: &[u8]) -> Result<PathBuf, Refusal> {
    if name.is_empty() {
        return Err(refuse(ErrorCode::FileNotFound, "empty file name"));
    }
    // The wire format ends the name at the first NUL, so one inside cannot occur; check
    // anyway because this function is public.
    if name.contains(&0) {
        return Err(refuse(ErrorCode::AccessViolation, "NUL in file name"));
    }
    let mut out: Vec<u8> = Vec::with_capacity(name.len());
    for component in name.split(|&b| b == b'/' || b == b'\\') {
        match component {
            b"" | b"." => continue,
            b".." => return Err(refuse(ErrorCode::AccessViolation, "`..` in file name")),
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    if out.is_empty() {
        return Err(refuse(ErrorCode::FileNotFound, "file name names the root directory"));
    }
    Ok(PathBuf::from(OsStr::from_bytes(&out)))
}

/// True when `ip` may pass: not in `deny`, and in `allow` unless `allow` is empty.
pub fn ip_permitted(ip: IpAddr, allow: &[IpNet], deny: &[IpNet]) -> bool {
    // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; match them as IPv4.
    let ip = ip.to_canonical();
    if deny.iter().any(|n| n.contains(&ip)) {
        return false;
    }
    allow.is_empty() || allow.iter().any(|n| n.contains(&ip))
}

/// Decides whether `client` may make a request in `direction` (ERROR 2 when not).
pub fn check_access(client: IpAddr, direction: Direction, policy: &AccessPolicy) -> Result<(), Refusal> {
    match direction {
        Direction::Read if !ip_permitted(client, &policy.read_allow, &policy.read_deny) => {
            Err(refuse(ErrorCode::AccessViolation, "access denied"))
        }
        Direction::Write if !policy.write_enabled => {
            Err(refuse(ErrorCode::AccessViolation, "uploads are disabled"))
        }
        Direction::Write if !ip_permitted(client, &policy.write_allow, &policy.write_deny) => {
            Err(refuse(ErrorCode::AccessViolation, "access denied"))
        }
        _ => Ok(()),
    }
}

/// For a WRQ once the io layer knows whether the target exists: ERROR 6 unless overwrite is on.
pub fn check_overwrite(exists: bool, policy: &AccessPolicy) -> Result<(), Refusal> {
    if exists && !policy.overwrite {
        return Err(refuse(ErrorCode::FileExists, "file already exists"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rrq(name: &[u8], mode: &[u8]) -> Vec<u8> {
        [b"\x00\x01", name, b"\x00", mode, b"\x00"].concat()
    }

    #[test]
    fn error_packets_are_never_answered_whatever_their_length() {
        // RFC 1350 §7. Short or malformed ERRORs included: only the opcode matters.
        assert!(must_not_answer(b"\x00\x05\x00\x01oops\x00"));
        assert!(must_not_answer(b"\x00\x05"));
        assert!(!must_not_answer(b"\x00\x04\x00\x01"), "a stray ACK gets ERROR 4");
        assert!(!must_not_answer(b"\x00\x01f\x00octet\x00"));
        assert!(!must_not_answer(b"\x00"));
        assert!(!must_not_answer(b""));
    }

    #[test]
    fn normalizes_names() {
        let ok = |n: &[u8]| normalize_path(n).unwrap();
        assert_eq!(ok(b"pxelinux.0"), PathBuf::from("pxelinux.0"));
        assert_eq!(ok(b"/boot//grub/./x"), PathBuf::from("boot/grub/x"));
        assert_eq!(ok(b"\\EFI\\BOOT\\bootx64.efi"), PathBuf::from("EFI/BOOT/bootx64.efi"));
        assert_eq!(ok(b"a..b/..c"), PathBuf::from("a..b/..c"));
    }

    #[test]
    fn refuses_traversal_and_empty_names() {
        let code = |n: &[u8]| normalize_path(n).unwrap_err().code;
        assert_eq!(code(b"../etc/passwd"), ErrorCode::AccessViolation);
        assert_eq!(code(b"a/../../b"), ErrorCode::AccessViolation);
        assert_eq!(code(b"a\\..\\b"), ErrorCode::AccessViolation);
        assert_eq!(code(b""), ErrorCode::FileNotFound);
        assert_eq!(code(b"/"), ErrorCode::FileNotFound);
        assert_eq!(code(b"a\0b"), ErrorCode::AccessViolation);
    }

    #[test]
    fn modes_per_rfc_1350() {
        let p = parse_request(&rrq(b"f", b"NetASCII")).unwrap();
        assert_eq!(p.mode, Mode::Netascii);
        assert_eq!(parse_request(&rrq(b"f", b"OCTET")).unwrap().mode, Mode::Octet);
        assert_eq!(parse_request(&rrq(b"f", b"mail")).unwrap_err().code, ErrorCode::IllegalOperation);
        assert_eq!(parse_request(&rrq(b"f", b"binary")).unwrap_err().code, ErrorCode::IllegalOperation);
    }

    #[test]
    fn malformed_requests_get_the_rfc_code() {
        assert_eq!(
            parse_request(b"\x00\x01f\x00octet\x00blksize\x00").unwrap_err().code,
            ErrorCode::OptionNegotiation
        );
        assert_eq!(parse_request(b"\x00\x04\x00\x01").unwrap_err().code, ErrorCode::IllegalOperation);
        assert_eq!(parse_request(b"\x00\x01f").unwrap_err().code, ErrorCode::IllegalOperation);
    }

    #[test]
    fn every_malformed_or_non_request_packet_is_error_4() {
        let code = |b: &[u8]| parse_request(b).unwrap_err().code;
        let cases: &[&[u8]] = &[
            b"",
            b"\x00",
            b"\x00\x01",
            // No NUL after the file name, then none after the mode.
            b"\x00\x01file",
            b"\x00\x02file\x00octet",
            // Unknown opcodes, DATA, ACK, OACK (even one with a broken option list).
            b"\x00\x00f\x00octet\x00",
            b"\x00\x07f\x00octet\x00",
            b"\xff\xfff\x00octet\x00",
            b"\x00\x03\x00\x01data",
            b"\x00\x03",
            b"\x00\x04\x00",
            b"\x00\x06blksize\x00512\x00",
            b"\x00\x06blksize\x00",
            // A NUL inside the name makes the rest the mode: "le" is no mode.
            b"\x00\x01fi\x00le\x00octet\x00",
        ];
        for bytes in cases {
            assert_eq!(code(bytes), ErrorCode::IllegalOperation, "{bytes:?}");
        }
        // RFC 2347: a request is at most 512 octets.
        let long = [b"\x00\x01".as_slice(), &[b'a'; 600], b"\x00octet\x00"].concat();
        assert_eq!(code(&long), ErrorCode::IllegalOperation);
        let name = "n".repeat(500);
        assert!(parse_request(&rrq(name.as_bytes(), b"octet")).is_ok(), "509 octets are still a request");
    }

    #[test]
    fn unknown_options_are_ignored_however_many_or_long() {
        let mut req = b"\x00\x01f\x00octet\x00".to_vec();
        for i in 0..40 {
            req.extend(format!("x{i}\x00y\x00").as_bytes());
        }
        req.extend(b"blksize\x001024\x00");
        let r = parse_request(&req).unwrap();
        let n = crate::tftp::negotiate(Direction::Read, &r.options, &Default::default(), Some(9)).unwrap();
        assert_eq!(n.values.blksize, 1024, "a known option after 40 unknown ones still counts");
        let long = [b"\x00\x01f\x00octet\x00x-vendor\x00".as_slice(), &[b'v'; 300], b"\x00tsize\x000\x00"];
        let r = parse_request(&long.concat()).unwrap();
        let n = crate::tftp::negotiate(Direction::Read, &r.options, &Default::default(), Some(9)).unwrap();
        assert_eq!(n.values.tsize, Some(9));
        // Padding after the list is fine; a name without its value is not.
        assert!(parse_request(&[req.as_slice(), b"\x00\x00"].concat()).is_ok());
        let dangling = [req.as_slice(), b"timeout\x00"].concat();
        assert_eq!(parse_request(&dangling).unwrap_err().code, ErrorCode::OptionNegotiation);
    }

    #[test]
    fn options_and_modes_in_any_case() {
        let req = [b"\x00\x01f\x00OcTeT\x00BLKSIZE\x001024\x00TSize\x000\x00".as_slice()].concat();
        let r = parse_request(&req).unwrap();
        assert_eq!(r.mode, Mode::Octet);
        let n = crate::tftp::negotiate(Direction::Read, &r.options, &Default::default(), Some(9)).unwrap();
        assert_eq!((n.values.blksize, n.values.tsize), (1024, Some(9)));
    }

    #[test]
    fn access_lists_by_direction() {
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        let policy = AccessPolicy {
            read_allow: vec![net("10.0.0.0/8")],
            read_deny: vec![net("10.9.0.0/16")],
            write_enabled: true,
            write_allow: vec![net("10.1.0.0/16")],
            ..AccessPolicy::default()
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(check_access(ip("10.2.3.4"), Direction::Read, &policy).is_ok());
        // IPv4-mapped addresses from a dual-stack socket match IPv4 networks.
        assert!(check_access(ip("::ffff:10.2.3.4"), Direction::Read, &policy).is_ok());
        assert!(check_access(ip("10.9.3.4"), Direction::Read, &policy).is_err());
        assert!(check_access(ip("192.168.1.1"), Direction::Read, &policy).is_err());
        assert!(check_access(ip("10.2.3.4"), Direction::Write, &policy).is_err());
        assert!(check_access(ip("10.1.3.4"), Direction::Write, &policy).is_ok());
        let closed = AccessPolicy { write_enabled: false, ..policy };
        let e = check_access(ip("10.1.3.4"), Direction::Write, &closed).unwrap_err();
        assert_eq!(e.code, ErrorCode::AccessViolation);
        let wrq = [b"\x00\x02up.bin\x00octet\x00".as_slice()].concat();
        assert!(plan(ip("10.1.3.4"), &wrq, &closed).is_err());
    }

    #[test]
    fn overwrite_needs_permission() {
        let p = AccessPolicy { write_enabled: true, ..AccessPolicy::default() };
        assert_eq!(check_overwrite(true, &p).unwrap_err().code, ErrorCode::FileExists);
        assert!(check_overwrite(false, &p).is_ok());
        assert!(check_overwrite(true, &AccessPolicy { overwrite: true, ..p }).is_ok());
    }
}
