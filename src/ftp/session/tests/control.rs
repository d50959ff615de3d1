//! The control connection itself: line framing, pipelining, parse errors, timers and the
//! routing of completions (RFC 959 §4.2 and §5.4, RFC 854 Telnet).

use super::*;

#[test]
fn idle_timeout_sends_421_and_closes() {
    let mut c = Client::new();
    let idle = Duration::from_secs(300);
    assert_eq!(c.s.poll_timeout(), Some(c.now + idle));
    assert!(c.advance(Duration::from_secs(200)).is_empty());
    c.send("NOOP\r\n");
    assert_eq!(c.s.poll_timeout(), Some(c.now + idle), "a command restarts the idle timer");
    assert!(c.advance(Duration::from_secs(299)).is_empty());
    let outs = c.advance(Duration::from_secs(1));
    assert_eq!(replies(&outs), "421 Timeout.\r\n");
    assert!(closed(&outs));
}

#[test]
fn no_idle_timeout_while_transferring() {
    let mut c = Client::new();
    c.login_anonymous();
    c.passive();
    let (t, _) = c.action("RETR big.iso\r\n");
    assert_eq!(c.s.poll_timeout(), None);
    assert!(c.advance(Duration::from_secs(3600)).is_empty());
    c.complete(t, OpResult::Transfer(TransferEvent::Started));
    c.complete(t, OpResult::Transfer(TransferEvent::Finished { bytes: 1 }));
    assert_eq!(c.s.poll_timeout(), Some(c.now + Duration::from_secs(300)));
}

#[test]
fn overlong_line_gets_500_and_is_not_buffered() {
    let mut c = Client::new();
    let junk = vec![b'A'; 100_000];
    assert!(c.send_bytes(&junk).is_empty());
    assert!(c.s.reader.buffered() <= 4096);
    let outs = c.send("\r\nNOOP\r\n");
    assert_eq!(replies(&outs), "500 Command line too long.\r\n200 NOOP ok.\r\n");
}

#[test]
fn telnet_iac_inside_a_command_is_stripped() {
    let mut c = Client::new();
    assert_eq!(codes(&c.send_bytes(b"NO\xff\xf4O\xff\xfb\x01P\r\n")), [200]);
    assert_eq!(codes(&c.send_bytes(b"\xff\xf4\xff\xf2SYST\r\n")), [215]);
}

#[test]
fn commands_split_across_segments() {
    let mut c = Client::new();
    assert!(c.send("NO").is_empty());
    assert_eq!(codes(&c.send("OP\r\nSY")), [200]);
    assert_eq!(codes(&c.send("ST\n")), [215]);
}

#[test]
fn unknown_and_bad_commands() {
    let mut c = Client::new();
    assert_eq!(replies(&c.send("XYZZY\r\n")), "500 Unknown command.\r\n");
    assert_eq!(codes(&c.send("\r\n")), [500]);
    c.login_anonymous();
    assert_eq!(codes(&c.send("TYPE Q\r\n")), [501]);
    assert_eq!(codes(&c.send("MODE B\r\n")), [504]);
    assert_eq!(codes(&c.send("STRU R\r\n")), [504]);
    assert_eq!(codes(&c.send("LPSV\r\n")), [502]);
}

#[test]
fn too_many_pipelined_commands_close_the_session() {
    let mut c = Client::new();
    c.send("USER alice\r\n");
    let flood = format!("PASS x\r\n{}", "NOOP\r\n".repeat(MAX_QUEUED_LINES + 1));
    let outs = c.send(&flood);
    assert_eq!(codes(&outs), [421]);
    assert!(closed(&outs));
}

#[test]
fn malformed_arguments_get_501_unsupported_values_504() {
    // RFC 959 §4.2: 501 syntax error in arguments, 504 parameter not implemented;
    // RFC 2428 §2: 522 for a network protocol the server does not support.
    let mut c = Client::new();
    c.login_anonymous();
    let cases = [
        ("PORT 127,0,0,1,4", 501),
        ("PORT 127,0,0,1,4,1,9", 501),
        ("PORT 127,0,0,256,4,1", 501),
        ("PORT 127,0,0,1,4,x", 501),
        ("PORT", 501),
        ("EPRT |3|1.2.3.4|5000|", 522),
        ("EPRT |1|1.2.3.4|5000", 501),
        ("EPRT |1|300.2.3.4|5000|", 501),
        ("EPRT |1|1.2.3.4|70000|", 501),
        ("EPRT", 501),
        ("EPSV 9", 522),
        ("EPSV x", 501),
        ("MODE", 501),
        ("MODE X", 501),
        ("MODE C", 504),
        ("STRU", 501),
        ("STRU P", 504),
        ("TYPE", 501),
        ("TYPE E", 504),
        ("TYPE L 7", 504),
        ("TYPE I I", 501),
        ("REST -1", 501),
        ("REST x", 501),
        ("RETR", 501),
        ("CWD", 501),
        ("MKD", 501),
        ("RNFR", 501),
        ("SIZE", 501),
        ("OPTS", 501),
        ("OPTS FOO BAR", 501),
    ];
    for (line, code) in cases {
        assert_eq!(codes(&c.send(&format!("{line}\r\n"))), [code], "{line}");
    }
}

#[test]
fn line_quirks_lower_case_trailing_blanks_bare_lf_empty() {
    let mut c = Client::new();
    assert_eq!(codes(&c.send("user anonymous \r\n")), [331]);
    assert_eq!(codes(&c.send("pass x\n")), [230]);
    assert_eq!(replies(&c.send("type i  \r\n")), "200 Switching to Binary mode.\r\n");
    assert_eq!(codes(&c.send("\r\n\n")), [500, 500]);
    assert_eq!(codes(&c.send("NoOp\r\n")), [200]);
    // A NUL in a path is an LF (RFC 959 Appendix II), never the end of the name.
    let (_, a) = c.action("SIZE secret\0.txt\r\n");
    assert_eq!(a, Action::Stat { path: vp("/secret\n.txt") });
}

#[test]
fn completion_for_unknown_token_is_ignored() {
    let mut c = Client::new();
    c.login("alice");
    assert!(c.complete(OpToken(999), OpResult::Done(Ok(()))).is_empty());
    assert_eq!(codes(&c.send("NOOP\r\n")), [200]);
}

#[test]
fn mismatched_result_is_a_local_error() {
    let mut c = Client::new();
    c.login("alice");
    let (t, _) = c.action("SIZE f\r\n");
    assert_eq!(codes(&c.complete(t, OpResult::Done(Ok(())))), [451]);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn chunk() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            prop::sample::select(vec![
                "USER alice\r\n",
                "USER anonymous\r\n",
                "PASS x\r\n",
                "PASV\r\n",
                "EPSV\r\n",
                "RETR f\r\n",
                "STOR f\r\n",
                "ABOR\r\n",
                "QUIT\r\n",
                "REIN\r\n",
                "RNFR a\r\n",
                "RNTO b\r\n",
                "CWD ..\r\n",
                "LIST -la\r\n",
                "STAT\r\n",
                "STOU\r\n",
                "REST 5\r\n",
                "PORT 192,0,2,5,8,0\r\n",
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
            Just(b"\xff\xf4".to_vec()),
        ]
    }

    /// A plausible io-layer answer for whatever action is pending.
    fn answer(a: &Action, pick: u8) -> OpResult {
        match a {
            Action::VerifyPassword { .. } => OpResult::Password { valid: pick % 2 == 0 },
            Action::Stat { .. } => OpResult::Stat(if pick % 3 == 0 {
                Err(FsError::NotFound)
            } else {
                Ok(file("x", FileKind::Dir, 1))
            }),
            Action::ReadDir { .. } => OpResult::Entries { entries: Ok(vec![]), now_unix: 0 },
            Action::OpenPassive { .. } => OpResult::Passive(Ok(50000)),
            Action::Transfer { .. } => OpResult::Transfer(match pick % 4 {
                0 => TransferEvent::Started,
                1 => TransferEvent::Finished { bytes: 1 },
                2 => TransferEvent::Failed(TransferError::Fs(FsError::Exists)),
                _ => TransferEvent::Failed(TransferError::Aborted),
            }),
            _ => OpResult::Done(Ok(())),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn arbitrary_sessions_never_panic_and_stay_bounded(
            steps in proptest::collection::vec((chunk(), any::<u8>(), 0u64..2000), 1..40)) {
            let mut c = Client::new();
            let mut pending: Vec<(OpToken, Action)> = Vec::new();
            for (bytes, pick, ms) in steps {
                let mut outs = c.send_bytes(&bytes);
                if pick % 5 == 0 {
                    outs.extend(c.advance(Duration::from_millis(ms)));
                }
                if let Some((t, a)) = pending.last().cloned() {
                    if pick % 3 != 0 {
                        outs.extend(c.complete(t, answer(&a, pick)));
                    }
                }
                pending.extend(actions(&outs));
                for o in &outs {
                    if let Output::Reply(r) = o {
                        prop_assert!(r.ends_with(b"\r\n"));
                        prop_assert!(r.len() >= 6 && r[..3].iter().all(u8::is_ascii_digit));
                    }
                }
                prop_assert!(c.s.queue.len() <= MAX_QUEUED_LINES);
                prop_assert!(c.s.reader.buffered() <= c.s.cfg.max_line_len);
                if c.s.is_closed() {
                    prop_assert!(c.s.poll_timeout().is_none());
                }
            }
        }
    }
}
