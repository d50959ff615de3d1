//! Filename remapping rules in tftp-hpa's `-m` file format (tftpd(8) "FILENAME REMAPPING"),
//! sans IO: a rule file's text is parsed once; each request name is rewritten with bounds.
//!
//! A line is `flags regex [replacement]`; `#` starts a comment, `\` escapes whitespace and `#`.
//! Flags: `r` rewrite, `g` repeat the rewrite until the regex no longer matches, `i` ignore
//! case, `e` end when matched, `s` restart from the first rule when matched, `a` refuse the
//! request when matched, `G`/`P` only for reads/writes, `4`/`6` only for IPv4/IPv6 clients,
//! `~` act when the regex does *not* match. Replacement escapes: `\0`-`\9` (whole match and
//! groups), `\i` client IP, `\x` client IP in upper-case hex (`C0A80001`), `\\`, `\U`/`\L`/`\E`
//! case folding, `\` before any other non-alphanumeric character gives that character.
//!
//! Regular expressions are POSIX ERE (egrep) in tftp-hpa and the `regex` crate's syntax here.
//! [`translate_ere`] makes the POSIX-only spellings work (a `\` or `[` inside a bracket
//! expression is literal, `\ ` and `\#` from the line syntax); what cannot be translated is
//! refused with the line number: back-references (`\1` in a regex), `[=x=]` and `[.x.]`.
//! One difference stays: alternation takes the leftmost *first* alternative (`a|ab` matches
//! `a` of `ab`), where POSIX takes the leftmost *longest*; put the longer alternative first.
//! Newer tftp-hpa extensions (`E`, `j`, `:labels`) are refused as unsupported.

use super::{ErrorCode, Refusal};
use regex::bytes::{Captures, Regex, RegexBuilder};
use std::fmt;
use std::net::IpAddr;

/// Most rule applications (each rule tried, each `g` repetition) one name may take; a rule
/// set that loops (`s` restarting forever, `g` whose result matches again) is cut here.
pub const MAX_STEPS: usize = 1000;

/// Longest name a rewrite may produce (bytes; Linux's PATH_MAX less its NUL): an exploding
/// rule set (`s` with `\0\0`) is refused here rather than growing without bound.
pub const MAX_NAME: usize = 4095;

/// Size cap of one compiled regex (bytes), so a rule like `a{1000}{1000}` is a parse error
/// rather than a memory hog.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A rule file that does not parse: the line (1-based) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct RuleError {
    /// The offending line, counted from 1.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Which requests a rule applies to, from the `G`, `P`, `4`, `6` flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Scope {
    reads_only: bool,
    writes_only: bool,
    v4_only: bool,
    v6_only: bool,
}

/// What a matching rule does, from the `r g e s a ~` flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Action {
    rewrite: bool,
    global: bool,
    end: bool,
    restart: bool,
    abort: bool,
    inverse: bool,
}

/// One piece of a replacement pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    /// `\0`-`\9`: the whole match or a group (empty when the group did not take part).
    Group(usize),
    /// `\i`.
    ClientIp,
    /// `\x`.
    ClientHex,
    /// `\U`, `\L`, `\E`.
    Case(Fold),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fold {
    None,
    Upper,
    Lower,
}

/// One parsed rule.
#[derive(Debug, Clone)]
struct Rule {
    line: usize,
    /// The regex as written in the file, for explanations.
    source: String,
    regex: Regex,
    scope: Scope,
    action: Action,
    replacement: Vec<Piece>,
}

/// A parsed rule file, in order.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// The text it was parsed from: two rule sets are equal when their texts are.
    text: String,
}

impl PartialEq for RuleSet {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

/// What a request looks like to the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// The client's address (IPv4-mapped addresses count as IPv4).
    pub ip: IpAddr,
    /// A WRQ (`P` rules) rather than an RRQ (`G` rules).
    pub write: bool,
}

/// One rule that matched, for explanations (`ferry tftp-resolve`) and debug logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Its line in the rule file.
    pub line: usize,
    /// Its regex as written.
    pub regex: String,
    /// The name before the rule.
    pub before: Vec<u8>,
    /// The name after it (the same unless it rewrote).
    pub after: Vec<u8>,
    /// What happened next: `continue`, `end`, `restart` or `abort`.
    pub then: &'static str,
}

/// Why a name was refused by the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemapError {
    /// An `a` rule matched (at this line).
    Aborted { line: usize },
    /// [`MAX_STEPS`] rule applications were not enough: the rules loop.
    TooManySteps,
    /// A rewrite produced more than [`MAX_NAME`] bytes (at this line).
    TooLong { line: usize },
    /// The rules left nothing.
    Empty,
}

impl fmt::Display for RemapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemapError::Aborted { line } => write!(f, "refused by the `a` rule at line {line}"),
            RemapError::TooManySteps => write!(f, "rules did not settle within {MAX_STEPS} steps (a loop?)"),
            RemapError::TooLong { line } => {
                write!(f, "rule at line {line} made the name longer than {MAX_NAME} bytes")
            }
            RemapError::Empty => write!(f, "rules left an empty file name"),
        }
    }
}

impl RemapError {
    /// The ERROR a client gets (RFC 1350 code 2, access violation, as tftp-hpa answers).
    pub fn refusal(&self) -> Refusal {
        let message = match self {
            RemapError::Aborted { .. } => "refused by a remap rule",
            RemapError::TooManySteps => "remap rules loop",
            RemapError::TooLong { .. } => "remapped name too long",
            RemapError::Empty => "remap rules left an empty file name",
        };
        Refusal::new(ErrorCode::AccessViolation, message)
    }
}

/// The outcome of [`RuleSet::apply`]: the final name and the rules that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remapped {
    /// The name after every rule.
    pub name: Vec<u8>,
    /// Matching rules in the order they acted.
    pub hits: Vec<Hit>,
}

impl RuleSet {
    /// Parses a rule file; the first bad line is the error.
    pub fn parse(text: &str) -> Result<RuleSet, RuleError> {
        let mut rules = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let err = |reason: String| RuleError { line: i + 1, reason };
            if let Some(rule) = parse_line(line, i + 1).map_err(err)? {
                rules.push(rule);
            }
        }
        Ok(RuleSet { rules, text: text.to_string() })
    }

    /// How many rules the file holds.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True for a file without rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Runs the rules over `name` as tftp-hpa does: top down, every rule whose scope fits
    /// the request, bounded by [`MAX_STEPS`] and [`MAX_NAME`].
    pub fn apply(&self, name: &[u8], client: Client) -> Result<Remapped, RemapError> {
        let ip = client.ip.to_canonical();
        let mut current = name.to_vec();
        let mut hits = Vec::new();
        let mut steps = 0usize;
        let mut i = 0;
        while let Some(rule) = self.rules.get(i) {
            i += 1;
            if !rule.scope.admits(client.write, ip) {
                continue;
            }
            steps += 1;
            if steps > MAX_STEPS {
                return Err(RemapError::TooManySteps);
            }
            let caps = rule.regex.captures(&current);
            if caps.is_some() == rule.action.inverse {
                continue;
            }
            let before = current.clone();
            if let (Some(caps), true) = (caps, rule.action.rewrite) {
                current = rule.rewrite(&current, &caps, ip)?;
                // `g`: again on the whole new name, until the regex no longer matches.
                while let Some(again) = rule.action.global.then(|| rule.regex.captures(&current)).flatten() {
                    steps += 1;
                    if steps > MAX_STEPS {
                        return Err(RemapError::TooManySteps);
                    }
                    current = rule.rewrite(&current, &again, ip)?;
                }
            }
            let a = rule.action;
            let then = if a.abort {
                "abort"
            } else if a.end {
                "end"
            } else if a.restart {
                "restart"
            } else {
                "continue"
            };
            hits.push(Hit {
                line: rule.line,
                regex: rule.source.clone(),
                before,
                after: current.clone(),
                then,
            });
            if a.abort {
                return Err(RemapError::Aborted { line: rule.line });
            }
            if a.end {
                break;
            }
            if a.restart {
                i = 0;
            }
        }
        if current.is_empty() {
            return Err(RemapError::Empty);
        }
        Ok(Remapped { name: current, hits })
    }
}

impl Scope {
    fn admits(&self, write: bool, ip: IpAddr) -> bool {
        !(self.reads_only && write
            || self.writes_only && !write
            || self.v4_only && !ip.is_ipv4()
            || self.v6_only && !ip.is_ipv6())
    }
}

impl Rule {
    /// `current` with its first match replaced by the expanded replacement.
    fn rewrite(&self, current: &[u8], caps: &Captures<'_>, ip: IpAddr) -> Result<Vec<u8>, RemapError> {
        let whole = caps.get(0).map_or(0..0, |m| m.range());
        let mut out = current[..whole.start].to_vec();
        let mut fold = Fold::None;
        for piece in &self.replacement {
            if out.len() > MAX_NAME {
                return Err(RemapError::TooLong { line: self.line });
            }
            match piece {
                Piece::Literal(bytes) => push_folded(&mut out, bytes, fold),
                Piece::Group(n) => {
                    push_folded(&mut out, caps.get(*n).map_or(&[][..], |m| m.as_bytes()), fold)
                }
                Piece::ClientIp => push_folded(&mut out, ip.to_string().as_bytes(), fold),
                Piece::ClientHex => push_folded(&mut out, hex_ip(ip).as_bytes(), fold),
                Piece::Case(f) => fold = *f,
            }
        }
        out.extend_from_slice(&current[whole.end..]);
        if out.len() > MAX_NAME {
            return Err(RemapError::TooLong { line: self.line });
        }
        Ok(out)
    }
}

/// Appends `bytes` with ASCII case folding (names are bytes; tftp-hpa folds per its locale,
/// which is "C" for a daemon).
fn push_folded(out: &mut Vec<u8>, bytes: &[u8], fold: Fold) {
    out.extend(bytes.iter().map(|b| match fold {
        Fold::None => *b,
        Fold::Upper => b.to_ascii_uppercase(),
        Fold::Lower => b.to_ascii_lowercase(),
    }));
}

/// The client address in upper-case hex, as pxelinux looks its configuration up
/// (`C0A80001` for 192.168.0.1; 32 digits for IPv6).
pub fn hex_ip(ip: IpAddr) -> String {
    let octets: Vec<u8> = match ip.to_canonical() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    octets.iter().map(|b| format!("{b:02X}")).collect()
}

/// Splits a line into tokens at unescaped whitespace, up to an unescaped `#`; a token keeps
/// its backslashes (they are the regex's or the replacement's business).
fn tokens(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        let ends = !escaped && (c.is_whitespace() || c == '#');
        if ends {
            if let Some(s) = start.take() {
                out.push(&line[s..i]);
            }
            if c == '#' {
                return out;
            }
        } else if start.is_none() {
            start = Some(i);
        }
        // Two backslashes in a row leave the escape state again.
        escaped = !escaped && c == '\\';
    }
    if let Some(s) = start {
        out.push(&line[s..]);
    }
    out
}

fn parse_line(line: &str, number: usize) -> Result<Option<Rule>, String> {
    let toks = tokens(line);
    let Some(flags) = toks.first() else { return Ok(None) };
    if flags.starts_with(':') {
        return Err("labels (`:name`) are a newer tftp-hpa extension Ferry does not support".into());
    }
    let (mut scope, mut action, mut icase) = (Scope::default(), Action::default(), false);
    for f in flags.chars() {
        match f {
            'r' => action.rewrite = true,
            'g' => action.global = true,
            'i' => icase = true,
            'e' => action.end = true,
            's' => action.restart = true,
            'a' => action.abort = true,
            '~' => action.inverse = true,
            'G' => scope.reads_only = true,
            'P' => scope.writes_only = true,
            '4' => scope.v4_only = true,
            '6' => scope.v6_only = true,
            'E' | 'j' => {
                return Err(format!("flag `{f}` is a newer tftp-hpa extension Ferry does not support"))
            }
            other => return Err(format!("unknown flag `{other}` (flags are r g i e s a G P 4 6 ~)")),
        }
    }
    // The combinations tftp-hpa itself refuses: each makes one of the two flags meaningless.
    for (a, b, both) in [
        ('r', '~', action.rewrite && action.inverse),
        ('r', 'a', action.rewrite && action.abort),
        ('a', 's', action.abort && action.restart),
        ('a', 'e', action.abort && action.end),
        ('e', 's', action.end && action.restart),
        ('G', 'P', scope.reads_only && scope.writes_only),
        ('4', '6', scope.v4_only && scope.v6_only),
    ] {
        if both {
            return Err(format!("flags `{a}` and `{b}` cannot be combined"));
        }
    }
    if action.global && !action.rewrite {
        // As in tftp-hpa: repeating means nothing without a rewrite.
        action.global = false;
    }
    let Some(source) = toks.get(1) else { return Err("regex missing".into()) };
    let translated = translate_ere(source)?;
    let regex = RegexBuilder::new(&translated)
        .case_insensitive(icase)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("bad regex `{source}`: {}", one_line(&e.to_string())))?;
    let replacement = match toks.get(2) {
        Some(r) => parse_replacement(r, regex.captures_len() - 1)?,
        None => Vec::new(),
    };
    if let Some(extra) = toks.get(3) {
        return Err(format!("unexpected `{extra}` after the replacement (escape spaces as `\\ `)"));
    }
    if toks.len() == 3 && !action.rewrite {
        return Err("a replacement without the `r` flag would never be used".into());
    }
    Ok(Some(Rule { line: number, source: source.to_string(), regex, scope, action, replacement }))
}

/// The regex crate's multi-line error reports, as one line.
fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Rewrites a POSIX ERE (as tftp-hpa hands it to `regcomp`) into the `regex` crate's syntax.
pub fn translate_ere(ere: &str) -> Result<String, String> {
    let mut out = String::with_capacity(ere.len() + 8);
    let chars: Vec<char> = ere.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let Some(&next) = chars.get(i + 1) else {
                    return Err(format!("regex `{ere}` ends with a lone `\\`"));
                };
                if next.is_ascii_digit() {
                    return Err(format!("back-references (`\\{next}`) in a regex are not supported"));
                }
                if next.is_whitespace() || next == '#' {
                    // The line syntax's escapes: the character itself.
                    out.push_str(&regex::escape(&next.to_string()));
                } else {
                    out.push('\\');
                    out.push(next);
                }
                i += 2;
            }
            '[' => i = translate_bracket(&chars, i, &mut out, ere)?,
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Copies the bracket expression opening at `chars[open]`, with POSIX's literal `\`, `[`
/// and a leading `]` escaped for the regex crate; returns the index after its `]`.
fn translate_bracket(chars: &[char], open: usize, out: &mut String, ere: &str) -> Result<usize, String> {
    let mut i = open + 1;
    out.push('[');
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    // A `]` first in the list is a member, not the end.
    if chars.get(i) == Some(&']') {
        out.push_str("\\]");
        i += 1;
    }
    while let Some(&c) = chars.get(i) {
        match c {
            ']' => {
                out.push(']');
                return Ok(i + 1);
            }
            '[' if chars.get(i + 1) == Some(&':') => {
                let end = (i + 2..chars.len().saturating_sub(1))
                    .find(|&j| chars[j] == ':' && chars[j + 1] == ']')
                    .ok_or_else(|| format!("regex `{ere}`: unterminated `[:class:]`"))?;
                out.extend(&chars[i..end + 2]);
                i = end + 2;
            }
            '[' if matches!(chars.get(i + 1), Some('=' | '.')) => {
                return Err(format!(
                    "regex `{ere}`: equivalence classes and collating symbols (`[=` `[.`) are not supported"
                ));
            }
            // Literal in POSIX brackets; meta (escape, nested class, set operators) in the
            // regex crate.
            '\\' | '[' | '&' | '~' => {
                out.push('\\');
                out.push(c);
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Err(format!("regex `{ere}`: unterminated bracket expression"))
}

/// Parses a replacement pattern; `groups` is how many groups the regex has.
fn parse_replacement(text: &str, groups: usize) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut literal = Vec::new();
    let mut chars = text.chars();
    let flush = |literal: &mut Vec<u8>, pieces: &mut Vec<Piece>| {
        if !literal.is_empty() {
            pieces.push(Piece::Literal(std::mem::take(literal)));
        }
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            literal.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let piece = match chars.next() {
            // A trailing backslash is itself, as in tftp-hpa.
            None => {
                literal.push(b'\\');
                continue;
            }
            Some(d @ '0'..='9') => {
                let n = d as usize - '0' as usize;
                if n > groups {
                    return Err(format!(
                        "replacement `{text}` uses `\\{n}` but the regex has {groups} group(s)"
                    ));
                }
                Piece::Group(n)
            }
            Some('i') => Piece::ClientIp,
            Some('x') => Piece::ClientHex,
            Some('U') => Piece::Case(Fold::Upper),
            Some('L') => Piece::Case(Fold::Lower),
            Some('E') => Piece::Case(Fold::None),
            Some(other) if other.is_alphanumeric() => {
                return Err(format!(
                    "unknown escape `\\{other}` in replacement `{text}` (escapes: \\0-\\9 \\i \\x \\U \\L \\E \\\\)"
                ));
            }
            // `\\`, `\ `, `\#` and any other punctuation: the character itself.
            Some(other) => {
                let mut buf = [0u8; 4];
                literal.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
                continue;
            }
        };
        flush(&mut literal, &mut pieces);
        pieces.push(piece);
    }
    flush(&mut literal, &mut pieces);
    Ok(pieces)
}

#[cfg(test)]
mod tests;
