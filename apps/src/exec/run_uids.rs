//! The uids runs get when the server is root: a range outside every subordinate id range.
//!
//! `/etc/subuid` and `/etc/subgid` hand each local user a range of ids to map into the user
//! namespaces they make (`newuidmap`); `useradd` gives the second user 165536-231071, for example.
//! A run uid inside such a range would be one that user can become in a namespace of their own,
//! and so read and write a running run's files or signal it. A run uid that is a real account
//! (in `/etc/passwd`, or a directory service through NSS) or group would hand the run that
//! account's files, and it that of the run. Runs get the first free stretch at or above
//! [`DEFAULT_BASE`] (far past what `useradd` hands out), or the base given by `--run-uid-base`,
//! which must itself be free of every range and account and at least [`LOWEST_BASE`].

use std::ops::RangeInclusive;

/// Where the search for free run uids starts, unless told otherwise: above `useradd`'s
/// `SUB_UID_MAX` (600,100,000) and below 2^31, past which some tools misread a uid.
pub const DEFAULT_BASE: u32 = 1_000_000_000;

/// Below this are the system's own and its people's ids (root is 0).
pub const LOWEST_BASE: u32 = 65_536;

/// Whether `id` is a user's or a group's, through NSS (`getpwuid`, `getgrgid`): local files
/// and any directory service the machine is joined to.
pub fn is_account(id: u32) -> bool {
    use nix::unistd::{Gid, Group, Uid, User};
    matches!(User::from_uid(Uid::from_raw(id)), Ok(Some(_)))
        || matches!(Group::from_gid(Gid::from_raw(id)), Ok(Some(_)))
}

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

/// `count` consecutive uids, none an account (`is_account`) nor in a range, starting at `base`
/// when `fixed`, else at the first free place at or above it; an error says what is in the way
/// (a fixed base) or that none fits.
pub fn choose(
    base: u32,
    count: u32,
    fixed: bool,
    ranges: &[RangeInclusive<u64>],
    is_account: impl Fn(u32) -> bool,
) -> Result<RangeInclusive<u32>, String> {
    if base < LOWEST_BASE {
        return Err(format!("run uids start at {LOWEST_BASE} at the lowest, not {base}"));
    }
    let mut first = u64::from(base);
    loop {
        let last = first + u64::from(count.max(1)) - 1;
        if last >= u64::from(i32::MAX as u32) {
            return Err(format!("no {count} free run uids from {base}"));
        }
        if let Some(taken) = ranges.iter().find(|r| *r.start() <= last && first <= *r.end()) {
            if fixed {
                return Err(format!(
                    "run uids {first}-{last} overlap the subordinate id range {}-{} in \
                     /etc/subuid or /etc/subgid: pick a --run-uid-base outside every range",
                    taken.start(),
                    taken.end()
                ));
            }
            first = taken.end() + 1;
            continue;
        }
        // Ids below 2^31 (checked above), so each fits a u32.
        match (first..=last).find(|id| is_account(*id as u32)) {
            None => return Ok(first as u32..=last as u32),
            Some(account) if fixed => {
                return Err(format!(
                    "run uid {account} is an existing user or group: pick a --run-uid-base past \
                     every account"
                ));
            }
            Some(account) => first = account + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::too_many_lines)] // a test may script a whole scenario, step after step
    use super::*;

    const NONE: fn(u32) -> bool = |_| false;

    #[test]
    fn ranges_are_read_and_bad_lines_skipped() {
        let text = "alice:100000:65536\nbob:165536:65536\n# comment\nbroken\ncarol:x:1\nzero:5:0\n";
        assert_eq!(parse_ranges(text), vec![100000..=165535, 165536..=231071]);
    }

    #[test]
    fn the_old_run_uids_lie_in_the_second_users_range_and_the_new_ones_do_not() {
        let ranges = parse_ranges("u1:100000:65536\nu2:165536:65536\n");
        assert!(ranges.iter().any(|r| r.contains(&200_000)), "the old base was inside");
        assert_eq!(
            choose(DEFAULT_BASE, 5, false, &ranges, NONE),
            Ok(DEFAULT_BASE..=DEFAULT_BASE + 4)
        );
        let refused = choose(200_000, 5, true, &ranges, NONE).expect_err("a base in a range");
        assert!(refused.contains("165536-231071"), "{refused}");
    }

    #[test]
    fn a_range_in_the_way_is_stepped_over() {
        let ranges = parse_ranges("big:999999000:2000000\nnext:1001999000:10\n");
        assert_eq!(
            choose(DEFAULT_BASE, 4, false, &ranges, NONE),
            Ok(1_001_999_010..=1_001_999_013)
        );
    }

    #[test]
    fn accounts_and_low_ids_are_never_run_uids() {
        // A directory service's user at DEFAULT_BASE + 2: the stretch starts after it.
        let account = |id| id == DEFAULT_BASE + 2;
        assert_eq!(
            choose(DEFAULT_BASE, 4, false, &[], account),
            Ok(DEFAULT_BASE + 3..=DEFAULT_BASE + 6)
        );
        let refused = choose(DEFAULT_BASE, 4, true, &[], account).expect_err("an account");
        assert!(refused.contains("existing user or group"), "{refused}");
        assert!(choose(0, 4, true, &[], NONE).is_err(), "root");
        assert!(choose(1000, 4, true, &[], NONE).is_err(), "people's ids");
        // This machine's own accounts: root and nobody are accounts, a far-off id is not.
        assert!(is_account(0) && is_account(65534));
        assert!(!is_account(DEFAULT_BASE + 999_999));
    }
}
