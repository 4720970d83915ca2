//! saferm's configuration: `$XDG_CONFIG_HOME/saferm/config.toml` (else
//! `~/.config/saferm/config.toml`), every key overridable by an environment variable, every
//! value remembering where it came from (for `unrm --stats`).
//!
//! ```toml
//! store = "/data/saferm"   # SAFERM_STORE          where deletions are kept
//! zstd_level = 1           # SAFERM_ZSTD_LEVEL     1 (fast) .. 19 (small)
//! max_age = "30d"          # SAFERM_MAX_AGE        purge deletions older than this ("never")
//! max_size = "10%"         # SAFERM_MAX_SIZE       the store at most this (bytes or % of its fs)
//! min_free = "2%"          # SAFERM_MIN_FREE       leave this much free on the store's fs
//! keep_last = 10           # SAFERM_KEEP_LAST      never purge the newest N deletions
//! confirm_above = "10GiB"  # SAFERM_CONFIRM_ABOVE  ask on a terminal before archiving more
//! refuse_above = "never"   # SAFERM_REFUSE_ABOVE   without a terminal, refuse above this
//! instant = true           # SAFERM_INSTANT        stage by rename, archive in the background
//! instant_min = "256K"     # SAFERM_INSTANT_MIN    ... deletions of at least this much
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The most of a config file that is read: it holds a handful of settings.
const CONFIG_MAX: u64 = 1 << 20;

/// Where a setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => write!(f, "default"),
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Env(v) => write!(f, "${v}"),
        }
    }
}

/// A setting and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

/// An amount of space: bytes, or a share of the store's filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    Bytes(u64),
    /// Per mille of the filesystem's size (10% is 100).
    PerMille(u32),
    Unlimited,
}

impl Size {
    /// The size in bytes on a filesystem of `fs_bytes`.
    pub fn bytes_of(self, fs_bytes: u64) -> Option<u64> {
        match self {
            Size::Bytes(b) => Some(b),
            Size::PerMille(pm) => Some((fs_bytes as u128 * pm as u128 / 1000) as u64),
            Size::Unlimited => None,
        }
    }
}

/// Everything configurable, with its source.
#[derive(Clone, Debug)]
pub struct Config {
    /// The config file that was read, if any.
    pub file: Option<PathBuf>,
    pub store: Setting<Option<PathBuf>>,
    pub zstd_level: Setting<i32>,
    /// Seconds; None is never.
    pub max_age: Setting<Option<u64>>,
    pub max_size: Setting<Size>,
    pub min_free: Setting<Size>,
    pub keep_last: Setting<usize>,
    pub confirm_above: Setting<Size>,
    pub refuse_above: Setting<Size>,
    /// Instant mode: stage by rename and archive in the background.
    pub instant: Setting<bool>,
    /// The smallest deletion instant mode stages, each object counted as at least
    /// [`INSTANT_OBJECT_MIN`]: below it, archiving before returning takes no longer.
    pub instant_min: Setting<Size>,
}

/// What one object counts for against `instant_min`: a deletion of 16 small files is
/// staged by default, one of 8 is archived at once (doc/benchmarks.md).
pub const INSTANT_OBJECT_MIN: u64 = 16 << 10;

/// The keys a config file may have.
const KEYS: &[&str] = &[
    "store",
    "zstd_level",
    "max_age",
    "max_size",
    "min_free",
    "keep_last",
    "confirm_above",
    "refuse_above",
    "instant",
    "instant_min",
];

impl Config {
    /// The defaults: keep deletions 30 days, the store at most 10% of its filesystem, leave
    /// 2% free, always keep the last 10, ask before archiving more than 10 GiB.
    pub fn defaults() -> Config {
        let d = |v| Setting {
            value: v,
            source: Source::Default,
        };
        Config {
            file: None,
            store: Setting {
                value: None,
                source: Source::Default,
            },
            zstd_level: Setting {
                value: 1,
                source: Source::Default,
            },
            max_age: Setting {
                value: Some(30 * 86_400),
                source: Source::Default,
            },
            max_size: d(Size::PerMille(100)),
            min_free: d(Size::PerMille(20)),
            keep_last: Setting {
                value: 10,
                source: Source::Default,
            },
            confirm_above: d(Size::Bytes(10 << 30)),
            refuse_above: d(Size::Unlimited),
            instant: Setting {
                value: true,
                source: Source::Default,
            },
            instant_min: d(Size::Bytes(256 << 10)),
        }
    }

    /// Read the config file (if there is one) and the environment.
    pub fn load() -> Result<Config> {
        let mut c = Config::defaults();
        if let Some(path) = config_path() {
            // A symlink into a dotfiles checkout is fine; a FIFO or a device is not read.
            let read = crate::sys::read_regular_path(&path, true, CONFIG_MAX)
                .and_then(|b| String::from_utf8(b).map_err(std::io::Error::other));
            match read {
                Ok(text) => {
                    c.apply_file(&text, &path)
                        .with_context(|| format!("in {}", path.display()))?;
                    c.file = Some(path);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
            }
        }
        c.apply_env(|k| std::env::var(k).ok())?;
        Ok(c)
    }

    fn apply_file(&mut self, text: &str, path: &Path) -> Result<()> {
        let table: toml::Table = text.parse().context("not valid TOML")?;
        for key in table.keys() {
            if !KEYS.contains(&key.as_str()) {
                bail!("unknown setting '{key}' (known: {})", KEYS.join(", "));
            }
        }
        let src = || Source::File(path.to_path_buf());
        let text_of = |key: &str| -> Result<Option<String>> {
            Ok(match table.get(key) {
                None => None,
                Some(toml::Value::String(s)) => Some(s.clone()),
                Some(toml::Value::Integer(i)) => Some(i.to_string()),
                Some(toml::Value::Boolean(b)) => Some(b.to_string()),
                Some(other) => bail!(
                    "'{key}' must be a string or a number, not a {}",
                    other.type_str()
                ),
            })
        };
        for key in KEYS {
            if let Some(v) = text_of(key)? {
                self.set(key, &v, src())?;
            }
        }
        Ok(())
    }

    fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        let vars: [(&str, &'static str); 10] = [
            ("store", "SAFERM_STORE"),
            ("zstd_level", "SAFERM_ZSTD_LEVEL"),
            ("max_age", "SAFERM_MAX_AGE"),
            ("max_size", "SAFERM_MAX_SIZE"),
            ("min_free", "SAFERM_MIN_FREE"),
            ("keep_last", "SAFERM_KEEP_LAST"),
            ("confirm_above", "SAFERM_CONFIRM_ABOVE"),
            ("refuse_above", "SAFERM_REFUSE_ABOVE"),
            ("instant", "SAFERM_INSTANT"),
            ("instant_min", "SAFERM_INSTANT_MIN"),
        ];
        for (key, var) in vars {
            if let Some(v) = get(var).filter(|v| !v.is_empty()) {
                self.set(key, &v, Source::Env(var))
                    .with_context(|| format!("in ${var}"))?;
            }
        }
        Ok(())
    }

    fn set(&mut self, key: &str, value: &str, source: Source) -> Result<()> {
        match key {
            "store" => {
                let p = PathBuf::from(value);
                if !p.is_absolute() {
                    bail!("the store must be an absolute path, not '{value}' (set SAFERM_STORE)");
                }
                self.store = Setting {
                    value: Some(p),
                    source,
                };
            }
            "zstd_level" => {
                let l: i32 = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|l| (1..=19).contains(l))
                    .with_context(|| {
                        format!("zstd_level must be a whole number from 1 to 19, not '{value}'")
                    })?;
                self.zstd_level = Setting { value: l, source };
            }
            "max_age" => {
                self.max_age = Setting {
                    value: parse_duration(value)?,
                    source,
                }
            }
            "max_size" => {
                self.max_size = Setting {
                    value: parse_size(value)?,
                    source,
                }
            }
            "min_free" => {
                self.min_free = Setting {
                    value: parse_size(value)?,
                    source,
                }
            }
            "keep_last" => {
                let n: usize = value
                    .trim()
                    .parse()
                    .with_context(|| format!("keep_last must be a whole number, not '{value}'"))?;
                self.keep_last = Setting { value: n, source };
            }
            "confirm_above" => {
                self.confirm_above = Setting {
                    value: parse_size(value)?,
                    source,
                }
            }
            "refuse_above" => {
                self.refuse_above = Setting {
                    value: parse_size(value)?,
                    source,
                }
            }
            "instant" => {
                let on = match value.trim() {
                    "true" | "1" | "yes" | "on" => true,
                    "false" | "0" | "no" | "off" => false,
                    _ => bail!("instant must be true or false, not '{value}'"),
                };
                self.instant = Setting { value: on, source };
            }
            "instant_min" => {
                self.instant_min = Setting {
                    value: parse_size(value)?,
                    source,
                }
            }
            _ => bail!("unknown setting '{key}'"),
        }
        Ok(())
    }
}

/// `$XDG_CONFIG_HOME/saferm/config.toml`, else `~/.config/saferm/config.toml`.
pub fn config_path() -> Option<PathBuf> {
    // As root, a directory of another user's is ignored (`crate::home`): sudo -E must not
    // make root read the user's config (nor put root's store where it says).
    if let Some(x) = crate::home::xdg_dir("XDG_CONFIG_HOME") {
        return Some(x.join("saferm/config.toml"));
    }
    crate::home::home()
        .ok()
        .map(|h| h.join(".config/saferm/config.toml"))
}

/// `30d`, `12h`, `90m`, `45s`, `2w`, a number of seconds, or `never` (None).
pub fn parse_duration(text: &str) -> Result<Option<u64>> {
    let t = text.trim().to_ascii_lowercase();
    if t == "never" || t == "0" {
        return Ok(None);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .with_context(|| format!("'{text}' is not a duration (like 30d, 12h, never)"))?;
    let mult = match unit.trim() {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => bail!("'{text}' is not a duration (like 30d, 12h, never)"),
    };
    Ok(Some(n.saturating_mul(mult)))
}

/// `10GiB`, `500M`, `1.5G`, `10%`, a number of bytes, or `never`/`unlimited`.
pub fn parse_size(text: &str) -> Result<Size> {
    let t = text.trim().to_ascii_lowercase();
    if t == "never" || t == "unlimited" || t == "none" {
        return Ok(Size::Unlimited);
    }
    let bad = || anyhow::anyhow!("'{text}' is not a size (like 10GiB, 500M, 10%, never)");
    if let Some(pct) = t.strip_suffix('%') {
        let p: f64 = pct.trim().parse().map_err(|_| bad())?;
        if !(0.0..=100.0).contains(&p) {
            return Err(bad());
        }
        return Ok(Size::PerMille((p * 10.0).round() as u32));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit.trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    if n < 0.0 {
        return Err(bad());
    }
    Ok(Size::Bytes((n * mult) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse_like_people_write_them() {
        assert_eq!(parse_size("10GiB").ok(), Some(Size::Bytes(10 << 30)));
        assert_eq!(parse_size("500M").ok(), Some(Size::Bytes(500 << 20)));
        assert_eq!(parse_size("1.5g").ok(), Some(Size::Bytes(3 << 29)));
        assert_eq!(parse_size("10%").ok(), Some(Size::PerMille(100)));
        assert_eq!(parse_size("never").ok(), Some(Size::Unlimited));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("120%").is_err());
        assert_eq!(parse_duration("30d").ok(), Some(Some(30 * 86_400)));
        assert_eq!(parse_duration("12h").ok(), Some(Some(43_200)));
        assert_eq!(parse_duration("never").ok(), Some(None));
        assert!(parse_duration("3 fortnights").is_err());
        assert_eq!(Size::PerMille(100).bytes_of(1000), Some(100));
    }

    #[test]
    fn the_environment_wins_over_the_file_and_says_so() {
        let mut c = Config::defaults();
        let file = Path::new("/home/u/.config/saferm/config.toml");
        assert!(c
            .apply_file("max_age = \"7d\"\nkeep_last = 3\n", file)
            .is_ok());
        assert!(c
            .apply_env(|k| (k == "SAFERM_MAX_AGE").then(|| "1h".to_string()))
            .is_ok());
        assert_eq!(c.max_age.value, Some(3600));
        assert_eq!(c.max_age.source, Source::Env("SAFERM_MAX_AGE"));
        assert_eq!(c.keep_last.value, 3);
        assert_eq!(c.keep_last.source, Source::File(file.to_path_buf()));
        assert_eq!(c.zstd_level.source, Source::Default);
    }

    #[test]
    fn bad_settings_are_refused_with_their_name() {
        let mut c = Config::defaults();
        let file = Path::new("/c.toml");
        let err = c
            .apply_file("max_agee = \"7d\"", file)
            .err()
            .map(|e| format!("{e:#}"));
        assert!(err.is_some_and(|e| e.contains("unknown setting 'max_agee'")));
        let err = c
            .apply_file("zstd_level = 40", file)
            .err()
            .map(|e| format!("{e:#}"));
        assert!(err.is_some_and(|e| e.contains("zstd_level")));
        assert!(c
            .apply_env(|k| (k == "SAFERM_STORE").then(|| "rel".to_string()))
            .is_err());
    }
}
