//! The flags of the server subcommands that serve one app or learning program, beside the
//! common ones ([`ServerArgs`]).
//!
//! No doc comments on these structs: a subcommand's one-line help is its variant's in
//! `cli.rs`, and a struct's own would take its place.

use std::time::Duration;

use clap::Args;

use super::server_args::{Program, SAMPLING, ServerArgs};
use crate::dashboard::flags::DashboardArgs;
use crate::exec::flags::ExecArgs;

// `sse-apps chat`.
#[derive(Debug, Args)]
pub(crate) struct ChatArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

// `sse-apps exec`.
#[derive(Debug, Args)]
pub(crate) struct ExecServerArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub exec: ExecArgs,
}

// `sse-apps dashboard`.
#[derive(Debug, Args)]
pub(crate) struct DashboardServerArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub dashboard: DashboardArgs,
}

// `sse-apps sampling`.
#[derive(Debug, Args)]
pub(crate) struct SamplingArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// How long a sampling request waits for its answer (long enough for a person)
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub deadline: Duration,
    /// Serve without any token (only for trying it out on a machine you alone use)
    #[arg(long, conflicts_with_all = ["token", "token_file"])]
    pub no_auth: bool,
}

impl SamplingArgs {
    /// The sampling server, open with `--no-auth` (which beyond loopback needs `--allow-host`).
    pub fn program(&self) -> anyhow::Result<Program> {
        if !self.no_auth {
            return Ok(SAMPLING);
        }
        let exposed = self.server.addr.is_some_and(|a| !a.ip().is_loopback());
        anyhow::ensure!(
            !(exposed && self.server.allow_hosts.is_empty()),
            "--no-auth beyond loopback needs --allow-host: without a token, only the Host check \
             stops DNS rebinding"
        );
        tracing::warn!("--no-auth: anyone who can reach this port can use the sampling endpoints");
        Ok(Program { changes_machine: false, ..SAMPLING })
    }
}

// `sse-apps basic-server`.
#[derive(Debug, Args)]
pub(crate) struct BasicServerArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Events per stream; 0 streams forever
    #[arg(long, default_value_t = 10)]
    pub count: u64,
    /// Pause between events
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
}

// `sse-apps bidi-server`.
#[derive(Debug, Args)]
pub(crate) struct BidiServerArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// How long /trigger waits for an answer
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}
