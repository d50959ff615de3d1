//! The temporary files of atomic uploads: their names, and the rule that keeps them out of
//! every client's sight.
//!
//! An upload writes `.ferry-part-<16 hex>-<start of the final name>`: at most NAME_MAX bytes,
//! so every name that fits the file system can be uploaded.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path};

/// What every temporary name starts with.
const PREFIX: &[u8] = b".ferry-part-";
/// Hex digits of the random part.
const RANDOM_DIGITS: usize = 16;
/// Hex digits ending the temporary names of earlier versions, `.NAME.ferry-part-XXXXXXXX`:
/// a crash before an upgrade left files of that form.
const LEGACY_DIGITS: usize = 8;

/// The longest name when the file system does not say (Linux's NAME_MAX).
pub(super) const DEFAULT_NAME_MAX: usize = 255;

fn lower_hex(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// True when `name` has the form of an upload's temporary file, of this version or an
/// earlier one. Such names are hidden from listings, not found by lookups, and refused as
/// new names, whatever the protocol.
pub fn is_upload_temp(name: &[u8]) -> bool {
    let current = name.len() > PREFIX.len() + RANDOM_DIGITS
        && name.starts_with(PREFIX)
        && lower_hex(&name[PREFIX.len()..PREFIX.len() + RANDOM_DIGITS])
        && name[PREFIX.len() + RANDOM_DIGITS] == b'-';
    let tail = PREFIX.len() + LEGACY_DIGITS;
    let legacy = name.len() > tail + 1
        && name.starts_with(b".")
        && name[name.len() - tail..].starts_with(PREFIX)
        && lower_hex(&name[name.len() - LEGACY_DIGITS..]);
    current || legacy
}

/// The temporary name of an upload to `final_name`, at most `name_max` bytes: as much of the
/// final name as fits after the prefix, for an operator to recognise, cut where a UTF-8
/// character starts.
pub(super) fn temp_name(final_name: &OsStr, random: u64, name_max: usize) -> OsString {
    let mut name = [PREFIX, format!("{random:016x}-").as_bytes()].concat();
    let whole = final_name.as_bytes();
    let mut cut = whole.len().min(name_max.saturating_sub(name.len()));
    while cut > 0 && cut < whole.len() && whole[cut] & 0xC0 == 0x80 {
        cut -= 1;
    }
    name.extend_from_slice(&whole[..cut]);
    OsString::from_vec(name)
}

/// ENOENT when a component of `rel` is a temporary name: to a client it does not exist.
pub(super) fn refuse_in_path(rel: &Path) -> io::Result<()> {
    let hidden = rel.components().any(|c| matches!(c, Component::Normal(n) if is_upload_temp(n.as_bytes())));
    if hidden {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_and_only_it_is_a_temporary_name() {
        for name in [
            ".ferry-part-0123456789abcdef-firmware.bin",
            ".ferry-part-0123456789abcdef-",
            ".firmware.bin.ferry-part-0123abcd",
        ] {
            assert!(is_upload_temp(name.as_bytes()), "{name}");
        }
        for name in [
            "firmware.bin",
            ".ferry-part-notes",
            ".ferry-part-0123456789ABCDEF-x",
            ".ferry-part-0123456789abcde-x",
            "ferry-part-0123456789abcdef-x",
            "x.ferry-part-0123abcd",
            "..ferry-part-0123abcd",
            ".x.ferry-part-0123abcg",
        ] {
            assert!(!is_upload_temp(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn temporary_names_fit_name_max_and_keep_the_start_of_the_name() {
        let short = temp_name(OsStr::new("fw.bin"), 0xfeed, 255);
        assert_eq!(short, ".ferry-part-000000000000feed-fw.bin");
        let longest = "n".repeat(255);
        let t = temp_name(OsStr::new(&longest), u64::MAX, 255);
        assert_eq!(t.len(), 255);
        assert!(t.as_bytes().ends_with(&longest.as_bytes()[..255 - 29]));
        // Cut where a character starts: 1 + 2k bytes of "aéé…" never split an é.
        let accented = format!("a{}", "é".repeat(127));
        for max in [254, 255, 100, 31, 30] {
            let t = temp_name(OsStr::new(&accented), 7, max);
            assert!(t.len() <= max && t.len() >= max - 1, "{max}: {}", t.len());
            assert!(t.to_str().is_some(), "{max}: cut inside a character");
        }
        for name in [&longest, &accented, "x"] {
            assert!(is_upload_temp(temp_name(OsStr::new(name), 1, 255).as_bytes()));
        }
    }

    #[test]
    fn paths_through_a_temporary_name_are_not_found() {
        assert!(refuse_in_path(Path::new("a/b/fw.bin")).is_ok());
        for rel in [
            ".ferry-part-0123456789abcdef-x",
            "a/.x.ferry-part-0123abcd/b",
            "/up/.ferry-part-0123456789abcdef-",
        ] {
            assert_eq!(
                refuse_in_path(Path::new(rel)).unwrap_err().raw_os_error(),
                Some(libc::ENOENT),
                "{rel}"
            );
        }
    }
}
