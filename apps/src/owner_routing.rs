//! Answering a request where the thing it names lives: one middleware that asks the app which
//! instance owns what a request names, then lets this instance answer it or forwards it there.
//!
//! # When it applies
//!
//! Only when several instances share a Redis (`--redis`) and a load balancer without sticky
//! sessions may send any request to any of them. Some things cannot move between processes: an
//! exec run is a child process of the instance that started it (and a workflow starts its runs
//! there), an MCP session's stream and the callers waiting on its answers are in the process the
//! client first reached, a dashboard measures the machine it runs on. A request for such a thing
//! that reaches another instance is sent on over HTTP ([`crate::forward`]) and its answer, a
//! stream included, comes back byte for byte. Alone, an instance answers everything itself and
//! this layer does nothing.
//!
//! # When it does not
//!
//! The bidirectional learning server (bidi) and the core's `/rpc` endpoints reach another
//! instance differently: a request to a client connected elsewhere and that client's answer
//! travel as Redis messages inside the core's correlator (`sse_core::cluster`). There the
//! thing that lives in one place is a waiting caller, and the message finds it whichever
//! instance the answer reached; nothing about the HTTP request needs to move. Here the whole
//! request must be served by the owner (it reads a run's pipes, a machine's `/proc`, a session's
//! replay buffer), so the request itself travels.
//!
//! # How an app plugs in
//!
//! An app's state implements [`FindOwner`]: given a request, which instance owns what it names
//! ([`Owner`]). Its router adds `from_fn_with_state(state, owner_routing::route::<State>)` as a
//! route layer. A request another instance already forwarded is always answered here, so a
//! request is forwarded at most once, whatever two instances believe.

use std::future::Future;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Uri};
use axum::middleware::Next;
use axum::response::Response;
use sse_core::cluster::Cluster;

use crate::forward;

/// Where a request is answered.
#[derive(Debug)]
pub enum Owner {
    /// Here: this instance holds what the request names, it names nothing that lives in one
    /// place, or no instance claims it (so this one answers, with a 404 if it has nothing).
    Here,
    /// At another instance's address (`http://HOST:PORT`); `what` names the thing in the 503
    /// answered if that instance cannot be reached (`"this run"`).
    At {
        /// The owner's address.
        address: String,
        /// What the request is for, as a person would say it.
        what: &'static str,
    },
    /// Nowhere: this answer instead (an instance no longer live, Redis not answering).
    Answer(Response),
}

impl Owner {
    /// The live instance called `instance`, or the 503 that says it cannot be reached.
    pub async fn instance(cluster: &Cluster, instance: &str, what: &'static str) -> Owner {
        match cluster.address_of(instance).await {
            Some(address) => Owner::At { address, what },
            None => Owner::Answer(forward::unreachable(what)),
        }
    }
}

/// An app's "who owns this": what the owner-routing layer asks of its state.
pub trait FindOwner: Clone + Send + Sync + 'static {
    /// The cluster this instance is one of, if it is one of several.
    fn cluster(&self) -> Option<&Cluster>;

    /// Which instance owns what a request for `uri` with `headers` names. Asked only with a
    /// cluster, and only of requests no other instance forwarded. (Not given the request: its
    /// body cannot be shared across the awaits of a lookup.)
    fn owner(
        &self,
        cluster: &Cluster,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> impl Future<Output = Owner> + Send;
}

/// Middleware: the request answered here, or forwarded to the instance that owns what it names.
pub async fn route<S: FindOwner>(State(state): State<S>, request: Request, next: Next) -> Response {
    let Some(cluster) = state.cluster() else { return next.run(request).await };
    if forward::is_forwarded(request.headers()) {
        return next.run(request).await;
    }
    match state.owner(cluster, request.uri(), request.headers()).await {
        Owner::Here => next.run(request).await,
        Owner::At { address, what } => forward::forward(&address, what, request).await,
        Owner::Answer(answer) => answer,
    }
}
