//! The uids runs get when the server is root: a range outside every subordinate id range.
//!
//! `/etc/subuid` and `/etc/subgid` hand each local user a range of ids to map into the user
//! namespaces they make (`newuidmap`); `useradd` gives the second user 165536-231071, for example.
//! A run uid inside such a range would be one that user can become in a namespace of their own,
//! and so read and write a running run's files or signal it. Runs get the first free stretch at or
//! above [`DEFAULT_BASE`] (far past what `useradd` hands out), or the base given by
//! `--run-uid-base`, which must itself be free of every range.

use std::ops::RangeInclusive;

/// Where the search for free run uids starts, unless told otherwise: above `useradd`'s
/// `SUB_UID_MAX` (600,100,000) and below 2^31, past which some tools misread a uid.
pub const DEFAULT_BASE: u32 = 1_000_000_000;

/// The subordinate id ranges on this machine, from both files (a missing file has none).
pub fn subordinate_ranges() -> Vec<RangeInclusive<u64>> {
    ["/etc/subuid", "/etc/subgid"]
        .iter()
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .flat_map(|text| parse_ranges(&text))
        .collect()
}

/// `name:first:count` lines as ranges; lines that are not that shape are skipped.
pub fn parse_ranges(text: &str) -> Vec<RangeInclusive<u64>> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.trim().split(':');
            let (_, first, count) = (fields.next()?, fields.next()?, fields.next()?);
            let (first, count): (u64, u64) = (first.parse().ok()?, count.parse().ok()?);
            (count > 0).then(|| first..=first + count - 1)
        })
        .collect()
}

/// `count` consecutive uids, starting at `base` when `fixed`, else at the first free place at or
/// above it; an error says which range is in the way (a fixed base) or that none fits.
pub fn choose(
    base: u32,
    count: u32,
    fixed: bool,
    ranges: &[RangeInclusive<u64>],
) -> Result<RangeInclusive<u32>, String> {
    let mut first = u64::from(base);
    loop {
        let last = first + u64::from(count.max(1)) - 1;
        if last >= u64::from(i32::MAX as u32) {
            return Err(format!("no {count} run uids free of subordinate ranges from {base}"));
        }
        match ranges.iter().find(|r| *r.start() <= last && first <= *r.end()) {
            None => return Ok(first as u32..=last as u32),
            Some(taken) if fixed => {
                return Err(format!(
                    "run uids {first}-{last} overlap the subordinate id range {}-{} in \
                     /etc/subuid or /etc/subgid: pick a --run-uid-base outside every range",
                    taken.start(),
                    taken.end()
                ));
            }
            Some(taken) => first = taken.end() + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_and_bad_lines_skipped() {
        let text = "alice:100000:65536\nbob:165536:65536\n# comment\nbroken\ncarol:x:1\nzero:5:0\n";
        assert_eq!(parse_ranges(text), vec![100000..=165535, 165536..=231071]);
    }

    #[test]
    fn the_old_run_uids_lie_in_the_second_users_range_and_the_new_ones_do_not() {
        let ranges = parse_ranges("u1:100000:65536\nu2:165536:65536\n");
        assert!(ranges.iter().any(|r| r.contains(&200_000)), "the old base was inside");
        assert_eq!(choose(DEFAULT_BASE, 5, false, &ranges), Ok(DEFAULT_BASE..=DEFAULT_BASE + 4));
        assert!(
            choose(200_000, 5, true, &ranges)
                .expect_err("a fixed base in a range")
                .contains("165536-231071")
        );
    }

    #[test]
    fn a_range_in_the_way_is_stepped_over() {
        let ranges = parse_ranges("big:999999000:2000000\nnext:1001999000:10\n");
        assert_eq!(choose(DEFAULT_BASE, 4, false, &ranges), Ok(1_001_999_010..=1_001_999_013));
    }
}
