//! HTTPS with `--tls-cert` and `--tls-key`: a self-signed certificate, a client that trusts it
//! (HTTP/2 by ALPN, event streams included), and clear refusals of everything else.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use sse_core::testing::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_sse-apps");
/// A watchdog for steps that must finish; not a timing assertion.
const WATCHDOG: Duration = Duration::from_secs(60);

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files.
struct Certificate {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    pem: String,
}

fn certificate() -> Certificate {
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    Certificate { _dir: dir, cert, key, pem: made.cert.pem() }
}

/// Starts `basic-server` with the certificate; returns it and its `https://` base URL.
async fn start(certificate: &Certificate) -> (Child, String) {
    start_with(certificate, &[]).await
}

async fn start_with(certificate: &Certificate, extra: &[&str]) -> (Child, String) {
    let mut command = support::binary();
    command
        .args(["basic-server", "--addr", "127.0.0.1:0", "--count", "0", "--interval", "20ms"])
        .args(extra)
        .arg("--tls-cert")
        .arg(&certificate.cert)
        .arg("--tls-key")
        .arg(&certificate.key)
        .stderr(Stdio::null());
    let (child, base) = support::started(command).await;
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    (child, base)
}

fn trusting(certificate: &Certificate) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(certificate.pem.as_bytes()).unwrap();
    reqwest::Client::builder().tls_certs_only([root]).build().unwrap()
}

#[tokio::test]
async fn a_client_that_trusts_the_certificate_gets_pages_and_streams_over_http2() {
    let certificate = certificate();
    let (_server, base) = start(&certificate).await;
    let http = trusting(&certificate);

    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.version(), reqwest::Version::HTTP_2, "ALPN chose HTTP/2");

    let response = http.get(format!("{base}/events")).send().await.unwrap();
    let mut stream = Stream::from_response(response);
    let ids: Vec<String> = stream.take(3).await.into_iter().map(|e| e.last_event_id).collect();
    assert_eq!(ids, ["1", "2", "3"]);
}

#[tokio::test]
async fn the_token_cookie_a_link_sets_over_https_is_secure() {
    let certificate = certificate();
    let (_server, base) = start_with(&certificate, &["--token", "tls-token-5e1"]).await;
    let page = trusting(&certificate).get(format!("{base}/?token=tls-token-5e1")).send().await;
    let page = page.unwrap();
    assert_eq!(page.status(), 200);
    let port = reqwest::Url::parse(&base).unwrap().port().unwrap();
    let cookies: Vec<&str> =
        page.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    let name = format!("__Host-sse_apps_token_{port}=");
    let cookie = cookies.iter().find(|c| c.starts_with(&name)).expect("this server's cookie");
    // Never sent to a plain-HTTP page (a server on another port of the same host, say), and
    // with the `__Host-` prefix a browser takes it only so: `Secure`, `Path=/`, no `Domain`.
    assert!(cookie.split("; ").any(|part| part == "Secure"), "{cookie}");
    assert!(cookie.split("; ").any(|part| part == "Path=/") && !cookie.contains("Domain"));
    assert!(!cookie.contains("tls-token-5e1"), "the value is not the token: {cookie}");
    // The old shared cookie is dropped, by a `Secure` cookie (which alone may replace one).
    let forget = cookies.iter().find(|c| c.starts_with("sse_apps_token=;")).expect("dropped");
    assert!(forget.contains("Max-Age=0") && forget.contains("Secure"), "{forget}");
}

#[tokio::test]
async fn plain_http_and_untrusting_clients_are_refused_and_the_server_goes_on() {
    let certificate = certificate();
    let (_server, base) = start(&certificate).await;

    // A client that does not trust the certificate fails its handshake.
    let untrusting = reqwest::Client::builder().tls_certs_only([]).build().unwrap();
    assert!(untrusting.get(format!("{base}/healthz")).send().await.is_err());

    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let addr = base.trim_start_matches("https://");
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WATCHDOG, plain.read_to_end(&mut answer)).await.unwrap();
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"), "{answer:?}");

    let health = trusting(&certificate).get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn bad_certificate_flags_get_a_clear_error() {
    let certificate = certificate();
    let alone = Command::new(BIN)
        .args(["basic-server", "--addr", "127.0.0.1:0", "--tls-cert"])
        .arg(&certificate.cert)
        .output()
        .await
        .unwrap();
    assert!(!alone.status.success());
    assert!(String::from_utf8_lossy(&alone.stderr).contains("--tls-key"));

    let missing = Command::new(BIN)
        .args(["basic-server", "--addr", "127.0.0.1:0", "--tls-cert", "/nonexistent/cert.pem"])
        .arg("--tls-key")
        .arg(&certificate.key)
        .output()
        .await
        .unwrap();
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("/nonexistent/cert.pem"), "names the file: {stderr}");
}
