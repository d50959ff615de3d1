//! Tests of the command parser: every verb and argument form, the reply to each malformed
//! one, and property tests that no input line panics it.

use super::*;
use proptest::prelude::*;

fn ok(line: &str) -> Command {
    parse(line.as_bytes()).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

fn code(line: &[u8]) -> u16 {
    parse(line).expect_err("should not parse").reply().code
}

#[test]
fn verbs_are_case_insensitive_and_x_variants_map() {
    assert_eq!(ok("user alice"), Command::User(b"alice".to_vec()));
    assert_eq!(ok("XPWD"), Command::Pwd);
    assert_eq!(ok("xcwd /a"), Command::Cwd(b"/a".to_vec()));
    assert_eq!(ok("XCUP"), Command::Cdup);
    assert_eq!(ok("XMKD d"), Command::Mkd(b"d".to_vec()));
    assert_eq!(ok("XRMD d"), Command::Rmd(b"d".to_vec()));
    assert_eq!(ok("noop"), Command::Noop);
}

#[test]
fn paths_are_verbatim_bytes() {
    // Leading/trailing spaces belong to the name; non-UTF-8 passes (Linux names, RFC 2640).
    assert_eq!(ok("RETR  a b "), Command::Retr(b" a b ".to_vec()));
    assert_eq!(parse(b"STOR \xff\xfe"), Ok(Command::Stor(b"\xff\xfe".to_vec())));
    assert_eq!(ok("DELE Grüße.txt"), Command::Dele("Grüße.txt".as_bytes().to_vec()));
    assert_eq!(ok("PASS"), Command::Pass(Vec::new()));
}

#[test]
fn missing_path_is_501() {
    for v in ["CWD", "RETR", "STOR", "APPE", "DELE", "RNFR", "RNTO", "MKD", "RMD", "SIZE", "MDTM", "USER"] {
        assert_eq!(code(v.as_bytes()), 501, "{v}");
    }
}

#[test]
fn unknown_and_unimplemented() {
    assert_eq!(code(b"FOO"), 500);
    assert_eq!(code(b""), 500);
    assert_eq!(code(b"TOOLONGVERB x"), 500);
    assert_eq!(code(b"12 x"), 500);
    assert_eq!(code(b"ADAT x"), 502);
    assert_eq!(code(b"LPRT 4,1"), 502);
}

#[test]
fn rfc4217_verbs() {
    assert_eq!(ok("AUTH TLS"), Command::Auth(AuthMechanism::Tls));
    assert_eq!(ok("auth tls-c"), Command::Auth(AuthMechanism::Tls));
    assert_eq!(ok("AUTH SSL"), Command::Auth(AuthMechanism::Tls), "the pre-RFC name is an alias");
    assert_eq!(ok("AUTH GSSAPI"), Command::Auth(AuthMechanism::Other("GSSAPI".into())));
    assert_eq!(code(b"AUTH"), 501);
    assert_eq!(ok("PBSZ 0"), Command::Pbsz(0));
    assert_eq!(code(b"PBSZ x"), 501);
    assert_eq!(ok("PROT P"), Command::Prot(ProtLevel::Private));
    assert_eq!(ok("prot c"), Command::Prot(ProtLevel::Clear));
    assert_eq!(ok("PROT S"), Command::Prot(ProtLevel::Safe));
    assert_eq!(code(b"PROT X"), 504, "RFC 4217 §9: an unknown level");
    assert_eq!(ok("CCC"), Command::Ccc);
}

#[test]
fn type_forms() {
    // RFC 959 §4.1.2 TYPE.
    assert_eq!(ok("TYPE A"), Command::Type(TransferType::Ascii));
    assert_eq!(ok("TYPE a n"), Command::Type(TransferType::Ascii));
    assert_eq!(ok("TYPE I"), Command::Type(TransferType::Binary));
    assert_eq!(ok("TYPE L 8"), Command::Type(TransferType::Binary));
    assert_eq!(ok("TYPE L8"), Command::Type(TransferType::Binary));
    assert_eq!(code(b"TYPE E"), 504);
    assert_eq!(code(b"TYPE A T"), 504);
    assert_eq!(code(b"TYPE L 7"), 504);
    assert_eq!(code(b"TYPE X"), 501);
    assert_eq!(code(b"TYPE"), 501);
}

#[test]
fn mode_and_stru() {
    assert_eq!(ok("MODE S"), Command::Mode);
    assert_eq!(ok("STRU f"), Command::Stru);
    assert_eq!(code(b"MODE B"), 504);
    assert_eq!(code(b"MODE C"), 504);
    assert_eq!(code(b"STRU R"), 504);
    assert_eq!(code(b"STRU P"), 504);
    assert_eq!(code(b"MODE Q"), 501);
}

#[test]
fn port_parsing() {
    assert_eq!(ok("PORT 192,168,1,2,4,1"), Command::Port("192.168.1.2:1025".parse().unwrap()));
    assert_eq!(ok("PORT 10, 0, 0, 1, 0, 21"), Command::Port("10.0.0.1:21".parse().unwrap()));
    for bad in
        ["PORT 1,2,3,4,5", "PORT 1,2,3,4,5,6,7", "PORT 256,1,1,1,1,1", "PORT a,b,c,d,e,f", "PORT 1,2,3,4,0,0"]
    {
        assert_eq!(code(bad.as_bytes()), 501, "{bad}");
    }
}

#[test]
fn eprt_parsing() {
    // RFC 2428 §2 examples.
    assert_eq!(ok("EPRT |1|132.235.1.2|6275|"), Command::Eprt("132.235.1.2:6275".parse().unwrap()));
    assert_eq!(
        ok("EPRT |2|1080::8:800:200C:417A|5282|"),
        Command::Eprt("[1080::8:800:200C:417A]:5282".parse().unwrap())
    );
    assert_eq!(ok("EPRT |2|::1|2000|"), Command::Eprt("[::1]:2000".parse().unwrap()));
    assert_eq!(ok("EPRT !1!10.0.0.1!2000!"), Command::Eprt("10.0.0.1:2000".parse().unwrap()));
    assert_eq!(code(b"EPRT |3|x|1|"), 522);
    assert_eq!(code(b"EPRT |1|::1|2000|"), 501);
    assert_eq!(code(b"EPRT |1|1.2.3.4|0|"), 501);
    assert_eq!(code(b"EPRT |1|1.2.3.4|2000"), 501);
    assert_eq!(code(b"EPRT"), 501);
}

#[test]
fn epsv_forms() {
    assert_eq!(ok("EPSV"), Command::Epsv(EpsvArg::Any));
    assert_eq!(ok("EPSV all"), Command::Epsv(EpsvArg::All));
    assert_eq!(ok("EPSV 1"), Command::Epsv(EpsvArg::Proto(NetProto::V4)));
    assert_eq!(ok("EPSV 2"), Command::Epsv(EpsvArg::Proto(NetProto::V6)));
    assert_eq!(code(b"EPSV 3"), 522);
    assert_eq!(code(b"EPSV x"), 501);
}

#[test]
fn list_flags_are_dropped_like_vsftpd() {
    assert_eq!(ok("LIST"), Command::List(ListArgs::default()));
    assert_eq!(ok("LIST -la"), Command::List(ListArgs { path: None, all: true }));
    assert_eq!(ok("LIST -l /pub"), Command::List(ListArgs { path: Some(b"/pub".to_vec()), all: false }));
    assert_eq!(ok("NLST -a -l dir x"), Command::Nlst(ListArgs { path: Some(b"dir x".to_vec()), all: true }));
    assert_eq!(ok("MLSD"), Command::Mlsd(None));
    assert_eq!(ok("MLST f"), Command::Mlst(Some(b"f".to_vec())));
}

#[test]
fn rest_and_times() {
    assert_eq!(ok("REST 1048576"), Command::Rest(1_048_576));
    assert_eq!(code(b"REST -1"), 501);
    assert_eq!(code(b"REST 99999999999999999999999"), 501);
    // RFC 3659 §5.3: past i64::MAX no file position exists (the kernel would read -1 as "here").
    assert_eq!(ok("REST 9223372036854775807"), Command::Rest(i64::MAX as u64));
    assert_eq!(code(b"REST 9223372036854775808"), 501);
    assert_eq!(code(b"REST 18446744073709551615"), 501);
    assert_eq!(ok("MFMT 20240229123456 a b"), Command::Mfmt { mtime: 1_709_210_096, path: b"a b".to_vec() });
    assert_eq!(ok("MFMT 19700101000000.123 x"), Command::Mfmt { mtime: 0, path: b"x".to_vec() });
    assert_eq!(code(b"MFMT 20230229123456 x"), 501);
    // A leap second is kept in its minute: the last second of 9999 stays in 9999.
    let last = crate::calendar::days_from_civil(9999, 12, 31) * 86400 + 86399;
    assert_eq!(ok("MFMT 99991231235960 x"), Command::Mfmt { mtime: last, path: b"x".to_vec() });
    assert_eq!(ok("MFMT 99991231235959 x"), Command::Mfmt { mtime: last, path: b"x".to_vec() });
    assert_eq!(code(b"MFMT 2024 x"), 501);
    assert_eq!(code(b"MFMT 20240101000000"), 501);
}

#[test]
fn site_commands() {
    assert_eq!(
        ok("SITE CHMOD 0644 a b"),
        Command::Site(SiteCommand::Chmod { mode: 0o644, path: b"a b".to_vec() })
    );
    assert_eq!(
        ok("site chmod 755 x"),
        Command::Site(SiteCommand::Chmod { mode: 0o755, path: b"x".to_vec() })
    );
    assert_eq!(ok("SITE HELP"), Command::Site(SiteCommand::Help));
    assert_eq!(ok("SITE EXEC ls"), Command::Site(SiteCommand::Other("EXEC".into())));
    assert_eq!(code(b"SITE CHMOD 999 x"), 501);
    assert_eq!(code(b"SITE CHMOD 0644"), 501);
    assert_eq!(code(b"SITE"), 501);
}

#[test]
fn opts_forms() {
    assert_eq!(ok("OPTS UTF8 ON"), Command::Opts(OptsArg::Utf8(true)));
    assert_eq!(ok("opts utf8 off"), Command::Opts(OptsArg::Utf8(false)));
    assert_eq!(ok("OPTS MLST type;size;bogus;"), Command::Opts(OptsArg::Mlst(vec![Fact::Type, Fact::Size])));
    assert_eq!(ok("OPTS MLST"), Command::Opts(OptsArg::Mlst(vec![])));
    assert_eq!(code(b"OPTS FOO"), 501);
    assert_eq!(code(b"OPTS UTF8 MAYBE"), 501);
}

#[test]
fn host_forms() {
    // RFC 7151 §3.
    assert_eq!(ok("HOST ftp.example.com"), Command::Host(b"ftp.example.com".to_vec()));
    assert_eq!(ok("HOST [::1]"), Command::Host(b"[::1]".to_vec()));
    assert_eq!(code(b"HOST [nonsense]"), 501);
    assert_eq!(code(b"HOST a b"), 501);
    assert_eq!(code(b"HOST"), 501);
}

#[test]
fn stray_telnet_bytes_before_verb() {
    // A Data Mark left in band before ABOR (RFC 959 §4.1.3 abort sequence).
    assert_eq!(parse(b"\xf2ABOR"), Ok(Command::Abor));
}

#[test]
fn out_of_band_and_pre_login_sets() {
    assert!(ok("ABOR").is_out_of_band() && ok("QUIT").is_out_of_band() && ok("STAT").is_out_of_band());
    assert!(!ok("STAT x").is_out_of_band() && !ok("NOOP").is_out_of_band());
    assert!(ok("FEAT").allowed_before_login() && ok("HOST a").allowed_before_login());
    assert!(!ok("PWD").allowed_before_login() && !ok("LIST").allowed_before_login());
}

proptest! {
    #[test]
    fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn never_panics_on_known_verbs(verb in prop::sample::select(vec![
        "PORT ", "EPRT ", "EPSV ", "TYPE ", "MODE ", "STRU ", "REST ", "MFMT ", "SITE ", "SITE CHMOD ",
        "OPTS ", "OPTS MLST ", "HOST ", "LIST ", "NLST ", "USER ", "MDTM "]),
        tail in proptest::collection::vec(any::<u8>(), 0..80)) {
        let line = [verb.as_bytes(), &tail].concat();
        if let Err(e) = parse(&line) {
            let c = e.reply().code;
            prop_assert!(matches!(c, 500 | 501 | 502 | 504 | 522));
        }
    }

    #[test]
    fn port_round_trips(a: u8, b: u8, c: u8, d: u8, port in 1u16..) {
        let [p1, p2] = port.to_be_bytes();
        let line = format!("PORT {a},{b},{c},{d},{p1},{p2}");
        let want = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port);
        prop_assert_eq!(parse(line.as_bytes()), Ok(Command::Port(want)));
    }

    #[test]
    fn eprt_v6_round_trips(segs: [u16; 8], port in 1u16..) {
        let ip = Ipv6Addr::new(segs[0], segs[1], segs[2], segs[3], segs[4], segs[5], segs[6], segs[7]);
        let line = format!("EPRT |2|{ip}|{port}|");
        prop_assert_eq!(parse(line.as_bytes()), Ok(Command::Eprt(SocketAddr::new(IpAddr::V6(ip), port))));
    }
}
