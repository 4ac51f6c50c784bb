//! Who the client is: the peer's address, or, when the peer is a proxy we trust, the address
//! that proxy says it forwarded for.
//!
//! Per-client limits (the rate limit, the stream cap) key on this. Behind a reverse proxy every
//! request comes from the proxy, so without it one address would share one budget for everyone.
//! Headers saying who the client is are trusted only from peers in `--trusted-proxy`: anyone else
//! could write them to pose as somebody else.
//!
//! One header is read, the one the proxies are known to write: `X-Forwarded-For` (nginx's
//! `$proxy_add_x_forwarded_for`, the default) or `Forwarded` (RFC 7239). Never "whichever is
//! there": a proxy passes on what it does not write, so a client could send the other header and
//! be believed. Each proxy appends the address it received from, so the list is read from the
//! right: proxies we trust are skipped, and the first address that is not one of them is the
//! client. A value that is not an address
//! (`unknown`, an obfuscated name) stops the walk there: the client is then the last proxy that
//! could be trusted to say, rather than a name anyone could have written.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::HeaderMap;
use ipnet::IpNet;

/// Which header the trusted proxies write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1`.
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

/// The proxies whose forwarding headers are believed. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    nets: Arc<[IpNet]>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    /// Trusts peers in `nets` (none: the peer is always the client), reading `X-Forwarded-For`.
    pub fn new(nets: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies { nets: nets.into(), header: ForwardedHeader::XForwardedFor }
    }

    /// The same proxies, read from `header`.
    pub fn reading(self, header: ForwardedHeader) -> TrustedProxies {
        TrustedProxies { header, ..self }
    }

    /// Whether `address` is a proxy we trust.
    pub fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.nets.iter().any(|net| net.contains(&address))
    }

    /// The client behind `peer`, given the request's `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if self.nets.is_empty() || !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        for hop in forwarded_for(headers, self.header).into_iter().rev() {
            match hop {
                Some(address) if self.trusts(address) => client = address,
                Some(address) => return address,
                None => return client,
            }
        }
        client
    }
}

/// The addresses a request was forwarded for, oldest first; `None` for a value that is no
/// address.
fn forwarded_for(headers: &HeaderMap, header: ForwardedHeader) -> Vec<Option<IpAddr>> {
    if header == ForwardedHeader::Forwarded {
        let forwarded = headers.get_all(http::header::FORWARDED);
        return forwarded
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|line| line.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (name, value) = pair.split_once('=')?;
                    name.trim().eq_ignore_ascii_case("for").then(|| node(value.trim()))
                })
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(','))
        .map(|hop| node(hop.trim()))
        .collect()
}

/// An address from a `for=` node or an `X-Forwarded-For` entry: `192.0.2.1`, `192.0.2.1:80`,
/// `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn node(text: &str) -> Option<IpAddr> {
    let text = text.trim_matches('"');
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(canonical(address));
    }
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Some(canonical(address.ip()));
    }
    let bracketed = text.strip_prefix('[')?.split(']').next()?;
    bracketed.parse().ok().map(canonical)
}

/// IPv4 written as IPv6 (`::ffff:192.0.2.1`, as a dual-stack socket reports it) as IPv4, so one
/// client has one address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_header_the_proxies_do_not_write_is_never_believed() {
        // nginx appends to X-Forwarded-For and passes a client's own Forwarded on untouched.
        let proxies = trusting(&["127.0.0.1/32"]);
        let spoofed =
            headers(&[("forwarded", "for=198.51.100.7"), ("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(proxies.client(ip("127.0.0.1"), &spoofed), ip("203.0.113.9"));
        let only_forwarded = headers(&[("forwarded", "for=198.51.100.7")]);
        assert_eq!(proxies.client(ip("127.0.0.1"), &only_forwarded), ip("127.0.0.1"));
        let forwarding = proxies.reading(ForwardedHeader::Forwarded);
        assert_eq!(forwarding.client(ip("127.0.0.1"), &spoofed), ip("198.51.100.7"));
    }

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap_or_else(|e| panic!("{e}")),
                value.parse().unwrap_or_else(|e| panic!("{e}")),
            );
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn trusting(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(
            nets.iter().map(|n| n.parse().unwrap_or_else(|e| panic!("{e}"))).collect(),
        )
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_writes() {
        let proxies = trusting(&["127.0.0.1/32"]);
        let said = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(proxies.client(ip("198.51.100.7"), &said), ip("198.51.100.7"));
        assert_eq!(TrustedProxies::default().client(ip("127.0.0.1"), &said), ip("127.0.0.1"));
    }

    #[test]
    fn behind_trusted_proxies_the_first_untrusted_hop_from_the_right_is_the_client() {
        let proxies = trusting(&["127.0.0.1/32", "10.0.0.0/8"]);
        // The client wrote a fake first entry; our proxies appended what they saw.
        let said = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.1.1.1")]);
        assert_eq!(proxies.client(ip("127.0.0.1"), &said), ip("203.0.113.9"));
        let split = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(proxies.client(ip("127.0.0.1"), &split), ip("203.0.113.9"));
        // Nothing said: the proxy itself.
        assert_eq!(proxies.client(ip("127.0.0.1"), &HeaderMap::new()), ip("127.0.0.1"));
        // Every hop trusted: the leftmost, the first our proxies heard from.
        let inside = headers(&[("x-forwarded-for", "10.0.0.5, 10.0.0.6")]);
        assert_eq!(proxies.client(ip("127.0.0.1"), &inside), ip("10.0.0.5"));
    }

    #[test]
    fn forwarded_is_read_in_all_its_shapes_when_the_proxies_write_it() {
        let proxies = trusting(&["127.0.0.0/8", "::1/128"]).reading(ForwardedHeader::Forwarded);
        let said = headers(&[
            (
                "forwarded",
                "for=192.0.2.60;proto=http;by=203.0.113.43, For=\"[2001:db8:cafe::17]:4711\"",
            ),
            ("x-forwarded-for", "198.51.100.1"),
        ]);
        assert_eq!(proxies.client(ip("::1"), &said), ip("2001:db8:cafe::17"));
        let with_port = headers(&[("forwarded", "for=\"192.0.2.60:8080\"")]);
        assert_eq!(proxies.client(ip("::ffff:127.0.0.1"), &with_port), ip("192.0.2.60"));
    }

    #[test]
    fn a_hop_that_is_no_address_stops_the_walk_at_the_last_trusted_proxy() {
        let proxies = trusting(&["127.0.0.1/32", "10.0.0.0/8"]);
        let forwarding = proxies.clone().reading(ForwardedHeader::Forwarded);
        let said = headers(&[("forwarded", "for=203.0.113.9, for=unknown, for=10.0.0.2")]);
        assert_eq!(forwarding.client(ip("127.0.0.1"), &said), ip("10.0.0.2"));
        let said = headers(&[("x-forwarded-for", "203.0.113.9, unknown, 10.0.0.2")]);
        assert_eq!(proxies.client(ip("127.0.0.1"), &said), ip("10.0.0.2"));
        let garbage = headers(&[("x-forwarded-for", "not an address")]);
        assert_eq!(proxies.client(ip("127.0.0.1"), &garbage), ip("127.0.0.1"));
    }
}
