//! Option negotiation (RFC 2347) for blksize (RFC 2348), timeout and tsize (RFC 2349) and
//! windowsize (RFC 7440). Pure: requested options and server caps in, negotiated values and
//! the OACK out. Unknown or unacceptable options are left out of the OACK, never echoed.

use super::wire::{Datagram, ErrorCode, OptionList, Repr};
use super::Refusal;

/// RFC 1350 block size, used when `blksize` is not negotiated.
pub const DEFAULT_BLKSIZE: u16 = 512;
/// RFC 2348 smallest block size.
pub const MIN_BLKSIZE: u16 = 8;
/// RFC 2348 largest block size (65535 less IP and UDP headers).
pub const MAX_BLKSIZE: u16 = 65464;

/// Whether the client reads (RRQ) or writes (WRQ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// RRQ: the server sends DATA.
    Read,
    /// WRQ: the server receives DATA.
    Write,
}

/// Options Ferry understands, in the order the client sent them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Blksize,
    Timeout,
    Tsize,
    Windowsize,
}

impl Known {
    /// The option named `name`, compared ignoring ASCII case (RFC 2347).
    fn from_name(name: &[u8]) -> Option<Known> {
        [Known::Blksize, Known::Timeout, Known::Tsize, Known::Windowsize]
            .into_iter()
            .find(|k| name.eq_ignore_ascii_case(k.name().as_bytes()))
    }

    fn name(self) -> &'static str {
        match self {
            Known::Blksize => "blksize",
            Known::Timeout => "timeout",
            Known::Tsize => "tsize",
            Known::Windowsize => "windowsize",
        }
    }
}

/// The known options of a request, decoded; values that are not decimal numbers are dropped.
///
/// Duplicates: the first occurrence wins (even when its value is unusable) and later ones
/// are ignored. RFC 2347 does not
/// define repeats; ignoring them follows its rule for options the server does not accept
/// (leave them out of the OACK) and RFC 1123 §1.2.2 robustness, and never lets two parsers
/// disagree about which value counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestedOptions {
    order: [Option<(Known, u64)>; 4],
}

/// True for an option Ferry negotiates (names compared ignoring case).
pub fn is_known_option(name: &[u8]) -> bool {
    Known::from_name(name).is_some()
}

/// Parses a decimal option value; saturates on overflow so huge values stay "too big".
pub fn parse_decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u64, |acc, &d| acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))))
}

impl RequestedOptions {
    /// Picks the known options out of a request's list (names compared ignoring case).
    pub fn from_list(list: &OptionList<'_>) -> RequestedOptions {
        let mut out = RequestedOptions::default();
        let mut n = 0;
        let mut seen = [false; 4];
        for (name, value) in list.as_slice() {
            let Some(known) = Known::from_name(name) else { continue };
            // First occurrence wins even when its value is unusable: later ones never count.
            match seen.get_mut(known as usize) {
                Some(s) if !*s => *s = true,
                _ => continue,
            }
            let Some(v) = parse_decimal(value) else { continue };
            if let Some(slot) = out.order.get_mut(n) {
                *slot = Some((known, v));
                n += 1;
            }
        }
        out
    }

    /// True when no known option was requested.
    pub fn is_empty(&self) -> bool {
        self.order.iter().all(Option::is_none)
    }
}

/// What the server is willing to grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerCaps {
    /// Largest block size granted (a larger request is answered with this).
    pub max_blksize: u16,
    /// Largest window granted (RFC 7440).
    pub max_windowsize: u16,
    /// Largest upload accepted, in bytes (WRQ `tsize` above it is refused with ERROR 3).
    pub upload_quota: u64,
}

impl Default for ServerCaps {
    fn default() -> Self {
        ServerCaps { max_blksize: 1468, max_windowsize: 64, upload_quota: 64 << 20 }
    }
}

/// Values in force for one transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Bytes per DATA block (RFC 2348; 512 without the option).
    pub blksize: u16,
    /// Blocks per window (RFC 7440; 1 without the option).
    pub windowsize: u16,
    /// Retransmission timeout in seconds, when the client set one (RFC 2349).
    pub timeout_secs: Option<u8>,
    /// Transfer size the OACK carries (RFC 2349), if negotiated.
    pub tsize: Option<u64>,
}

impl Default for Negotiated {
    fn default() -> Self {
        Negotiated { blksize: DEFAULT_BLKSIZE, windowsize: 1, timeout_secs: None, tsize: None }
    }
}

/// Negotiated values plus the OACK to send (None: no option accepted, so the transfer
/// starts as plain RFC 1350 with DATA 1 or ACK 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiation {
    /// Values in force.
    pub values: Negotiated,
    /// The OACK datagram, when at least one option was accepted (RFC 2347).
    pub oack: Option<Datagram>,
}

/// Negotiates a request's options.
///
/// `file_size` is the size the transfer will send for an RRQ (for netascii the converted
/// size), used to answer `tsize`; it is ignored for a WRQ, where `tsize` is the client's
/// announced size and is checked against `caps.upload_quota`.
pub fn negotiate(
    direction: Direction,
    requested: &RequestedOptions,
    caps: &ServerCaps,
    file_size: Option<u64>,
) -> Result<Negotiation, Refusal> {
    let mut values = Negotiated::default();
    let mut accepted: [Option<(Known, u64)>; 4] = [None; 4];
    for (i, (known, v)) in requested.order.iter().flatten().enumerate() {
        let granted = match known {
            // RFC 2348: 8..=65464, answered with our cap when above it; a value outside the
            // RFC's range is invalid and left out of the OACK, like any unusable option.
            Known::Blksize if (u64::from(MIN_BLKSIZE)..=u64::from(MAX_BLKSIZE)).contains(v) => {
                let b = (*v).min(u64::from(caps.max_blksize.min(MAX_BLKSIZE)));
                values.blksize = u16::try_from(b).unwrap_or(DEFAULT_BLKSIZE);
                Some(b)
            }
            // RFC 2349: 1..=255 seconds, echoed unchanged; out of range is ignored.
            Known::Timeout if (1..=255).contains(v) => {
                values.timeout_secs = u8::try_from(*v).ok();
                Some(*v)
            }
            // RFC 2349: RRQ answers with the size; WRQ carries the client's size.
            Known::Tsize => match direction {
                Direction::Read => file_size,
                Direction::Write if *v > caps.upload_quota => {
                    return Err(Refusal::new(ErrorCode::DiskFull, "disk full or allocation exceeded"));
                }
                Direction::Write => Some(*v),
            },
            // RFC 7440: 1..=65535, clamped to our cap; outside that range it is ignored.
            Known::Windowsize if (1..=u64::from(u16::MAX)).contains(v) => {
                let w = (*v).min(u64::from(caps.max_windowsize.max(1)));
                values.windowsize = u16::try_from(w).unwrap_or(1);
                Some(w)
            }
            _ => None,
        };
        if let (Some(g), Some(slot)) = (granted, accepted.get_mut(i)) {
            *slot = Some((*known, g));
            if *known == Known::Tsize {
                values.tsize = Some(g);
            }
        }
    }
    let oack = build_oack(&accepted)?;
    Ok(Negotiation { values, oack })
}

fn build_oack(accepted: &[Option<(Known, u64)>; 4]) -> Result<Option<Datagram>, Refusal> {
    if accepted.iter().all(Option::is_none) {
        return Ok(None);
    }
    let mut digits = [[0u8; 20]; 4];
    let mut lens = [0usize; 4];
    for ((slot, buf), len) in accepted.iter().zip(digits.iter_mut()).zip(lens.iter_mut()) {
        if let Some((_, v)) = slot {
            *len = format_decimal(*v, buf);
        }
    }
    let mut list = OptionList::new();
    for ((slot, buf), len) in accepted.iter().zip(digits.iter()).zip(lens.iter()) {
        if let Some((k, _)) = slot {
            let value = buf.get(..*len).unwrap_or(&[]);
            list.push(k.name().as_bytes(), value).map_err(|_| Refusal::internal())?;
        }
    }
    Datagram::from_repr(&Repr::Oack { options: list }).map(Some).map_err(|_| Refusal::internal())
}

/// Writes `v` in decimal into `buf`, returning the digit count (u64 needs at most 20).
fn format_decimal(mut v: u64, buf: &mut [u8; 20]) -> usize {
    let mut tmp = [0u8; 20];
    let mut n = 0;
    loop {
        if let Some(slot) = tmp.get_mut(n) {
            *slot = b'0' + (v % 10) as u8;
        }
        n += 1;
        v /= 10;
        if v == 0 || n == tmp.len() {
            break;
        }
    }
    for (dst, src) in buf.iter_mut().zip(tmp.iter().take(n).rev()) {
        *dst = *src;
    }
    n
}

#[cfg(test)]
mod tests;
