//! Connecting a bench client to a server on loopback, from as many source addresses as the
//! number of connections needs.
//!
//! A TCP connection is told apart by its four-tuple, and against one server port the only part
//! the client chooses is its own port: from one address, at most the kernel's ephemeral range
//! (about 28,000 ports here) can be open at once. Past that, connections must come from other
//! addresses, and on Linux every address in 127.0.0.0/8 is loopback with no set-up. So the
//! first [`PER_SOURCE`] connections to a server come from 127.0.0.1 as the kernel picks (as any
//! client's would), the next from 127.0.0.2, and so on, wrapping after 250 addresses. Each
//! server is counted apart (every target of a run is a new server on a new port), so every
//! target of a run is reached the same way, whatever ran before it.
//!
//! A bound socket normally reserves its port at `bind`, for every destination, and such a port
//! stays reserved through `TIME_WAIT`: a few loads of 20,000 bound connections would leave the
//! next run's unbound ones no port at all. So the port is left to `connect`
//! (`IP_BIND_ADDRESS_NO_PORT`), which picks it as for any client: unique per four-tuple only.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{LazyLock, Mutex};

use nix::sys::socket::{setsockopt, sockopt::IpBindAddressNoPort};
use tokio::net::{TcpSocket, TcpStream};

/// Connections made from each source address before the next one is used: well inside the
/// ephemeral range, with room for ports still in `TIME_WAIT` from the address's last turn.
pub const PER_SOURCE: usize = 20_000;

/// Source addresses used in turn: 127.0.0.1 to 127.0.0.250.
const SOURCES: usize = 250;

/// Connections made by this process so far, per server.
static DIALED: LazyLock<Mutex<HashMap<SocketAddr, usize>>> = LazyLock::new(Mutex::default);

/// Connects to `addr` (`host:port`). A loopback IPv4 server is reached from the source address
/// its count of connections has come to; anything else (a name, IPv6) as the kernel routes it.
pub async fn dial(addr: &str) -> std::io::Result<TcpStream> {
    let server = match addr.parse::<SocketAddr>() {
        Ok(server @ SocketAddr::V4(v4)) if v4.ip().is_loopback() => server,
        _ => return TcpStream::connect(addr).await,
    };
    let n = {
        let mut dialed = sse_core::sync::lock(&DIALED);
        let count = dialed.entry(server).or_default();
        *count += 1;
        *count - 1
    };
    match source(n) {
        None => TcpStream::connect(server).await,
        Some(source) => connect_from(source, server).await,
    }
}

/// Connects to `server` from the address `source`, the port chosen at `connect`.
pub async fn connect_from(source: IpAddr, server: SocketAddr) -> std::io::Result<TcpStream> {
    bound_to(source)?.connect(server).await
}

/// A socket bound to `source` with no port yet: `connect` picks it.
fn bound_to(source: IpAddr) -> std::io::Result<TcpSocket> {
    let socket = if source.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    setsockopt(&socket, IpBindAddressNoPort, &true).map_err(std::io::Error::from)?;
    socket.bind(SocketAddr::new(source, 0))?;
    Ok(socket)
}

/// The address the `n`th connection to a server comes from: `None` for the first
/// [`PER_SOURCE`] (the kernel's choice, 127.0.0.1 on loopback), then 127.0.0.2 onwards.
fn source(n: usize) -> Option<IpAddr> {
    let k = (n / PER_SOURCE) % SOURCES;
    (k > 0).then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + k as u8)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion
    use super::*;

    #[test]
    fn each_source_address_carries_its_share_and_the_addresses_wrap() {
        assert_eq!(source(0), None);
        assert_eq!(source(PER_SOURCE - 1), None);
        assert_eq!(source(PER_SOURCE), Some(IpAddr::from([127, 0, 0, 2])));
        assert_eq!(source(5 * PER_SOURCE + 7), Some(IpAddr::from([127, 0, 0, 6])));
        assert_eq!(source(249 * PER_SOURCE), Some(IpAddr::from([127, 0, 0, 250])));
        assert_eq!(source(250 * PER_SOURCE), None);
    }

    #[tokio::test]
    async fn a_server_past_its_first_share_is_reached_from_the_next_address_and_others_are_not() {
        let past = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fresh = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (past_addr, fresh_addr) = (past.local_addr().unwrap(), fresh.local_addr().unwrap());
        sse_core::sync::lock(&DIALED).insert(past_addr, PER_SOURCE);

        let client = dial(&past_addr.to_string()).await.unwrap();
        let (_, peer) = past.accept().await.unwrap();
        assert_eq!(client.local_addr().unwrap(), peer);
        assert_eq!(peer.ip(), IpAddr::from([127, 0, 0, 2]));

        // Another server's count starts at nought, whatever this one's has come to.
        let _client = dial(&fresh_addr.to_string()).await.unwrap();
        let (_, peer) = fresh.accept().await.unwrap();
        assert_eq!(peer.ip(), IpAddr::from([127, 0, 0, 1]));
    }

    #[test]
    fn a_bound_socket_has_its_address_and_no_port_until_it_connects() {
        let socket = bound_to(IpAddr::from([127, 0, 0, 3])).unwrap();
        let local = socket.local_addr().unwrap();
        assert_eq!(local.ip(), IpAddr::from([127, 0, 0, 3]));
        assert_eq!(local.port(), 0, "no port reserved at bind");
    }
}
