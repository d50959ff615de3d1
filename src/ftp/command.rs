//! Parses one control line (without CR LF, Telnet already stripped) into a typed [`Command`].
//! Syntax from RFC 959 §5.3, EPRT/EPSV RFC 2428 §2-3, SIZE/MDTM/REST/MLST RFC 3659,
//! FEAT/OPTS RFC 2389, UTF8 RFC 2640, HOST RFC 7151, MFMT draft-somers-ftp-mfxx.

use super::listing::Fact;
use super::reply::Reply;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Representation type (RFC 959 §3.1.1); only ASCII non-print and image/L 8 exist here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferType {
    /// `TYPE A` / `TYPE A N`: lines converted between LF and CRLF.
    Ascii,
    /// `TYPE I` / `TYPE L 8`: bytes as stored.
    Binary,
}

/// Network protocol numbers of EPRT/EPSV (RFC 2428 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetProto {
    /// 1 = IPv4.
    V4,
    /// 2 = IPv6.
    V6,
}

/// The argument of EPSV (RFC 2428 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpsvArg {
    /// No argument: the control connection's protocol.
    Any,
    /// `EPSV ALL`: from now on only EPSV may set up data connections (RFC 2428 §4).
    All,
    /// `EPSV 1` or `EPSV 2`.
    Proto(NetProto),
}

/// The argument of OPTS (RFC 2389 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptsArg {
    /// `OPTS UTF8 ON|OFF` (RFC 2640 §3.2 / draft-ietf-ftpext-utf-8-option).
    Utf8(bool),
    /// `OPTS MLST fact;fact;` (RFC 3659 §7.9); unknown facts are dropped.
    Mlst(Vec<Fact>),
}

/// SITE sub-commands (RFC 959 §4.1.3 leaves SITE to the server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteCommand {
    /// `SITE CHMOD 0644 path`.
    Chmod {
        /// Permission bits (at most 0o7777).
        mode: u32,
        /// Target path argument.
        path: Vec<u8>,
    },
    /// `SITE HELP`.
    Help,
    /// Anything else (answered 500); holds the upper-cased sub-command.
    Other(String),
}

/// Arguments of LIST and NLST after leading `-x` options are dropped (as vsftpd does).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListArgs {
    /// Path argument, if any.
    pub path: Option<Vec<u8>>,
    /// An `a` or `A` option was given: include dot files.
    pub all: bool,
}

/// One parsed command; X-variants (XPWD, XCWD, ...) map to their RFC 959 names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// USER name (RFC 959 §4.1.1).
    User(Vec<u8>),
    /// PASS password.
    Pass(Vec<u8>),
    /// ACCT account (superfluous here).
    Acct,
    /// REIN: back to the state right after connecting.
    Rein,
    /// QUIT.
    Quit,
    /// CWD / XCWD path.
    Cwd(Vec<u8>),
    /// CDUP / XCUP.
    Cdup,
    /// PWD / XPWD.
    Pwd,
    /// TYPE.
    Type(TransferType),
    /// MODE S (only stream mode is accepted by the parser).
    Mode,
    /// STRU F (only file structure is accepted by the parser).
    Stru,
    /// PORT h1,h2,h3,h4,p1,p2 (RFC 959 §4.1.2).
    Port(SocketAddr),
    /// PASV.
    Pasv,
    /// EPRT |af|addr|port| (RFC 2428 §2).
    Eprt(SocketAddr),
    /// EPSV (RFC 2428 §3).
    Epsv(EpsvArg),
    /// RETR path.
    Retr(Vec<u8>),
    /// STOR path.
    Stor(Vec<u8>),
    /// STOU with an optional name hint.
    Stou(Option<Vec<u8>>),
    /// APPE path.
    Appe(Vec<u8>),
    /// REST offset (RFC 3659 §5, STREAM mode).
    Rest(u64),
    /// ALLO (superfluous, 202).
    Allo,
    /// RNFR path.
    Rnfr(Vec<u8>),
    /// RNTO path.
    Rnto(Vec<u8>),
    /// DELE path.
    Dele(Vec<u8>),
    /// MKD / XMKD path.
    Mkd(Vec<u8>),
    /// RMD / XRMD path.
    Rmd(Vec<u8>),
    /// LIST.
    List(ListArgs),
    /// NLST.
    Nlst(ListArgs),
    /// MLSD [path] (RFC 3659 §7).
    Mlsd(Option<Vec<u8>>),
    /// MLST [path] (RFC 3659 §7).
    Mlst(Option<Vec<u8>>),
    /// SIZE path (RFC 3659 §4).
    Size(Vec<u8>),
    /// MDTM path (RFC 3659 §3).
    Mdtm(Vec<u8>),
    /// MFMT time path: set the modification time (unix seconds, UTC).
    Mfmt {
        /// New mtime in unix seconds.
        mtime: i64,
        /// Target path argument.
        path: Vec<u8>,
    },
    /// SITE sub-command.
    Site(SiteCommand),
    /// SYST.
    Syst,
    /// STAT [path].
    Stat(Option<Vec<u8>>),
    /// HELP [topic].
    Help,
    /// NOOP.
    Noop,
    /// FEAT (RFC 2389 §3).
    Feat,
    /// OPTS (RFC 2389 §4).
    Opts(OptsArg),
    /// HOST name (RFC 7151).
    Host(Vec<u8>),
    /// ABOR.
    Abor,
    /// AUTH mechanism (RFC 4217 §4; RFC 2228 §3).
    Auth(AuthMechanism),
    /// PBSZ size (RFC 4217 §8): always 0 for TLS.
    Pbsz(u64),
    /// PROT level (RFC 4217 §9).
    Prot(ProtLevel),
    /// CCC: back to a clear control connection (RFC 4217 §6), always refused.
    Ccc,
}

/// The security mechanism AUTH names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMechanism {
    /// `TLS`, `TLS-C`, or `SSL` (the name clients used before RFC 4217).
    Tls,
    /// Anything else (`GSSAPI`, `TLS-P`, ...): 504.
    Other(String),
}

/// The data channel protection level (RFC 2228 §3, PROT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtLevel {
    /// C: clear.
    Clear,
    /// S: integrity only (not offered by TLS).
    Safe,
    /// E: confidential only (not offered by TLS).
    Confidential,
    /// P: private, TLS on every data connection.
    Private,
}

impl Command {
    /// Commands a client may send while a transfer runs and that act at once (RFC 959 §4.1.3).
    pub fn is_out_of_band(&self) -> bool {
        matches!(self, Command::Abor | Command::Stat(None) | Command::Quit)
    }

    /// Commands after which a REST offset still applies to the next transfer: the transfer
    /// commands themselves, REST, and the data-connection and TYPE set-up clients put between.
    pub fn keeps_restart_offset(&self) -> bool {
        matches!(
            self,
            Command::Rest(_)
                | Command::Retr(_)
                | Command::Stor(_)
                | Command::Appe(_)
                | Command::Stou(_)
                | Command::Port(_)
                | Command::Eprt(_)
                | Command::Pasv
                | Command::Epsv(_)
                | Command::Type(_)
                | Command::Mode
                | Command::Stru
        )
    }

    /// Commands allowed before login (RFC 959 §5.4 login sequence; RFC 7151 HOST).
    pub fn allowed_before_login(&self) -> bool {
        matches!(
            self,
            Command::User(_)
                | Command::Pass(_)
                | Command::Acct
                | Command::Quit
                | Command::Help
                | Command::Feat
                | Command::Syst
                | Command::Noop
                | Command::Opts(_)
                | Command::Host(_)
                | Command::Rein
                | Command::Auth(_)
                | Command::Pbsz(_)
                | Command::Prot(_)
                | Command::Ccc
        )
    }
}

/// Why a line is not a command the server will run; each maps to one reply code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Empty line or unknown verb: 500.
    #[error("unknown command `{0}`")]
    Unknown(String),
    /// A known command Ferry does not implement (TLS, LPRT, ...): 502.
    #[error("{0} is not implemented")]
    NotImplemented(&'static str),
    /// Missing or malformed argument: 501.
    #[error("{verb}: {reason}")]
    Syntax {
        /// Command verb.
        verb: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
    /// A valid parameter Ferry does not support (MODE B, STRU R, TYPE E): 504.
    #[error("{verb}: {reason}")]
    Unsupported {
        /// Command verb.
        verb: &'static str,
        /// Which parameter.
        reason: &'static str,
    },
    /// EPRT/EPSV with an unknown network protocol: 522 (RFC 2428 §2-3).
    #[error("network protocol not supported")]
    NetworkProtocol,
}

impl ParseError {
    /// The reply this error earns.
    pub fn reply(&self) -> Reply {
        match self {
            ParseError::Unknown(_) => Reply::new(500, "Unknown command."),
            ParseError::NotImplemented(v) => Reply::new(502, format!("{v} not implemented.")),
            ParseError::Syntax { reason, .. } => Reply::new(501, format!("Syntax error: {reason}.")),
            ParseError::Unsupported { reason, .. } => {
                Reply::new(504, format!("Command not implemented for that parameter: {reason}."))
            }
            ParseError::NetworkProtocol => Reply::new(522, "Network protocol not supported, use (1,2)"),
        }
    }
}

/// Verbs recognised but deliberately not implemented (502, RFC 959 §4.2).
const NOT_IMPLEMENTED: &[&str] = &["ADAT", "CONF", "ENC", "MIC", "SMNT", "LPRT", "LPSV", "LANG"];

fn syntax(verb: &'static str, reason: &'static str) -> ParseError {
    ParseError::Syntax { verb, reason }
}

fn parse_auth(word: &[u8]) -> AuthMechanism {
    let name = String::from_utf8_lossy(word).to_ascii_uppercase();
    match name.as_str() {
        "TLS" | "TLS-C" | "SSL" => AuthMechanism::Tls,
        _ => AuthMechanism::Other(name),
    }
}

fn parse_prot(word: &[u8]) -> Result<ProtLevel, ParseError> {
    match word.to_ascii_uppercase().as_slice() {
        b"C" => Ok(ProtLevel::Clear),
        b"S" => Ok(ProtLevel::Safe),
        b"E" => Ok(ProtLevel::Confidential),
        b"P" => Ok(ProtLevel::Private),
        // RFC 4217 §9: an unknown level is 504.
        _ => Err(ParseError::Unsupported { verb: "PROT", reason: "the level must be C or P" }),
    }
}

/// Parses one line (no CR LF).
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    // Stray Telnet bytes (a DM taken out of band) may precede the verb; verbs are letters.
    let start = line.iter().position(|b| b.is_ascii_alphabetic()).unwrap_or(line.len());
    let line = &line[start..];
    let (verb_bytes, arg) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &b""[..]),
    };
    if verb_bytes.is_empty() || verb_bytes.len() > 4 || !verb_bytes.iter().all(u8::is_ascii_alphabetic) {
        return Err(ParseError::Unknown(String::from_utf8_lossy(verb_bytes).into_owned()));
    }
    let verb = String::from_utf8_lossy(verb_bytes).to_ascii_uppercase();
    // Non-path arguments tolerate surrounding blanks; paths are taken verbatim.
    let word = trim(arg);
    let path = |v: &'static str| {
        if arg.is_empty() {
            Err(syntax(v, "a path is required"))
        } else {
            Ok(arg.to_vec())
        }
    };
    let opt_path = || if arg.is_empty() { None } else { Some(arg.to_vec()) };
    let cmd = match verb.as_str() {
        "USER" if word.is_empty() => return Err(syntax("USER", "a user name is required")),
        "USER" => Command::User(word.to_vec()),
        "PASS" => Command::Pass(arg.to_vec()),
        "ACCT" => Command::Acct,
        "REIN" => Command::Rein,
        "QUIT" => Command::Quit,
        "CWD" | "XCWD" => Command::Cwd(path("CWD")?),
        "CDUP" | "XCUP" => Command::Cdup,
        "PWD" | "XPWD" => Command::Pwd,
        "TYPE" => Command::Type(parse_type(word)?),
        "MODE" => parse_mode(word)?,
        "STRU" => parse_stru(word)?,
        "PORT" => Command::Port(parse_port(word)?),
        "PASV" => Command::Pasv,
        "EPRT" => Command::Eprt(parse_eprt(word)?),
        "EPSV" => Command::Epsv(parse_epsv(word)?),
        "RETR" => Command::Retr(path("RETR")?),
        "STOR" => Command::Stor(path("STOR")?),
        "STOU" => Command::Stou(opt_path()),
        "APPE" => Command::Appe(path("APPE")?),
        // RFC 3659 §5.3: a marker the server cannot use is refused; a file position past
        // i64::MAX cannot exist (and as an off_t it would mean "current position").
        "REST" => Command::Rest(
            parse_decimal(word)
                .filter(|&n| i64::try_from(n).is_ok())
                .ok_or_else(|| syntax("REST", "the offset must be a decimal number up to 2^63-1"))?,
        ),
        "ALLO" => Command::Allo,
        "RNFR" => Command::Rnfr(path("RNFR")?),
        "RNTO" => Command::Rnto(path("RNTO")?),
        "DELE" => Command::Dele(path("DELE")?),
        "MKD" | "XMKD" => Command::Mkd(path("MKD")?),
        "RMD" | "XRMD" => Command::Rmd(path("RMD")?),
        "LIST" => Command::List(parse_list_args(arg)),
        "NLST" => Command::Nlst(parse_list_args(arg)),
        "MLSD" => Command::Mlsd(opt_path()),
        "MLST" => Command::Mlst(opt_path()),
        "SIZE" => Command::Size(path("SIZE")?),
        "MDTM" => Command::Mdtm(path("MDTM")?),
        "MFMT" => parse_mfmt(arg)?,
        "SITE" => Command::Site(parse_site(word)?),
        "SYST" => Command::Syst,
        "STAT" => Command::Stat(opt_path()),
        "HELP" => Command::Help,
        "NOOP" => Command::Noop,
        "FEAT" => Command::Feat,
        "OPTS" => Command::Opts(parse_opts(word)?),
        "HOST" => Command::Host(parse_host(word)?),
        "ABOR" => Command::Abor,
        "AUTH" if word.is_empty() => return Err(syntax("AUTH", "a mechanism is required")),
        "AUTH" => Command::Auth(parse_auth(word)),
        "PBSZ" => Command::Pbsz(
            parse_decimal(word).ok_or_else(|| syntax("PBSZ", "the size must be a decimal number"))?,
        ),
        "PROT" => Command::Prot(parse_prot(word)?),
        "CCC" => Command::Ccc,
        other => {
            return Err(match NOT_IMPLEMENTED.iter().find(|v| **v == other) {
                Some(v) => ParseError::NotImplemented(v),
                None => ParseError::Unknown(other.to_string()),
            })
        }
    };
    Ok(cmd)
}

fn trim(b: &[u8]) -> &[u8] {
    let s = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let e = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(s, |i| i + 1);
    &b[s..e]
}

fn parse_decimal(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// TYPE (RFC 959 §4.1.2): A [N], I, L 8; other forms are valid but unsupported.
fn parse_type(arg: &[u8]) -> Result<TransferType, ParseError> {
    let upper = arg.to_ascii_uppercase();
    let mut it = upper.split(|&b| b == b' ').filter(|p| !p.is_empty());
    let kind = it.next().ok_or(syntax("TYPE", "a type is required"))?;
    let param = it.next();
    if it.next().is_some() {
        return Err(syntax("TYPE", "too many parameters"));
    }
    match (kind, param) {
        (b"A", None | Some(b"N")) => Ok(TransferType::Ascii),
        (b"A" | b"E", Some(b"T" | b"C")) | (b"E", None | Some(b"N")) => {
            Err(ParseError::Unsupported { verb: "TYPE", reason: "only A, A N, I and L 8 are supported" })
        }
        (b"I", None) | (b"L", Some(b"8")) | (b"L8", None) => Ok(TransferType::Binary),
        (b"L", Some(n)) if parse_decimal(n).is_some() => {
            Err(ParseError::Unsupported { verb: "TYPE", reason: "only byte size 8 is supported" })
        }
        _ => Err(syntax("TYPE", "unknown type")),
    }
}

fn parse_mode(arg: &[u8]) -> Result<Command, ParseError> {
    match arg.to_ascii_uppercase().as_slice() {
        b"S" => Ok(Command::Mode),
        b"B" | b"C" | b"Z" => Err(ParseError::Unsupported { verb: "MODE", reason: "only stream mode (S)" }),
        _ => Err(syntax("MODE", "unknown mode")),
    }
}

fn parse_stru(arg: &[u8]) -> Result<Command, ParseError> {
    match arg.to_ascii_uppercase().as_slice() {
        b"F" => Ok(Command::Stru),
        b"R" | b"P" => Err(ParseError::Unsupported { verb: "STRU", reason: "only file structure (F)" }),
        _ => Err(syntax("STRU", "unknown structure")),
    }
}

/// PORT h1,h2,h3,h4,p1,p2 (RFC 959 §4.1.2).
fn parse_port(arg: &[u8]) -> Result<SocketAddr, ParseError> {
    let bad = || syntax("PORT", "expected h1,h2,h3,h4,p1,p2");
    let mut n = [0u8; 6];
    let mut parts = arg.split(|&b| b == b',');
    for slot in &mut n {
        let p = trim(parts.next().ok_or_else(bad)?);
        let v = parse_decimal(p).filter(|v| *v <= 255).ok_or_else(bad)?;
        *slot = v as u8;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    let port = u16::from_be_bytes([n[4], n[5]]);
    if port == 0 {
        return Err(syntax("PORT", "port 0 is not a port"));
    }
    Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(n[0], n[1], n[2], n[3])), port))
}

/// EPRT <d>proto<d>addr<d>port<d> (RFC 2428 §2); the delimiter is any printable ASCII.
fn parse_eprt(arg: &[u8]) -> Result<SocketAddr, ParseError> {
    let bad = || syntax("EPRT", "expected |proto|address|port|");
    let d = *arg.first().ok_or_else(bad)?;
    if !(33..=126).contains(&d) {
        return Err(bad());
    }
    let fields: Vec<&[u8]> = arg[1..].split(|&b| b == d).collect();
    let [proto, addr, port, rest] = fields.as_slice() else { return Err(bad()) };
    if !rest.is_empty() {
        return Err(bad());
    }
    let text = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_owned);
    let ip = match *proto {
        b"1" => IpAddr::V4(text(addr).and_then(|s| s.parse::<Ipv4Addr>().ok()).ok_or_else(bad)?),
        b"2" => IpAddr::V6(text(addr).and_then(|s| s.parse::<Ipv6Addr>().ok()).ok_or_else(bad)?),
        p if parse_decimal(p).is_some() => return Err(ParseError::NetworkProtocol),
        _ => return Err(bad()),
    };
    let port = parse_decimal(port).filter(|p| (1..=65535).contains(p)).ok_or_else(bad)?;
    Ok(SocketAddr::new(ip, port as u16))
}

/// EPSV [1|2|ALL] (RFC 2428 §3-4).
fn parse_epsv(arg: &[u8]) -> Result<EpsvArg, ParseError> {
    match arg.to_ascii_uppercase().as_slice() {
        b"" => Ok(EpsvArg::Any),
        b"ALL" => Ok(EpsvArg::All),
        b"1" => Ok(EpsvArg::Proto(NetProto::V4)),
        b"2" => Ok(EpsvArg::Proto(NetProto::V6)),
        p if parse_decimal(p).is_some() => Err(ParseError::NetworkProtocol),
        _ => Err(syntax("EPSV", "expected 1, 2 or ALL")),
    }
}

/// Drops leading `-flags` words the way vsftpd does (`LIST -la dir`).
fn parse_list_args(arg: &[u8]) -> ListArgs {
    let mut rest = arg;
    let mut all = false;
    loop {
        let r = trim_start(rest);
        if r.first() != Some(&b'-') {
            rest = r;
            break;
        }
        let end = r.iter().position(|&b| b == b' ').unwrap_or(r.len());
        all |= r[..end].iter().any(|&b| b == b'a' || b == b'A');
        rest = &r[end..];
    }
    ListArgs { path: if rest.is_empty() { None } else { Some(rest.to_vec()) }, all }
}

fn trim_start(b: &[u8]) -> &[u8] {
    let s = b.iter().position(|&c| c != b' ').unwrap_or(b.len());
    &b[s..]
}

/// MFMT YYYYMMDDHHMMSS[.sss] path.
fn parse_mfmt(arg: &[u8]) -> Result<Command, ParseError> {
    let bad = || syntax("MFMT", "expected YYYYMMDDHHMMSS path");
    let sp = arg.iter().position(|&b| b == b' ').ok_or_else(bad)?;
    let mtime = parse_time_val(&arg[..sp]).ok_or_else(bad)?;
    let path = &arg[sp + 1..];
    if path.is_empty() {
        return Err(bad());
    }
    Ok(Command::Mfmt { mtime, path: path.to_vec() })
}

/// RFC 3659 §2.3 time-val `YYYYMMDDHHMMSS[.sss]` in UTC, to unix seconds.
pub fn parse_time_val(b: &[u8]) -> Option<i64> {
    let main = match b.iter().position(|&c| c == b'.') {
        Some(i) if i + 1 < b.len() && b[i + 1..].iter().all(u8::is_ascii_digit) => &b[..i],
        Some(_) => return None,
        None => b,
    };
    if main.len() != 14 || !main.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| main[r].iter().fold(0i64, |a, &d| a * 10 + i64::from(d - b'0'));
    let (y, mo, d, h, mi, s) = (num(0..4), num(4..6), num(6..8), num(8..10), num(10..12), num(12..14));
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // A leap second (:60) is valid time-val, but Unix time has none: it is taken as :59, so
    // 9999-12-31 23:59:60 stays in year 9999 instead of becoming 10000-01-01.
    let s = s.min(59);
    Some(crate::calendar::days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn parse_site(arg: &[u8]) -> Result<SiteCommand, ParseError> {
    let (sub, rest) = match arg.iter().position(|&b| b == b' ') {
        Some(i) => (&arg[..i], trim_start(&arg[i + 1..])),
        None => (arg, &b""[..]),
    };
    let sub = String::from_utf8_lossy(sub).to_ascii_uppercase();
    match sub.as_str() {
        "HELP" => Ok(SiteCommand::Help),
        "CHMOD" => {
            let bad = || syntax("SITE CHMOD", "expected SITE CHMOD <octal mode> <path>");
            let sp = rest.iter().position(|&b| b == b' ').ok_or_else(bad)?;
            let (m, path) = (&rest[..sp], &rest[sp + 1..]);
            if m.is_empty() || m.len() > 4 || path.is_empty() || !m.iter().all(|b| (b'0'..=b'7').contains(b))
            {
                return Err(bad());
            }
            let mode = m.iter().fold(0u32, |a, &d| a * 8 + u32::from(d - b'0'));
            Ok(SiteCommand::Chmod { mode, path: path.to_vec() })
        }
        "" => Err(syntax("SITE", "a sub-command is required")),
        _ => Ok(SiteCommand::Other(sub)),
    }
}

fn parse_opts(arg: &[u8]) -> Result<OptsArg, ParseError> {
    let (name, value) = match arg.iter().position(|&b| b == b' ') {
        Some(i) => (&arg[..i], trim(&arg[i + 1..])),
        None => (arg, &b""[..]),
    };
    match name.to_ascii_uppercase().as_slice() {
        b"UTF8" | b"UTF-8" => match value.to_ascii_uppercase().as_slice() {
            b"ON" | b"" => Ok(OptsArg::Utf8(true)),
            b"OFF" => Ok(OptsArg::Utf8(false)),
            _ => Err(syntax("OPTS", "UTF8 takes ON or OFF")),
        },
        b"MLST" => {
            Ok(OptsArg::Mlst(value.split(|&b| b == b';').filter_map(|f| Fact::from_name(trim(f))).collect()))
        }
        _ => Err(syntax("OPTS", "option not understood")),
    }
}

/// HOST (RFC 7151 §3): a domain name or a bracketed address literal.
fn parse_host(arg: &[u8]) -> Result<Vec<u8>, ParseError> {
    let bad = || syntax("HOST", "expected a host name or [address]");
    if arg.is_empty() || arg.len() > 255 {
        return Err(bad());
    }
    if let Some(inner) = arg.strip_prefix(b"[").and_then(|a| a.strip_suffix(b"]")) {
        let text = std::str::from_utf8(inner).map_err(|_| bad())?;
        text.parse::<IpAddr>().map_err(|_| bad())?;
    } else if !arg.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
        return Err(bad());
    }
    Ok(arg.to_vec())
}

#[cfg(test)]
mod tests;
