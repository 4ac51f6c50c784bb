//! Which model API the sampling client calls, looked up in the environment: the base URL
//! (`OPENAI_BASE_URL`, `ANTHROPIC_BASE_URL`) and the key (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`).
//!
//! A missing key is refused at start, with the variable to set, rather than at the first
//! request: the client would otherwise connect and then fail every call. An OpenAI-compatible
//! server other than OpenAI's may need none (a local one).

use super::llm::Provider;

/// The sampling client's model API (`--provider`).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ProviderName {
    /// OpenAI Chat Completions or any compatible server.
    Openai,
    /// Anthropic Messages.
    Anthropic,
}

impl ProviderName {
    /// The provider with its base URL and key from the environment (an empty variable is unset).
    pub fn from_env(self) -> Result<Provider, String> {
        let env = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
        match self {
            ProviderName::Openai => {
                let base = env("OPENAI_BASE_URL")
                    .unwrap_or_else(|| "https://api.openai.com/v1".to_owned());
                let key = env("OPENAI_API_KEY");
                if key.is_none() && base.contains("api.openai.com") {
                    return Err("no API key: set OPENAI_API_KEY (or OPENAI_BASE_URL for a local \
                                server that needs none)"
                        .to_owned());
                }
                Ok(Provider::OpenAi { base, key })
            }
            ProviderName::Anthropic => {
                let base = env("ANTHROPIC_BASE_URL")
                    .unwrap_or_else(|| "https://api.anthropic.com".to_owned());
                let key = env("ANTHROPIC_API_KEY");
                if key.is_none() {
                    return Err("no API key: set ANTHROPIC_API_KEY".to_owned());
                }
                Ok(Provider::Anthropic { base, key })
            }
        }
    }
}
