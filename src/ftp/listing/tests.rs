//! Tests of the listing formats: calendar conversion, `ls -l` lines, NLST names and MLSD/MLST
//! facts, at a fixed clock so the time-or-year column is checked exactly.

use super::*;

/// 2023-11-24 01:19:00 UTC.
const T: i64 = 1_700_788_740;

fn meta(name: &str, kind: FileKind, size: u64, mode: u32) -> FileMeta {
    FileMeta {
        name: name.as_bytes().to_vec(),
        kind,
        size,
        mtime: T,
        mode,
        nlink: if kind == FileKind::Dir { 2 } else { 1 },
        uid: 1000,
        gid: 100,
        dev: 0x803,
        ino: 0x1234,
        link_target: None,
    }
}

fn long(e: &FileMeta, now: i64, hide_ids: bool) -> String {
    let mut out = Vec::new();
    ListFormat::Long { hide_ids }.render(e, now, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn time_val_is_rfc_3659_utc() {
    assert_eq!(time_val(T), "20231124011900");
    assert_eq!(time_val(0), "19700101000000");
}

#[test]
fn list_line_recent_matches_vsftpd_layout() {
    let e = meta("name", FileKind::Dir, 4096, 0o755);
    assert_eq!(long(&e, T + 3600, true), "drwxr-xr-x    2 ftp      ftp          4096 Nov 24 01:19 name\r\n");
}

#[test]
fn list_line_old_shows_year_and_numeric_ids() {
    let e = meta("old.txt", FileKind::File, 12, 0o644);
    let now = T + 200 * 86400;
    assert_eq!(long(&e, now, false), "-rw-r--r--    1 1000     100            12 Nov 24  2023 old.txt\r\n");
    // Future timestamps also show the year, as ls does.
    assert!(long(&e, T - 10, true).contains("Nov 24  2023"));
}

#[test]
fn single_digit_day_is_space_padded() {
    let mut e = meta("f", FileKind::File, 1, 0o600);
    e.mtime = crate::calendar::days_from_civil(2024, 3, 5) * 86400 + 7 * 3600 + 5 * 60;
    assert!(long(&e, e.mtime + 10, true).contains(" Mar  5 07:05 f\r\n"));
}

#[test]
fn symlink_shows_target() {
    let mut e = meta("link", FileKind::Symlink, 7, 0o777);
    e.link_target = Some(b"target".to_vec());
    assert!(long(&e, T + 1, true).starts_with("lrwxrwxrwx"));
    assert!(long(&e, T + 1, true).ends_with(" link -> target\r\n"));
}

#[test]
fn mode_strings() {
    assert_eq!(mode_string(FileKind::File, 0o4755), "-rwsr-xr-x");
    assert_eq!(mode_string(FileKind::File, 0o2644), "-rw-r-Sr--");
    assert_eq!(mode_string(FileKind::Dir, 0o1777), "drwxrwxrwt");
    assert_eq!(mode_string(FileKind::Dir, 0o1776), "drwxrwxrwT");
    assert_eq!(mode_string(FileKind::Other, 0o010644), "prw-r--r--");
    assert_eq!(mode_string(FileKind::Other, 0o140755), "srwxr-xr-x");
    assert_eq!(mode_string(FileKind::Other, 0o644), "?rw-r--r--");
}

#[test]
fn nlst_is_names() {
    let entries = [meta("a", FileKind::File, 1, 0o644), meta("Grüße", FileKind::Dir, 1, 0o755)];
    assert_eq!(ListFormat::Names.render_all(&entries, T), "a\r\nGrüße\r\n".as_bytes());
}

#[test]
fn mlsd_facts_rfc3659() {
    // RFC 3659 §7.2: facts, each ending with ';', one space, the name.
    let perms: Permissions = [Permission::Read, Permission::Write].into_iter().collect();
    let fmt = ListFormat::Facts { facts: FactSet::all(), perms };
    let out = fmt.render_all(&[meta("f.txt", FileKind::File, 42, 0o644)], T);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "type=file;size=42;modify=20231124011900;perm=rw;unique=803U1234;UNIX.mode=0644; f.txt\r\n"
    );
    let out = fmt.render_all(&[meta("d", FileKind::Dir, 4096, 0o755)], T);
    assert!(String::from_utf8(out)
        .unwrap()
        .starts_with("type=dir;size=4096;modify=20231124011900;perm=elc;"));
}

#[test]
fn mlsd_honours_fact_selection() {
    // RFC 3659 §7.9: OPTS MLST selects facts; the order stays the server's.
    let fmt = ListFormat::Facts { facts: FactSet::of(&[Fact::Modify, Fact::Type]), perms: Permissions::NONE };
    let out = fmt.render_all(&[meta("x", FileKind::File, 1, 0o644)], T);
    assert_eq!(out, b"type=file;modify=20231124011900; x\r\n");
    let none = ListFormat::Facts { facts: FactSet::of(&[]), perms: Permissions::NONE };
    assert_eq!(none.render_all(&[meta("x", FileKind::File, 1, 0o644)], T), b" x\r\n");
}

#[test]
fn perm_fact_follows_user_permissions() {
    assert_eq!(perm_fact(FileKind::File, Permissions::all()), "rwadf");
    assert_eq!(perm_fact(FileKind::Dir, Permissions::all()), "elcmdpf");
    assert_eq!(perm_fact(FileKind::File, Permissions::NONE.with(Permission::Read)), "r");
    assert_eq!(perm_fact(FileKind::Dir, Permissions::NONE), "");
}

#[test]
fn fact_set_descriptions() {
    assert_eq!(FactSet::all().describe(true), "type*;size*;modify*;perm*;unique*;UNIX.mode*;");
    assert_eq!(FactSet::of(&[Fact::Size]).describe(true), "type;size*;modify;perm;unique;UNIX.mode;");
    assert_eq!(FactSet::of(&[Fact::Size, Fact::Type]).describe(false), "type;size;");
    assert_eq!(Fact::from_name(b"unix.MODE"), Some(Fact::UnixMode));
}

#[test]
fn non_utf8_name_bytes_are_kept() {
    let mut e = meta("x", FileKind::File, 1, 0o644);
    e.name = b"\xff\xfe".to_vec();
    let mut out = Vec::new();
    ListFormat::Names.render(&e, T, &mut out);
    assert_eq!(out, b"\xff\xfe\r\n");
}
