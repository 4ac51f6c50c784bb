//! Real programs that tests start: whether one is installed, and a Redis server on a loopback
//! port, killed when dropped.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Whether `programs` are installed (Debian puts them in `/usr/bin` or `/usr/sbin`). In CI (`CI`
/// set) a missing one fails the test; elsewhere the test is skipped with a notice naming what
/// to install (`install`, as in `apt-get install redis-server`).
pub fn installed(programs: &[&str], install: &str) -> bool {
    let missing: Vec<&&str> = programs
        .iter()
        .filter(|p| {
            !Path::new(&format!("/usr/sbin/{p}")).exists()
                && !Path::new(&format!("/usr/bin/{p}")).exists()
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "CI must have {missing:?} (.ci/run installs them)");
    eprintln!("NOTICE: skipping: {missing:?} not installed (apt-get install {install})");
    false
}

/// A free loopback port (for a server that binds it itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `redis-server` on 127.0.0.1:`port` with `args` (persistence settings, say), once it accepts
/// connections; killed when dropped.
pub async fn redis_server(port: u16, args: &[&str]) -> Child {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("Ready to accept connections") {
                return;
            }
        }
        panic!("redis-server exited");
    };
    // A watchdog, not a timing assertion.
    if tokio::time::timeout(Duration::from_secs(60), ready).await.is_err() {
        panic!("redis-server did not start");
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}
