//! TFTP packets as typed views over byte buffers (RFC 1350 §5, OACK from RFC 2347).
//! [`Packet`] checks lengths once in `new_checked`, after which no accessor can panic;
//! [`Repr`] is the parsed form with `parse` / `emit` and never allocates.

use std::fmt;

/// Byte offsets of the fixed fields; every index into a packet goes through this table.
mod field {
    use std::ops::Range;
    /// Opcode of every packet (RFC 1350 §5).
    pub const OPCODE: Range<usize> = 0..2;
    /// Block number of DATA and ACK.
    pub const BLOCK: Range<usize> = 2..4;
    /// Error code of ERROR.
    pub const ERROR_CODE: Range<usize> = 2..4;
    /// Start of DATA payload and of the ERROR message.
    pub const PAYLOAD: usize = 4;
    /// Start of the NUL-terminated strings of RRQ, WRQ and OACK.
    pub const STRINGS: usize = 2;
}

/// Length of a DATA header; file bytes start at this offset of a DATA datagram.
pub const DATA_HEADER_LEN: usize = field::PAYLOAD;
/// RFC 2347: a request (and an OACK) must not exceed 512 octets.
pub const MAX_REQUEST_LEN: usize = 512;
/// Most options a request may carry; more is refused (unbounded lists fed old CVEs).
pub const MAX_OPTIONS: usize = 16;
/// Longest option name or value accepted, in bytes.
pub const MAX_OPTION_LEN: usize = 255;

/// Why bytes are not a well-formed TFTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than the fixed header of its opcode.
    #[error("packet is truncated")]
    Truncated,
    /// Opcode outside 1..=6.
    #[error("unknown opcode {0}")]
    UnknownOpcode(u16),
    /// A request or OACK longer than 512 octets (RFC 2347).
    #[error("request longer than 512 octets")]
    TooLong,
    /// A filename or mode string with no terminating NUL.
    #[error("string without terminating NUL")]
    Unterminated,
    /// An option name without a value, an empty name, or an over-long name or value.
    #[error("malformed option list")]
    BadOption,
    /// More than [`MAX_OPTIONS`] options.
    #[error("too many options")]
    TooManyOptions,
    /// The output buffer cannot hold the packet.
    #[error("buffer too small")]
    BufferTooSmall,
}

/// Packet opcodes (RFC 1350 §5; OACK is RFC 2347).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Opcode {
    /// Read request.
    Rrq = 1,
    /// Write request.
    Wrq = 2,
    /// Data block.
    Data = 3,
    /// Acknowledgment.
    Ack = 4,
    /// Error.
    Error = 5,
    /// Option acknowledgment (RFC 2347).
    Oack = 6,
}

impl Opcode {
    /// The opcode for a wire value, if known.
    pub fn from_u16(v: u16) -> Option<Opcode> {
        Some(match v {
            1 => Opcode::Rrq,
            2 => Opcode::Wrq,
            3 => Opcode::Data,
            4 => Opcode::Ack,
            5 => Opcode::Error,
            6 => Opcode::Oack,
            _ => return None,
        })
    }
}

/// ERROR packet codes (RFC 1350 appendix; 8 from RFC 2347).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// 0: not defined, see the message.
    NotDefined = 0,
    /// 1: file not found.
    FileNotFound = 1,
    /// 2: access violation.
    AccessViolation = 2,
    /// 3: disk full or allocation exceeded.
    DiskFull = 3,
    /// 4: illegal TFTP operation.
    IllegalOperation = 4,
    /// 5: unknown transfer ID.
    UnknownTransferId = 5,
    /// 6: file already exists.
    FileExists = 6,
    /// 7: no such user.
    NoSuchUser = 7,
    /// 8: terminate transfer due to option negotiation (RFC 2347).
    OptionNegotiation = 8,
}

impl ErrorCode {
    /// The code for a wire value, if it is one of 0..=8.
    pub fn from_u16(v: u16) -> Option<ErrorCode> {
        use ErrorCode::*;
        Some(match v {
            0 => NotDefined,
            1 => FileNotFound,
            2 => AccessViolation,
            3 => DiskFull,
            4 => IllegalOperation,
            5 => UnknownTransferId,
            6 => FileExists,
            7 => NoSuchUser,
            8 => OptionNegotiation,
            _ => return None,
        })
    }

    /// The RFC's wording, used as the default message.
    pub fn description(self) -> &'static str {
        use ErrorCode::*;
        match self {
            NotDefined => "not defined",
            FileNotFound => "file not found",
            AccessViolation => "access violation",
            DiskFull => "disk full or allocation exceeded",
            IllegalOperation => "illegal TFTP operation",
            UnknownTransferId => "unknown transfer ID",
            FileExists => "file already exists",
            NoSuchUser => "no such user",
            OptionNegotiation => "option negotiation failed",
        }
    }
}

fn read_u16(buf: &[u8], at: std::ops::Range<usize>) -> u16 {
    match buf.get(at) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]),
        _ => 0,
    }
}

/// A read-only or writable view of a TFTP datagram.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it; accessors still never panic, they return zeros.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after checking the opcode and the fixed header length.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer holds a known opcode and its fixed header.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < field::OPCODE.end {
            return Err(WireError::Truncated);
        }
        let op = self.opcode_raw();
        match Opcode::from_u16(op) {
            None => Err(WireError::UnknownOpcode(op)),
            Some(Opcode::Data | Opcode::Ack | Opcode::Error) if len < field::PAYLOAD => {
                Err(WireError::Truncated)
            }
            Some(Opcode::Rrq | Opcode::Wrq | Opcode::Oack) if len > MAX_REQUEST_LEN => {
                Err(WireError::TooLong)
            }
            Some(_) => Ok(()),
        }
    }

    /// The raw opcode field.
    pub fn opcode_raw(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::OPCODE)
    }

    /// The opcode, if known.
    pub fn opcode(&self) -> Option<Opcode> {
        Opcode::from_u16(self.opcode_raw())
    }

    /// Block number of a DATA or ACK.
    pub fn block(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::BLOCK)
    }

    /// Error code of an ERROR.
    pub fn error_code(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ERROR_CODE)
    }

    /// Payload of a DATA, or message bytes of an ERROR (terminating NUL included if sent).
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(field::PAYLOAD..).unwrap_or(&[])
    }

    /// The NUL-terminated strings of an RRQ, WRQ or OACK.
    pub fn strings(&self) -> &[u8] {
        self.buffer.as_ref().get(field::STRINGS..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the opcode field; the buffer must hold at least 2 bytes.
    pub fn set_opcode(&mut self, op: Opcode) {
        if let Some(f) = self.buffer.as_mut().get_mut(field::OPCODE) {
            f.copy_from_slice(&(op as u16).to_be_bytes());
        }
    }

    /// Sets the block (or error code) field; the buffer must hold at least 4 bytes.
    pub fn set_block(&mut self, block: u16) {
        if let Some(f) = self.buffer.as_mut().get_mut(field::BLOCK) {
            f.copy_from_slice(&block.to_be_bytes());
        }
    }
}

/// Writes a DATA header for `block` into `buf[..4]`, so file bytes can be read into `buf[4..]`.
pub fn write_data_header(buf: &mut [u8], block: u16) -> Result<(), WireError> {
    let header = buf.get_mut(..DATA_HEADER_LEN).ok_or(WireError::BufferTooSmall)?;
    let mut p = Packet::new_unchecked(header);
    p.set_opcode(Opcode::Data);
    p.set_block(block);
    Ok(())
}

/// A bounded list of (name, value) option pairs borrowed from a packet (RFC 2347).
#[derive(Clone, Copy)]
pub struct OptionList<'a> {
    items: [(&'a [u8], &'a [u8]); MAX_OPTIONS],
    len: usize,
}

impl<'a> OptionList<'a> {
    /// An empty list.
    pub const fn new() -> Self {
        OptionList { items: [(&[], &[]); MAX_OPTIONS], len: 0 }
    }

    /// Appends a pair; refuses empty names, over-long strings and a full list.
    pub fn push(&mut self, name: &'a [u8], value: &'a [u8]) -> Result<(), WireError> {
        if name.is_empty() || name.len() > MAX_OPTION_LEN || value.len() > MAX_OPTION_LEN {
            return Err(WireError::BadOption);
        }
        if name.contains(&0) || value.contains(&0) {
            return Err(WireError::BadOption);
        }
        let slot = self.items.get_mut(self.len).ok_or(WireError::TooManyOptions)?;
        *slot = (name, value);
        self.len += 1;
        Ok(())
    }

    /// The pairs in packet order.
    pub fn as_slice(&self) -> &[(&'a [u8], &'a [u8])] {
        self.items.get(..self.len).unwrap_or(&[])
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there is no option.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first value whose name matches `name` ignoring ASCII case (RFC 2347).
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.as_slice().iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| *v)
    }

    fn emit_len(&self) -> usize {
        self.as_slice().iter().map(|(n, v)| n.len() + v.len() + 2).sum()
    }
}

impl Default for OptionList<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for OptionList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for OptionList<'_> {}

impl fmt::Debug for OptionList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.as_slice().iter().map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

/// A parsed TFTP packet borrowing from its datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr<'a> {
    /// Read request (RFC 1350 §5) with options (RFC 2347).
    Rrq {
        /// Requested file name, raw bytes.
        filename: &'a [u8],
        /// Transfer mode, raw bytes (`octet`, `netascii`, ... in any case).
        mode: &'a [u8],
        /// Requested options.
        options: OptionList<'a>,
    },
    /// Write request (RFC 1350 §5) with options (RFC 2347).
    Wrq {
        /// Requested file name, raw bytes.
        filename: &'a [u8],
        /// Transfer mode, raw bytes.
        mode: &'a [u8],
        /// Requested options.
        options: OptionList<'a>,
    },
    /// Data block (RFC 1350 §5).
    Data {
        /// Wire block number.
        block: u16,
        /// Payload, at most the negotiated block size.
        data: &'a [u8],
    },
    /// Acknowledgment (RFC 1350 §5).
    Ack {
        /// Wire block number.
        block: u16,
    },
    /// Error (RFC 1350 §5); `code` is raw so unknown peer codes still parse.
    Error {
        /// Error code, see [`ErrorCode::from_u16`].
        code: u16,
        /// Message without its terminating NUL.
        message: &'a [u8],
    },
    /// Option acknowledgment (RFC 2347).
    Oack {
        /// Accepted options with their final values.
        options: OptionList<'a>,
    },
}

/// Splits `bytes` at the first NUL: (string, rest after the NUL).
fn take_cstr(bytes: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let end = bytes.iter().position(|&b| b == 0).ok_or(WireError::Unterminated)?;
    Ok((bytes.get(..end).unwrap_or(&[]), bytes.get(end + 1..).unwrap_or(&[])))
}

/// Parses `name NUL value NUL ...`; trailing all-NUL padding (sent by some old clients) is ignored.
fn parse_options(mut rest: &[u8]) -> Result<OptionList<'_>, WireError> {
    let mut options = OptionList::new();
    while !rest.iter().all(|&b| b == 0) {
        let (name, after) = take_cstr(rest).map_err(|_| WireError::BadOption)?;
        let (value, after) = take_cstr(after).map_err(|_| WireError::BadOption)?;
        options.push(name, value)?;
        rest = after;
    }
    Ok(options)
}

fn emit_strings(out: &mut [u8], strings: &[&[u8]]) -> usize {
    let mut at = 0;
    for s in strings {
        if let Some(dst) = out.get_mut(at..at + s.len()) {
            dst.copy_from_slice(s);
        }
        if let Some(nul) = out.get_mut(at + s.len()) {
            *nul = 0;
        }
        at += s.len() + 1;
    }
    at
}

impl<'a> Repr<'a> {
    /// Parses a packet view (checked again here, so an unchecked view is safe too).
    pub fn parse(packet: &Packet<&'a [u8]>) -> Result<Repr<'a>, WireError> {
        packet.check_len()?;
        let bytes: &'a [u8] = packet.buffer;
        let op = packet.opcode().ok_or(WireError::UnknownOpcode(packet.opcode_raw()))?;
        let strings: &'a [u8] = bytes.get(field::STRINGS..).unwrap_or(&[]);
        let payload: &'a [u8] = bytes.get(field::PAYLOAD..).unwrap_or(&[]);
        Ok(match op {
            Opcode::Rrq | Opcode::Wrq => {
                let (filename, rest) = take_cstr(strings)?;
                let (mode, rest) = take_cstr(rest)?;
                let options = parse_options(rest)?;
                if op == Opcode::Rrq {
                    Repr::Rrq { filename, mode, options }
                } else {
                    Repr::Wrq { filename, mode, options }
                }
            }
            Opcode::Data => Repr::Data { block: packet.block(), data: payload },
            Opcode::Ack => Repr::Ack { block: packet.block() },
            Opcode::Error => {
                // Lenient: some stacks omit the NUL; the message then runs to the end.
                let message = match payload.iter().position(|&b| b == 0) {
                    Some(end) => payload.get(..end).unwrap_or(&[]),
                    None => payload,
                };
                Repr::Error { code: packet.error_code(), message }
            }
            Opcode::Oack => Repr::Oack { options: parse_options(strings)? },
        })
    }

    /// Parses a datagram in one step.
    pub fn parse_bytes(bytes: &'a [u8]) -> Result<Repr<'a>, WireError> {
        Repr::parse(&Packet::new_checked(bytes)?)
    }

    /// An ERROR with a typed code.
    pub fn error(code: ErrorCode, message: &'a str) -> Repr<'a> {
        Repr::Error { code: code as u16, message: message.as_bytes() }
    }

    /// Bytes [`Repr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        2 + match self {
            Repr::Rrq { filename, mode, options } | Repr::Wrq { filename, mode, options } => {
                filename.len() + mode.len() + 2 + options.emit_len()
            }
            Repr::Data { data, .. } => 2 + data.len(),
            Repr::Ack { .. } => 2,
            Repr::Error { message, .. } => 2 + message.len() + 1,
            Repr::Oack { options } => options.emit_len(),
        }
    }

    /// Writes the packet into `buf`, returning its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let len = self.buffer_len();
        let out = buf.get_mut(..len).ok_or(WireError::BufferTooSmall)?;
        let mut packet = Packet::new_unchecked(&mut *out);
        let op = match self {
            Repr::Rrq { .. } => Opcode::Rrq,
            Repr::Wrq { .. } => Opcode::Wrq,
            Repr::Data { .. } => Opcode::Data,
            Repr::Ack { .. } => Opcode::Ack,
            Repr::Error { .. } => Opcode::Error,
            Repr::Oack { .. } => Opcode::Oack,
        };
        packet.set_opcode(op);
        let strings_out = out.get_mut(field::STRINGS..).unwrap_or(&mut []);
        match self {
            Repr::Rrq { filename, mode, options } | Repr::Wrq { filename, mode, options } => {
                let at = emit_strings(strings_out, &[filename, mode]);
                emit_option_strings(strings_out.get_mut(at..).unwrap_or(&mut []), options);
            }
            Repr::Oack { options } => {
                emit_option_strings(strings_out, options);
            }
            Repr::Data { block, data } => {
                Packet::new_unchecked(&mut *out).set_block(*block);
                if let Some(dst) = out.get_mut(field::PAYLOAD..) {
                    dst.copy_from_slice(data);
                }
            }
            Repr::Ack { block } => Packet::new_unchecked(&mut *out).set_block(*block),
            Repr::Error { code, message } => {
                Packet::new_unchecked(&mut *out).set_block(*code);
                emit_strings(out.get_mut(field::PAYLOAD..).unwrap_or(&mut []), &[message]);
            }
        }
        Ok(len)
    }
}

fn emit_option_strings(out: &mut [u8], options: &OptionList<'_>) {
    let mut at = 0;
    for (n, v) in options.as_slice() {
        at += emit_strings(out.get_mut(at..).unwrap_or(&mut []), &[n, v]);
    }
}

/// Capacity of a [`Datagram`]: our OACK (four numeric options) needs under 80 bytes and
/// our ERROR messages are short; longer messages are cut.
pub const DATAGRAM_CAPACITY: usize = 128;

/// A small, fully formed control datagram (OACK, ACK or ERROR) stored inline, so queuing
/// one never allocates.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    buf: [u8; DATAGRAM_CAPACITY],
    len: u8,
}

impl Datagram {
    /// Emits `repr` into a new datagram; fails when it exceeds [`DATAGRAM_CAPACITY`].
    pub fn from_repr(repr: &Repr<'_>) -> Result<Datagram, WireError> {
        let mut buf = [0u8; DATAGRAM_CAPACITY];
        let len = repr.emit(&mut buf)?;
        Ok(Datagram { buf, len: u8::try_from(len).map_err(|_| WireError::TooLong)? })
    }

    /// An ACK for a wire block number.
    pub fn ack(block: u16) -> Datagram {
        let mut buf = [0u8; DATAGRAM_CAPACITY];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_opcode(Opcode::Ack);
        p.set_block(block);
        Datagram { buf, len: 4 }
    }

    /// An ERROR; the message is cut to fit [`DATAGRAM_CAPACITY`].
    pub fn error(code: ErrorCode, message: &str) -> Datagram {
        let max = DATAGRAM_CAPACITY - field::PAYLOAD - 1;
        let msg = message.as_bytes();
        let msg = msg.get(..max.min(msg.len())).unwrap_or(&[]);
        let repr = Repr::Error { code: code as u16, message: msg };
        // Cannot fail: the message was cut to fit; fall back to an empty message anyway.
        Datagram::from_repr(&repr).unwrap_or_else(|_| Datagram::ack(0))
    }

    /// The datagram's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

impl fmt::Debug for Datagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Repr::parse_bytes(self.as_bytes()) {
            Ok(r) => write!(f, "Datagram({r:?})"),
            Err(_) => write!(f, "Datagram({:?})", self.as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests;
