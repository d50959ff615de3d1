//! Shell-style wildcards for LIST and NLST arguments, as vsftpd and wu-ftpd expand them so
//! that `mget *.bin` works: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`/`[^x]`, `\` escaping the next
//! byte. Only the last path component is a pattern ([`split`]); the io layer lists the parent
//! directory and keeps the names a [`NameFilter`] accepts. Pure: no disk, no clock.

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// This byte.
    Byte(u8),
    /// `?`: any one byte.
    Any,
    /// `*`: any run of bytes.
    Star,
    /// `[...]`: one byte in (or, negated, not in) the inclusive ranges.
    Class { negated: bool, ranges: Vec<(u8, u8)> },
}

/// Parses a bracket expression starting after its `[` at `p[i]`; `None` when it has no closing
/// `]` (the `[` is then an ordinary byte, as in fnmatch). Returns the token and the index after `]`.
fn class(p: &[u8], mut i: usize) -> Option<(Token, usize)> {
    let negated = matches!(p.get(i), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let mut lo = *p.get(i)?;
        if lo == b']' && !first {
            return Some((Token::Class { negated, ranges }, i + 1));
        }
        first = false;
        if lo == b'\\' {
            i += 1;
            lo = *p.get(i)?;
        }
        i += 1;
        // `a-z`; a `-` just before the closing `]` is a literal dash.
        let mut hi = lo;
        if p.get(i) == Some(&b'-') && p.get(i + 1).is_some_and(|&c| c != b']') {
            i += 1;
            hi = p[i];
            if hi == b'\\' {
                i += 1;
                hi = *p.get(i)?;
            }
            i += 1;
        }
        ranges.push((lo, hi));
    }
}

/// Compiles `pattern`; adjacent stars collapse (they match the same names).
fn compile(pattern: &[u8]) -> Vec<Token> {
    let mut out = Vec::with_capacity(pattern.len());
    let mut i = 0;
    while i < pattern.len() {
        let tok = match pattern[i] {
            b'*' if out.last() == Some(&Token::Star) => {
                i += 1;
                continue;
            }
            b'*' => Token::Star,
            b'?' => Token::Any,
            b'[' => match class(pattern, i + 1) {
                Some((tok, next)) => {
                    out.push(tok);
                    i = next;
                    continue;
                }
                None => Token::Byte(b'['),
            },
            // A trailing lone backslash stands for itself.
            b'\\' if i + 1 < pattern.len() => {
                i += 1;
                Token::Byte(pattern[i])
            }
            b => Token::Byte(b),
        };
        out.push(tok);
        i += 1;
    }
    out
}

/// True when `name` holds an unescaped `*`, `?` or complete `[...]`: it is a pattern.
pub fn has_wildcards(name: &[u8]) -> bool {
    compile(name).iter().any(|t| !matches!(t, Token::Byte(_)))
}

/// True when `name` matches all of `pattern` (no special rule for dots; see [`NameFilter`]).
pub fn matches(pattern: &[u8], name: &[u8]) -> bool {
    matches_counted(&compile(pattern), name).0
}

fn single(tok: &Token, b: u8) -> bool {
    match tok {
        Token::Byte(c) => *c == b,
        Token::Any => true,
        Token::Star => false,
        Token::Class { negated, ranges } => ranges.iter().any(|&(lo, hi)| lo <= b && b <= hi) != *negated,
    }
}

/// The match and the number of steps taken. Iterative: on a mismatch only the most recent
/// star is retried one byte further (an earlier star can never do better, since the later
/// one can absorb whatever it would), so the work is at most patterns × name, never
/// exponential however many stars `*a*a*a*b` holds.
fn matches_counted(tokens: &[Token], name: &[u8]) -> (bool, usize) {
    let (mut t, mut n, mut steps) = (0, 0, 0);
    // The last star seen and the name position its current attempt starts at.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        steps += 1;
        match tokens.get(t) {
            Some(Token::Star) => {
                star = Some((t, n));
                t += 1;
            }
            Some(tok) if single(tok, name[n]) => {
                t += 1;
                n += 1;
            }
            _ => match star {
                Some((st, sn)) => {
                    star = Some((st, sn + 1));
                    t = st + 1;
                    n = sn + 1;
                }
                None => return (false, steps),
            },
        }
    }
    let rest_stars = tokens[t.min(tokens.len())..].iter().all(|tok| *tok == Token::Star);
    (rest_stars, steps)
}

/// Splits a LIST/NLST argument whose last component is a pattern into the directory part as
/// the client wrote it (`dir/`, `/`, or empty for the working directory) and the pattern.
/// `None` when the last component has no wildcards: the argument is an ordinary path.
/// Wildcards in directory components are left alone (literal), as vsftpd does.
pub fn split(arg: &[u8]) -> Option<(&[u8], &[u8])> {
    let cut = arg.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let (dir, last) = arg.split_at(cut);
    has_wildcards(last).then_some((dir, last))
}

/// Which names of a directory a globbed LIST/NLST keeps, and how it shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameFilter {
    /// The pattern for the last component.
    pub pattern: Vec<u8>,
    /// Written before each kept name: NLST repeats the directory the client gave
    /// (`dir/a.bin`) so that `mget` can RETR what it gets; empty for LIST.
    pub prefix: Vec<u8>,
}

impl NameFilter {
    /// Shell rules: a name starting with `.` matches only a pattern that starts with `.`,
    /// unless `hidden` (`-a`) asks for dot files.
    pub fn accepts(&self, name: &[u8], hidden: bool) -> bool {
        let dot_ok = hidden || self.pattern.first() == Some(&b'.') || name.first() != Some(&b'.');
        dot_ok && matches(&self.pattern, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wildcards_and_escapes() {
        for p in [&b"*"[..], b"a?", b"[ab]", b"x[!a]", b"\\**"] {
            assert!(has_wildcards(p), "{p:?}");
        }
        for p in [&b"abc"[..], b"a\\*", b"\\?", b"[abc", b"a[", b"\\[x]", b""] {
            assert!(!has_wildcards(p), "{p:?}");
        }
    }

    #[test]
    fn matching() {
        let cases: &[(&[u8], &[u8], bool)] = &[
            (b"*.bin", b"a.bin", true),
            (b"*.bin", b".bin", true),
            (b"*.bin", b"a.bim", false),
            (b"a?c", b"abc", true),
            (b"a?c", b"ac", false),
            (b"[a-c]x", b"bx", true),
            (b"[a-c]x", b"dx", false),
            (b"[!a-c]x", b"dx", true),
            (b"[!a-c]x", b"ax", false),
            (b"[^a]", b"b", true),
            (b"[]]", b"]", true),
            (b"[!]]", b"a", true),
            (b"[a-]", b"-", true),
            (b"a\\*", b"a*", true),
            (b"a\\*", b"ab", false),
            (b"[\\]]", b"]", true),
            (b"[abc", b"[abc", true),
            (b"**a**", b"a", true),
            (b"*", b"", true),
            (b"?", b"", false),
            (b"abc", b"abcd", false),
            (b"a\\", b"a\\", true),
        ];
        for &(p, n, want) in cases {
            assert_eq!(matches(p, n), want, "{p:?} {n:?}");
        }
    }

    #[test]
    fn split_takes_the_last_component_only() {
        assert_eq!(split(b"*.bin"), Some((&b""[..], &b"*.bin"[..])));
        assert_eq!(split(b"dir/*.bin"), Some((&b"dir/"[..], &b"*.bin"[..])));
        assert_eq!(split(b"/*"), Some((&b"/"[..], &b"*"[..])));
        assert_eq!(split(b"*/x"), None, "wildcards in directories are literal");
        assert_eq!(split(b"a\\*"), None, "escaped");
        assert_eq!(split(b"dir/"), None);
        assert_eq!(split(b"*/"), None);
    }

    #[test]
    fn dot_files_need_a_dot_pattern_or_dash_a() {
        let f = |p: &[u8]| NameFilter { pattern: p.to_vec(), prefix: Vec::new() };
        assert!(!f(b"*").accepts(b".profile", false));
        assert!(f(b"*").accepts(b".profile", true));
        assert!(f(b".*").accepts(b".profile", false));
        assert!(f(b"*").accepts(b"profile", false));
    }

    #[test]
    fn adversarial_patterns_stay_bounded() {
        let pattern = [b"*a".repeat(50), b"*b".to_vec()].concat();
        let name = vec![b'a'; 255];
        let (hit, steps) = matches_counted(&compile(&pattern), &name);
        assert!(!hit);
        assert!(steps <= pattern.len() * name.len() + name.len(), "{steps}");
    }

    /// Plain recursion over the tokens: exponential, but obviously right.
    fn reference(t: &[Token], n: &[u8]) -> bool {
        match t.split_first() {
            None => n.is_empty(),
            Some((Token::Star, rest)) => (0..=n.len()).any(|k| reference(rest, &n[k..])),
            Some((tok, rest)) => n.first().is_some_and(|&b| single(tok, b)) && reference(rest, &n[1..]),
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference(
            p in proptest::collection::vec(proptest::sample::select(&b"ab*?[]!^-\\c"[..]), 0..10),
            n in proptest::collection::vec(proptest::sample::select(&b"abc[]-\\!"[..]), 0..12),
        ) {
            prop_assert_eq!(matches(&p, &n), reference(&compile(&p), &n));
        }

        #[test]
        fn never_panics_and_is_bounded(p in proptest::collection::vec(any::<u8>(), 0..64),
                                       n in proptest::collection::vec(any::<u8>(), 0..255)) {
            let tokens = compile(&p);
            let (_, steps) = matches_counted(&tokens, &n);
            prop_assert!(steps <= (tokens.len() + 1) * (n.len() + 1));
            let _ = has_wildcards(&p);
            let _ = split(&p);
        }
    }
}
