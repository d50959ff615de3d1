//! Login transcripts: the greeting, USER, PASS, REIN, QUIT and HOST, anonymous and virtual
//! accounts, and the delayed, counted 530 (RFC 959 §4.1.1 and §5.4, RFC 7151).

use super::*;
use crate::ftp::account::Permissions;
use crate::ftp::session::login::UNKNOWN_USER_HASH;

#[test]
fn greeting_uses_configured_banner() {
    let mut cfg = config();
    cfg.ftp.banner = "Welcome to the depot".into();
    let mut s =
        Session::new(settings_from(&cfg), PEER.parse().unwrap(), LOCAL.parse().unwrap(), Instant::now());
    assert_eq!(s.poll_output(), Some(Output::Reply(b"220 Welcome to the depot\r\n".to_vec())));
    assert_eq!(s.poll_output(), None);
}

#[test]
fn commands_before_login_get_530() {
    let mut c = Client::new();
    for cmd in ["PWD", "CWD /", "LIST", "RETR a", "PASV", "STAT", "MKD x", "ABOR", "SIZE a"] {
        assert_eq!(codes(&c.send(&format!("{cmd}\r\n"))), [530], "{cmd}");
    }
}

#[test]
fn pre_login_commands_are_answered() {
    let mut c = Client::new();
    assert_eq!(replies(&c.send("SYST\r\n")), "215 UNIX Type: L8\r\n");
    assert_eq!(codes(&c.send("NOOP\r\n")), [200]);
    assert_eq!(codes(&c.send("FEAT\r\n")), [211]);
    assert_eq!(codes(&c.send("HELP\r\n")), [214]);
    assert_eq!(replies(&c.send("OPTS UTF8 ON\r\n")), "200 Always in UTF8 mode.\r\n");
    // TLS not configured: AUTH is recognised but not available.
    assert_eq!(codes(&c.send("AUTH TLS\r\n")), [502]);
    assert_eq!(codes(&c.send("ACCT x\r\n")), [202]);
}

#[test]
fn anonymous_login_is_read_only_by_default() {
    let mut c = Client::new();
    let outs = c.send("USER ftp\r\nPASS me@example.com\r\n");
    assert_eq!(replies(&outs), "331 Please specify the password.\r\n230 Login successful.\r\n");
    let Event::LoggedIn(acct) = one(events(&outs)) else { panic!() };
    assert!(acct.anonymous);
    assert_eq!(acct.root, std::path::PathBuf::from("/srv/ftp"));
    assert_eq!(acct.permissions, Permissions::NONE.with(Permission::Read));
    // Every write is denied with 550, before any action reaches the io layer.
    c.passive();
    for cmd in [
        "STOR x",
        "APPE x",
        "STOU",
        "MKD d",
        "RMD d",
        "DELE x",
        "RNFR x",
        "SITE CHMOD 777 x",
        "MFMT 20240101000000 x",
    ] {
        let outs = c.send(&format!("{cmd}\r\n"));
        assert_eq!(codes(&outs), [550], "{cmd}");
        assert!(actions(&outs).is_empty(), "{cmd}");
    }
}

#[test]
fn writable_anonymous_may_upload_but_not_overwrite() {
    let mut cfg = config();
    cfg.ftp.anonymous.writable = true;
    let mut c = Client::with(settings_from(&cfg), PEER, LOCAL);
    c.login_anonymous();
    assert_eq!(codes(&c.send("DELE up.bin\r\n")), [550]);
    assert_eq!(codes(&c.send("RNFR up.bin\r\n")), [550]);
    // Changing an existing file's mode or time is not adding a file: refused too.
    for cmd in ["SITE CHMOD 000 up.bin", "MFMT 20000101000000 up.bin"] {
        let outs = c.send(&format!("{cmd}\r\n"));
        assert_eq!(codes(&outs), [550], "{cmd}");
        assert!(actions(&outs).is_empty(), "{cmd}");
    }
    c.passive();
    let (_, a) = c.action("STOR up.bin\r\n");
    let Action::Transfer { kind: TransferKind::Stor { mode, .. }, .. } = a else { panic!("{a:?}") };
    assert_eq!(mode, StoreMode::CreateNew);
}

#[test]
fn anonymous_disabled_refuses_at_user() {
    let mut cfg = config();
    cfg.ftp.anonymous.enabled = false;
    let mut c = Client::with(settings_from(&cfg), PEER, LOCAL);
    assert_eq!(codes(&c.send("USER anonymous\r\n")), [530]);
    assert_eq!(codes(&c.send("PASS x\r\n")), [503]);
}

#[test]
fn virtual_user_login_verifies_off_the_hot_path() {
    let mut c = Client::new();
    assert_eq!(codes(&c.send("USER alice\r\n")), [331]);
    let (t, a) = c.action("PASS secret\r\n");
    assert_eq!(a, Action::VerifyPassword { phc: HASH.into(), password: b"secret".to_vec() });
    let outs = c.complete(t, OpResult::Password { valid: true });
    assert_eq!(replies(&outs), "230 Login successful.\r\n");
    let Event::LoggedIn(acct) = one(events(&outs)) else { panic!() };
    assert_eq!(&*acct.name, "alice");
    assert_eq!(acct.root, std::path::PathBuf::from("/home/alice"));
    assert_eq!(c.s.account().map(|a| a.permissions), Some(Permissions::all()));
}

#[test]
fn pipelined_login_is_processed_in_order() {
    // USER, PASS and PWD in one segment: PWD waits for the password check.
    let mut c = Client::new();
    let outs = c.send("USER alice\r\nPASS b\r\nPWD\r\n");
    assert_eq!(codes(&outs), [331]);
    let (t, _) = one(actions(&outs));
    let outs = c.complete(t, OpResult::Password { valid: true });
    assert_eq!(replies(&outs), "230 Login successful.\r\n257 \"/\" is the current directory\r\n");
}

#[test]
fn pass_without_user_is_503_and_user_after_login_530() {
    let mut c = Client::new();
    assert_eq!(codes(&c.send("PASS x\r\n")), [503]);
    c.login("alice");
    assert_eq!(codes(&c.send("USER bob\r\n")), [530]);
    assert_eq!(codes(&c.send("PASS x\r\n")), [230]);
}

#[test]
fn failed_login_is_delayed_then_closed_after_limit() {
    let mut c = Client::new();
    let delay = Duration::from_millis(1000);
    for attempt in 1..=3 {
        c.send("USER alice\r\n");
        let (t, _) = c.action("PASS wrong\r\n");
        let outs = c.complete(t, OpResult::Password { valid: false });
        // The failure is reported at once (for the metrics); the 530 is held back.
        assert_eq!(events(&outs), [Event::LoginFailed], "{outs:?}");
        assert!(replies(&outs).is_empty(), "530 must be held back: {outs:?}");
        assert_eq!(c.s.poll_timeout(), Some(c.now + delay));
        assert!(c.advance(delay / 2).is_empty());
        let outs = c.advance(delay / 2);
        if attempt < 3 {
            assert_eq!(replies(&outs), "530 Login incorrect.\r\n");
        } else {
            assert_eq!(codes(&outs), [530, 421]);
            assert!(closed(&outs));
            assert_eq!(c.s.poll_timeout(), None);
        }
    }
    assert!(c.send("NOOP\r\n").is_empty(), "input after close is ignored");
}

#[test]
fn a_busy_verifier_is_421_and_close_not_a_failed_login() {
    // RFC 959 §4.2: 421 is service not available, closing the control connection. The
    // password was never judged: no LoginFailed (not counted, no delay), for known and
    // unknown users alike.
    for user in ["alice", "mallory"] {
        let mut c = Client::new();
        assert_eq!(codes(&c.send(&format!("USER {user}\r\n"))), [331]);
        let (t, _) = c.action("PASS guess\r\n");
        assert!(c.send("NOOP\r\n").is_empty(), "queued behind the check");
        let outs = c.complete(t, OpResult::VerifierBusy);
        assert_eq!(
            replies(&outs),
            "421 Service not available, too many login attempts; try again later.\r\n",
            "{user}"
        );
        assert!(events(&outs).is_empty(), "{user}: {outs:?}");
        assert!(closed(&outs), "{user}: {outs:?}");
        assert_eq!(c.s.account(), None);
        assert_eq!(c.s.poll_timeout(), None, "{user}: no delayed 530 pending");
    }
}

#[test]
fn zero_login_delay_answers_at_once() {
    let mut cfg = config();
    cfg.ftp.limits.login_failure_delay_ms = 0;
    cfg.ftp.limits.max_login_failures = 1;
    let mut c = Client::with(settings_from(&cfg), PEER, LOCAL);
    assert_eq!(codes(&c.send("USER nobody\r\n")), [331]);
    let (t, _) = c.action("PASS x\r\n");
    let outs = c.complete(t, OpResult::Password { valid: false });
    assert_eq!(codes(&outs), [530, 421]);
    assert!(closed(&outs));
}

#[test]
fn unknown_user_fails_the_same_way_and_as_slowly() {
    // The password is still hashed (against a dummy hash), so the time to the 530 does not
    // tell an unknown name from a wrong password.
    let mut c = Client::new();
    assert_eq!(codes(&c.send("USER mallory\r\n")), [331]);
    let (t, a) = c.action("PASS x\r\n");
    assert_eq!(a, Action::VerifyPassword { phc: UNKNOWN_USER_HASH.into(), password: b"x".to_vec() });
    assert!(c.send("NOOP\r\n").is_empty(), "queued behind the check");
    // Even a (practically impossible) match does not log an unknown user in.
    let outs = c.complete(t, OpResult::Password { valid: true });
    assert!(replies(&outs).is_empty(), "no early reply: {outs:?}");
    assert_eq!(events(&outs), [Event::LoginFailed], "counted like a wrong password");
    // The NOOP behind the failed PASS waits for the delayed 530.
    assert_eq!(codes(&c.advance(Duration::from_secs(1))), [530, 200]);
}

#[test]
fn unknown_user_without_virtual_users_needs_no_check() {
    let mut cfg = config();
    cfg.ftp.users.clear();
    let mut c = Client::with(settings_from(&cfg), PEER, LOCAL);
    let outs = c.send("USER mallory\r\nPASS x\r\n");
    assert!(actions(&outs).is_empty(), "{outs:?}");
    assert_eq!(events(&outs), [Event::LoginFailed]);
    assert_eq!(codes(&c.advance(Duration::from_secs(1))), [530]);
}

#[test]
fn rein_returns_to_pre_login() {
    // RFC 959 §4.1.1 REIN.
    let mut c = Client::new();
    c.login("alice");
    c.passive();
    let outs = c.send("REIN\r\n");
    assert_eq!(replies(&outs), "220 Service ready for new user.\r\n");
    assert_eq!(events(&outs), [Event::LoggedOut, Event::ClosePassive]);
    assert_eq!(codes(&c.send("PWD\r\n")), [530]);
    assert_eq!(codes(&c.send("HOST example.com\r\n")), [220]);
}

#[test]
fn host_only_before_user() {
    // RFC 7151 §3.
    let mut c = Client::new();
    assert_eq!(replies(&c.send("HOST ftp.example.com\r\n")), "220 Host accepted.\r\n");
    assert_eq!(c.s.host(), Some(&b"ftp.example.com"[..]));
    c.send("USER alice\r\n");
    assert_eq!(codes(&c.send("HOST other\r\n")), [503]);
    let mut c = Client::new();
    c.login_anonymous();
    assert_eq!(codes(&c.send("HOST other\r\n")), [503]);
    assert_eq!(codes(&c.send("HOST bad name\r\n")), [501]);
}

#[test]
fn anonymous_may_not_change_the_tree() {
    let mut c = Client::new();
    c.login_anonymous();
    for line in [
        "DELE hello.txt",
        "RMD pub",
        "MKD new",
        "RNFR hello.txt",
        "STOR x",
        "APPE x",
        "STOU",
        "SITE CHMOD 777 x",
    ] {
        assert_eq!(codes(&c.send(&format!("{line}\r\n"))), [550], "{line}");
    }
}

#[test]
fn quit_when_idle_closes() {
    let mut c = Client::new();
    let outs = c.send("QUIT\r\nNOOP\r\n");
    assert_eq!(replies(&outs), "221 Goodbye.\r\n");
    assert!(closed(&outs));
}
