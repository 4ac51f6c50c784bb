//! Connecting a bench client to a server on loopback, from as many source addresses as the
//! number of connections needs.
//!
//! A TCP connection is told apart by its four-tuple, and against one server port the only part
//! the client chooses is its own port: from one address, at most the kernel's ephemeral range
//! (about 28,000 ports here) can be open at once. Past that, connections must come from other
//! addresses, and on Linux every address in 127.0.0.0/8 is loopback with no set-up. So the
//! process's first [`PER_SOURCE`] connections come from 127.0.0.1 as the kernel picks (as any
//! client's would), the next from 127.0.0.2, and so on, wrapping after 250 addresses.
//!
//! A bound socket normally reserves its port at `bind`, for every destination, and such a port
//! stays reserved through `TIME_WAIT`: a few loads of 20,000 bound connections would leave the
//! next run's unbound ones no port at all. So the port is left to `connect`
//! (`IP_BIND_ADDRESS_NO_PORT`), which picks it as for any client: unique per four-tuple only.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::sys::socket::{setsockopt, sockopt::IpBindAddressNoPort};
use tokio::net::{TcpSocket, TcpStream};

/// Connections made from each source address before the next one is used: well inside the
/// ephemeral range, with room for ports still in `TIME_WAIT` from the address's last turn.
pub const PER_SOURCE: usize = 20_000;

/// Source addresses used in turn: 127.0.0.1 to 127.0.0.250.
const SOURCES: usize = 250;

/// Connections made by this process so far.
static DIALED: AtomicUsize = AtomicUsize::new(0);

/// Connects to `addr` (`host:port`). A loopback IPv4 server is reached from the source address
/// the process's connection count has come to; anything else as the kernel routes it.
pub async fn dial(addr: &str) -> std::io::Result<TcpStream> {
    let server = match addr.parse::<SocketAddr>() {
        Ok(server @ SocketAddr::V4(v4)) if v4.ip().is_loopback() => server,
        _ => return TcpStream::connect(addr).await,
    };
    match source(DIALED.fetch_add(1, Ordering::Relaxed)) {
        None => TcpStream::connect(server).await,
        Some(source) => connect_from(source, server).await,
    }
}

/// Connects to `server` from the address `source`, the port chosen at `connect`.
pub async fn connect_from(source: IpAddr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if source.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    setsockopt(&socket, IpBindAddressNoPort, &true).map_err(std::io::Error::from)?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(server).await
}

/// The address the `n`th connection comes from: `None` for the first [`PER_SOURCE`] (the
/// kernel's choice, 127.0.0.1 on loopback), then 127.0.0.2 onwards.
fn source(n: usize) -> Option<IpAddr> {
    let k = (n / PER_SOURCE) % SOURCES;
    (k > 0).then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + k as u8)))
}

#[cfg(test)]
mod tests {
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
    async fn a_connection_past_the_first_source_comes_from_the_next_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("in a test");
        let addr = listener.local_addr().expect("in a test").to_string();
        // Other tests in this process may dial too: move the count to the start of the second
        // address's share, then check the one connection made from there.
        DIALED.store(PER_SOURCE, Ordering::Relaxed);
        let client = dial(&addr).await.expect("in a test");
        let (_, peer) = listener.accept().await.expect("in a test");
        assert_eq!(client.local_addr().expect("in a test"), peer);
        assert_eq!(peer.ip(), IpAddr::from([127, 0, 0, 2]));
        // Its port was picked at connect, per four-tuple, not reserved for every destination.
        assert!(nix::sys::socket::getsockopt(&client, IpBindAddressNoPort).expect("in a test"));
    }
}
