//! File-tree commands answered on the control connection: CWD, PWD, MKD, RMD, DELE, RNFR,
//! RNTO, SIZE, MDTM, MFMT, MLST and SITE CHMOD (RFC 959 §4.1.1 and §4.1.3, RFC 3659).

use super::*;

#[test]
fn pwd_cwd_cdup() {
    let mut c = Client::new();
    c.login("alice");
    let (t, a) = c.action("CWD pub/Grüße\r\n");
    assert_eq!(a, Action::Stat { path: vp("/pub/Grüße") });
    assert_eq!(codes(&c.complete(t, OpResult::Stat(Ok(file("Grüße", FileKind::Dir, 0))))), [250]);
    assert_eq!(replies(&c.send("PWD\r\n")), "257 \"/pub/Grüße\" is the current directory\r\n");
    // CWD to a file, or a missing directory, is 550 and leaves the cwd alone.
    let (t, _) = c.action("CWD f\r\n");
    assert_eq!(codes(&c.complete(t, OpResult::Stat(Ok(file("f", FileKind::File, 1))))), [550]);
    let (t, _) = c.action("XCWD nope\r\n");
    assert_eq!(codes(&c.complete(t, OpResult::Stat(Err(FsError::NotFound)))), [550]);
    let (t, a) = c.action("CDUP\r\n");
    assert_eq!(a, Action::Stat { path: vp("/pub") });
    assert_eq!(codes(&c.complete(t, OpResult::Stat(Ok(file("pub", FileKind::Dir, 0))))), [250]);
    // Climbing above the root stays at the root.
    let (t, a) = c.action("CWD ../../../..\r\n");
    assert_eq!(a, Action::Stat { path: VirtualPath::root() });
    c.complete(t, OpResult::Stat(Ok(file("/", FileKind::Dir, 0))));
    assert_eq!(replies(&c.send("XPWD\r\n")), "257 \"/\" is the current directory\r\n");
}

#[test]
fn pwd_doubles_quotes_in_directory_names() {
    // RFC 959 Appendix II: an embedded `"` is doubled in the 257 reply.
    let mut c = Client::new();
    c.login_anonymous();
    let (t, _) = c.action("CWD say \"hi\"\r\n");
    assert_eq!(codes(&c.complete(t, OpResult::Stat(Ok(file("say \"hi\"", FileKind::Dir, 0))))), [250]);
    assert_eq!(replies(&c.send("PWD\r\n")), "257 \"/say \"\"hi\"\"\" is the current directory\r\n");
}

#[test]
fn mkd_doubles_quotes_in_257() {
    // RFC 959 Appendix II.
    let mut c = Client::new();
    c.login("alice");
    let (t, a) = c.action("MKD say \"hi\"\r\n");
    assert_eq!(a, Action::MakeDir { path: vp("/say \"hi\"") });
    assert_eq!(replies(&c.complete(t, OpResult::Done(Ok(())))), "257 \"/say \"\"hi\"\"\" created\r\n");
    let (t, _) = c.action("MKD say \"hi\"\r\n");
    assert_eq!(replies(&c.complete(t, OpResult::Done(Err(FsError::Exists)))), "550 File exists.\r\n");
}

#[test]
fn rmd_dele_errors_map_to_codes() {
    let mut c = Client::new();
    c.login("alice");
    let (t, a) = c.action("RMD full\r\n");
    assert_eq!(a, Action::RemoveDir { path: vp("/full") });
    assert_eq!(
        replies(&c.complete(t, OpResult::Done(Err(FsError::NotEmpty)))),
        "550 Directory not empty.\r\n"
    );
    let (t, a) = c.action("DELE f\r\n");
    assert_eq!(a, Action::Delete { path: vp("/f") });
    assert_eq!(codes(&c.complete(t, OpResult::Done(Ok(())))), [250]);
    let (t, _) = c.action("DELE f\r\n");
    assert_eq!(codes(&c.complete(t, OpResult::Done(Err(FsError::NoSpace)))), [452]);
    let (t, _) = c.action("DELE f\r\n");
    assert_eq!(codes(&c.complete(t, OpResult::Done(Err(FsError::InvalidName)))), [553]);
    let (t, _) = c.action("DELE f\r\n");
    assert_eq!(codes(&c.complete(t, OpResult::Done(Err(FsError::Other)))), [451]);
}

#[test]
fn overlong_path_is_553() {
    let mut cfg = config();
    cfg.ftp.max_line_len = 16384;
    let mut c = Client::with(settings_from(&cfg), PEER, LOCAL);
    c.login("alice");
    let outs = c.send(&format!("MKD {}\r\n", "a".repeat(5000)));
    assert_eq!(codes(&outs), [553]);
}

#[test]
fn utf8_names_flow_through_bytes() {
    // RFC 2640: names are UTF-8 on the wire; non-UTF-8 Linux names pass unchanged.
    let mut c = Client::new();
    c.login("alice");
    let (t, a) = c.action("MKD Ωmega\r\n");
    assert_eq!(a, Action::MakeDir { path: vp("/Ωmega") });
    assert_eq!(replies(&c.complete(t, OpResult::Done(Ok(())))), "257 \"/Ωmega\" created\r\n");
    // A raw 0xFF byte arrives doubled as IAC IAC (RFC 854).
    let outs = c.send_bytes(b"DELE \xff\xff\xfe\r\n");
    let (_, a) = one(actions(&outs));
    assert_eq!(a, Action::Delete { path: VirtualPath::root().join(b"\xff\xfe").unwrap() });
}

#[test]
fn rnfr_rnto_sequence() {
    // RFC 959 §4.1.3: RNTO must immediately follow a successful RNFR.
    let mut c = Client::new();
    c.login("alice");
    assert_eq!(replies(&c.send("RNTO b\r\n")), "503 RNFR required first.\r\n");
    let (t, a) = c.action("RNFR a\r\n");
    assert_eq!(a, Action::Stat { path: vp("/a") });
    assert_eq!(codes(&c.complete(t, OpResult::Stat(Ok(file("a", FileKind::File, 1))))), [350]);
    let (t, a) = c.action("RNTO b\r\n");
    assert_eq!(a, Action::Rename { from: vp("/a"), to: vp("/b"), replace: true });
    assert_eq!(replies(&c.complete(t, OpResult::Done(Ok(())))), "250 Rename successful.\r\n");
    // Another command between RNFR and RNTO cancels the rename.
    let (t, _) = c.action("RNFR a\r\n");
    c.complete(t, OpResult::Stat(Ok(file("a", FileKind::File, 1))));
    assert_eq!(codes(&c.send("NOOP\r\nRNTO b\r\n")), [200, 503]);
    // RNFR of a missing file is 550 and arms nothing.
    let (t, _) = c.action("RNFR zz\r\n");
    assert_eq!(codes(&c.complete(t, OpResult::Stat(Err(FsError::NotFound)))), [550]);
    assert_eq!(codes(&c.send("RNTO b\r\n")), [503]);
}

#[test]
fn rnto_replaces_an_existing_file_only_with_delete() {
    // Like STOR: overwriting destroys the old content, so without `delete` RNTO may only
    // create a new name; the io layer refuses an existing target (EEXIST -> 550).
    let mut cfg = config();
    cfg.ftp.users.push(UserConfig {
        name: "carol".into(),
        password_hash: HASH.into(),
        root: None,
        permissions: vec!["read".into(), "rename".into()],
    });
    let mut c = Client::with(settings_from(&cfg), PEER, LOCAL);
    c.login("carol");
    let (t, _) = c.action("RNFR a\r\n");
    c.complete(t, OpResult::Stat(Ok(file("a", FileKind::File, 1))));
    let (t, a) = c.action("RNTO b\r\n");
    assert_eq!(a, Action::Rename { from: vp("/a"), to: vp("/b"), replace: false });
    assert_eq!(replies(&c.complete(t, OpResult::Done(Err(FsError::Exists)))), "550 File exists.\r\n");
}

#[test]
fn rename_needs_permission() {
    let mut c = Client::new();
    c.login("bob");
    assert_eq!(codes(&c.send("RNFR a\r\n")), [550]);
    assert_eq!(codes(&c.send("DELE a\r\n")), [550]);
    assert_eq!(codes(&c.send("MKD a\r\n")), [550]);
}

#[test]
fn size_mdtm_mfmt() {
    let mut c = Client::new();
    c.login("alice");
    assert_eq!(codes(&c.send("TYPE I\r\n")), [200]);
    let (t, a) = c.action("SIZE f.bin\r\n");
    assert_eq!(a, Action::Stat { path: vp("/f.bin") });
    assert_eq!(
        replies(&c.complete(t, OpResult::Stat(Ok(file("f.bin", FileKind::File, 1234))))),
        "213 1234\r\n"
    );
    let (t, _) = c.action("SIZE dir\r\n");
    assert_eq!(codes(&c.complete(t, OpResult::Stat(Ok(file("dir", FileKind::Dir, 4096))))), [550]);
    let (t, _) = c.action("MDTM f.bin\r\n");
    let outs = c.complete(t, OpResult::Stat(Ok(file("f.bin", FileKind::File, 1))));
    assert_eq!(replies(&outs), "213 20231124011900\r\n");
    let (t, a) = c.action("MFMT 20240229123456 f.bin\r\n");
    assert_eq!(a, Action::SetMtime { path: vp("/f.bin"), mtime: 1_709_210_096 });
    assert_eq!(replies(&c.complete(t, OpResult::Done(Ok(())))), "213 Modify=20240229123456; /f.bin\r\n");
}

#[test]
fn size_is_the_file_length_in_either_type() {
    // As vsftpd: clients ask in the default TYPE A and take the answer as a byte count.
    let mut c = Client::new();
    c.login("alice");
    let (t, a) = c.action("SIZE notes.txt\r\n");
    assert_eq!(a, Action::Stat { path: vp("/notes.txt") });
    let outs = c.complete(t, OpResult::Stat(Ok(file("notes.txt", FileKind::File, 100))));
    assert_eq!(replies(&outs), "213 100\r\n");
    // Directories and missing files stay 550 without counting anything.
    let (t, _) = c.action("SIZE pub\r\n");
    assert_eq!(codes(&c.complete(t, OpResult::Stat(Ok(file("pub", FileKind::Dir, 4096))))), [550]);
    let (t, _) = c.action("MDTM nope\r\n");
    assert_eq!(codes(&c.complete(t, OpResult::Stat(Err(FsError::NotFound)))), [550]);
    let (t, _) = c.action("MDTM pub\r\n");
    assert_eq!(codes(&c.complete(t, OpResult::Stat(Ok(file("pub", FileKind::Dir, 4096))))), [550]);
}

#[test]
fn site_chmod_and_help() {
    let mut c = Client::new();
    c.login("alice");
    let (t, a) = c.action("SITE CHMOD 0640 secret.txt\r\n");
    assert_eq!(a, Action::Chmod { path: vp("/secret.txt"), mode: 0o640 });
    assert_eq!(replies(&c.complete(t, OpResult::Done(Ok(())))), "200 SITE CHMOD command ok.\r\n");
    // Special bits are dropped: an uploader must not plant a set-id program.
    let (t, a) = c.action("SITE CHMOD 4755 tool\r\n");
    assert_eq!(a, Action::Chmod { path: vp("/tool"), mode: 0o755 });
    assert!(
        replies(&c.complete(t, OpResult::Done(Ok(())))).contains("setuid, setgid and sticky bits ignored")
    );
    let (t, a) = c.action("SITE CHMOD 3777 dir\r\n");
    assert_eq!(a, Action::Chmod { path: vp("/dir"), mode: 0o777 });
    assert_eq!(codes(&c.complete(t, OpResult::Done(Ok(())))), [200]);
    assert_eq!(codes(&c.send("SITE HELP\r\n")), [214]);
    assert_eq!(codes(&c.send("SITE EXEC /bin/sh\r\n")), [500]);
}

#[test]
fn mlst_over_control_connection() {
    // RFC 3659 §7.2.1: the fact line starts with a space and names the path.
    let mut c = Client::new();
    c.login("bob");
    let (t, a) = c.action("MLST f.txt\r\n");
    assert_eq!(a, Action::Stat { path: vp("/f.txt") });
    let outs = c.complete(t, OpResult::Stat(Ok(file("f.txt", FileKind::File, 5))));
    assert_eq!(
        replies(&outs),
        "250-Listing /f.txt\r\n type=file;size=5;modify=20231124011900;perm=rw;unique=1U2;UNIX.mode=0644; \
         /f.txt\r\n250 End\r\n"
    );
    assert_eq!(replies(&c.send("OPTS MLST size;type;nope\r\n")), "200 MLST OPTS type;size;\r\n");
    let (t, _) = c.action("MLST\r\n");
    let outs = c.complete(t, OpResult::Stat(Ok(file("/", FileKind::Dir, 0))));
    assert!(replies(&outs).contains("\r\n type=dir;size=0; /\r\n"), "{}", replies(&outs));
}
