//! Transfers: RETR, STOR, APPE, STOU, LIST, NLST, MLSD, REST, ABOR and what QUIT or STAT do
//! while one runs, and how each ending is answered (RFC 959 §4.1.3, RFC 3659 §5 and §7).

use super::*;
use crate::ftp::listing::ListFormat;

#[test]
fn retr_with_rest_then_offset_resets() {
    // RFC 3659 §5: REST applies to the next transfer only.
    let mut c = Client::new();
    c.login_anonymous();
    assert_eq!(codes(&c.send("TYPE I\r\n")), [200]);
    assert_eq!(replies(&c.send("REST 1000\r\n")), "350 Restart position accepted (1000).\r\n");
    c.passive();
    let (t, a) = c.action("RETR dir/file.iso\r\n");
    assert_eq!(
        a,
        Action::Transfer {
            kind: TransferKind::Retr { path: vp("/dir/file.iso"), offset: 1000, ascii: false },
            data: DataEndpoint::Passive,
            protect: false,
        }
    );
    assert_eq!(
        replies(&c.complete(t, OpResult::Transfer(TransferEvent::Started))),
        "150 Opening BINARY mode data connection.\r\n"
    );
    assert_eq!(
        replies(&c.complete(t, OpResult::Transfer(TransferEvent::Finished { bytes: 9000 }))),
        "226 Transfer complete.\r\n"
    );
    // Each transfer consumes its PASV; the next needs a new one and starts at 0.
    assert_eq!(codes(&c.send("RETR dir/file.iso\r\n")), [425]);
    c.passive();
    let (_, a) = c.action("RETR dir/file.iso\r\n");
    assert!(matches!(a, Action::Transfer { kind: TransferKind::Retr { offset: 0, .. }, .. }));
}

#[test]
fn rest_is_dropped_by_commands_other_than_transfer_setup() {
    // RFC 3659 §5: REST must come right before the transfer; PASV/PORT/TYPE may sit between.
    let mut c = Client::new();
    c.login_anonymous();
    let retr_offset = |c: &mut Client| {
        c.passive();
        let (t, a) = c.action("RETR f\r\n");
        c.complete(t, OpResult::Transfer(TransferEvent::Failed(TransferError::DataConnection)));
        match a {
            Action::Transfer { kind: TransferKind::Retr { offset, .. }, .. } => offset,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(codes(&c.send("REST 100\r\nTYPE I\r\n")), [350, 200]);
    assert_eq!(retr_offset(&mut c), 100, "PASV and TYPE keep the offset");
    for between in ["NOOP", "PWD", "XYZZY", "SYST"] {
        assert_eq!(codes(&c.send(&format!("REST 100\r\n{between}\r\n")))[0], 350);
        assert_eq!(retr_offset(&mut c), 0, "{between} drops the offset");
    }
    // A listing does not consume it for a later RETR either.
    c.send("REST 100\r\n");
    c.passive();
    let (t, _) = c.action("NLST\r\n");
    c.complete(t, OpResult::Transfer(TransferEvent::Finished { bytes: 0 }));
    assert_eq!(retr_offset(&mut c), 0);
}

#[test]
fn rest_beyond_the_end_of_the_file_is_554() {
    // RFC 3659 §5: the transfer command after an impossible REST answers 554.
    let mut c = Client::new();
    c.login_anonymous();
    c.send("REST 999999\r\n");
    c.passive();
    let (t, _) = c.action("RETR small.txt\r\n");
    let outs =
        c.complete(t, OpResult::Transfer(TransferEvent::Failed(TransferError::Fs(FsError::OffsetBeyondEnd))));
    assert_eq!(replies(&outs), "554 Requested action not taken: invalid REST parameter.\r\n");
    // Nothing touched the data connection: the PASV still holds, and the offset is gone.
    let (_, a) = c.action("RETR small.txt\r\n");
    assert!(matches!(a, Action::Transfer { kind: TransferKind::Retr { offset: 0, .. }, .. }), "{a:?}");
}

#[test]
fn stor_modes_follow_permissions() {
    let mut c = Client::new();
    c.login("bob"); // read + write, no delete, no append
    c.send("TYPE I\r\n");
    c.passive();
    let (_, a) = c.action("STOR new.bin\r\n");
    let Action::Transfer { kind: TransferKind::Stor { mode, offset, .. }, .. } = a else { panic!() };
    assert_eq!((mode, offset), (StoreMode::CreateNew, 0));
    let mut c = Client::new();
    c.login("bob");
    c.passive();
    assert_eq!(codes(&c.send("APPE log\r\n")), [550]);
    c.send("REST 10\r\n");
    assert_eq!(codes(&c.send("STOR log\r\n")), [550], "resuming an upload needs append");
    // alice may append and resume.
    let mut c = Client::new();
    c.login("alice");
    c.passive();
    c.send("REST 10\r\n");
    let (_, a) = c.action("STOR log\r\n");
    assert!(matches!(
        a,
        Action::Transfer { kind: TransferKind::Stor { mode: StoreMode::Replace, offset: 10, .. }, .. }
    ));
    c = Client::new();
    c.login("alice");
    c.passive();
    let (_, a) = c.action("APPE log\r\n");
    assert!(matches!(
        a,
        Action::Transfer { kind: TransferKind::Stor { mode: StoreMode::Append, offset: 0, .. }, .. }
    ));
}

#[test]
fn stou_reports_name_and_retries_on_collision() {
    // RFC 1123 §4.1.2.9: 150 FILE: <name>.
    let mut c = Client::new();
    c.login("alice");
    c.passive();
    let (t, a) = c.action("STOU report\r\n");
    assert!(
        matches!(&a, Action::Transfer { kind: TransferKind::Stor { path, mode: StoreMode::CreateNew, .. }, .. } if *path == vp("/report"))
    );
    let outs = c.complete(t, OpResult::Transfer(TransferEvent::Failed(TransferError::Fs(FsError::Exists))));
    assert_eq!(replies(&outs), "");
    let (t2, a2) = one(actions(&outs));
    assert_ne!(t2, t);
    assert!(
        matches!(&a2, Action::Transfer { kind: TransferKind::Stor { path, .. }, data: DataEndpoint::Passive, .. } if *path == vp("/report.1"))
    );
    assert_eq!(
        replies(&c.complete(t2, OpResult::Transfer(TransferEvent::Started))),
        "150 FILE: report.1\r\n"
    );
    assert_eq!(codes(&c.complete(t2, OpResult::Transfer(TransferEvent::Finished { bytes: 1 }))), [226]);
    // The stale token is ignored.
    assert!(c.complete(t, OpResult::Transfer(TransferEvent::Started)).is_empty());
}

#[test]
fn transfer_failures_map_to_codes() {
    let cases = [
        (TransferError::DataConnection, 425),
        (TransferError::Aborted, 426),
        (TransferError::Local, 451),
        (TransferError::Fs(FsError::NotFound), 550),
        (TransferError::Fs(FsError::PermissionDenied), 550),
        (TransferError::Fs(FsError::IsADirectory), 550),
        // RFC 959 §5.4: 452 is among STOR's first replies, for a disk full before any data.
        (TransferError::Fs(FsError::NoSpace), 452),
        (TransferError::Fs(FsError::QuotaExceeded), 552),
        (TransferError::Fs(FsError::Busy), 451),
    ];
    for (err, code) in cases {
        let mut c = Client::new();
        c.login("alice");
        c.passive();
        let (t, _) = c.action("RETR f\r\n");
        assert_eq!(codes(&c.complete(t, OpResult::Transfer(TransferEvent::Failed(err)))), [code], "{err:?}");
        assert_eq!(codes(&c.send("NOOP\r\n")), [200], "session resumes after {err:?}");
    }
}

#[test]
fn out_of_room_after_the_150_is_451_for_a_full_disk_and_552_for_an_allocation() {
    // RFC 959 §5.4 lists 451 and 552, not 452, among STOR's completion replies: a disk that
    // fills midway is a local error (transient, like 452), a quota or size limit a 552.
    for (kind, code) in [(FsError::NoSpace, 451), (FsError::QuotaExceeded, 552), (FsError::TooLarge, 552)] {
        let mut c = Client::new();
        c.login("alice");
        c.passive();
        let (t, _) = c.action("APPE f\r\n");
        assert_eq!(codes(&c.complete(t, OpResult::Transfer(TransferEvent::Started))), [150]);
        let outs = c.complete(t, OpResult::Transfer(TransferEvent::Failed(TransferError::Fs(kind))));
        assert_eq!(codes(&outs), [code], "{kind:?}");
    }
}

#[test]
fn a_file_that_cannot_be_opened_keeps_the_data_connection_setup() {
    // The failed open never used the passive listener: the next RETR needs no new PASV.
    let mut c = Client::new();
    c.login_anonymous();
    c.passive();
    let (t, _) = c.action("RETR missing.bin\r\n");
    let outs = c.complete(t, OpResult::Transfer(TransferEvent::Failed(TransferError::Fs(FsError::NotFound))));
    assert_eq!(codes(&outs), [550]);
    let (t, a) = c.action("RETR present.bin\r\n");
    assert!(matches!(a, Action::Transfer { data: DataEndpoint::Passive, .. }), "{a:?}");
    // A data-connection failure, by contrast, used the setup up.
    let outs = c.complete(t, OpResult::Transfer(TransferEvent::Failed(TransferError::DataConnection)));
    assert_eq!(codes(&outs), [425]);
    assert_eq!(codes(&c.send("RETR present.bin\r\n")), [425], "PASV needed again");
}

#[test]
fn list_nlst_mlsd_actions() {
    let mut c = Client::new();
    c.login("bob");
    c.passive();
    let (t, a) = c.action("LIST -la\r\n");
    assert_eq!(
        a,
        Action::Transfer {
            kind: TransferKind::List {
                path: VirtualPath::root(),
                format: ListFormat::Long { hide_ids: true },
                hidden: true,
                glob: None
            },
            data: DataEndpoint::Passive,
            protect: false,
        }
    );
    assert_eq!(codes(&c.complete(t, OpResult::Transfer(TransferEvent::Started))), [150]);
    assert_eq!(
        replies(&c.complete(t, OpResult::Transfer(TransferEvent::Finished { bytes: 0 }))),
        "226 Directory send OK.\r\n"
    );
    c.passive();
    let (_, a) = c.action("NLST sub\r\n");
    assert!(matches!(
        a,
        Action::Transfer { kind: TransferKind::List { format: ListFormat::Names, hidden: false, .. }, .. }
    ));
    let mut c = Client::new();
    c.login("bob");
    c.send("OPTS MLST type;size;perm\r\n");
    c.passive();
    let (_, a) = c.action("MLSD /pub\r\n");
    let Action::Transfer { kind: TransferKind::List { path, format, hidden, .. }, .. } = a else { panic!() };
    assert_eq!((path, hidden), (vp("/pub"), true));
    let entries = [file("x", FileKind::File, 7)];
    assert_eq!(format.render_all(&entries, 0), b"type=file;size=7;perm=rw; x\r\n");
}

#[test]
fn list_and_nlst_glob_the_last_component_only() {
    use crate::ftp::NameFilter;
    let mut c = Client::new();
    c.login("bob");
    let mut list = |line: &str| {
        c.passive();
        let (t, a) = c.action(line);
        c.complete(t, OpResult::Transfer(TransferEvent::Failed(TransferError::DataConnection)));
        match a {
            Action::Transfer { kind: TransferKind::List { path, hidden, glob, .. }, .. } => {
                (path, hidden, glob)
            }
            other => panic!("{other:?}"),
        }
    };
    let glob = |pattern: &str, prefix: &str| {
        Some(NameFilter { pattern: pattern.as_bytes().to_vec(), prefix: prefix.as_bytes().to_vec() })
    };
    assert_eq!(list("NLST *.bin\r\n"), (vp("/"), false, glob("*.bin", "")));
    // NLST names keep the directory the client wrote, so `mget` can RETR them; LIST's do not.
    assert_eq!(list("NLST dir/*.bin\r\n"), (vp("/dir"), false, glob("*.bin", "dir/")));
    assert_eq!(list("LIST -a pub/[a-c]?\r\n"), (vp("/pub"), true, glob("[a-c]?", "")));
    assert_eq!(list("NLST /*\r\n"), (vp("/"), false, glob("*", "/")));
    // Wildcards in a directory component are literal, as in vsftpd.
    assert_eq!(list("NLST */x\r\n"), (vp("/*/x"), false, None));
    assert_eq!(list("NLST *.d/\r\n"), (vp("/*.d"), false, None));
    // Escaped wildcards are no pattern: the argument is an ordinary path.
    assert_eq!(list("NLST a\\*\r\n"), (vp("/a\\*"), false, None));
    // The directory is a normal join: `..` stops at the root.
    assert_eq!(list("NLST ../*\r\n"), (vp("/"), false, glob("*", "../")));
    assert_eq!(list("NLST /../../etc/*\r\n"), (vp("/etc"), false, glob("*", "/../../etc/")));
    // RFC 3659 §7: MLSD's argument is a directory, never a pattern.
    assert_eq!(list("MLSD *\r\n"), (vp("/*"), true, None));
}

#[test]
fn list_needs_read_permission() {
    let mut cfg = config();
    cfg.ftp.users[1].permissions = vec!["write".into()];
    let mut c = Client::with(settings_from(&cfg), PEER, LOCAL);
    c.login("bob");
    c.passive();
    assert_eq!(codes(&c.send("LIST\r\n")), [550]);
    assert_eq!(codes(&c.send("RETR f\r\n")), [550]);
}

#[test]
fn mlsd_of_a_file_is_501_list_of_a_missing_path_550() {
    // RFC 3659 §7.2: MLSD names a directory; LIST of a file lists it (RFC 959 §4.1.3).
    let mut c = Client::new();
    c.login_anonymous();
    c.passive();
    let (t, _) = c.action("MLSD hello.txt\r\n");
    let failed = OpResult::Transfer(TransferEvent::Failed(TransferError::Fs(FsError::NotADirectory)));
    assert_eq!(codes(&c.complete(t, failed.clone())), [501]);
    let (t, _) = c.action("LIST nope\r\n");
    let missing = OpResult::Transfer(TransferEvent::Failed(TransferError::Fs(FsError::NotFound)));
    assert_eq!(codes(&c.complete(t, missing)), [550]);
}

#[test]
fn abor_during_transfer_426_then_226() {
    // RFC 959 §4.1.3 ABOR.
    let mut c = Client::new();
    c.login_anonymous();
    c.passive();
    let (t, _) = c.action("RETR big\r\n");
    c.complete(t, OpResult::Transfer(TransferEvent::Started));
    let outs = c.send_bytes(b"\xff\xf4\xff\xf2ABOR\r\n");
    assert_eq!(outs, [Output::Event(Event::AbortTransfer(t))]);
    let outs = c.complete(t, OpResult::Transfer(TransferEvent::Failed(TransferError::Aborted)));
    assert_eq!(replies(&outs), "426 Connection closed; transfer aborted.\r\n226 Abort successful.\r\n");
}

#[test]
fn abor_losing_the_race_gets_226_twice() {
    let mut c = Client::new();
    c.login_anonymous();
    c.passive();
    let (t, _) = c.action("RETR small\r\n");
    c.complete(t, OpResult::Transfer(TransferEvent::Started));
    c.send("ABOR\r\n");
    let outs = c.complete(t, OpResult::Transfer(TransferEvent::Finished { bytes: 10 }));
    assert_eq!(codes(&outs), [226, 226]);
}

#[test]
fn abor_with_nothing_running() {
    let mut c = Client::new();
    c.login_anonymous();
    assert_eq!(replies(&c.send("ABOR\r\n")), "226 No transfer to abort.\r\n");
    // RFC 959 §4.1.3: an open data connection is closed; the next transfer needs a new one.
    c.passive();
    let outs = c.send("ABOR\r\n");
    assert_eq!((codes(&outs), events(&outs)), (vec![226], vec![Event::ClosePassive]));
    assert_eq!(codes(&c.send("RETR f\r\n")), [425]);
}

#[test]
fn quit_during_transfer_waits_for_it() {
    // RFC 959 §4.1.1 QUIT: the transfer's reply comes first, then 221 and close.
    let mut c = Client::new();
    c.login_anonymous();
    c.passive();
    let (t, _) = c.action("RETR f\r\n");
    c.complete(t, OpResult::Transfer(TransferEvent::Started));
    assert!(c.send("QUIT\r\n").is_empty());
    let outs = c.complete(t, OpResult::Transfer(TransferEvent::Finished { bytes: 5 }));
    assert_eq!(replies(&outs), "226 Transfer complete.\r\n221 Goodbye.\r\n");
    assert!(closed(&outs));
}

#[test]
fn stat_during_transfer_answers_at_once_other_commands_wait() {
    let mut c = Client::new();
    c.login_anonymous();
    c.passive();
    let (t, _) = c.action("RETR f\r\n");
    let outs = c.send("NOOP\r\nSTAT\r\n");
    let text = replies(&outs);
    assert!(text.starts_with("211-") && text.contains("Data transfer in progress"), "{text}");
    assert_eq!(codes(&outs), [211], "NOOP is queued behind the transfer");
    c.complete(t, OpResult::Transfer(TransferEvent::Started));
    let outs = c.complete(t, OpResult::Transfer(TransferEvent::Finished { bytes: 1 }));
    assert_eq!(codes(&outs), [226, 200]);
}
