//! Every POST endpoint of the apps (and the Go-compatible `/trigger` and `/response`) on
//! arbitrary bodies: never a 500, and every refusal is a JSON error. The first byte picks the
//! endpoint and whether the body is declared JSON.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::Router;
use axum::extract::ConnectInfo;
use libfuzzer_sys::fuzz_target;
use sse_apps::POST_ENDPOINTS as POSTS;
use sse_apps::front_door::FrontDoor;
use sse_apps::server::{Guards, guarded_with_shared_routes};
use sse_core::edge::origin::HostPolicy;
use sse_core::{Core, CoreConfig};
use tower::ServiceExt;

struct Apps {
    runtime: tokio::runtime::Runtime,
    router: FrontDoor<Router>,
}

fn apps() -> &'static Apps {
    static APPS: OnceLock<Apps> = OnceLock::new();
    APPS.get_or_init(|| {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let data = Box::leak(Box::new(tempfile::tempdir().expect("a data dir")));
        let router = runtime.block_on(async {
            let core = Core::new(CoreConfig::default());
            let config = sse_apps::AllApps::new(data.path());
            let apps = sse_apps::all_apps(core.clone(), config).expect("the apps");
            guarded_with_shared_routes(apps, &core, HostPolicy::any_host(), Guards::default())
        });
        Apps { runtime, router }
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((&pick, body)) = input.split_first() else { return };
    let path = POSTS[usize::from(pick) % POSTS.len()];
    let mut request = http::Request::post(path)
        .header("host", "127.0.0.1")
        .header("client-id", "nobody")
        .header("session-id", "nobody")
        .header("accept", "application/json, text/event-stream");
    if pick & 0x80 != 0 {
        request = request.header("content-type", "application/json");
    }
    let mut request = request.body(axum::body::Body::from(body.to_vec())).expect("a request");
    request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let apps = apps();
    let (status, content_type, text) = apps.runtime.block_on(async {
        let response = apps.router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap_or_default();
        (status, content_type, String::from_utf8_lossy(&bytes).into_owned())
    });
    assert_ne!(status.as_u16(), 500, "{path}: {text}");
    if status.is_client_error() || status.is_server_error() {
        assert!(
            content_type.starts_with("application/json"),
            "{path} {status} as {content_type}: {text}"
        );
        let error: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert!(error["error"].is_object(), "{path} {status} without a JSON error: {text}");
    }
});
