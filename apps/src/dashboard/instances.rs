//! Which machine a viewer watches, when several instances share a Redis (`--redis`): the
//! dashboard's answer to [`crate::owner_routing`].
//!
//! Each instance measures its own machine; a viewer may reach any instance and picks which
//! machine to watch. `GET /dashboard/instances` lists every live instance; any dashboard request
//! with `?instance=<name>` naming another one goes there, the event stream included, so the charts, alerts, audit and control actions are that machine's. Control
//! actions keep their safety: the owner checks the same token, Host and Origin, and its own
//! audit log records them.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sse_core::cluster::Cluster;

use super::DashboardState;
use super::error::DashboardError;
use crate::forward;
use crate::owner_routing::{FindOwner, Owner};

/// The instance a request's query names with `instance=`, if any.
fn named_instance(query: Option<&str>) -> Option<String> {
    let query = query?;
    url_pairs(query)
        .find(|(name, _)| name == "instance")
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// The request with `instance=` taken out of its query, for the handlers (whose queries admit
/// only their own fields).
fn strip_instance(mut request: Request) -> Request {
    let uri = request.uri();
    let kept: Vec<(String, String)> =
        url_pairs(uri.query().unwrap_or_default()).filter(|(name, _)| name != "instance").collect();
    let mut path = uri.path().to_owned();
    if !kept.is_empty() {
        path.push('?');
        path.push_str(&form_urlencoded::Serializer::new(String::new()).extend_pairs(kept).finish());
    }
    if let Ok(uri) = path.parse() {
        *request.uri_mut() = uri;
    }
    request
}

fn url_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

impl FindOwner for DashboardState {
    fn cluster(&self) -> Option<&Cluster> {
        self.core.cluster()
    }

    /// The live instance `?instance=` names, unless it is this one; a name no live instance has
    /// is a 404.
    async fn owner(&self, cluster: &Cluster, uri: &Uri, _: &HeaderMap) -> Owner {
        let Some(wanted) = named_instance(uri.query()) else { return Owner::Here };
        if wanted == cluster.instance() {
            return Owner::Here;
        }
        match cluster.address_of(&wanted).await {
            Some(address) => Owner::At { address, what: "that machine's dashboard" },
            None => Owner::Answer(DashboardError::UnknownInstance(wanted).into_response()),
        }
    }
}

/// Middleware, inside the owner routing: a request answered here with several instances has
/// its `instance=` (this instance's name, or any name on a request another instance forwarded)
/// taken out. Alone, an instance leaves the query as it is, as it does a query that names none.
pub async fn without_instance(State(state): State<DashboardState>, request: Request) -> Request {
    let named = named_instance(request.uri().query()).is_some();
    if named && state.core.cluster().is_some() { strip_instance(request) } else { request }
}

/// `GET /dashboard/instances`: this instance's name and every live one's (an empty list when it
/// runs alone).
pub async fn instances(State(state): State<DashboardState>) -> Response {
    let Some(cluster) = state.core.cluster() else {
        return axum::Json(json!({ "this": null, "instances": [] })).into_response();
    };
    match cluster.instances().await {
        Ok(instances) => {
            let listed: Vec<_> = instances
                .into_iter()
                .map(|(instance, address)| json!({ "instance": instance, "address": address }))
                .collect();
            axum::Json(json!({ "this": cluster.instance(), "instances": listed })).into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "cannot list the instances (Redis)");
            forward::unreachable("the instance list")
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::too_many_lines)] // a test may script a whole scenario, step after step
    #[test]
    fn reads_the_instance_from_the_query() {
        assert_eq!(super::named_instance(Some("instance=abc&x=1")).as_deref(), Some("abc"));
        assert_eq!(super::named_instance(Some("limit=5")), None);
        assert_eq!(super::named_instance(Some("instance=")), None);
        assert_eq!(super::named_instance(None), None);
    }

    #[test]
    fn takes_the_instance_out_of_the_query_and_keeps_the_rest() {
        let strip = |uri: &str| {
            let request = axum::extract::Request::builder().uri(uri).body(Default::default());
            super::strip_instance(request.expect("a valid request")).uri().to_string()
        };
        assert_eq!(strip("/dashboard/audit?instance=a&limit=5"), "/dashboard/audit?limit=5");
        assert_eq!(strip("/dashboard/events?instance=a"), "/dashboard/events");
        assert_eq!(strip("/dashboard/audit?limit=5"), "/dashboard/audit?limit=5");
    }
}
