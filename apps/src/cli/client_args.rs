//! The flags of the client subcommands: the learning clients, `trigger`, and the sampling
//! client (whose flags become its [`ClientConfig`] here).
//!
//! No doc comments on these structs: a subcommand's one-line help is its variant's in
//! `cli.rs`, and a struct's own would take its place.

use std::time::Duration;

use clap::Args;

use crate::bidi::client::Protocol;
use crate::sampling::client::approval::Approve;
use crate::sampling::client::provider::ProviderName;
use crate::sampling::client::{ClientConfig, Transport};

// `sse-apps basic-client`.
#[derive(Debug, Args)]
pub(crate) struct BasicClientArgs {
    /// The stream's URL
    #[arg(long, default_value = "http://127.0.0.1:8081/events")]
    pub url: String,
    /// Start as if this id had already been received
    #[arg(long)]
    pub last_event_id: Option<String>,
    /// Send this token as `Authorization: Bearer` (for servers started with --token)
    #[arg(long, env = "SSE_APPS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

// `sse-apps bidi-client`.
#[derive(Debug, Args)]
pub(crate) struct BidiClientArgs {
    /// The server's base URL
    #[arg(long, default_value = "http://127.0.0.1:8082")]
    pub server: String,
    /// This client's id [default: a random one]
    #[arg(long)]
    pub client_id: Option<String>,
    /// Wire format: the Go original's (compat) or the core's JSON-RPC (native)
    #[arg(long, value_enum, default_value_t = Protocol::Compat)]
    pub protocol: Protocol,
    /// Simulated work per request
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub work: Duration,
    /// Send this token as `Authorization: Bearer` (for servers started with --token)
    #[arg(long, env = "SSE_APPS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

// `sse-apps trigger`.
#[derive(Debug, Args)]
pub(crate) struct TriggerArgs {
    /// The server's base URL
    #[arg(long, default_value = "http://127.0.0.1:8082")]
    pub server: String,
    /// The client to ask
    #[arg(long)]
    pub client_id: String,
    /// The message to analyze
    #[arg(long)]
    pub message: String,
    /// How many requests in all
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// How many at once
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Send this token as `Authorization: Bearer` (for servers started with --token)
    #[arg(long, env = "SSE_APPS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

// `sse-apps sampling-client`.
#[derive(Debug, Args)]
pub(crate) struct SamplingClientArgs {
    /// The server's MCP endpoint (`…/sampling/sse` with --transport sse)
    #[arg(long, default_value = "http://127.0.0.1:8080/sampling/mcp")]
    server: String,
    /// Streamable HTTP, or the 2024-11-05 HTTP+SSE transport
    #[arg(long, value_enum, default_value_t = Transport::Streamable)]
    transport: Transport,
    /// Send this token as `Authorization: Bearer`
    #[arg(long, env = "SSE_APPS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Which API to call: OpenAI-compatible (OPENAI_API_KEY, OPENAI_BASE_URL) or Anthropic
    /// (ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL)
    #[arg(long, value_enum, default_value_t = ProviderName::Openai)]
    provider: ProviderName,
    /// The model when the request's hints name none of --models [default: gpt-4o-mini, or
    /// claude-haiku-4-5]
    #[arg(long)]
    model: Option<String>,
    /// Models the request's hints may pick (comma-separated)
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Ask a person at this terminal before and after each model call, or answer unattended
    #[arg(long, value_enum, default_value_t = ApproveFlag::Ask)]
    approve: ApproveFlag,
    /// Most requests answered a minute
    #[arg(long, default_value_t = 30)]
    per_minute: u32,
    /// How long one model call may take
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Without one, answer the server's sampling requests until stopped
    #[command(subcommand)]
    pub action: Option<crate::sampling::client::call::Action>,
}

/// Who approves sampling requests.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ApproveFlag {
    /// A person at this terminal.
    Ask,
    /// Nobody: answer unattended.
    Auto,
}

impl SamplingClientArgs {
    /// The client's settings: the provider and its key from the environment, and who approves
    /// (a person needs stdin to be a terminal).
    pub fn config(self) -> anyhow::Result<ClientConfig> {
        let provider = self.provider.from_env().map_err(anyhow::Error::msg)?;
        let auto = matches!(self.approve, ApproveFlag::Auto);
        let approve = Approve::from_flag(auto).map_err(anyhow::Error::msg)?;
        Ok(ClientConfig {
            server: self.server,
            transport: self.transport,
            token: self.token,
            default_model: self.model.unwrap_or_else(|| provider.default_model().to_owned()),
            provider,
            models: self.models,
            approve,
            per_minute: self.per_minute,
            call_timeout: self.timeout,
        })
    }
}
