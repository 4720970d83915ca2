//! The id of a deletion: the one place that says what an id may be.
//!
//! An id names store files (`archives/<month>/<id>.tar.zst`, `manifests/<month>/<id>.json`,
//! `<id>.restored.json`...), and ids are read back from manifests, the listing cache and
//! the manifest copies inside archives, all of which a damaged or crafted store controls.
//! An id that could climb out of its directory (`../x`), hide (`.x`) or name nothing
//! (empty) must therefore never get past a reader: [`DeletionId::parse`] is what every
//! reader uses, directly or through [`deserialize`] on the fields that hold one.
//!
//! What saferm writes is `20261126T105853.123456789Z-4242-9f3a1c07-label` (see
//! [`new_id`]); what is accepted is wider, so that stores written by older versions
//! stay readable: ASCII letters, digits, `.`, `_` and `-`, starting with a letter or a
//! digit, at most [`MAX_LEN`] bytes.

use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::sys;

/// Longest id accepted: the longest store file name built from one
/// (`<id>.restored-part.json`) must fit the 255 bytes of a file name.
pub const MAX_LEN: usize = 200;

/// A valid deletion id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeletionId(String);

/// Why a string is not a deletion id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadId(String);

impl fmt::Display for BadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.0.chars().take(80).collect();
        write!(f, "'{}' is not a deletion id", shown.escape_default())
    }
}

impl std::error::Error for BadId {}

impl DeletionId {
    /// The id `s`, if it is one.
    pub fn parse(s: &str) -> Result<DeletionId, BadId> {
        if is_valid(s) {
            Ok(DeletionId(s.to_string()))
        } else {
            Err(BadId(s.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeletionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for DeletionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Whether `s` is a deletion id: safe as a single file name component, whatever suffix a
/// store file adds to it.
pub fn is_valid(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LEN
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-')
}

/// The month (`YYYY-MM`) that the id of a deletion made by saferm starts with, under which
/// its archive and manifest are filed (`layout::month_of` of the id's time).
pub fn month(id: &str) -> Option<String> {
    Some(format!("{}-{}", id.get(..4)?, id.get(4..6)?))
}

/// A unique, sortable id: UTC time to the nanosecond, pid, randomness, and a readable label
/// from the first operand (`20261126T105853.123456789Z-4242-9f3a1c07-packages`).
pub fn new_id(now: chrono::DateTime<chrono::Utc>, first_operand: &[u8]) -> String {
    let label: String = Path::new(std::ffi::OsStr::from_bytes(first_operand))
        .file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_default()
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-' {
                b as char
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let label = label.trim_start_matches('.');
    let label = if label.is_empty() { "deletion" } else { label };
    format!(
        "{}-{}-{:08x}-{}",
        now.format("%Y%m%dT%H%M%S%.9fZ"),
        std::process::id(),
        sys::random_u32(),
        label
    )
}

/// For `#[serde(deserialize_with = "crate::store::id::deserialize")]` on a `String` field that
/// holds an id: a manifest or header whose id is not one does not parse at all.
pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    DeletionId::parse(&s)
        .map(|id| id.0)
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_carry_a_label() {
        use chrono::TimeZone;
        let t1 = chrono::Utc
            .timestamp_opt(1_700_000_000, 5)
            .single()
            .unwrap_or_default();
        let t2 = chrono::Utc
            .timestamp_opt(1_700_000_001, 0)
            .single()
            .unwrap_or_default();
        let a = new_id(t1, b"some/dir/packages/");
        let b = new_id(t2, b"a b\xff");
        assert!(a < b, "{a} < {b}");
        assert!(a.ends_with("-packages"), "{a}");
        assert!(b.ends_with("-a_b_"), "{b}");
        assert_eq!(new_id(t1, b".").rsplit('-').next(), Some("deletion"));
    }

    #[test]
    fn ids_that_could_leave_their_directory_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/../../b",
            "/abs",
            ".hidden",
            "-x",
            "a\0b",
            "a b",
            "x\n",
            "é",
        ] {
            assert!(DeletionId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(DeletionId::parse(&"a".repeat(MAX_LEN + 1)).is_err());
    }

    #[test]
    fn ids_saferm_writes_and_older_ones_are_accepted() {
        for good in [
            "20261126T105853.123456789Z-4242-9f3a1c07-packages",
            "20261126T105853.123456789Z-4242-9f3a1c07-a_b_",
            "pre-merge-packages_2025-12-13_08-30-45",
            "x",
        ] {
            assert_eq!(
                DeletionId::parse(good).map(|i| i.to_string()),
                Ok(good.to_string())
            );
        }
    }

    #[test]
    fn a_manifest_field_with_a_bad_id_does_not_parse() {
        #[derive(serde::Deserialize)]
        struct H {
            #[serde(deserialize_with = "deserialize")]
            #[allow(dead_code)]
            id: String,
        }
        assert!(serde_json::from_str::<H>(r#"{"id":"../../x"}"#).is_err());
        assert!(serde_json::from_str::<H>(r#"{"id":"20261126T1-1-1-a"}"#).is_ok());
    }
}
