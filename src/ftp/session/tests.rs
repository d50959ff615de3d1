//! Transcript tests: client bytes in, exact replies and actions out, time and completions
//! stepped by hand. Each test names the rule it checks.

use super::*;
use crate::config::ftp::{PassiveOverride, UserConfig};
use crate::config::Config;
use crate::ftp::account::Permissions;
use crate::ftp::listing::FileMeta;
use std::time::Duration;

const PEER: &str = "192.0.2.5:40000";
const LOCAL: &str = "192.0.2.1:21";
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObGmMdFRA4sSA0";

fn config() -> Config {
    let mut cfg = Config { root: "/srv/ftp".into(), ..Config::default() };
    let user = |name: &str, perms: &[&str]| UserConfig {
        name: name.into(),
        password_hash: HASH.into(),
        root: Some(format!("/home/{name}").into()),
        permissions: perms.iter().map(|s| s.to_string()).collect(),
    };
    cfg.ftp.users.push(user("alice", &["read", "write", "append", "delete", "rename", "mkdir"]));
    cfg.ftp.users.push(user("bob", &["read", "write"]));
    cfg
}

fn settings_from(cfg: &Config) -> Arc<FtpSettings> {
    Arc::new(FtpSettings::from_config(cfg).expect("settings"))
}

/// A client talking to one session.
struct Client {
    s: Session,
    now: Instant,
}

fn replies(outs: &[Output]) -> String {
    outs.iter()
        .filter_map(|o| match o {
            Output::Reply(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
        .collect()
}

fn codes(outs: &[Output]) -> Vec<u16> {
    replies(outs)
        .split("\r\n")
        .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ' && l[..3].bytes().all(|b| b.is_ascii_digit()))
        .map(|l| l[..3].parse().unwrap())
        .collect()
}

fn actions(outs: &[Output]) -> Vec<(OpToken, Action)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Action(t, a) => Some((*t, a.clone())),
            _ => None,
        })
        .collect()
}

fn events(outs: &[Output]) -> Vec<Event> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn one<T: std::fmt::Debug>(mut v: Vec<T>) -> T {
    assert_eq!(v.len(), 1, "expected exactly one: {v:?}");
    v.remove(0)
}

fn closed(outs: &[Output]) -> bool {
    outs.last() == Some(&Output::Close)
}

fn vp(s: &str) -> VirtualPath {
    VirtualPath::root().join(s.as_bytes()).unwrap()
}

fn file(name: &str, kind: FileKind, size: u64) -> FileMeta {
    FileMeta {
        name: name.as_bytes().to_vec(),
        kind,
        size,
        mtime: 1_700_788_740,
        mode: 0o644,
        nlink: 1,
        uid: 0,
        gid: 0,
        dev: 1,
        ino: 2,
        link_target: None,
    }
}

impl Client {
    fn new() -> Client {
        Client::with(settings_from(&config()), PEER, LOCAL)
    }

    fn with(cfg: Arc<FtpSettings>, peer: &str, local: &str) -> Client {
        let now = Instant::now();
        let mut s = Session::new(cfg, peer.parse().unwrap(), local.parse().unwrap(), now);
        let greeting = drain(&mut s);
        assert_eq!(replies(&greeting), "220 Ferry FTP server ready.\r\n");
        Client { s, now }
    }

    fn send(&mut self, text: &str) -> Vec<Output> {
        self.send_bytes(text.as_bytes())
    }

    fn send_bytes(&mut self, bytes: &[u8]) -> Vec<Output> {
        self.s.handle_input(bytes, self.now);
        drain(&mut self.s)
    }

    fn complete(&mut self, token: OpToken, result: OpResult) -> Vec<Output> {
        self.s.handle_completion(token, result, self.now);
        drain(&mut self.s)
    }

    fn advance(&mut self, d: Duration) -> Vec<Output> {
        self.now += d;
        self.s.handle_timeout(self.now);
        drain(&mut self.s)
    }

    /// Sends `line` and expects exactly one action and no reply yet.
    fn action(&mut self, line: &str) -> (OpToken, Action) {
        let outs = self.send(line);
        assert_eq!(replies(&outs), "", "{line:?} should wait for its action");
        let mut a = actions(&outs);
        assert_eq!(a.len(), 1, "{line:?}: {outs:?}");
        a.remove(0)
    }

    fn login_anonymous(&mut self) {
        let outs = self.send("USER anonymous\r\nPASS guest@\r\n");
        assert_eq!(codes(&outs), [331, 230]);
    }

    fn login(&mut self, user: &str) {
        assert_eq!(codes(&self.send(&format!("USER {user}\r\n"))), [331]);
        let (t, a) = self.action("PASS secret\r\n");
        assert_eq!(a, Action::VerifyPassword { phc: HASH.into(), password: b"secret".to_vec() });
        assert_eq!(codes(&self.complete(t, OpResult::Password { valid: true })), [230]);
    }

    fn passive(&mut self) {
        let (t, a) = self.action("PASV\r\n");
        assert!(matches!(a, Action::OpenPassive { .. }));
        assert_eq!(codes(&self.complete(t, OpResult::Passive(Ok(50000)))), [227]);
    }
}

fn drain(s: &mut Session) -> Vec<Output> {
    std::iter::from_fn(|| s.poll_output()).collect()
}

// ---- greeting and login (RFC 959 §5.4) -----------------------------------------------------

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
    // No TLS: AUTH is recognised but not implemented (RFC 2228 is out of scope).
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

// ---- timers and input framing ---------------------------------------------------------------

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

// ---- simple commands -------------------------------------------------------------------------

#[test]
fn type_mode_stru_syst_noop_allo() {
    let mut c = Client::new();
    c.login_anonymous();
    assert_eq!(replies(&c.send("TYPE I\r\n")), "200 Switching to Binary mode.\r\n");
    assert_eq!(replies(&c.send("TYPE A\r\n")), "200 Switching to ASCII mode.\r\n");
    assert_eq!(replies(&c.send("TYPE L 8\r\n")), "200 Switching to Binary mode.\r\n");
    assert_eq!(replies(&c.send("MODE S\r\n")), "200 Mode set to S.\r\n");
    assert_eq!(replies(&c.send("STRU F\r\n")), "200 Structure set to F.\r\n");
    assert_eq!(codes(&c.send("ALLO 100\r\n")), [202]);
}

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
    assert_eq!(codes(&c.complete(t, OpResult::Done(Err(FsError::NoSpace)))), [552]);
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

// ---- data connections (RFC 959 §3.2, RFC 2428, RFC 2577) --------------------------------------

#[test]
fn pasv_advertises_local_address() {
    let mut c = Client::new();
    c.login_anonymous();
    let (t, a) = c.action("PASV\r\n");
    assert_eq!(
        a,
        Action::OpenPassive {
            bind: "192.0.2.1".parse().unwrap(),
            peer_only: Some("192.0.2.5".parse().unwrap())
        }
    );
    let outs = c.complete(t, OpResult::Passive(Ok(50000)));
    assert_eq!(replies(&outs), "227 Entering Passive Mode (192,0,2,1,195,80).\r\n");
}

#[test]
fn pasv_uses_override_for_client_network() {
    let mut cfg = config();
    cfg.ftp.passive.address = Some("203.0.113.9".parse().unwrap());
    cfg.ftp.passive.overrides.push(PassiveOverride {
        network: "10.0.0.0/8".parse().unwrap(),
        address: "10.0.0.1".parse().unwrap(),
    });
    cfg.ftp.passive.require_same_peer = false;
    let mut c = Client::with(settings_from(&cfg), "[::ffff:10.2.3.4]:5000", "[::ffff:172.17.0.2]:21");
    c.login_anonymous();
    let (t, a) = c.action("PASV\r\n");
    assert_eq!(a, Action::OpenPassive { bind: "172.17.0.2".parse().unwrap(), peer_only: None });
    assert_eq!(
        replies(&c.complete(t, OpResult::Passive(Ok(50001)))),
        "227 Entering Passive Mode (10,0,0,1,195,81).\r\n"
    );
    let mut c = Client::with(settings_from(&cfg), "198.51.100.1:5000", "172.17.0.2:21");
    c.login_anonymous();
    let (t, _) = c.action("PASV\r\n");
    assert!(replies(&c.complete(t, OpResult::Passive(Ok(50001)))).contains("(203,0,113,9,"));
}

#[test]
fn pasv_on_ipv6_refused_epsv_works() {
    let mut c = Client::with(settings_from(&config()), "[2001:db8::5]:4000", "[2001:db8::1]:21");
    c.login_anonymous();
    let outs = c.send("PASV\r\n");
    assert_eq!(codes(&outs), [425]);
    assert!(actions(&outs).is_empty());
    assert_eq!(replies(&c.send("EPSV 1\r\n")), "522 Network protocol not supported, use (2)\r\n");
    let (t, _) = c.action("EPSV 2\r\n");
    assert_eq!(
        replies(&c.complete(t, OpResult::Passive(Ok(50002)))),
        "229 Entering Extended Passive Mode (|||50002|)\r\n"
    );
    let (t, _) = c.action("EPSV\r\n");
    assert_eq!(codes(&c.complete(t, OpResult::Passive(Ok(50003)))), [229]);
    assert_eq!(
        replies(&c.send("EPRT |2|2001:db8::5|4001|\r\n")),
        "200 EPRT command successful. Consider using EPSV.\r\n"
    );
}

#[test]
fn epsv_on_ipv4_rejects_protocol_2() {
    let mut c = Client::new();
    c.login_anonymous();
    assert_eq!(replies(&c.send("EPSV 2\r\n")), "522 Network protocol not supported, use (1)\r\n");
    assert_eq!(codes(&c.send("EPSV 3\r\n")), [522]);
    assert_eq!(codes(&c.send("EPRT |9|x|1|\r\n")), [522]);
}

#[test]
fn epsv_all_refuses_other_data_commands() {
    // RFC 2428 §4.
    let mut c = Client::new();
    c.login_anonymous();
    assert_eq!(replies(&c.send("EPSV ALL\r\n")), "200 EPSV ALL ok.\r\n");
    for cmd in ["PORT 192,0,2,5,8,0", "PASV", "EPRT |1|192.0.2.5|2048|"] {
        let outs = c.send(&format!("{cmd}\r\n"));
        assert_eq!(codes(&outs), [503], "{cmd}");
        assert!(actions(&outs).is_empty());
    }
    let (t, _) = c.action("EPSV\r\n");
    assert_eq!(codes(&c.complete(t, OpResult::Passive(Ok(50000)))), [229]);
}

#[test]
fn port_bounce_protection() {
    // RFC 2577 §3: only the control peer, only ports >= 1024.
    let mut c = Client::new();
    c.login_anonymous();
    assert_eq!(replies(&c.send("PORT 198,51,100,7,8,0\r\n")), "500 Illegal PORT command.\r\n");
    assert_eq!(codes(&c.send("EPRT |1|198.51.100.7|2048|\r\n")), [500]);
    assert_eq!(codes(&c.send("PORT 192,0,2,5,0,25\r\n")), [504]);
    assert_eq!(codes(&c.send("RETR f\r\n")), [425], "refused PORT leaves no data connection");
    assert_eq!(codes(&c.send("PORT 192,0,2,5,8,0\r\n")), [200]);
    let (_, a) = c.action("RETR f\r\n");
    let Action::Transfer { data, .. } = a else { panic!() };
    assert_eq!(data, DataEndpoint::Active("192.0.2.5:2048".parse().unwrap()));
}

#[test]
fn active_mode_can_be_disabled() {
    let mut cfg = config();
    cfg.ftp.active.enabled = false;
    let mut c = Client::with(settings_from(&cfg), PEER, LOCAL);
    c.login_anonymous();
    assert_eq!(codes(&c.send("PORT 192,0,2,5,8,0\r\n")), [502]);
}

#[test]
fn port_after_pasv_closes_the_listener() {
    let mut c = Client::new();
    c.login_anonymous();
    c.passive();
    let outs = c.send("PORT 192,0,2,5,8,0\r\n");
    assert_eq!(events(&outs), [Event::ClosePassive]);
}

#[test]
fn passive_listener_failure_is_425() {
    let mut c = Client::new();
    c.login_anonymous();
    let (t, _) = c.action("PASV\r\n");
    assert_eq!(
        replies(&c.complete(t, OpResult::Passive(Err(FsError::Other)))),
        "425 Can't open passive connection.\r\n"
    );
    assert_eq!(codes(&c.send("RETR f\r\n")), [425]);
}

// ---- transfers ---------------------------------------------------------------------------------

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
            data: DataEndpoint::Passive
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
fn pwd_doubles_quotes_in_directory_names() {
    // RFC 959 Appendix II: an embedded `"` is doubled in the 257 reply.
    let mut c = Client::new();
    c.login_anonymous();
    let (t, _) = c.action("CWD say \"hi\"\r\n");
    assert_eq!(codes(&c.complete(t, OpResult::Stat(Ok(file("say \"hi\"", FileKind::Dir, 0))))), [250]);
    assert_eq!(replies(&c.send("PWD\r\n")), "257 \"/say \"\"hi\"\"\" is the current directory\r\n");
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
fn ascii_type_is_passed_on() {
    let mut c = Client::new();
    c.login("alice");
    c.passive();
    let (_, a) = c.action("STOR notes.txt\r\n");
    assert!(matches!(
        a,
        Action::Transfer { kind: TransferKind::Stor { ascii: true, mode: StoreMode::Replace, .. }, .. }
    ));
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
        matches!(&a2, Action::Transfer { kind: TransferKind::Stor { path, .. }, data: DataEndpoint::Passive } if *path == vp("/report.1"))
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
        (TransferError::Fs(FsError::NoSpace), 552),
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
fn quit_when_idle_closes() {
    let mut c = Client::new();
    let outs = c.send("QUIT\r\nNOOP\r\n");
    assert_eq!(replies(&outs), "221 Goodbye.\r\n");
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
                hidden: true
            },
            data: DataEndpoint::Passive
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
    let Action::Transfer { kind: TransferKind::List { path, format, hidden }, .. } = a else { panic!() };
    assert_eq!((path, hidden), (vp("/pub"), true));
    let entries = [file("x", FileKind::File, 7)];
    assert_eq!(format.render_all(&entries, 0), b"type=file;size=7;perm=rw; x\r\n");
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
