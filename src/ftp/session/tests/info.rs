//! What the server tells about itself and the session: FEAT, HELP and STAT
//! (RFC 959 §4.1.3, RFC 2389 §3).

use super::*;

#[test]
fn feat_lists_extensions() {
    // RFC 2389 §3.2: each feature line starts with a space.
    let mut c = Client::new();
    let expected = "211-Features:\r\n EPRT\r\n EPSV\r\n HOST\r\n MDTM\r\n MFMT\r\n \
                    MLST type*;size*;modify*;perm*;unique*;UNIX.mode*;\r\n REST STREAM\r\n SIZE\r\n TVFS\r\n \
                    UTF8\r\n211 End\r\n";
    assert_eq!(replies(&c.send("FEAT\r\n")), expected);
}

#[test]
fn help_and_stat_are_multi_line() {
    let mut c = Client::new();
    let help = replies(&c.send("HELP\r\n"));
    assert!(help.starts_with("214-The following commands are recognized.\r\n"));
    assert!(help.ends_with("\r\n214 Help OK.\r\n"));
    c.login("alice");
    let stat = replies(&c.send("STAT\r\n"));
    assert!(stat.starts_with("211-FTP server status:\r\n"), "{stat}");
    assert!(stat.contains("Connected to 192.0.2.5") && stat.contains("Logged in as alice"), "{stat}");
    assert!(stat.ends_with("211 End of status\r\n"));
}

#[test]
fn stat_path_lists_over_control() {
    let mut c = Client::new();
    c.login("alice");
    let (t, a) = c.action("STAT /pub\r\n");
    assert_eq!(a, Action::ReadDir { path: vp("/pub") });
    let entries = vec![file("a", FileKind::File, 3), file("123", FileKind::File, 4)];
    let outs = c.complete(t, OpResult::Entries { entries: Ok(entries), now_unix: 1_700_800_000 });
    assert_eq!(
        replies(&outs),
        "213-Status of /pub:\r\n\
         -rw-r--r--    1 ftp      ftp             3 Nov 24 01:19 a\r\n\
         -rw-r--r--    1 ftp      ftp             4 Nov 24 01:19 123\r\n\
         213 End of status\r\n"
    );
    let (t, _) = c.action("STAT /nope\r\n");
    assert_eq!(
        codes(&c.complete(t, OpResult::Entries { entries: Err(FsError::NotFound), now_unix: 0 })),
        [550]
    );
}
