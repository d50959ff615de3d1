//! Pure formatting of directory entries for LIST (`ls -l` lines that curl, lftp and FileZilla
//! parse), NLST (names) and MLSD/MLST facts (RFC 3659 §7). The io layer gathers [`FileMeta`]
//! with statx and renders with [`ListFormat::render`]; nothing here reads a clock or the disk.

use super::account::Permission;
use super::account::Permissions;
use crate::calendar::civil;

/// What kind of file an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link (not followed).
    Symlink,
    /// Fifo, socket or device; the `S_IFMT` bits of `mode`, if present, pick the letter.
    Other,
}

/// Metadata of one directory entry, as the io layer's statx returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// Entry name (bytes: Linux names need not be UTF-8).
    pub name: Vec<u8>,
    /// File type.
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, unix seconds (UTC).
    pub mtime: i64,
    /// `st_mode`; the permission bits (0o7777) are used, type bits optional.
    pub mode: u32,
    /// Hard link count.
    pub nlink: u64,
    /// Owner id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Device number, for the MLSD `unique` fact.
    pub dev: u64,
    /// Inode number, for the MLSD `unique` fact.
    pub ino: u64,
    /// Target of a symlink, shown as `name -> target` in LIST.
    pub link_target: Option<Vec<u8>>,
}

/// MLST facts Ferry supports (RFC 3659 §7.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    /// `type=file|dir|OS.unix=slink|OS.unix=other` (§7.5.1).
    Type,
    /// `size=` (§7.5.7).
    Size,
    /// `modify=YYYYMMDDHHMMSS` (§7.5.3).
    Modify,
    /// `perm=` (§7.5.5).
    Perm,
    /// `unique=` (§7.5.2).
    Unique,
    /// `UNIX.mode=0644` (IANA registered unix facts).
    UnixMode,
}

impl Fact {
    /// Every fact, in FEAT order.
    pub const ALL: [Fact; 6] =
        [Fact::Type, Fact::Size, Fact::Modify, Fact::Perm, Fact::Unique, Fact::UnixMode];

    /// The fact name as written on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Fact::Type => "type",
            Fact::Size => "size",
            Fact::Modify => "modify",
            Fact::Perm => "perm",
            Fact::Unique => "unique",
            Fact::UnixMode => "UNIX.mode",
        }
    }

    /// Looks a fact name up case-insensitively (fact names are, RFC 3659 §7.1).
    pub fn from_name(name: &[u8]) -> Option<Fact> {
        Fact::ALL.into_iter().find(|f| f.name().as_bytes().eq_ignore_ascii_case(name))
    }
}

/// A selection of facts (OPTS MLST).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FactSet(u8);

impl FactSet {
    /// All supported facts (the default selection).
    pub fn all() -> FactSet {
        FactSet(0x3f)
    }

    /// The set holding exactly `facts`.
    pub fn of(facts: &[Fact]) -> FactSet {
        FactSet(facts.iter().fold(0, |a, f| a | (1 << *f as u8)))
    }

    /// True when `f` is selected.
    pub fn contains(self, f: Fact) -> bool {
        self.0 & (1 << f as u8) != 0
    }

    /// `type;size;` as in the OPTS MLST reply and FEAT (RFC 3659 §7.8-7.9); `star` marks the
    /// selected facts among all supported ones, FEAT style.
    pub fn describe(self, star: bool) -> String {
        let mut s = String::new();
        for f in Fact::ALL {
            if star {
                s.push_str(f.name());
                if self.contains(f) {
                    s.push('*');
                }
                s.push(';');
            } else if self.contains(f) {
                s.push_str(f.name());
                s.push(';');
            }
        }
        s
    }
}

/// How a listing is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    /// LIST: `ls -l` lines.
    Long {
        /// Show `ftp ftp` instead of numeric owner and group.
        hide_ids: bool,
    },
    /// NLST: bare names.
    Names,
    /// MLSD: fact lines (RFC 3659 §7.2).
    Facts {
        /// Selected facts.
        facts: FactSet,
        /// The user's permissions, for the `perm` fact.
        perms: Permissions,
    },
}

impl ListFormat {
    /// Appends one CRLF-terminated line for `entry`; `now` (unix seconds) decides whether
    /// LIST shows the time or the year.
    pub fn render(&self, entry: &FileMeta, now: i64, out: &mut Vec<u8>) {
        match *self {
            ListFormat::Long { hide_ids } => long_line(entry, now, hide_ids, out),
            ListFormat::Names => out.extend_from_slice(&entry.name),
            ListFormat::Facts { facts, perms } => {
                facts_line(entry, facts, perms, out);
                out.extend_from_slice(&entry.name);
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Renders every entry.
    pub fn render_all(&self, entries: &[FileMeta], now: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(entries.len() * 64);
        for e in entries {
            self.render(e, now, &mut out);
        }
        out
    }
}

/// Half a Gregorian year: GNU ls shows the time for files modified within it.
const SIX_MONTHS: i64 = 31_556_952 / 2;

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// `drwxr-xr-x    2 ftp      ftp          4096 Nov 24 01:19 name` (vsftpd's layout).
fn long_line(e: &FileMeta, now: i64, hide_ids: bool, out: &mut Vec<u8>) {
    let (owner, group) = if hide_ids {
        ("ftp".to_string(), "ftp".to_string())
    } else {
        (e.uid.to_string(), e.gid.to_string())
    };
    let (y, mo, d, h, mi, _) = civil(e.mtime);
    let month = MONTHS[(mo - 1).clamp(0, 11) as usize];
    let when = if e.mtime > now - SIX_MONTHS && e.mtime <= now {
        format!("{month} {d:>2} {h:02}:{mi:02}")
    } else {
        format!("{month} {d:>2}  {y}")
    };
    let head = format!(
        "{} {:>4} {:<8} {:<8} {:>8} {} ",
        mode_string(e.kind, e.mode),
        e.nlink,
        owner,
        group,
        e.size,
        when
    );
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&e.name);
    if let (FileKind::Symlink, Some(target)) = (e.kind, &e.link_target) {
        out.extend_from_slice(b" -> ");
        out.extend_from_slice(target);
    }
}

/// `ls -l` mode column, including setuid/setgid/sticky letters.
pub fn mode_string(kind: FileKind, mode: u32) -> String {
    let t = match kind {
        FileKind::File => '-',
        FileKind::Dir => 'd',
        FileKind::Symlink => 'l',
        FileKind::Other => match mode & 0o170000 {
            0o010000 => 'p',
            0o020000 => 'c',
            0o060000 => 'b',
            0o140000 => 's',
            _ => '?',
        },
    };
    let mut s = String::with_capacity(10);
    s.push(t);
    for (shift, special, lower, upper) in
        [(6, 0o4000, 's', 'S'), (3, 0o2000, 's', 'S'), (0, 0o1000, 't', 'T')]
    {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (mode & special != 0, bits & 1 != 0) {
            (true, true) => lower,
            (true, false) => upper,
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// `type=file;size=1;modify=...;perm=...;unique=...;UNIX.mode=0644; ` (RFC 3659 §7.2: facts,
/// each ending in `;`, then one space, then the name).
pub fn facts_line(e: &FileMeta, facts: FactSet, perms: Permissions, out: &mut Vec<u8>) {
    let mut s = String::new();
    for f in Fact::ALL.into_iter().filter(|f| facts.contains(*f)) {
        let value = match f {
            Fact::Type => match e.kind {
                FileKind::File => "file".into(),
                FileKind::Dir => "dir".into(),
                FileKind::Symlink => "OS.unix=slink".into(),
                FileKind::Other => "OS.unix=other".into(),
            },
            Fact::Size => e.size.to_string(),
            Fact::Modify => time_val(e.mtime),
            Fact::Perm => perm_fact(e.kind, perms),
            Fact::Unique => format!("{:x}U{:x}", e.dev, e.ino),
            Fact::UnixMode => format!("{:04o}", e.mode & 0o7777),
        };
        s.push_str(f.name());
        s.push('=');
        s.push_str(&value);
        s.push(';');
    }
    s.push(' ');
    out.extend_from_slice(s.as_bytes());
}

/// The `perm` fact from the user's permissions (RFC 3659 §7.5.5); the kernel may still refuse.
pub fn perm_fact(kind: FileKind, perms: Permissions) -> String {
    let mut s = String::new();
    let mut add = |p: Permission, letters: &str| {
        if perms.allows(p) {
            s.push_str(letters);
        }
    };
    if kind == FileKind::Dir {
        // e enter, l list, c create files, m make dirs, d delete, p purge contents, f rename.
        add(Permission::Read, "el");
        add(Permission::Write, "c");
        add(Permission::Mkdir, "m");
        add(Permission::Delete, "dp");
        add(Permission::Rename, "f");
    } else {
        // r retrieve, w store, a append, d delete, f rename.
        add(Permission::Read, "r");
        add(Permission::Write, "w");
        add(Permission::Append, "a");
        add(Permission::Delete, "d");
        add(Permission::Rename, "f");
    }
    s
}

/// RFC 3659 §2.3 time-val `YYYYMMDDHHMMSS` in UTC (MDTM, MLSD modify).
pub fn time_val(unix: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(unix);
    format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}")
}

#[cfg(test)]
mod tests;
