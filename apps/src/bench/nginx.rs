//! nginx in front of the instances under test: the repository's own configuration
//! (`deploy/nginx/sse-apps.conf`, compiled in, so an installed binary has it too) on a port of its
//! own, its upstreams replaced by the instances.
//!
//! Three changes to the shipped file, each for the bench's scale, none to how a request or a
//! stream is proxied: two worker processes (nginx holds two descriptors per stream, and one
//! process may not hold more than `ulimit -n`), `reuseport` on the listener so the kernel shares
//! the connections between them evenly, and room for 16,384 connections per worker.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

/// The shipped configuration.
const SHIPPED: &str = include_str!("../../../deploy/nginx/sse-apps.conf");

/// The shipped configuration's upstream block's servers, replaced by the instances.
const SHIPPED_UPSTREAMS: &str = "        server 127.0.0.1:8082;\n        server 127.0.0.1:8083;\n";

/// A running nginx; dropping it stops it (SIGTERM: a killed master leaves its workers running)
/// and waits for it, then removes its working directory.
#[derive(Debug)]
pub struct Nginx {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    child: Child,
    prefix: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let pid = self.child.id().and_then(|pid| i32::try_from(pid).ok());
        if let Some(pid) = pid.and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
        }
    }
}

/// The shipped configuration listening on `port`, in front of `upstreams` (`host:port` each).
pub fn config(port: u16, upstreams: &[String]) -> anyhow::Result<String> {
    let servers: String = upstreams.iter().map(|u| format!("        server {u};\n")).collect();
    let replacements = [
        (SHIPPED_UPSTREAMS, servers.as_str()),
        ("listen 127.0.0.1:8080;", &format!("listen 127.0.0.1:{port} reuseport;")),
        ("worker_processes 1;", "worker_processes 2;"),
        ("worker_connections 4096;", "worker_connections 16384;"),
    ];
    let mut config = SHIPPED.to_owned();
    for (from, to) in replacements {
        anyhow::ensure!(config.contains(from), "deploy/nginx/sse-apps.conf no longer has `{from}`");
        config = config.replace(from, to);
    }
    Ok(config)
}

/// Starts nginx in front of `upstreams` (on core 0 with `pin`, where the instances run) and waits
/// until a request through it reaches one of them.
pub async fn start(upstreams: &[String], pin: bool) -> anyhow::Result<Nginx> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let prefix = tempfile::tempdir()?;
    let path = prefix.path().join("nginx.conf");
    std::fs::write(&path, config(port, upstreams)?)?;
    let mut command = if pin {
        let mut command = Command::new("taskset");
        command.args(["-c", "0", "nginx"]);
        command
    } else {
        Command::new("nginx")
    };
    let child = command
        .arg("-p")
        .arg(prefix.path())
        .arg("-c")
        .arg(&path)
        .stdin(Stdio::null())
        .spawn()
        .context("starting nginx (Debian: apt-get install nginx-light)")?;
    let nginx = Nginx { base: format!("http://127.0.0.1:{port}"), child, prefix };
    ready(&nginx.base, nginx.prefix.path()).await?;
    Ok(nginx)
}

/// Waits up to 10 s for `GET /healthz` through nginx to answer 200.
async fn ready(base: &str, prefix: &Path) -> anyhow::Result<()> {
    let health = format!("{base}/healthz");
    for _ in 0..200 {
        if reqwest::get(&health).await.is_ok_and(|r| r.status() == 200) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("nginx (working directory {}) did not answer on {health}", prefix.display())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_shipped_configuration_is_put_in_front_of_the_given_instances() {
        let one = super::config(9000, &["127.0.0.1:9001".into()]).expect("in a test");
        assert!(one.contains("listen 127.0.0.1:9000 reuseport;"));
        assert!(one.contains("server 127.0.0.1:9001;"));
        assert!(!one.contains("server 127.0.0.1:8082;") && !one.contains("server 127.0.0.1:8083;"));
        let two = super::config(9000, &["127.0.0.1:9001".into(), "127.0.0.1:9002".into()])
            .expect("in a test");
        assert!(two.contains("server 127.0.0.1:9001;\n        server 127.0.0.1:9002;"));
        // How requests and streams are proxied is the shipped file's, untouched.
        assert!(two.contains("proxy_buffering off;") && two.contains("keepalive 32;"));
    }
}
