//! Before an archive is written: whether a person agrees to a large one, and whether the
//! store has room for it.

use anyhow::{anyhow, Result};

use super::pipeline::Archiving;
use crate::output::human;
use crate::store::Backend;
use crate::walk::{self, Plan};

/// Bytes of file content among these nodes.
pub(super) fn content_bytes(plan: &Plan, order: &[usize]) -> u64 {
    order
        .iter()
        .filter(|&&i| plan.nodes[i].st.is_file())
        .map(|&i| plan.nodes[i].st.size)
        .sum()
}

/// Above `confirm_above`, ask a person once before archiving; above `refuse_above`, refuse
/// when nobody can be asked. Scripts never get a surprise prompt.
pub(super) fn large_deletion_allowed(
    ctx: &Archiving<'_>,
    store: &dyn Backend,
    plan: &Plan,
    order: &[usize],
) -> Result<bool> {
    // What the archive will hold: a sparse file's data, not its holes.
    let total = order
        .iter()
        .map(|&i| crate::estimate::stored_bound(&plan.nodes[i].st))
        .sum();
    let limits = (
        ctx.config.confirm_above.value,
        ctx.config.refuse_above.value,
    );
    if matches!(
        limits,
        (
            crate::config::Size::Unlimited,
            crate::config::Size::Unlimited
        )
    ) {
        return Ok(true);
    }
    let fs = store.size_bytes().unwrap_or(u64::MAX);
    if ctx.interactive {
        if let Some(limit) = ctx.config.confirm_above.value.bytes_of(fs) {
            if total > limit {
                // What each answer does: N (the default) must plainly keep the files.
                let question = format!(
                    "{}: archive {} (more than confirm_above, {}) and then remove it? y: archive and remove; n: keep everything where it is [y/N] ",
                    ctx.prog,
                    human(total),
                    human(limit)
                );
                return Ok(walk::yes_no(&question));
            }
        }
    } else if let Some(limit) = ctx.config.refuse_above.value.bytes_of(fs) {
        if total > limit {
            return Err(anyhow!(
                "{} is more than refuse_above ({}, from {}) allows without a terminal; delete for good with --no-archive, or raise refuse_above",
                human(total),
                human(limit),
                ctx.config.refuse_above.source
            ));
        }
    }
    Ok(true)
}

/// Refuse before writing when the archive could not fit, leaving `min_free` free: its size
/// is at most the data (holes not included) plus headers (zstd never grows data by more
/// than a few bytes per block). When that is more than is free, a sample of the data says
/// how well it compresses ([`crate::estimate`]); if that estimate is wrong, the write
/// fails with ENOSPC and nothing is lost.
pub(super) fn check_space(
    ctx: &Archiving<'_>,
    store: &dyn Backend,
    plan: &Plan,
    order: &[usize],
) -> Result<()> {
    let headers = 1u64 << 20;
    let mut need = headers;
    for &i in order {
        let data = crate::estimate::stored_bound(&plan.nodes[i].st);
        need = need.saturating_add(data.div_ceil(512) * 512 + 2048);
    }
    if crate::fault::active("skip-space-check") {
        return Ok(()); // to test ENOSPC during the write itself
    }
    let free = if crate::fault::active("space") {
        0
    } else {
        store.free_bytes()?
    };
    let fs_bytes = store.size_bytes().unwrap_or(0);
    let floor = ctx
        .config
        .min_free
        .value
        .bytes_of(fs_bytes)
        .unwrap_or_default();
    if free < need.saturating_add(floor) {
        let files: Vec<(usize, &crate::sys::Stat)> = order
            .iter()
            .filter(|&&i| plan.nodes[i].st.is_file())
            .map(|&i| (i, &plan.nodes[i].st))
            .collect();
        let level = ctx.config.zstd_level.value;
        let packed = crate::estimate::compressed_bound(&files, &|i| plan.abs(i), level);
        need = headers.saturating_add(packed);
        for &i in order {
            need = need.saturating_add(2048);
            if plan.nodes[i].st.is_file() {
                need = need.saturating_add(512); // padding
            }
        }
    }
    if free < need.saturating_add(floor) {
        let deficit = need.saturating_add(floor) - free;
        return Err(anyhow!(
            "not enough space in the store {} (needs up to {}, {} free, {} to be left free); {}",
            store.location().display(),
            human(need),
            human(free),
            human(floor),
            room_advice(store, deficit)
        ));
    }
    Ok(())
}

/// What the user can run to make `deficit` bytes of room: a purge that frees that much if
/// the store holds it (`--keep 0`, since the newest deletions are otherwise spared and may be
/// all there is), else the truth that purging is not enough.
pub(super) fn room_advice(store: &dyn Backend, deficit: u64) -> String {
    let held = store.list().map(|s| s.archive_bytes()).unwrap_or(0);
    let no_archive = "or delete for good with --no-archive";
    if held >= deficit {
        format!(
            "make room with 'unrm --purge --keep 0 --max-size {}' (the oldest deletions go \
             first; add --dry-run to see which), {no_archive}",
            size_at_most(held - deficit)
        )
    } else if held > 0 {
        format!(
            "the store holds only {} of deletions: free space on its filesystem, {no_archive}",
            human(held)
        )
    } else {
        format!("free space on the store's filesystem, {no_archive}")
    }
}

/// `bytes` rounded down to a size `unrm --max-size` takes (`812MiB`), so that a purge to it
/// frees at least as much as asked.
pub(super) fn size_at_most(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes / unit >= 10 {
            return format!("{}{name}", bytes / unit);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_advice_sizes_round_down_to_a_parseable_size() {
        for (bytes, text) in [
            (0, "0"),
            (10_239, "10239"),
            (10_240, "10KiB"),
            (812 * (1 << 20) + 700_000, "812MiB"),
            (9 * (1 << 30), "9216MiB"),
            (12 * (1 << 30) + 5, "12GiB"),
        ] {
            assert_eq!(size_at_most(bytes), text);
            let parsed = crate::config::parse_size(text).expect("unrm takes it");
            assert!(parsed.bytes_of(0).is_some_and(|b| b <= bytes), "{text}");
        }
    }
}
