//! `bench connect` and `bench idle`: N connections opened at once against each server; how long
//! until every stream has its response head (for `ws`, its handshake's answer), and how much
//! resident memory each one costs the server while idle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::conditions::{Conditions, Watch};
use super::reader::{Connected, read_body};
use super::targets::Target;
use super::ws_client::read_stream;
use super::{limits, server};

/// N connections against one server.
#[derive(Clone, Debug)]
pub struct ConnectRow {
    /// The server.
    pub target: Target,
    /// Connections opened.
    pub connections: usize,
    /// Connections that failed.
    pub failed: usize,
    /// From the first connect to the last response head.
    pub elapsed: Duration,
    /// The server's resident memory before any connection, in KiB.
    pub rss_before_kib: u64,
    /// The same with every connection open and idle.
    pub rss_after_kib: u64,
    /// The server's CPU time while the connections were made, in percent of one core.
    pub server_cpu_percent: f64,
    /// What they were made beside: the machine's steal time, the load generator's CPU.
    pub conditions: Conditions,
    /// Whether the server was pinned to one core.
    pub pinned: bool,
}

impl ConnectRow {
    /// Connections established a second.
    pub fn per_second(&self) -> f64 {
        self.connections as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Resident memory each idle connection costs the server, in KiB.
    pub fn kib_per_connection(&self) -> f64 {
        self.rss_after_kib.saturating_sub(self.rss_before_kib) as f64
            / self.connections.max(1) as f64
    }

    /// The connection figures for people.
    pub fn connect_line(&self) -> String {
        format!(
            "connect {:>5}: {} connections in {:.3} s ({:.0}/s), {} failed, server CPU {:.0}%{}{}",
            self.target.name(),
            self.connections,
            self.elapsed.as_secs_f64(),
            self.per_second(),
            self.failed,
            self.server_cpu_percent,
            self.conditions.suffix(),
            if self.pinned { "" } else { " (not pinned)" },
        )
    }

    /// The memory figures for people.
    pub fn idle_line(&self) -> String {
        format!(
            "idle {:>5}: {} connections, server RSS {:.1} → {:.1} MiB, {:.1} KiB per connection, {} failed",
            self.target.name(),
            self.connections,
            self.rss_before_kib as f64 / 1024.0,
            self.rss_after_kib as f64 / 1024.0,
            self.kib_per_connection(),
            self.failed,
        )
    }
}

/// Opens `connections` streams against each target in turn (up to `concurrency` connecting at
/// once).
pub async fn run(
    targets: &[Target],
    connections: usize,
    concurrency: usize,
    pin: bool,
) -> anyhow::Result<Vec<ConnectRow>> {
    limits::ensure_open_files(connections)?;
    let mut rows = Vec::new();
    for &target in targets {
        let mut server = server::launch(&["bench-target", target.name()], pin).await?;
        let addr = server.base.trim_start_matches("http://").to_owned();
        let before = server.usage().await?;
        let connected = Arc::new(Connected::default());
        let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let connecting = Arc::new(Semaphore::new(concurrency.max(1)));
        let stop = CancellationToken::new();
        let watch = Watch::start();
        let started = Instant::now();
        let readers: Vec<_> = (0..connections)
            .map(|_| {
                let (addr, connected, failed, connecting, stop) = (
                    addr.clone(),
                    connected.clone(),
                    failed.clone(),
                    connecting.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    let opened = if target == Target::Ws {
                        read_stream(&addr, "/events", &connecting, &connected, &stop, |_| {}).await
                    } else {
                        read_body(&addr, "/events", "", &connecting, &connected, &stop, |_| {})
                            .await
                    };
                    if !opened {
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        connected.one_more();
                    }
                })
            })
            .collect();
        connected.wait_for(connections).await?;
        let elapsed = started.elapsed();
        let conditions = watch.finish();
        let after = server.usage().await?;
        stop.cancel();
        for reader in readers {
            let _ = reader.await;
        }
        let row = ConnectRow {
            target,
            connections,
            failed: failed.load(std::sync::atomic::Ordering::Relaxed),
            elapsed,
            rss_before_kib: before.rss_kib,
            rss_after_kib: after.rss_kib,
            server_cpu_percent: after.cpu_percent_since(&before, elapsed),
            conditions,
            pinned: server.pinned,
        };
        rows.push(row);
    }
    Ok(rows)
}
