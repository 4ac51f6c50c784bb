//! POSTing an answer until it is known to have arrived.

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::event_source::is_retryable_status;
use super::retry_after::retry_after;
use super::{Backoff, ClientError};

/// How a POST ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostOutcome {
    /// The server took it (2xx).
    Accepted(StatusCode),
    /// The server already had it (409): an earlier attempt got through.
    AlreadyDelivered,
}

/// POSTs `body` as JSON, retrying on network errors, 5xx, 408 and 429 (honouring `Retry-After`)
/// with backoff, at most `attempts` times. Safe only because every answer carries its request id:
/// a retry can never double an effect, and a 409 means an earlier try arrived.
pub async fn post_json_with_retry(
    http: &reqwest::Client,
    url: &str,
    headers: &HeaderMap,
    body: &Value,
    attempts: u32,
) -> Result<PostOutcome, ClientError> {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    let mut tries = 0;
    loop {
        tries += 1;
        let sent = http.post(url).headers(headers.clone()).json(body).send().await;
        let wait = match sent {
            Ok(response) if response.status().is_success() => {
                return Ok(PostOutcome::Accepted(response.status()));
            }
            Ok(response) if response.status() == StatusCode::CONFLICT => {
                return Ok(PostOutcome::AlreadyDelivered);
            }
            Ok(response) if is_retryable_status(response.status()) && tries < attempts => {
                let hint = retry_after(response.headers());
                tracing::debug!(status = %response.status(), "answer POST will be retried");
                backoff.next_delay().max(hint.unwrap_or_default())
            }
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                return Err(ClientError::Refused { status, body });
            }
            Err(error) if tries < attempts => {
                tracing::debug!(%error, "answer POST failed; will retry");
                backoff.next_delay()
            }
            Err(error) => return Err(ClientError::Transport(error)),
        };
        tokio::time::sleep(wait).await;
    }
}
