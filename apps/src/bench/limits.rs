//! The open-file limit: every connection is a descriptor on each side.

use anyhow::Context;
use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Makes sure this process (and the servers it starts after, which inherit the limit) may open
/// `connections` sockets plus some to spare, raising the soft limit up to the hard one if needed,
/// and the hard one too where this process may (root, or `CAP_SYS_RESOURCE`).
pub fn ensure_open_files(connections: usize) -> anyhow::Result<()> {
    let needed = connections as u64 + 256;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("reading the open-file limit")?;
    if soft >= needed {
        return Ok(());
    }
    let too_low = || {
        anyhow::anyhow!(
            "{connections} connections need {needed} open files, but this shell allows {soft} \
             (at most {hard}): raise it (ulimit -n {needed}, or LimitNOFILE= under systemd) or \
             use fewer connections"
        )
    };
    setrlimit(Resource::RLIMIT_NOFILE, needed, hard.max(needed)).map_err(|_| too_low())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_few_connections_fit_and_too_many_are_refused_with_the_fix() {
        super::ensure_open_files(10).expect("ten sockets fit");
        let error = super::ensure_open_files(usize::MAX / 2).expect_err("cannot fit");
        assert!(error.to_string().contains("ulimit -n"), "{error}");
    }
}
