//! The command line: every app on one port by default, or one program by name.
//!
//! This file holds the clap types of the commands and the dispatch: one small function per
//! command, which turns its flags into its settings and starts it. The flag groups live beside
//! it in `cli/` (the flags every server takes, each command's own, the bench's), each app's
//! flags-to-settings in that app (`exec::flags`, `dashboard::flags`,
//! `sampling::client::provider`), and every server is assembled by [`crate::server::build`],
//! the same function the tests use.

mod app_args;
mod bench_args;
mod client_args;
mod logging;
mod server_args;
mod token_warning;

use std::process::ExitCode;

use axum::Router;
use clap::{Parser, Subcommand};
use sse_core::Core;
use tokio_util::sync::CancellationToken;

use self::app_args::{
    BasicServerArgs, BidiServerArgs, ChatArgs, DashboardServerArgs, ExecServerArgs, SamplingArgs,
};
use self::bench_args::{
    BenchFloodHolderArgs, BenchLimitArgs, BenchScenario, BenchTargetArgs, BenchWsRoundtripArgs,
};
use self::client_args::{BasicClientArgs, BidiClientArgs, SamplingClientArgs, TriggerArgs};
use self::logging::LogFormat;
use self::server_args::{Program, ServerArgs};
use crate::dashboard::flags::DashboardArgs;
use crate::exec::flags::ExecArgs;
use crate::{AllApps, basic, bidi, chat, server, trigger};

/// Real-time apps on one pattern: SSE down, HTTP POST up, matched by a shared core.
///
/// With no subcommand, serves every app on one port with an index page.
#[derive(Debug, Parser)]
#[command(name = "sse-apps", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// How log lines are written to stderr: text for people, json (one object a line) for log
    /// collectors
    #[arg(long, global = true, value_enum, env = "SSE_APPS_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    dashboard: DashboardArgs,
    #[command(flatten)]
    exec: ExecArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The chat room alone (at /chat): rooms, presence, typing, persistent history
    Chat(ChatArgs),
    /// Remote execution alone (at /exec): sandboxed runs, streamed output, stdin and signals
    Exec(ExecServerArgs),
    /// MCP sampling alone (at /sampling): tools answered by the connected clients' models
    Sampling(SamplingArgs),
    /// Answer an MCP server's sampling requests with a real model (OpenAI-compatible or Anthropic)
    SamplingClient(SamplingClientArgs),
    /// The live system dashboard alone (at /dashboard): metrics, alerts, control actions
    Dashboard(DashboardServerArgs),
    /// Stream numbered events (GET /events) and serve the browser test page (GET /)
    BasicServer(BasicServerArgs),
    /// Print every event of a stream, reconnecting and resuming with Last-Event-ID
    BasicClient(BasicClientArgs),
    /// Send requests to clients over SSE and take their answers by POST
    BidiServer(BidiServerArgs),
    /// Answer a bidirectional server's requests
    BidiClient(BidiClientArgs),
    /// Run a load scenario against a server this command starts (pinned to one core)
    Bench {
        #[command(subcommand)]
        scenario: BenchScenario,
    },
    /// A server for `bench` to measure (started by it; publishes when told on stdin)
    #[command(hide = true)]
    BenchTarget(BenchTargetArgs),
    /// Holds idle connections for `bench flood` (started by it) until a signal or the bench ends
    #[command(hide = true)]
    BenchFloodHolder(BenchFloodHolderArgs),
    /// The baselines `bench roundtrip` and `bench sampling` measure beside ours (started by them)
    #[command(hide = true)]
    BenchLimit(BenchLimitArgs),
    /// The WebSocket round trip `bench roundtrip --targets ws` measures (started by it)
    #[command(hide = true)]
    BenchWsRoundtrip(BenchWsRoundtripArgs),
    /// Send requests through /trigger and report round-trip times
    Trigger(TriggerArgs),
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    // Whatever descriptors this process inherited without close-on-exec (a parent's open file,
    // a socket) would pass on to every program it starts, exec's sandboxed runs among them, which
    // could then read or write them. Everything this process opens itself is close-on-exec
    // already. Done first, while no other thread exists; stdin, stdout and stderr stay.
    close_fds::set_fds_cloexec(3, &[]);
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    token_warning::warn_if_token_on_command_line(&matches);
    let cli =
        <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // A bench reports its own findings; its clients' progress at info would bury them.
    let bench = matches!(cli.command, Some(Command::Bench { .. }));
    logging::init(cli.log_format, if bench { "warn" } else { "info" });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli)).unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    })
}

/// A bench run, unless a signal comes first: then the run's future is dropped, which stops the
/// servers (and nginx) it started, and the run ends with code 130, reporting nothing it
/// measured. A bench that kept going would report the load it had left as if it had carried it.
async fn interruptible(
    run: impl Future<Output = anyhow::Result<ExitCode>>,
    shutdown: &CancellationToken,
) -> anyhow::Result<ExitCode> {
    tokio::select! {
        done = run => done,
        () = shutdown.cancelled() => {
            eprintln!("error: interrupted: the run was stopped before it ended");
            // The shell's code for a command Ctrl-C ended (128 + SIGINT's 2), for SIGTERM too.
            Ok(ExitCode::from(130))
        }
    }
}

/// Runs the command until it ends or a signal cancels `shutdown`.
async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let shutdown = CancellationToken::new();
    server::cancel_on_signals(shutdown.clone());
    // Started by `bench`: answer its `usage` questions, and hand other commands to the target.
    let bench_commands = crate::bench::control::serve_if_asked();
    let Some(command) = cli.command else {
        return all_apps(cli.server, cli.dashboard, cli.exec, shutdown).await;
    };
    let done = match command {
        Command::Chat(args) => chat(args, shutdown).await,
        Command::Exec(args) => exec(args, shutdown).await,
        Command::Sampling(args) => sampling(args, shutdown).await,
        Command::SamplingClient(args) => return sampling_client(args, shutdown).await,
        Command::Dashboard(args) => dashboard(args, shutdown).await,
        Command::BasicServer(args) => basic_server(args, shutdown).await,
        Command::BasicClient(args) => return Ok(basic_client(args, shutdown).await),
        Command::BidiServer(args) => bidi_server(args, shutdown).await,
        Command::BidiClient(args) => bidi_client(args, shutdown).await,
        Command::Bench { scenario } => return interruptible(scenario.run(), &shutdown).await,
        Command::BenchTarget(args) => {
            // Run by hand: nobody will order events, but the server still serves streams.
            let commands =
                bench_commands.unwrap_or_else(|| tokio::sync::mpsc::unbounded_channel().1);
            args.run(commands, shutdown).await
        }
        Command::BenchFloodHolder(args) => args.run(shutdown).await,
        Command::BenchLimit(args) => args.run(shutdown).await,
        Command::BenchWsRoundtrip(args) => args.run(shutdown).await,
        Command::Trigger(args) => return trigger(args, shutdown).await,
    };
    done.map(|()| ExitCode::SUCCESS)
}

/// Builds the server `program` runs from its flags and the routes `app` makes, says where it
/// listens, and serves until `shutdown`.
async fn serve_program(
    args: ServerArgs,
    program: Program,
    shutdown: CancellationToken,
    app: impl FnOnce(Core) -> anyhow::Result<Router>,
) -> anyhow::Result<()> {
    let server = server::build(args.config(&program)?, app)?;
    server.announce(program.what, program.home);
    server.serve(shutdown).await
}

/// `sse-apps`: every app on one port. Exec refusing runs here does not stop the others.
async fn all_apps(
    server: ServerArgs,
    dashboard: DashboardArgs,
    exec: ExecArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<ExitCode> {
    let data_dir = server.data_dir();
    let token = server::given_token(server.token.as_deref(), server.token_file.as_deref())?;
    let config = AllApps {
        dashboard: dashboard.config(data_dir.clone()),
        exec: exec.config(data_dir.clone()).map_err(anyhow::Error::msg)?,
        chat: chat::ChatConfig::new(data_dir),
        sampling: crate::sampling::SamplingConfig::sharing(token.as_deref()),
    };
    if let Err(why) = &config.exec.sandbox {
        tracing::warn!("exec refuses runs: {why}");
    }
    let app = move |core: Core| crate::all_apps(core, config);
    serve_program(server, server_args::ALL_APPS, shutdown, app).await?;
    Ok(ExitCode::SUCCESS)
}

/// `sse-apps exec`: stops at once when runs could not be sandboxed here.
async fn exec(args: ExecServerArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = args.exec.config(args.server.data_dir()).map_err(anyhow::Error::msg)?;
    if let Err(why) = &config.sandbox {
        anyhow::bail!("exec cannot run programs safely here: {why}");
    }
    let app = move |core: Core| Ok(crate::exec::router(core, config)?);
    serve_program(args.server, server_args::EXEC, shutdown, app).await
}

/// `sse-apps sampling`.
async fn sampling(args: SamplingArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let program = args.program()?;
    // Instances given the same token open each other's 2026-07-28 `requestState`.
    let token =
        server::given_token(args.server.token.as_deref(), args.server.token_file.as_deref())?;
    let shared = crate::sampling::SamplingConfig::sharing(token.as_deref());
    let config = crate::sampling::SamplingConfig { deadline: args.deadline, ..shared };
    let app = move |core: Core| Ok(crate::sampling::router(core, config));
    serve_program(args.server, program, shutdown, app).await
}

/// `sse-apps sampling-client`.
async fn sampling_client(
    args: SamplingClientArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<ExitCode> {
    use crate::sampling::client::call::{self, Action};
    let action = args.action.clone();
    let config = args.config()?;
    let Some(Action::Call { tool, args }) = action else {
        crate::sampling::client::run(config, shutdown).await;
        return Ok(ExitCode::SUCCESS);
    };
    let result = call::call(&config, &tool, call::arguments(&args)).await?;
    println!("{}", crate::sampling::tools::result_text(&result).unwrap_or_default());
    // A tool's own failure (its text says why) is not a success for scripts.
    Ok(if result["isError"] == true { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// `sse-apps dashboard`.
async fn dashboard(args: DashboardServerArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = args.dashboard.config(args.server.data_dir());
    let app = move |core: Core| Ok(crate::dashboard::router(core, config)?);
    serve_program(args.server, server_args::DASHBOARD, shutdown, app).await
}

/// `sse-apps chat`.
async fn chat(args: ChatArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = chat::ChatConfig::new(args.server.data_dir());
    let app = move |core: Core| Ok(chat::router(core, &config)?);
    serve_program(args.server, server_args::CHAT, shutdown, app).await
}

/// `sse-apps basic-server`.
async fn basic_server(args: BasicServerArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = basic::BasicConfig { count: args.count, interval: args.interval };
    let app = move |core: Core| Ok(crate::basic_server(core, config));
    serve_program(args.server, server_args::BASIC_SERVER, shutdown, app).await
}

/// `sse-apps basic-client`: fails when the stream could not be read to its end.
async fn basic_client(args: BasicClientArgs, shutdown: CancellationToken) -> ExitCode {
    let BasicClientArgs { url, last_event_id, token } = args;
    let clean = basic::client::run(&url, last_event_id.as_deref(), token.as_deref(), shutdown);
    if clean.await { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// `sse-apps bidi-server`.
async fn bidi_server(args: BidiServerArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = bidi::BidiConfig { timeout: args.timeout };
    let app = move |core: Core| Ok(crate::bidi_server(core, config));
    serve_program(args.server, server_args::BIDI_SERVER, shutdown, app).await
}

/// `sse-apps bidi-client`: a random client id when none is given.
async fn bidi_client(args: BidiClientArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let BidiClientArgs { server, client_id, protocol, work, token } = args;
    let client_id = client_id
        .unwrap_or_else(|| format!("client_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    println!("answering requests from {server} as client {client_id:?} ({protocol:?} protocol)");
    let config = bidi::client::ClientConfig { server, client_id, protocol, work, token };
    bidi::client::run(config, shutdown).await;
    Ok(())
}

/// `sse-apps trigger`: fails when a request failed; 130 when interrupted.
async fn trigger(args: TriggerArgs, shutdown: CancellationToken) -> anyhow::Result<ExitCode> {
    let TriggerArgs { server, client_id, message, count, concurrency, token } = args;
    let config = trigger::TriggerConfig { server, client_id, message, count, concurrency, token };
    // Ctrl-C drops the requests in flight: their connections close, and the server cancels what
    // it asked the client for (a native client hears of it).
    let summary = tokio::select! {
        summary = trigger::run(config) => summary,
        () = shutdown.cancelled() => {
            eprintln!("interrupted: the requests in flight were abandoned");
            return Ok(ExitCode::from(130));
        }
    };
    trigger::print_summary(&summary);
    Ok(if summary.errors == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
