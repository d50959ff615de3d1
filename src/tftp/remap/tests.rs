//! The rule parser and engine against tftp-hpa's documented semantics (tftpd(8) "FILENAME
//! REMAPPING") and the rule files PXE sites carry.

use super::*;

fn v4(s: &str) -> Client {
    Client { ip: s.parse().unwrap(), write: false }
}

/// The final name for `name` from 192.168.0.1 reading, as text.
fn map(rules: &str, name: &str) -> Result<String, RemapError> {
    map_for(rules, name, v4("192.168.0.1"))
}

fn map_for(rules: &str, name: &str, client: Client) -> Result<String, RemapError> {
    let set = RuleSet::parse(rules).unwrap_or_else(|e| panic!("{rules:?}: {e}"));
    set.apply(name.as_bytes(), client).map(|r| String::from_utf8(r.name).unwrap())
}

fn parse_error(rules: &str) -> RuleError {
    RuleSet::parse(rules).expect_err(rules)
}

#[test]
fn windows_backslashes_become_slashes_with_rg() {
    // The classic WDS line: `g` repeats the rewrite until no backslash is left.
    assert_eq!(map(r"rg \\ /", r"\Boot\x64\wdsnbp.com").unwrap(), "/Boot/x64/wdsnbp.com");
    // Without `g` only the first match is replaced.
    assert_eq!(map(r"r \\ /", r"a\b\c").unwrap(), r"a/b\c");
}

#[test]
fn prefixes_are_stripped_or_added() {
    let rules = "r ^/tftpboot/\nr ^/+ \n";
    assert_eq!(map("r ^/tftpboot/", "/tftpboot/pxelinux.0").unwrap(), "pxelinux.0");
    assert_eq!(map(rules, "/tftpboot/x/y").unwrap(), "x/y");
    assert_eq!(map("r ^ /boot/", "vmlinuz").unwrap(), "/boot/vmlinuz");
    // A rule that does not match leaves the name alone.
    assert_eq!(map("r ^/tftpboot/", "pxelinux.0").unwrap(), "pxelinux.0");
}

#[test]
fn case_fixes_with_i_and_case_escapes() {
    assert_eq!(map(r"ri ^pxelinux\.0$ pxelinux.0", "PXELINUX.0").unwrap(), "pxelinux.0");
    assert_eq!(map(r"r ^(.*)$ \L\1", "Boot/BCD").unwrap(), "boot/bcd");
    assert_eq!(map(r"r ^([^/]*)/(.*)$ \U\1\E/\2", "boot/Bcd").unwrap(), "BOOT/Bcd");
    // Without `i` the match is case-sensitive.
    assert_eq!(map(r"r ^pxelinux\.0$ x", "PXELINUX.0").unwrap(), "PXELINUX.0");
}

#[test]
fn client_address_escapes() {
    let rules = r"r ^pxelinux\.cfg/default$ pxelinux.cfg/\x
r ^hosts$ hosts/\i";
    assert_eq!(map(rules, "pxelinux.cfg/default").unwrap(), "pxelinux.cfg/C0A80001");
    assert_eq!(map(rules, "hosts").unwrap(), "hosts/192.168.0.1");
    // An IPv4-mapped client (dual-stack socket) is an IPv4 client.
    assert_eq!(map_for(rules, "hosts", v4("::ffff:10.0.0.254")).unwrap(), "hosts/10.0.0.254");
    assert_eq!(
        map_for(rules, "pxelinux.cfg/default", v4("::ffff:10.0.0.254")).unwrap(),
        "pxelinux.cfg/0A0000FE"
    );
    let v6 = Client { ip: "2001:db8::1".parse().unwrap(), write: false };
    assert_eq!(
        map_for(rules, "pxelinux.cfg/default", v6).unwrap(),
        "pxelinux.cfg/20010DB8000000000000000000000001"
    );
    assert_eq!(map_for(rules, "hosts", v6).unwrap(), "hosts/2001:db8::1");
}

#[test]
fn groups_and_the_whole_match() {
    // pxelinux asks pxelinux.cfg/01-<mac>; a site keeps them in a folder of their own.
    let rules = r"r ^pxelinux\.cfg/01-([0-9a-f]{2}(-[0-9a-f]{2}){5})$ pxelinux.cfg/hosts/\1";
    assert_eq!(
        map(rules, "pxelinux.cfg/01-52-54-00-12-34-56").unwrap(),
        "pxelinux.cfg/hosts/52-54-00-12-34-56"
    );
    assert_eq!(map(rules, "pxelinux.cfg/01-zz").unwrap(), "pxelinux.cfg/01-zz");
    assert_eq!(map(r"r [0-9]+ <\0>", "img42.bin").unwrap(), "img<42>.bin");
    // A group that took no part expands to nothing.
    assert_eq!(map(r"r ^(a)?b$ x\1y", "b").unwrap(), "xy");
}

#[test]
fn e_ends_and_s_restarts() {
    let rules = "re ^a b\nr ^b c\n";
    assert_eq!(map(rules, "a").unwrap(), "b", "e stops after the matching rule");
    assert_eq!(map(rules, "b").unwrap(), "c", "e does nothing when its rule does not match");
    // Rules run top down once; `s` starts over after a match.
    let once = "r ^c d\nr ^a c\n";
    assert_eq!(map(once, "a").unwrap(), "c");
    let again = "r ^c d\nrs ^a c\n";
    assert_eq!(map(again, "a").unwrap(), "d");
    // All rules run by default, each on the previous result.
    assert_eq!(map("r a b\nr b c\nr c d\n", "a").unwrap(), "d");
}

#[test]
fn a_refuses_and_tells_which_line() {
    let rules = "# no secrets\n\na \\.key$\nr ^ pub/\n";
    let set = RuleSet::parse(rules).unwrap();
    let err = set.apply(b"host.key", v4("10.0.0.1")).unwrap_err();
    assert_eq!(err, RemapError::Aborted { line: 3 });
    assert_eq!(err.refusal().code, ErrorCode::AccessViolation);
    assert_eq!(map(rules, "boot.img").unwrap(), "pub/boot.img");
}

#[test]
fn g_p_4_6_scope_rules() {
    let rules = "rG ^ get/\nrP ^ put/\nr4 $ .v4\nr6 $ .v6\n";
    assert_eq!(map(rules, "f").unwrap(), "get/f.v4");
    let put = Client { ip: "10.0.0.1".parse().unwrap(), write: true };
    assert_eq!(map_for(rules, "f", put).unwrap(), "put/f.v4");
    let v6 = Client { ip: "fd00::1".parse().unwrap(), write: false };
    assert_eq!(map_for(rules, "f", v6).unwrap(), "get/f.v6");
}

#[test]
fn inverse_acts_when_the_regex_does_not_match() {
    // Refuse everything outside boot/.
    let rules = "a~ ^boot/\n";
    assert_eq!(map(rules, "boot/x").unwrap(), "boot/x");
    assert_eq!(
        RuleSet::parse(rules).unwrap().apply(b"etc/x", v4("10.0.0.1")),
        Err(RemapError::Aborted { line: 1 })
    );
}

#[test]
fn line_syntax_comments_and_escaped_whitespace() {
    let rules = "  # a comment line\n\tr  my\\ file  your\\ file\\#1   # trailing comment\n";
    assert_eq!(map(rules, "my file").unwrap(), "your file#1");
    assert_eq!(RuleSet::parse("# only comments\n\n   \n").unwrap().len(), 0);
    // `\\` in a replacement is one backslash; any other punctuation stands for itself.
    assert_eq!(map(r"r x a\\b\.c", "x").unwrap(), r"a\b.c");
}

#[test]
fn posix_bracket_expressions_are_translated() {
    // A backslash inside brackets is literal in POSIX.
    assert_eq!(map(r"rg [\] /", r"a\b\c").unwrap(), "a/b/c");
    assert_eq!(map(r"r []x]+ -", "a]]xb").unwrap(), "a-b");
    assert_eq!(map(r"rg [[:upper:]] _", "AbC").unwrap(), "_b_");
    assert_eq!(map(r"r [^[:alnum:]./-] _", "a b").unwrap(), "a_b");
    assert_eq!(map(r"r [a&~] _", "x~").unwrap(), "x_");
    assert_eq!(translate_ere(r"^/tftpboot/(.*)$").unwrap(), r"^/tftpboot/(.*)$");
    // Escaped punctuation outside brackets is the character, as in POSIX.
    assert_eq!(map(r"r ^\/tftpboot\/ ", "/tftpboot/x").unwrap(), "x");
    assert_eq!(map(r"r a\-b\.c\+ x", "a-b.c+").unwrap(), "x");
}

#[test]
fn bad_rules_name_the_line_and_reason() {
    let cases: &[(&str, usize, &str)] = &[
        ("r ( x", 1, "bad regex"),
        ("# ok\nq ^a b", 2, "unknown flag `q`"),
        ("r ^a b\\q", 1, "unknown escape `\\q`"),
        ("r ^(a) \\2", 1, "has 1 group"),
        ("r (a)\\1 x", 1, "back-references"),
        ("r~ a b", 1, "`r` and `~`"),
        ("ra a b", 1, "`r` and `a`"),
        ("es a", 1, "`e` and `s`"),
        ("\n\nr", 3, "regex missing"),
        ("r a b c", 1, "unexpected `c`"),
        ("e a b", 1, "without the `r` flag"),
        ("rE a b", 1, "newer tftp-hpa extension"),
        (":label", 1, "labels"),
        ("r [[=a=]] x", 1, "equivalence classes"),
        ("r [abc x", 1, "unterminated bracket"),
        ("r a{1000}{1000} x", 1, "bad regex"),
    ];
    for (rules, line, reason) in cases {
        let e = parse_error(rules);
        assert_eq!(e.line, *line, "{rules:?}: {e}");
        assert!(e.reason.contains(reason), "{rules:?}: `{}` should say {reason:?}", e.reason);
    }
}

#[test]
fn loops_and_explosions_are_bounded() {
    // Two rules restarting each other forever.
    let ping_pong = "rs ^a$ b\nrs ^b$ a\n";
    assert_eq!(map(ping_pong, "a"), Err(RemapError::TooManySteps));
    // A global rewrite whose result always matches again.
    assert_eq!(map("rg a aa", "a"), Err(RemapError::TooManySteps));
    // A name that doubles on each restart hits the length cap long before the step cap.
    assert_eq!(map(r"rs ^(.+)$ \1\1", "ab"), Err(RemapError::TooLong { line: 1 }));
    assert_eq!(
        map(r"rg x xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "x"),
        Err(RemapError::TooLong { line: 1 })
    );
    // A rule set that settles is not cut however many rules it has.
    let many: String = (0..500).map(|i| format!("r ^n{i}$ n{}\n", i + 1)).collect();
    assert_eq!(map(&many, "n0").unwrap(), "n500");
}

#[test]
fn an_empty_result_is_refused() {
    assert_eq!(map("r .*", "anything"), Err(RemapError::Empty));
    assert_eq!(map("r ^/tftpboot/?", "/tftpboot/"), Err(RemapError::Empty));
    assert_eq!(RemapError::Empty.refusal().code, ErrorCode::AccessViolation);
}

#[test]
fn hits_explain_what_happened() {
    let set = RuleSet::parse("rg \\\\ /\nr ^/ \nre ^boot boot64\nr x y\n").unwrap();
    let out = set.apply(br"\boot\a", v4("10.0.0.1")).unwrap();
    assert_eq!(out.name, b"boot64/a");
    let lines: Vec<_> = out.hits.iter().map(|h| (h.line, h.then)).collect();
    assert_eq!(lines, [(1, "continue"), (2, "continue"), (3, "end")]);
    assert_eq!(out.hits[0].before, br"\boot\a");
    assert_eq!(out.hits[0].after, b"/boot/a");
}

#[test]
fn rule_sets_compare_by_text() {
    assert_eq!(RuleSet::parse("r a b").unwrap(), RuleSet::parse("r a b").unwrap());
    assert_ne!(RuleSet::parse("r a b").unwrap(), RuleSet::parse("r a c").unwrap());
}
