//! The file tree over the control connection: CWD, CDUP (RFC 959 §4.1.1), PWD, MKD, RMD, DELE, RNFR,
//! RNTO, SITE CHMOD (§4.1.3), MDTM, SIZE, MLST (RFC 3659 §3, §4, §7), MFMT (draft-somers-ftp-mfxx).

use super::{Action, FsError, Op, Session};
use crate::ftp::account::Permission;
use crate::ftp::command::SiteCommand;
use crate::ftp::listing::{self, FileKind, FileMeta};
use crate::ftp::path::VirtualPath;
use crate::ftp::reply::{quote_path, Reply};

impl Session {
    pub(super) fn cmd_cwd(&mut self, arg: &[u8]) {
        if let Some(path) = self.join(arg) {
            self.start_op(Action::Stat { path: path.clone() }, Op::Cwd(path));
        }
    }

    pub(super) fn cwd_done(&mut self, path: VirtualPath, stat: Result<FileMeta, FsError>) {
        match stat {
            Ok(meta) if meta.kind == FileKind::Dir => {
                tracing::debug!(cwd = %path, "working directory changed");
                self.cwd = path;
                self.reply(250, "Directory successfully changed.");
            }
            _ => self.reply(550, "Failed to change directory."),
        }
    }

    pub(super) fn cmd_pwd(&mut self) {
        let line = [quote_path(self.cwd.as_bytes()), b" is the current directory".to_vec()].concat();
        self.push_reply(Reply::new(257, line));
    }

    pub(super) fn cmd_mkd(&mut self, arg: &[u8]) {
        if let Some(path) = self.checked_path(arg, Permission::Mkdir, "MKD") {
            let ok = Reply::path_created(257, path.as_bytes(), "created");
            self.start_op(Action::MakeDir { path }, Op::Simple(ok));
        }
    }

    pub(super) fn cmd_rmd(&mut self, arg: &[u8]) {
        if let Some(path) = self.checked_path(arg, Permission::Delete, "RMD") {
            let ok = Reply::new(250, "Remove directory operation successful.");
            self.start_op(Action::RemoveDir { path }, Op::Simple(ok));
        }
    }

    pub(super) fn cmd_dele(&mut self, arg: &[u8]) {
        if let Some(path) = self.checked_path(arg, Permission::Delete, "DELE") {
            let ok = Reply::new(250, "Delete operation successful.");
            self.start_op(Action::Delete { path }, Op::Simple(ok));
        }
    }

    pub(super) fn cmd_rnfr(&mut self, arg: &[u8]) {
        if let Some(path) = self.checked_path(arg, Permission::Rename, "RNFR") {
            self.start_op(Action::Stat { path: path.clone() }, Op::Rnfr(path));
        }
    }

    pub(super) fn rnfr_done(&mut self, path: VirtualPath, stat: Result<FileMeta, FsError>) {
        match stat {
            Ok(_) => {
                tracing::debug!(from = %path, "RNFR: awaiting RNTO");
                self.rnfr = Some(path);
                self.reply(350, "Ready for RNTO.");
            }
            Err(e) => self.fs_failure(e, "RNFR"),
        }
    }

    pub(super) fn cmd_rnto(&mut self, from: Option<VirtualPath>, arg: &[u8]) {
        let Some(from) = from else { return self.reply(503, "RNFR required first.") };
        if let Some(to) = self.checked_path(arg, Permission::Rename, "RNTO") {
            // Replacing an existing file destroys it: like STOR, only with `delete`.
            let replace = self.account().is_some_and(|a| a.permissions.allows(Permission::Delete));
            let ok = Reply::new(250, "Rename successful.");
            self.start_op(Action::Rename { from, to, replace }, Op::Simple(ok));
        }
    }

    pub(super) fn cmd_size(&mut self, arg: &[u8]) {
        if let Some(path) = self.checked_path(arg, Permission::Read, "SIZE") {
            // The file's length in either TYPE, as vsftpd and Pure-FTPd answer. RFC 3659
            // §4 asks for the TYPE A count, but clients ask in the default TYPE A and
            // use the answer as a byte count (Python ftplib's size() sends no TYPE I),
            // and counting would read the whole file on the worker.
            self.start_op(Action::Stat { path }, Op::Size);
        }
    }

    pub(super) fn size_done(&mut self, stat: Result<FileMeta, FsError>) {
        match stat {
            Ok(meta) if meta.kind == FileKind::File => self.reply(213, meta.size.to_string()),
            _ => self.reply(550, "Could not get file size."),
        }
    }

    pub(super) fn cmd_mdtm(&mut self, arg: &[u8]) {
        if let Some(path) = self.checked_path(arg, Permission::Read, "MDTM") {
            self.start_op(Action::Stat { path }, Op::Mdtm);
        }
    }

    pub(super) fn mdtm_done(&mut self, stat: Result<FileMeta, FsError>) {
        match stat {
            Ok(meta) if meta.kind == FileKind::File => self.reply(213, listing::time_val(meta.mtime)),
            _ => self.reply(550, "Could not get file modification time."),
        }
    }

    pub(super) fn cmd_mfmt(&mut self, mtime: i64, arg: &[u8]) {
        if let Some(path) = self.checked_change(arg, "MFMT") {
            let text = [b"Modify=".to_vec(), listing::time_val(mtime).into_bytes(), b"; ".to_vec()];
            let ok = Reply::new(213, [text.concat(), path.as_bytes().to_vec()].concat());
            self.start_op(Action::SetMtime { path, mtime }, Op::Simple(ok));
        }
    }

    pub(super) fn cmd_mlst(&mut self, arg: Option<Vec<u8>>) {
        let arg = arg.unwrap_or_default();
        if let Some(path) = self.checked_path(&arg, Permission::Read, "MLST") {
            self.start_op(Action::Stat { path: path.clone() }, Op::Mlst(path));
        }
    }

    pub(super) fn mlst_done(&mut self, path: VirtualPath, stat: Result<FileMeta, FsError>) {
        match stat {
            Ok(meta) => {
                // RFC 3659 §7.2.1: the fact line starts with a space and names the path.
                let perms = self.account().map(|a| a.permissions).unwrap_or_default();
                let mut fact_line = b" ".to_vec();
                listing::facts_line(&meta, self.facts, perms, &mut fact_line);
                fact_line.extend_from_slice(path.as_bytes());
                let first = [b"Listing ".to_vec(), path.as_bytes().to_vec()].concat();
                self.push_reply(Reply::multi(250, vec![first, fact_line, b"End".to_vec()]));
            }
            Err(e) => self.fs_failure(e, "MLST"),
        }
    }

    pub(super) fn cmd_site(&mut self, site: SiteCommand) {
        match site {
            SiteCommand::Chmod { mode, path } => {
                if let Some(path) = self.checked_change(&path, "SITE CHMOD") {
                    // Only the permission bits: setuid, setgid and sticky would let an
                    // uploader plant a set-id program (vsftpd's chmod masks the same way).
                    let ok = if mode & !0o777 != 0 {
                        Reply::new(200, "SITE CHMOD command ok (setuid, setgid and sticky bits ignored).")
                    } else {
                        Reply::new(200, "SITE CHMOD command ok.")
                    };
                    self.start_op(Action::Chmod { path, mode: mode & 0o777 }, Op::Simple(ok));
                }
            }
            SiteCommand::Help => self.reply(214, "CHMOD HELP"),
            SiteCommand::Other(_) => self.reply(500, "Unknown SITE command."),
        }
    }

    /// MKD, RMD, DELE, RNTO, SITE CHMOD and MFMT are over: `ok` was set aside for success.
    pub(super) fn simple_done(&mut self, ok: Reply, done: Result<(), FsError>) {
        match done {
            Ok(()) => self.push_reply(ok),
            Err(e) => self.fs_failure(e, "file operation"),
        }
    }

    /// Like [`Self::checked_path`] with `write`, for commands that change an existing entry in
    /// place (SITE CHMOD, MFMT). Writable anonymous users may only add files and directories
    /// (vsftpd's anon_upload_enable), so these stay refused to them.
    fn checked_change(&mut self, arg: &[u8], verb: &str) -> Option<VirtualPath> {
        let path = self.checked_path(arg, Permission::Write, verb)?;
        if self.account().is_some_and(|a| a.anonymous) {
            tracing::info!(peer = %self.peer, user = "anonymous", %path, "{verb} denied");
            self.reply(550, "Permission denied.");
            return None;
        }
        Some(path)
    }
}
