//! The exec app's flags (`sse-apps exec`, and every app on one port) and how they become an
//! [`ExecConfig`]: the run uids chosen outside the machine's subordinate ranges, the sandbox
//! prepared and probed, and what is weaker than the default said at start.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::sandbox::{Isolation, Limits};
use super::{ExecConfig, Sandbox};

/// The exec app's own flags.
#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// The sandbox runs start in. If it does not work here, exec refuses runs and says why; it
    /// never falls back to a weaker one by itself
    #[arg(help_heading = "Exec", long, value_enum, default_value_t = Isolation::Bubblewrap)]
    pub sandbox: Isolation,
    /// Run programs without a sandbox (same as --sandbox none; limits still apply; DANGEROUS)
    #[arg(help_heading = "Exec", long, conflicts_with = "sandbox")]
    pub no_sandbox: bool,
    /// Bound runs by rlimits only, where no cgroup can be made for them (a run's total memory,
    /// tmpfs included, is then unbounded)
    #[arg(help_heading = "Exec", long)]
    pub no_cgroup: bool,
    /// First uid of the runs' uids when the server is root (default: the first free stretch from
    /// 1000000000); must lie outside every range in /etc/subuid and /etc/subgid
    #[arg(help_heading = "Exec", long, value_name = "UID")]
    pub run_uid_base: Option<u32>,
    /// Wall-clock limit of a run: the default, and the most a request may ask (at most 30 min)
    #[arg(help_heading = "Exec", long, default_value = "30s", value_parser = parse_run_timeout)]
    pub run_timeout: Duration,
    /// Runs at once
    #[arg(help_heading = "Exec", long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_runs: u16,
    /// Output kept per run, in MiB (past it, output is counted as dropped)
    #[arg(help_heading = "Exec", long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub output_cap_mib: u64,
}

impl ExecArgs {
    /// The exec app's settings, its sandbox checked: a run uid range outside the machine's
    /// subordinate ranges, the cgroups, and a probe run. What fails is in `config.sandbox`
    /// (runs are refused with it); the caller decides whether that stops the start. An error
    /// here means no run uids could be chosen.
    pub fn config(self, data_dir: PathBuf) -> Result<ExecConfig, String> {
        let (uids, probe_uid) = super::run_uid_range(self.run_uid_base, u32::from(self.max_runs))?;
        let isolation = if self.no_sandbox { Isolation::None } else { self.sandbox };
        let probe_uid = rustix::process::getuid().is_root().then_some(probe_uid);
        let sandbox = Sandbox::prepare(isolation, self.no_cgroup, probe_uid);
        if let Ok(sandbox) = &sandbox {
            tracing::info!("exec: runs start in {}", sandbox.describe());
            self.warn_of_weaker_bounds(isolation);
        }
        let mut config = ExecConfig::new(data_dir, sandbox);
        config.run_uids = uids;
        config.timeout = self.run_timeout;
        config.max_timeout = self.run_timeout;
        config.max_concurrent = usize::from(self.max_runs);
        config.output_cap = self.output_cap_mib << 20;
        Ok(config)
    }

    /// Says at start what bounds the runs less than the defaults would: no cgroup, a server
    /// cgroup too small for `--max-runs` full runs, a sandbox weaker than bubblewrap.
    fn warn_of_weaker_bounds(&self, isolation: Isolation) {
        if self.no_cgroup {
            tracing::warn!(
                "exec runs have no cgroup (--no-cgroup): a run's whole memory \
                 (tmpfs included), processes and CPU are bounded per process only"
            );
        }
        let needed = u64::from(self.max_runs) * Limits::default().memory + (256 << 20);
        if let Some(above) = super::cgroup::inherited_memory_limit().filter(|l| *l < needed) {
            tracing::warn!(
                "this server's own cgroup allows {} MiB, less than {} runs of {} MiB \
                 and the server: runs are killed first when it fills (oom_score_adj 1000), \
                 but lower --max-runs or raise that limit",
                above >> 20,
                self.max_runs,
                Limits::default().memory >> 20
            );
        }
        if isolation != Isolation::Bubblewrap {
            tracing::warn!(
                "exec runs programs in a weaker sandbox than bubblewrap ({}), as \
                 asked",
                isolation.name()
            );
        }
    }
}

/// `--run-timeout`: a duration from 1 s to 30 min.
fn parse_run_timeout(text: &str) -> Result<Duration, String> {
    let timeout = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if timeout.is_zero() || timeout > Duration::from_secs(1800) {
        return Err("between 1s and 30m".to_owned());
    }
    Ok(timeout)
}
