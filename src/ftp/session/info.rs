//! What the server tells about itself and the session: STAT and HELP (RFC 959 §4.1.3), FEAT and
//! OPTS (RFC 2389 §3-4), with OPTS MLST (RFC 3659 §7.9) and OPTS UTF8 (RFC 2640 §3.2).

use super::login::Auth;
use super::{Action, FsError, Op, Session};
use crate::ftp::account::Permission;
use crate::ftp::command::{OptsArg, TransferType};
use crate::ftp::listing::{FactSet, FileMeta, ListFormat};
use crate::ftp::path::VirtualPath;
use crate::ftp::reply::Reply;

impl Session {
    /// STAT without a path reports on the session; with one it lists over the control connection.
    pub(super) fn cmd_stat(&mut self, arg: Option<Vec<u8>>) {
        let Some(arg) = arg else {
            let lines = self.status_lines();
            return self.push_reply(Reply::multi(211, lines));
        };
        if let Some(path) = self.checked_path(&arg, Permission::Read, "STAT") {
            self.start_op(Action::ReadDir { path: path.clone() }, Op::StatPath(path));
        }
    }

    pub(super) fn stat_done(
        &mut self,
        path: VirtualPath,
        entries: Result<Vec<FileMeta>, FsError>,
        now_unix: i64,
    ) {
        let entries = match entries {
            Ok(entries) => entries,
            Err(e) => return self.fs_failure(e, "STAT"),
        };
        let format = ListFormat::Long { hide_ids: self.cfg.hide_ids };
        let mut lines = vec![[b"Status of ".to_vec(), path.as_bytes().to_vec(), b":".to_vec()].concat()];
        for e in &entries {
            let mut l = Vec::new();
            format.render(e, now_unix, &mut l);
            l.truncate(l.len().saturating_sub(2));
            lines.push(l);
        }
        lines.push(b"End of status".to_vec());
        self.push_reply(Reply::multi(213, lines));
    }

    /// The 211 body of STAT, also sent (with a transfer line) for STAT during a transfer.
    pub(super) fn status_lines(&self) -> Vec<Vec<u8>> {
        let user = match &self.auth {
            Auth::LoggedIn(a) => format!("Logged in as {}", a.name),
            _ => "Not logged in".to_string(),
        };
        let ttype = if self.ttype == TransferType::Ascii { "ASCII" } else { "BINARY" };
        let [control, data] = self.protection_lines();
        [
            "FTP server status:".to_string(),
            format!("     Connected to {}", self.peer.ip().to_canonical()),
            format!("     {user}"),
            format!("     TYPE: {ttype}"),
            format!("     Session timeout in seconds is {}", self.cfg.idle_timeout.as_secs()),
            control.to_string(),
            data.to_string(),
            "End of status".to_string(),
        ]
        .into_iter()
        .map(String::into_bytes)
        .collect()
    }

    pub(super) fn cmd_help(&mut self) {
        self.push_reply(help_reply());
    }

    pub(super) fn cmd_feat(&mut self) {
        let reply = feat_reply(self.facts, self.cfg.tls.is_some());
        self.push_reply(reply);
    }

    pub(super) fn cmd_opts(&mut self, arg: OptsArg) {
        match arg {
            OptsArg::Utf8(_) => self.reply(200, "Always in UTF8 mode."),
            OptsArg::Mlst(facts) => {
                self.facts = FactSet::of(&facts);
                let text = format!("MLST OPTS {}", self.facts.describe(false));
                self.reply(200, text);
            }
        }
    }
}

/// FEAT (RFC 2389 §3): one feature per line, each starting with a space.
fn feat_reply(facts: FactSet, tls: bool) -> Reply {
    let mlst = format!(" MLST {}", facts.describe(true));
    // RFC 4217 §6: a server that offers TLS lists AUTH TLS, PBSZ and PROT.
    let tls_lines: &[&str] = if tls { &[" AUTH TLS", " PBSZ", " PROT"] } else { &[] };
    let lines = [
        "Features:",
        " EPRT",
        " EPSV",
        " HOST",
        " MDTM",
        " MFMT",
        &mlst,
        " REST STREAM",
        " SIZE",
        " TVFS",
        " UTF8",
    ];
    let lines = ["Features:"].iter().chain(tls_lines).chain(&lines[1..]).chain(&["End"]);
    Reply::multi(211, lines.map(|l| l.as_bytes().to_vec()).collect())
}

/// HELP (RFC 959 §4.1.3): the recognised commands.
fn help_reply() -> Reply {
    let lines = [
        "The following commands are recognized.",
        " ABOR ACCT ALLO APPE AUTH CCC  CDUP CWD  DELE EPRT EPSV FEAT HELP HOST LIST MDTM",
        " MFMT MKD  MLSD MLST MODE NLST NOOP OPTS PASS PASV PBSZ PORT PROT PWD  QUIT REIN",
        " REST RETR RMD  RNFR RNTO SITE SIZE STAT STOR STOU STRU SYST TYPE USER XCUP XCWD",
        " XMKD XPWD XRMD",
        "Help OK.",
    ];
    Reply::multi(214, lines.iter().map(|l| l.as_bytes().to_vec()).collect())
}
