//! `unrm --stats` (`--doctor`): where the store is, what it holds, the filesystem under it,
//! the effective configuration and where each value came from, and whether a saferm shell
//! snippet was loaded in a parent shell.
//!
//! Whether `rm` is aliased cannot be known from here: aliases live in the interactive shell,
//! and a child process sees only its exported environment. `SAFERM_ALIAS` (exported by the
//! snippets) survives `unalias rm` and reaches `bash -c`, where no alias applies, so it is
//! reported for what it is, a trace of the snippet, never as "rm runs saferm".

use anyhow::Result;
use serde_json::json;

use crate::catalog::Catalog;
use crate::config::{Config, Setting, Size};
use crate::output::stdout_write;
use crate::output::{count, human};
use crate::retention::{duration_text, size_text};
use crate::store::Store;

/// Print the report; returns the exit status.
pub fn run(store: &Store, catalog: &Catalog, json: bool) -> Result<i32> {
    let config = Config::load()?;
    let fs = store.fs_stat()?;
    let fs_type = store.fs_type_name();
    let scan = store.scan()?;
    // From the index, a cache anyone can damage: saturate, never overflow.
    let archive_bytes = catalog
        .headers
        .iter()
        .filter_map(|h| h.archive.as_ref().map(|a| a.size))
        .fold(0u64, u64::saturating_add);
    let content_bytes = catalog
        .headers
        .iter()
        .map(|h| h.totals.bytes)
        .fold(0u64, u64::saturating_add);
    let newest = catalog.headers.first();
    let oldest = catalog.headers.last();
    let orphans = scan.orphans().count();
    let config_path = crate::config::config_path();
    let config_exists = config_path.as_ref().is_some_and(|p| p.exists());
    let snippet = std::env::var("SAFERM_ALIAS").ok().filter(|a| !a.is_empty());
    let snippet_text = match &snippet {
        Some(shell) => format!(
            "the {shell} snippet was loaded in a parent shell (SAFERM_ALIAS={shell}); \
             whether rm is aliased there cannot be seen from unrm: 'type rm' in that shell tells"
        ),
        None => "none loaded in a parent shell (SAFERM_ALIAS is unset); 'type rm' in your \
                 shell tells whether rm runs saferm; see saferm --shell-init"
            .to_string(),
    };
    let settings = settings(&config, fs.total);
    if json {
        let value = json!({
            // Lossy: json! would panic on a path that is not UTF-8.
            "store": store.root().to_string_lossy(),
            "filesystem": {
                "type": fs_type,
                "size_bytes": fs.total,
                "free_bytes": fs.available,
            },
            "deletions": catalog.len(),
            "archive_bytes": archive_bytes,
            "content_bytes": content_bytes,
            "oldest": oldest.map(|h| json!({"id": h.id, "created": h.created})),
            "newest": newest.map(|h| json!({"id": h.id, "created": h.created})),
            "orphan_archives": orphans,
            "interrupted_purges": scan.purging.len(),
            "unreadable_manifests": catalog.unreadable.len(),
            "config_file": config_path.as_ref().map(|p| p.to_string_lossy()),
            "config_file_exists": config_exists,
            "settings": settings
                .iter()
                .map(|(k, v, src)| json!({"name": k, "value": v, "source": src}))
                .collect::<Vec<_>>(),
            // The shell SAFERM_ALIAS names, or null: a trace of the snippet, not of an alias.
            "shell_snippet": snippet,
        });
        crate::output::print_json("stats", value);
        return Ok(0);
    }
    let when = |h: Option<&crate::catalog::Header>| {
        h.map(|h| format!("{} ({})", crate::output::local_time(&h.created), h.id))
            .unwrap_or_else(|| "-".to_string())
    };
    let pct = |part: u64| {
        if fs.total == 0 {
            String::new()
        } else {
            format!(
                " ({:.1}% of the filesystem)",
                part as f64 * 100.0 / fs.total as f64
            )
        }
    };
    let mut out = String::new();
    out.push_str(&format!("store:          {}\n", store.root().display()));
    out.push_str(&format!(
        "filesystem:     {fs_type}, {} total, {} free{}\n",
        human(fs.total),
        human(fs.available),
        pct(fs.available)
    ));
    out.push_str(&format!("deletions:      {}\n", catalog.len()));
    out.push_str(&format!(
        "archives:       {}{} holding {} of files\n",
        human(archive_bytes),
        pct(archive_bytes),
        human(content_bytes)
    ));
    out.push_str(&format!("oldest:         {}\n", when(oldest)));
    out.push_str(&format!("newest:         {}\n", when(newest)));
    if orphans > 0 || !scan.purging.is_empty() || !catalog.unreadable.is_empty() {
        out.push_str(&format!(
            "problems:       {} without a manifest, {}, {}: run unrm --check\n",
            count(orphans as u64, "archive", "archives"),
            count(
                scan.purging.len() as u64,
                "interrupted purge",
                "interrupted purges"
            ),
            count(
                catalog.unreadable.len() as u64,
                "unreadable manifest",
                "unreadable manifests"
            )
        ));
    }
    out.push_str(&format!(
        "config file:    {} ({})\n",
        config_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "-".to_string()),
        if config_exists { "read" } else { "absent" }
    ));
    out.push_str("configuration:\n");
    for (k, v, src) in &settings {
        out.push_str(&format!("  {k:<14} {v:<28} {src}\n"));
    }
    out.push_str(&format!("shell snippet:  {snippet_text}\n"));
    stdout_write(out.as_bytes());
    Ok(0)
}

/// `(name, value, source)` of every setting.
fn settings(c: &Config, fs_total: u64) -> Vec<(String, String, String)> {
    let size = |s: Size| match s {
        Size::PerMille(_) => format!(
            "{} (= {})",
            size_text(s),
            human(s.bytes_of(fs_total).unwrap_or(0))
        ),
        _ => size_text(s),
    };
    fn row<T>(name: &str, s: &Setting<T>, text: String) -> (String, String, String) {
        (name.to_string(), text, s.source.to_string())
    }
    vec![
        row(
            "store",
            &c.store,
            c.store
                .value
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(XDG data directory)".to_string()),
        ),
        row("zstd_level", &c.zstd_level, c.zstd_level.value.to_string()),
        row(
            "max_age",
            &c.max_age,
            c.max_age
                .value
                .map(duration_text)
                .unwrap_or_else(|| "never".to_string()),
        ),
        row("max_size", &c.max_size, size(c.max_size.value)),
        row("min_free", &c.min_free, size(c.min_free.value)),
        row("keep_last", &c.keep_last, c.keep_last.value.to_string()),
        row(
            "confirm_above",
            &c.confirm_above,
            size(c.confirm_above.value),
        ),
        row("refuse_above", &c.refuse_above, size(c.refuse_above.value)),
    ]
}
