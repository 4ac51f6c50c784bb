//! `requestState` for multi round-trip requests (MRTR): what the next round of a tool call needs,
//! handed to the client with an `InputRequiredResult` and echoed back on the retry.
//!
//! The spec has the server treat the echoed state as attacker-controlled input. Ours decides what
//! the retry does (which answers it expects, the summary length the user chose), so it is sealed
//! with HMAC-SHA256 and carries what the spec's replay rules name, each checked on the way back:
//!
//! * the **principal**: a digest of the bearer credential the call came with, so one caller's
//!   state is refused from another;
//! * a short **expiry**: as long as a sampling request waits for its answer (`--deadline`), since a
//!   person may be reading and approving in between;
//! * the **request**: the method, the tool's name and a digest of its arguments, so state from one
//!   call cannot finish another.
//!
//! It is signed, not encrypted: it holds nothing the client did not send or was not asked. It is
//! not single-use either (the spec's note): replaying a round only asks the client again.
//!
//! **The key.** Any instance holding the same key verifies the state, so the retry may land on
//! another instance than the first round and nothing is shared but the key. It is derived from the
//! server's token ([`StateKey::derived`]), which every instance behind one address is given; a
//! server without a token draws a random key when it starts ([`StateKey::random`]), and its state
//! is good on that process only.
//!
//! Wire form: `base64url(payload JSON) "." base64url(HMAC-SHA256(key, payload JSON))`.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The longest `requestState` accepted back (ours are a few hundred bytes); longer is refused
/// before any work is spent on it.
pub const MAX_STATE_BYTES: usize = 4096;

/// The key that seals `requestState`. Cheap to clone; never printed.
#[derive(Clone)]
pub struct StateKey(Arc<[u8; 32]>);

impl fmt::Debug for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StateKey(<redacted>)")
    }
}

impl StateKey {
    /// A random key: state sealed with it verifies on this process only.
    pub fn random() -> StateKey {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        StateKey(Arc::new(key))
    }

    /// The key derived from a secret every instance shares (the server's token), so that a
    /// round sealed on one instance opens on any other. HMAC with a purpose label keeps it
    /// unrelated to the token's other uses (its cookie).
    pub fn derived(secret: &str) -> StateKey {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(b"sse-apps sampling requestState key");
        StateKey(Arc::new(mac.finalize().into_bytes().into()))
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(self.0.as_slice())
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"))
    }

    /// `state` sealed for the wire.
    pub fn seal(&self, state: &RoundState) -> String {
        let payload = serde_json::to_vec(state).unwrap_or_default();
        let mut mac = self.mac();
        mac.update(&payload);
        let tag = mac.finalize().into_bytes();
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(tag))
    }

    /// The state in `sealed`, if it verifies and belongs to `request` at `now_ms`.
    pub fn open(
        &self,
        sealed: &str,
        now_ms: u64,
        request: &Binding,
    ) -> Result<RoundState, StateError> {
        if sealed.len() > MAX_STATE_BYTES {
            return Err(StateError::TooLarge);
        }
        let (payload, tag) = sealed.split_once('.').ok_or(StateError::Tampered)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| StateError::Tampered)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| StateError::Tampered)?;
        let mut mac = self.mac();
        mac.update(&payload);
        // Constant-time: how far a forged tag matches must not show in the answer's timing.
        mac.verify_slice(&tag).map_err(|_| StateError::Tampered)?;
        let state: RoundState =
            serde_json::from_slice(&payload).map_err(|_| StateError::Tampered)?;
        if now_ms > state.expires_at {
            return Err(StateError::Expired);
        }
        if state.principal != request.principal {
            return Err(StateError::OtherPrincipal);
        }
        if state.method != request.method
            || state.tool != request.tool
            || state.arguments != request.arguments
        {
            return Err(StateError::OtherRequest);
        }
        Ok(state)
    }
}

/// What a round's state is bound to: who called, and which call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// [`principal`] of the caller.
    pub principal: String,
    /// The JSON-RPC method (`tools/call`).
    pub method: String,
    /// The tool's name.
    pub tool: String,
    /// [`digest`] of the call's arguments.
    pub arguments: String,
}

/// What the next round of a call needs, sealed into `requestState`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundState {
    /// The caller ([`Binding::principal`]).
    pub principal: String,
    /// Ms since the epoch after which the state is refused.
    pub expires_at: u64,
    /// [`Binding::method`].
    pub method: String,
    /// [`Binding::tool`].
    pub tool: String,
    /// [`Binding::arguments`].
    pub arguments: String,
    /// The `inputRequests` keys this round asked, which the retry must answer.
    pub asked: Vec<String>,
    /// The summary length the user already chose, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<String>,
    /// The call's id, the same in every round (for the console).
    pub call: String,
    /// Which question of the call this round asked: 1 for the first.
    pub round: u32,
    /// Ms since the epoch when this round was asked.
    pub asked_at: u64,
    /// The instance that asked it.
    pub asked_on: String,
}

/// Why a `requestState` is refused. Each is a JSON-RPC error to the caller, never a new round:
/// state that does not verify says nothing the server may act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Longer than [`MAX_STATE_BYTES`].
    #[error("requestState is longer than {MAX_STATE_BYTES} bytes")]
    TooLarge,
    /// Not in our form, or its HMAC does not verify.
    #[error("requestState does not verify: it was changed, or sealed by another server")]
    Tampered,
    /// Past its expiry.
    #[error("requestState has expired: call the tool again from the start")]
    Expired,
    /// Sealed for another caller.
    #[error("requestState belongs to another caller")]
    OtherPrincipal,
    /// Sealed for another method, tool or arguments.
    #[error("requestState belongs to another request (method, tool or arguments differ)")]
    OtherRequest,
}

impl StateError {
    /// A short code for the error's `data.reason`.
    pub fn reason(self) -> &'static str {
        match self {
            StateError::TooLarge => "state_too_large",
            StateError::Tampered => "state_tampered",
            StateError::Expired => "state_expired",
            StateError::OtherPrincipal => "state_other_principal",
            StateError::OtherRequest => "state_other_request",
        }
    }
}

/// Who is calling, as far as this server can tell: a digest of the bearer credential (so the
/// credential itself is never in the state), or `anonymous` for a call without one (an open
/// server, or a browser holding the token's cookie).
pub fn principal(headers: &HeaderMap) -> String {
    match sse_core::edge::auth::bearer(headers) {
        Some(token) => format!("bearer:{}", &digest_bytes(token.as_bytes())[..32]),
        None => "anonymous".to_owned(),
    }
}

/// A SHA-256 digest of a JSON value (of its text, whose object keys serde_json keeps sorted),
/// as hex: the same arguments give the same digest whatever order the client wrote them in.
pub fn digest(value: &Value) -> String {
    digest_bytes(value.to_string().as_bytes())
}

fn digest_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding() -> Binding {
        Binding {
            principal: "anonymous".into(),
            method: "tools/call".into(),
            tool: "summarize".into(),
            arguments: digest(&serde_json::json!({"text": "t"})),
        }
    }

    fn state(expires_at: u64) -> RoundState {
        let b = binding();
        RoundState {
            principal: b.principal,
            expires_at,
            method: b.method,
            tool: b.tool,
            arguments: b.arguments,
            asked: vec!["sample".into()],
            length: None,
            call: "c1".into(),
            round: 1,
            asked_at: 0,
            asked_on: "a".into(),
        }
    }

    #[test]
    fn a_sealed_state_opens_with_the_same_key_only() {
        let key = StateKey::derived("secret");
        let sealed = key.seal(&state(2_000));
        assert_eq!(key.open(&sealed, 1_000, &binding()), Ok(state(2_000)));
        let same = StateKey::derived("secret");
        assert!(same.open(&sealed, 1_000, &binding()).is_ok(), "another instance, same token");
        let other = StateKey::derived("other");
        assert_eq!(other.open(&sealed, 1_000, &binding()), Err(StateError::Tampered));
        assert_eq!(key.open(&sealed, 3_000, &binding()), Err(StateError::Expired));
    }

    #[test]
    fn argument_order_does_not_change_the_digest() {
        let a: Value = serde_json::from_str(r#"{"text":"t","length":"short"}"#).unwrap_or_default();
        let b: Value = serde_json::from_str(r#"{"length":"short","text":"t"}"#).unwrap_or_default();
        assert_eq!(digest(&a), digest(&b));
    }
}
