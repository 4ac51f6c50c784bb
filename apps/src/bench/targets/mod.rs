//! The servers `bench fanout`, `bench idle` and `bench connect` measure, side by side in one run:
//!
//! - [`ours`]: a topic of the core served with [`sse_core::stream::sse_response`] behind the same
//!   layers as every app (tracing, Host/Origin checks, token check, panic catcher);
//! - [`limit`]: no framework at all, pre-encoded frames written straight to the sockets from one
//!   loop, what one core can do at best;
//! - [`naive`]: what most tutorials write, axum's `Sse` over a tokio broadcast channel, encoding
//!   every event once per connection;
//! - [`ws`]: not SSE but a WebSocket, on axum's own support, as a careful axum server publishes
//!   one feed (a tokio broadcast channel, each connection's task forwarding to its socket).
//!
//! `bench roundtrip` has its own baselines beside `sse-apps bidi-server`: [`limit_roundtrip`], the
//! Go original's protocol over raw sockets, and [`ws_roundtrip`], the same round trip on one
//! WebSocket per client; `bench sampling` has [`limit_sampling`], the modern MCP tool call's two
//! rounds over raw sockets.
//!
//! Each serves `GET /events` and publishes when the bench tells it to, over stdin
//! ([`super::control`]): `publish <rate> <payload bytes> <count>`, answered `published <count>`
//! once the last event is out. Every event's data (a text message's, for [`ws`]) is
//! `<seq> <due µs> xxx…`: its number and the time it was due by the schedule (not when the
//! publisher got round to it), so a publisher held up by a busy core shows as latency rather than
//! hiding it.

pub mod limit;
pub mod limit_roundtrip;
pub mod limit_sampling;
pub mod naive;
pub mod ours;
pub mod ws;
pub mod ws_roundtrip;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{Instant, MissedTickBehavior};

use super::control;

/// Which server to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// The core, as the apps use it.
    Ours,
    /// Pre-encoded frames straight to the sockets.
    Limit,
    /// axum `Sse` over tokio broadcast.
    Naive,
    /// axum's WebSocket over tokio broadcast.
    Ws,
}

impl Target {
    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Target::Ours => "ours",
            Target::Limit => "limit",
            Target::Naive => "naive",
            Target::Ws => "ws",
        }
    }
}

/// One `publish` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishOrder {
    /// Events per second.
    pub rate: u32,
    /// Bytes of data per event (at least what the sequence number and time take).
    pub payload: usize,
    /// How many events.
    pub count: u64,
}

impl PublishOrder {
    /// The command line for it.
    pub fn command(&self) -> String {
        format!("publish {} {} {}", self.rate, self.payload, self.count)
    }

    /// Reads a command line.
    pub fn parse(line: &str) -> Option<PublishOrder> {
        let mut fields = line.strip_prefix("publish ")?.split(' ');
        let rate = fields.next()?.parse().ok().filter(|r| *r > 0)?;
        let payload = fields.next()?.parse().ok()?;
        let count = fields.next()?.parse().ok()?;
        Some(PublishOrder { rate, payload, count })
    }
}

/// Microseconds since 1970.
pub fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// An event's data: `<seq> <due> ` padded with `x` to `size` bytes.
pub fn payload(seq: u64, due_micros: u64, size: usize) -> String {
    let mut data = format!("{seq} {due_micros} ");
    if data.len() < size {
        data.extend(std::iter::repeat_n('x', size - data.len()));
    }
    data
}

/// Reads an event's data back: its number and due time.
pub fn parse_payload(data: &[u8]) -> Option<(u64, u64)> {
    let mut fields = data.split(|b| *b == b' ');
    let number = |field: &[u8]| std::str::from_utf8(field).ok()?.parse::<u64>().ok();
    Some((number(fields.next()?)?, number(fields.next()?)?))
}

/// Carries out publish orders as they come: `publish(seq, data)` for each event, on schedule
/// (late ticks are caught up at once, so the offered rate holds), then `published <count>`.
pub async fn follow_orders(
    mut commands: UnboundedReceiver<String>,
    mut publish: impl FnMut(u64, String),
) {
    let mut seq = 0u64;
    while let Some(line) = commands.recv().await {
        let Some(order) = PublishOrder::parse(&line) else {
            control::reply(&format!("error unknown command: {line}"));
            continue;
        };
        let period = Duration::from_secs_f64(1.0 / f64::from(order.rate));
        let (start, start_micros) = (Instant::now(), now_micros());
        let mut ticks = tokio::time::interval_at(start, period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
        for n in 0..order.count {
            ticks.tick().await;
            seq += 1;
            let due =
                start_micros + (period * u32::try_from(n).unwrap_or(u32::MAX)).as_micros() as u64;
            publish(seq, payload(seq, due, order.payload));
        }
        control::reply(&format!("published {}", order.count));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_orders_read_back() {
        let order = PublishOrder { rate: 100, payload: 64, count: 1000 };
        assert_eq!(PublishOrder::parse(&order.command()), Some(order));
        assert_eq!(PublishOrder::parse("publish 0 64 10"), None);
        assert_eq!(PublishOrder::parse("publish 10 64"), None);
        assert_eq!(PublishOrder::parse("usage"), None);
    }

    #[test]
    fn payloads_have_the_asked_size_and_read_back() {
        let data = payload(42, 1_764_000_000_000_000, 64);
        assert_eq!(data.len(), 64);
        assert_eq!(parse_payload(data.as_bytes()), Some((42, 1_764_000_000_000_000)));
        // Never cut short to fit: the numbers always survive.
        assert_eq!(parse_payload(payload(7, 9, 0).as_bytes()), Some((7, 9)));
        assert_eq!(parse_payload(b"hello"), None);
    }
}
