//! How a server is given its token, tested on the real binary: `--token-file` (or
//! `SSE_APPS_TOKEN_FILE`) keeps it off the command line, `SSE_APPS_TOKEN` too, and `--token` on
//! the command line still works but warns, since every local user can read it in `ps`; and
//! `--cookie-port` lets instances behind one address share a browser's login.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

mod support;

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

const WATCHDOG: Duration = Duration::from_secs(60);
const WARNING: &str = "warning: --token on the command line";

/// `bidi-server` on an ephemeral port with `args`, its stderr kept; the child and its base URL.
async fn server(args: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    let mut command = support::binary();
    command
        .arg("bidi-server")
        .args(args)
        .args(["--addr", "127.0.0.1:0"])
        .env_remove("SSE_APPS_TOKEN")
        .env_remove("SSE_APPS_TOKEN_FILE")
        .envs(env.iter().copied())
        .stderr(Stdio::piped());
    support::started(command).await
}

/// Stops the server and returns all it wrote to stderr. Anything about its flags was written
/// before its first line on stdout, which [`server`] waited for.
async fn stderr_of(mut child: Child) -> String {
    let mut stderr = child.stderr.take().unwrap();
    child.start_kill().unwrap();
    let mut text = String::new();
    tokio::time::timeout(WATCHDOG, stderr.read_to_string(&mut text)).await.unwrap().unwrap();
    child.wait().await.unwrap();
    text
}

/// The status of a `/trigger` with `token` as the bearer (none: no header). A right token gets
/// past the door to the handler, which wants parameters (400); a wrong or missing one gets 401.
async fn door(base: &str, token: Option<&str>) -> u16 {
    let request = reqwest::Client::new().get(format!("{base}/trigger"));
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_token_file_gives_the_token_by_flag_or_environment_without_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    // The first line, trimmed; whatever follows is not part of it.
    std::fs::write(&file, "  file-token-8d2 \r\nsecond line\n").unwrap();
    let path = file.to_str().unwrap();

    let (by_flag, base) = server(&["--token-file", path], &[]).await;
    assert_eq!(door(&base, None).await, 401);
    assert_eq!(door(&base, Some("file-token-8d")).await, 401, "compared whole");
    assert_eq!(door(&base, Some("file-token-8d2")).await, 400);
    let stderr = stderr_of(by_flag).await;
    assert!(!stderr.contains(WARNING), "{stderr}");

    let (by_env, base) = server(&[], &[("SSE_APPS_TOKEN_FILE", path)]).await;
    assert_eq!(door(&base, None).await, 401);
    assert_eq!(door(&base, Some("file-token-8d2")).await, 400);
    let stderr = stderr_of(by_env).await;
    assert!(!stderr.contains(WARNING), "{stderr}");
}

#[tokio::test]
async fn an_empty_or_unreadable_token_file_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    let blank = dir.path().join("blank");
    std::fs::write(&blank, "   \nthe token is not on the first line\n").unwrap();
    let missing = dir.path().join("missing");
    for (file, says) in [
        (&empty, "holds no token"),
        (&blank, "holds no token"),
        (&missing, "cannot read it"),
        (&dir.path().to_owned(), "cannot read it"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_sse-apps"))
            .args(["bidi-server", "--addr", "127.0.0.1:0", "--token-file"])
            .arg(file)
            .env_remove("SSE_APPS_TOKEN")
            .output();
        let output = tokio::time::timeout(WATCHDOG, output).await.unwrap().unwrap();
        assert_eq!(output.status.code(), Some(1), "{}", file.display());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--token-file") && stderr.contains(says), "{stderr}");
        assert!(output.stdout.is_empty(), "it never listened: {output:?}");
    }
}

#[tokio::test]
async fn a_token_on_the_command_line_warns_and_one_from_the_environment_does_not() {
    let (on_command_line, base) = server(&["--token", "cli-token-41a"], &[]).await;
    assert_eq!(door(&base, Some("cli-token-41a")).await, 400, "it still works");
    let stderr = stderr_of(on_command_line).await;
    let warning =
        stderr.lines().find(|l| l.contains(WARNING)).unwrap_or_else(|| panic!("{stderr}"));
    assert!(warning.contains("ps") && warning.contains("--token-file"), "{warning}");
    assert!(warning.contains("SSE_APPS_TOKEN"), "{warning}");
    assert!(!stderr.contains("cli-token-41a"), "the warning does not repeat the token");

    let (from_env, base) = server(&[], &[("SSE_APPS_TOKEN", "env-token-0b7")]).await;
    assert_eq!(door(&base, Some("env-token-0b7")).await, 400);
    let stderr = stderr_of(from_env).await;
    assert!(!stderr.contains(WARNING), "{stderr}");
}

/// The cookie a `?token=` link to `base` sets, as `name=value`.
async fn cookie_from_link(base: &str, token: &str) -> String {
    let link = reqwest::get(format!("{base}/?token={token}")).await.unwrap();
    assert_eq!(link.status(), 200);
    let cookie = link.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

async fn page_with(base: &str, cookie: &str) -> u16 {
    let page = reqwest::Client::new().get(format!("{base}/")).header("cookie", cookie);
    page.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn instances_given_one_cookie_port_share_a_login_and_others_do_not() {
    let shared = ["--token", "shared-7e0", "--cookie-port", "8443"];
    let (_a, a) = server(&shared, &[]).await;
    let (_b, b) = server(&shared, &[]).await;
    let cookie = cookie_from_link(&a, "shared-7e0").await;
    assert!(cookie.starts_with("sse_apps_token_8443="), "{cookie}");
    assert_eq!(page_with(&b, &cookie).await, 200, "the login at A holds at B");

    // Without it, each is its own server, even with the same token.
    let (_c, c) = server(&["--token", "shared-7e0"], &[]).await;
    let (_d, d) = server(&["--token", "shared-7e0"], &[]).await;
    let cookie = cookie_from_link(&c, "shared-7e0").await;
    assert_eq!(page_with(&c, &cookie).await, 200);
    assert_eq!(page_with(&d, &cookie).await, 401);
}
