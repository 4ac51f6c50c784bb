//! A TCP proxy that misbehaves on demand, for fault-injection tests: put it between a client and
//! a server, then cut connections (at once, or after a given number of bytes, so mid-frame),
//! stall the server-to-client direction (the proxy stops reading, so the server's writes back up
//! as they would for a client that stopped reading), slow it down, or half-close it.
//!
//! Faults apply to the server-to-client direction, where streams flow; requests pass unchanged.
//! Standing faults ([`Fault::Stall`], [`Fault::Slow`]) apply to every connection, open or to
//! come, until [`FaultProxy::heal`]; one-shot faults ([`Fault::CutAfter`], [`Fault::HalfClose`])
//! hit the connections open when they are set, so a client's reconnection goes through.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the proxy does to server-to-client bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything (the default).
    None,
    /// Forward this many more bytes on each connection, then close it (both directions).
    CutAfter(usize),
    /// Stop reading from the server until healed.
    Stall,
    /// Forward at most this many bytes a second on each connection.
    Slow(usize),
    /// Close the connection's client-bound direction (a FIN); requests still pass.
    HalfClose,
}

/// A running proxy. Dropping it closes every connection through it.
#[derive(Debug)]
pub struct FaultProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    fault: watch::Sender<Fault>,
    stop: CancellationToken,
    connections: Arc<Mutex<usize>>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 in front of `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (fault, faults) = watch::channel(Fault::None);
        let stop = CancellationToken::new();
        let connections = Arc::new(Mutex::new(0));
        let (stopped, counted) = (stop.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let client = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => client,
                        Err(_) => continue,
                    },
                    () = stopped.cancelled() => return,
                };
                let Ok(server) = TcpStream::connect(upstream).await else { continue };
                *crate::sync::lock(&counted) += 1;
                tokio::spawn(relay(client, server, faults.clone(), stopped.child_token()));
            }
        });
        Ok(FaultProxy { addr, fault, stop, connections })
    }

    /// `http://` and the proxy's address.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the fault for every connection, open or to come.
    pub fn set(&self, fault: Fault) {
        let _ = self.fault.send(fault);
    }

    /// Back to forwarding everything.
    pub fn heal(&self) {
        self.set(Fault::None);
    }

    /// How many connections the proxy has accepted so far.
    pub fn connections_made(&self) -> usize {
        *crate::sync::lock(&self.connections)
    }
}

/// Relays one connection: requests straight through, answers through the fault.
async fn relay(
    client: TcpStream,
    server: TcpStream,
    faults: watch::Receiver<Fault>,
    stop: CancellationToken,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    });
    tokio::select! {
        () = forward(&mut server_read, &mut client_write, faults) => {}
        () = stop.cancelled() => {}
    }
    // The answers are over (the server closed, or a fault cut them): close both sides.
    requests.abort();
}

/// Server-to-client bytes, through whatever fault is set. Returns when either side closes or a
/// fault ends the connection.
async fn forward(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    mut faults: watch::Receiver<Fault>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut cut_budget: Option<usize> = None;
    // A one-shot fault already set when this connection opened is not for it.
    let mut fault = match *faults.borrow_and_update() {
        Fault::CutAfter(_) | Fault::HalfClose => Fault::None,
        standing => standing,
    };
    loop {
        if faults.has_changed().unwrap_or(false) {
            fault = *faults.borrow_and_update();
        }
        match fault {
            Fault::Stall => {
                // Read nothing: the server's writes back up. Wait for the next change.
                if faults.changed().await.is_err() {
                    return;
                }
                fault = *faults.borrow_and_update();
                continue;
            }
            Fault::HalfClose => {
                let _ = to.shutdown().await;
                return;
            }
            Fault::CutAfter(n) if cut_budget.is_none() => cut_budget = Some(n),
            Fault::CutAfter(_) => {}
            Fault::None | Fault::Slow(_) => cut_budget = None,
        }
        let limit = match (fault, cut_budget) {
            (_, Some(0)) => return, // dropping both halves closes the connection
            (_, Some(budget)) => budget.min(buffer.len()),
            (Fault::Slow(rate), _) => rate.clamp(1, buffer.len()),
            _ => buffer.len(),
        };
        let read = tokio::select! {
            read = from.read(&mut buffer[..limit]) => read,
            changed = faults.changed() => {
                if changed.is_err() { return; }
                fault = *faults.borrow_and_update();
                continue;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
        if let Some(budget) = &mut cut_budget {
            *budget -= n;
        }
        if let Fault::Slow(rate) = fault {
            // At most `rate` bytes a second: this chunk's share of a second.
            let share = Duration::from_secs_f64(n as f64 / rate.max(1) as f64);
            tokio::time::sleep(share).await;
        }
    }
}
