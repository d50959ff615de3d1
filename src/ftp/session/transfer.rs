//! Transfers over the data connection: RETR, STOR, STOU, APPE, LIST, NLST, ABOR (RFC 959 §4.1.3),
//! MLSD (RFC 3659 §7), REST STREAM (RFC 3659 §5), and each transfer's 150 and closing replies.

use super::data::Data;
use super::{
    Action, DataEndpoint, Event, FsError, OpResult, OpToken, Output, Pending, Session, StoreMode,
    TransferError, TransferEvent, TransferKind,
};
use crate::ftp::account::Permission;
use crate::ftp::command::{Command, ListArgs, TransferType};
use crate::ftp::glob::{self, NameFilter};
use crate::ftp::listing::ListFormat;
use crate::ftp::reply::Reply;
use std::time::Instant;

/// How many STOU names are tried before giving up.
const STOU_ATTEMPTS: u32 = 100;

/// A running transfer.
#[derive(Debug, Clone)]
pub(super) struct Running {
    pub(super) token: OpToken,
    action: Action,
    started: bool,
    /// ABOR received (RFC 959 §4.1.3: answer 426 then 226).
    abort: bool,
    /// QUIT received: 221 and close once the transfer ends (RFC 959 §4.1.1).
    quit: bool,
    /// STOU: the hint and how many names have been tried.
    stou: Option<(Vec<u8>, u32)>,
}

impl Session {
    pub(super) fn cmd_retr(&mut self, arg: &[u8]) {
        let offset = std::mem::take(&mut self.rest);
        if let Some(path) = self.checked_path(arg, Permission::Read, "RETR") {
            let ascii = self.ttype == TransferType::Ascii;
            self.start_transfer(TransferKind::Retr { path, offset, ascii }, None);
        }
    }

    pub(super) fn cmd_stor(&mut self, arg: &[u8], append: bool) {
        let offset = std::mem::take(&mut self.rest);
        let (perm, verb) = if append { (Permission::Append, "APPE") } else { (Permission::Write, "STOR") };
        let Some(path) = self.checked_path(arg, perm, verb) else { return };
        let mode = if append {
            StoreMode::Append
        } else if offset > 0 {
            // A resumed upload extends what is there: that is appending.
            if !self.permitted(Permission::Append, "STOR with REST", &path) {
                return;
            }
            StoreMode::Replace
        } else if self.account().is_some_and(|a| a.permissions.allows(Permission::Delete)) {
            StoreMode::Replace
        } else {
            // Overwriting destroys the old content; without `delete` only new files.
            StoreMode::CreateNew
        };
        let offset = if append { 0 } else { offset };
        let ascii = self.ttype == TransferType::Ascii;
        self.start_transfer(TransferKind::Stor { path, mode, offset, ascii }, None);
    }

    pub(super) fn cmd_stou(&mut self, hint: Option<Vec<u8>>) {
        self.rest = 0;
        let base = hint.unwrap_or_else(|| b"file".to_vec());
        let Some(path) = self.checked_path(&base, Permission::Write, "STOU") else { return };
        let ascii = self.ttype == TransferType::Ascii;
        let kind = TransferKind::Stor { path, mode: StoreMode::CreateNew, offset: 0, ascii };
        self.start_transfer(kind, Some((base, 0)));
    }

    pub(super) fn cmd_rest(&mut self, offset: u64) {
        self.rest = offset;
        tracing::debug!(offset, "REST");
        self.reply(350, format!("Restart position accepted ({offset})."));
    }

    pub(super) fn cmd_list(&mut self, args: ListArgs) {
        self.start_list(args, ListFormat::Long { hide_ids: self.cfg.hide_ids }, "LIST");
    }

    pub(super) fn cmd_nlst(&mut self, args: ListArgs) {
        self.start_list(args, ListFormat::Names, "NLST");
    }

    pub(super) fn cmd_mlsd(&mut self, arg: Option<Vec<u8>>) {
        let perms = self.account().map(|a| a.permissions).unwrap_or_default();
        let args = ListArgs { path: arg, all: true };
        self.start_list(args, ListFormat::Facts { facts: self.facts, perms }, "MLSD");
    }

    fn start_list(&mut self, args: ListArgs, format: ListFormat, verb: &str) {
        let arg = args.path.unwrap_or_default();
        // RFC 3659 §7: MLSD's argument names a directory, so it is never a pattern.
        let split = if matches!(format, ListFormat::Facts { .. }) { None } else { glob::split(&arg) };
        let (dir, glob) = match split {
            Some((dir, pattern)) => {
                // As vsftpd: NLST names carry the directory the client wrote, LIST lines not.
                let prefix = if format == ListFormat::Names { dir.to_vec() } else { Vec::new() };
                (dir, Some(NameFilter { pattern: pattern.to_vec(), prefix }))
            }
            None => (&arg[..], None),
        };
        if let Some(path) = self.checked_path(dir, Permission::Read, verb) {
            self.start_transfer(TransferKind::List { path, format, hidden: args.all, glob }, None);
        }
    }

    /// Only ABOR with nothing running gets here: during a transfer `during_transfer` answers it.
    pub(super) fn cmd_abor(&mut self) {
        // RFC 959 §4.1.3 ABOR with nothing running: close the data connection, 226.
        self.clear_data();
        self.reply(226, "No transfer to abort.")
    }

    fn start_transfer(&mut self, kind: TransferKind, stou: Option<(Vec<u8>, u32)>) {
        if self.clear_data_refused() {
            // RFC 4217 §10 (ftp.tls.required): this login may not move data in clear.
            return self.reply(521, "Data connections must be protected: send PROT P.");
        }
        let data = match self.data {
            Data::None => return self.reply(425, "Use PORT, PASV or EPSV first."),
            Data::Passive { .. } => DataEndpoint::Passive,
            Data::Active(addr) => DataEndpoint::Active(addr),
        };
        // One data connection per PORT/PASV (RFC 959 §3.3 stream mode closes it at EOF).
        self.data = Data::None;
        self.next_token += 1;
        let token = OpToken(self.next_token);
        let action = Action::Transfer { kind, data, protect: self.sec.private_data };
        self.out.push_back(Output::Action(token, action.clone()));
        self.set_pending(Pending::Transfer(Box::new(Running {
            token,
            action,
            started: false,
            abort: false,
            quit: false,
            stou,
        })));
    }

    pub(super) fn during_transfer(&mut self, cmd: Command) {
        let status = self.status_lines();
        let Pending::Transfer(run) = &mut self.pending else { return };
        match cmd {
            Command::Abor if !run.abort => {
                run.abort = true;
                let token = run.token;
                tracing::debug!(?token, "ABOR: aborting transfer");
                self.event(Event::AbortTransfer(token));
            }
            Command::Abor => {}
            Command::Quit => {
                tracing::debug!("QUIT during transfer: closing after it ends");
                run.quit = true;
            }
            _ => {
                let mut lines = status;
                lines.insert(lines.len() - 1, b"     Data transfer in progress".to_vec());
                self.push_reply(Reply::multi(211, lines));
            }
        }
    }

    pub(super) fn complete_transfer(&mut self, mut run: Running, result: OpResult, now: Instant) {
        let event = match result {
            OpResult::Transfer(e) => e,
            other => {
                tracing::warn!(?other, "transfer completed with a non-transfer result (io layer bug)");
                TransferEvent::Failed(TransferError::Local)
            }
        };
        match event {
            TransferEvent::Started if !run.started => {
                run.started = true;
                let text = match &run.action {
                    Action::Transfer { kind: TransferKind::List { .. }, .. } => {
                        b"Here comes the directory listing.".to_vec()
                    }
                    Action::Transfer { kind: TransferKind::Stor { path, .. }, .. } if run.stou.is_some() => {
                        // RFC 1123 §4.1.2.9: STOU's 150 names the file.
                        [b"FILE: ".to_vec(), path.file_name().unwrap_or_default().to_vec()].concat()
                    }
                    Action::Transfer { kind: TransferKind::Stor { .. }, .. } => b"Ok to send data.".to_vec(),
                    _ => {
                        let mode = if self.ttype == TransferType::Ascii { "ASCII" } else { "BINARY" };
                        format!("Opening {mode} mode data connection.").into_bytes()
                    }
                };
                tracing::debug!(token = ?run.token, "transfer started");
                self.push_reply(Reply::new(150, text));
                self.pending = Pending::Transfer(Box::new(run));
                return;
            }
            TransferEvent::Started => {
                tracing::warn!("transfer reported Started twice (io layer bug)");
                self.pending = Pending::Transfer(Box::new(run));
                return;
            }
            TransferEvent::Finished { bytes } => {
                tracing::debug!(bytes, "transfer finished");
                let is_list = matches!(run.action, Action::Transfer { kind: TransferKind::List { .. }, .. });
                self.reply(226, if is_list { "Directory send OK." } else { "Transfer complete." });
                if run.abort {
                    // ABOR lost the race: the transfer completed; still answer the ABOR.
                    self.reply(226, "ABOR successful; nothing left to abort.");
                }
            }
            TransferEvent::Failed(err) if run.abort => {
                tracing::debug!(error = %err, "transfer aborted");
                // RFC 959 §4.1.3 ABOR: 426 for the transfer, then 226 for the ABOR.
                self.reply(426, "Connection closed; transfer aborted.");
                self.reply(226, "Abort successful.");
            }
            TransferEvent::Failed(TransferError::Fs(FsError::Exists))
                if !run.started && run.stou.is_some() =>
            {
                if self.retry_stou(&mut run) {
                    return;
                }
                self.reply(553, "Could not create a unique file name.");
            }
            TransferEvent::Failed(err) => {
                tracing::info!(peer = %self.peer, error = %err, "transfer failed");
                // A file that could not be opened never touched the data connection (the io
                // layer keeps the passive listener), so the PASV/PORT still holds for the
                // next command, as with vsftpd: clients retry without a new PASV (and get
                // a whole accept timeout for it).
                if let (false, TransferError::Fs(_), Action::Transfer { data, .. }) =
                    (run.started, &err, &run.action)
                {
                    match data {
                        DataEndpoint::Passive => self.passive_ready(now),
                        DataEndpoint::Active(addr) => self.data = Data::Active(*addr),
                    }
                }
                let mlsd = matches!(
                    run.action,
                    Action::Transfer {
                        kind: TransferKind::List { format: ListFormat::Facts { .. }, .. },
                        ..
                    }
                );
                match err {
                    // RFC 3659 §7.2: MLSD of something that is not a directory is a 501.
                    TransferError::Fs(FsError::NotADirectory) if mlsd => {
                        self.reply(501, "MLSD needs a directory; use MLST for a file.")
                    }
                    TransferError::DataConnection => self.reply(425, "Failed to establish data connection."),
                    TransferError::TlsHandshake => {
                        self.reply(425, "Failed to establish data connection: TLS handshake failed.")
                    }
                    // vsftpd's reply to the same refusal (require_ssl_reuse).
                    TransferError::TlsNotResumed => self.reply(
                        522,
                        "Data connection TLS must resume the control connection's TLS session (session reuse required).",
                    ),
                    TransferError::Aborted => self.reply(426, "Connection closed; transfer aborted."),
                    TransferError::Local => self.reply(451, "Local error in processing."),
                    // RFC 959 §5.4: after the 150, STOR/APPE/STOU complete with 226, 250,
                    // 425, 426, 451, 551 or 552; 452 is a first reply only. A disk that fills
                    // midway is a local error that may pass (451); a quota stays 552.
                    TransferError::Fs(FsError::NoSpace) if run.started => {
                        self.reply(451, "Insufficient storage space in system; transfer aborted.")
                    }
                    TransferError::Fs(e) => self.fs_failure(e, "transfer"),
                }
            }
        }
        self.last_activity = now;
        if run.quit {
            self.cmd_quit();
        }
    }

    /// Proposes the next STOU name (`hint.1`, `hint.2`, ...) after an O_EXCL collision.
    fn retry_stou(&mut self, run: &mut Running) -> bool {
        let Some((base, tries)) = run.stou.as_mut() else { return false };
        *tries += 1;
        if *tries >= STOU_ATTEMPTS {
            return false;
        }
        let candidate = [base.as_slice(), format!(".{tries}").as_bytes()].concat();
        let Ok(path) = self.cwd.join(&candidate) else { return false };
        let Action::Transfer { kind: TransferKind::Stor { path: old, .. }, .. } = &mut run.action else {
            return false;
        };
        *old = path;
        self.next_token += 1;
        run.token = OpToken(self.next_token);
        tracing::debug!(attempt = *tries, "STOU: name taken, trying another");
        self.out.push_back(Output::Action(run.token, run.action.clone()));
        self.pending = Pending::Transfer(Box::new(run.clone()));
        true
    }
}
