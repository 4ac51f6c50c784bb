//! nginx in front of the instances under test: the repository's own configuration
//! (`deploy/nginx/sse-apps.conf`, compiled in, so an installed binary has it too) on a port of its
//! own, its upstreams replaced by the instances.
//!
//! Three changes to the shipped file, each for the bench's scale, none to how a request or a
//! stream is proxied: two worker processes (nginx holds two descriptors per stream, one to the
//! reader and one to the instance, and one process may not hold more than `ulimit -n`),
//! `reuseport` on the listener so the kernel shares the readers between them, and room in each
//! for every stream of the run (the shipped 4,096 connections a worker hold about 2,000 streams).
//!
//! nginx runs in a process group of its own, which is signalled as a whole when the bench is done
//! with it, and its master is sent SIGTERM by the kernel if the bench dies first: a killed master
//! leaves its workers running, still listening.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use rustix::process::{Pid, Signal};

use tokio::process::{Child, Command};

/// The shipped configuration.
const SHIPPED: &str = include_str!("../../../deploy/nginx/sse-apps.conf");

/// The shipped configuration's upstream block's servers, replaced by the instances.
const SHIPPED_UPSTREAMS: &str = "        server 127.0.0.1:8082;\n        server 127.0.0.1:8083;\n";

/// Connections a worker takes beyond its share of the streams: its upstream keep-alive pool, the
/// posters' requests, and an uneven split between the two workers.
const SPARE_CONNECTIONS: usize = 1024;

/// A running nginx; dropping it stops it and its workers, waits for the master, and then removes
/// its working directory.
#[derive(Debug)]
pub struct Nginx {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    child: Child,
    prefix: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let Some(master) = self.child.id().and_then(|pid| Pid::from_raw(pid.try_into().ok()?))
        else {
            return; // Already reaped.
        };
        // The group holds the master and its workers (the group's id is the master's pid).
        let _ = rustix::process::kill_process_group(master, Signal::TERM);
        // nginx's fast shutdown takes milliseconds; one that hangs is killed, workers and all.
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_)) | Err(_)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = rustix::process::kill_process_group(master, Signal::KILL);
        let _ = rustix::process::waitpid(Some(master), rustix::process::WaitOptions::empty());
    }
}

/// The shipped configuration listening on `port`, in front of `upstreams` (`host:port` each),
/// with room for `streams` streams.
pub fn config(port: u16, upstreams: &[String], streams: usize) -> anyhow::Result<String> {
    let servers: String = upstreams.iter().map(|u| format!("        server {u};\n")).collect();
    let connections = (streams + SPARE_CONNECTIONS).max(4096);
    let replacements = [
        (SHIPPED_UPSTREAMS, servers),
        ("listen 127.0.0.1:8080;", format!("listen 127.0.0.1:{port} reuseport;")),
        ("worker_processes 1;", "worker_processes 2;".to_owned()),
        ("worker_connections 4096;", format!("worker_connections {connections};")),
    ];
    let mut config = SHIPPED.to_owned();
    for (from, to) in replacements {
        anyhow::ensure!(config.contains(from), "deploy/nginx/sse-apps.conf no longer has `{from}`");
        config = config.replace(from, &to);
    }
    Ok(config)
}

/// Starts nginx in front of `upstreams`, for `streams` streams (on core 0 with `pin`, where the
/// instances run), and waits until a request through it reaches one of them.
pub async fn start(upstreams: &[String], streams: usize, pin: bool) -> anyhow::Result<Nginx> {
    let nginx = which("nginx").context(
        "--nginx needs nginx, found neither on the PATH nor in /usr/sbin (Debian: apt-get install \
         nginx-light)",
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let prefix = tempfile::tempdir()?;
    let path = prefix.path().join("nginx.conf");
    std::fs::write(&path, config(port, upstreams, streams)?)?;
    // Each worker holds two descriptors per stream it carries: let nginx have all this process
    // may (it inherits the limit).
    // may (it inherits the limit), and put this process's back at once, so that the servers
    // started after nginx run under the limit the ones before it had.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let raised = rustix::process::Rlimit { current: limit.maximum, ..limit };
    rustix::process::setrlimit(rustix::process::Resource::Nofile, raised)?;
    let mut command = Command::new(if pin { "taskset" } else { "setpriv" });
    if pin {
        command.args(["-c", "0", "setpriv"]);
    }
    // setpriv (util-linux, as taskset is): the kernel sends nginx's master SIGTERM if the bench
    // dies first.
    command.args(["--pdeathsig", "TERM", "--"]).arg(&nginx);
    command.arg("-p").arg(prefix.path()).arg("-c").arg(&path).stdin(Stdio::null());
    command.process_group(0);
    let spawned = command.spawn().context("starting nginx");
    rustix::process::setrlimit(rustix::process::Resource::Nofile, limit)?;
    let child = spawned?;
    let mut nginx = Nginx { base: format!("http://127.0.0.1:{port}"), child, prefix };
    ready(&mut nginx).await?;
    Ok(nginx)
}

/// The first `program` on the `PATH`, as a shell would find it, or else in the system
/// directories a plain user's `PATH` leaves out on Debian, where nginx is installed.
fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(Into::into))
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// Waits up to 10 s for `GET /healthz` through nginx to answer 200, and fails at once if nginx
/// exits first (its own messages are above, on stderr).
async fn ready(nginx: &mut Nginx) -> anyhow::Result<()> {
    let health = format!("{}/healthz", nginx.base);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(1)).build()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if let Some(status) = nginx.child.try_wait()? {
            anyhow::bail!("nginx exited ({status}) before answering on {health}");
        }
        if client.get(&health).send().await.is_ok_and(|r| r.status() == 200) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!(
        "nginx (working directory {}) did not answer on {health} within 10 s",
        nginx.prefix.path().display()
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    #[test]
    fn the_shipped_configuration_is_put_in_front_of_the_given_instances() {
        let one = super::config(9000, &["127.0.0.1:9001".into()], 10).unwrap();
        assert!(one.contains("listen 127.0.0.1:9000 reuseport;"));
        assert!(one.contains("server 127.0.0.1:9001;"));
        assert!(!one.contains("server 127.0.0.1:8082;") && !one.contains("server 127.0.0.1:8083;"));
        assert!(one.contains("worker_connections 4096;"), "never fewer than the shipped file's");
        let upstreams = ["127.0.0.1:9001".into(), "127.0.0.1:9002".into()];
        let two = super::config(9000, &upstreams, 10_000).unwrap();
        assert!(two.contains("server 127.0.0.1:9001;\n        server 127.0.0.1:9002;"));
        assert!(two.contains("worker_connections 11024;"), "room for every stream, however split");
        // How requests and streams are proxied is the shipped file's, untouched.
        assert!(two.contains("proxy_buffering off;") && two.contains("keepalive 32;"));
    }
}
