//! Transcript tests: client bytes in, exact replies and actions out, time and completions
//! stepped by hand. The helpers live here; each test sits with the area whose rule it checks.

use super::*;
use crate::config::ftp::UserConfig;
use crate::config::Config;
use crate::ftp::listing::{FileKind, FileMeta};
use std::time::Duration;

mod control;
mod data;
mod files;
mod info;
mod login;
mod security;
mod transfer;

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
    Arc::new(crate::config::ftp::session_settings(cfg).expect("settings"))
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
