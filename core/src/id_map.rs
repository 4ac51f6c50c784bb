//! The map for keys this server made itself: session ids and request ids.
//!
//! std's `HashMap` hashes with SipHash, which keeps a client from choosing keys that all collide
//! and turn every lookup into a walk. A key the server generated cannot be chosen that way (a
//! client can only look one up), so these maps hash with foldhash, seeded per map, at a fraction
//! of the cost: SipHash had been 4% of the instructions of a bidi round trip (callgrind), which
//! looks up its session and its request several times. Maps keyed by what clients choose
//! (session names) keep SipHash.

use std::collections::HashMap;

/// A `HashMap` keyed by an id this server generated.
pub(crate) type IdMap<K, V> = HashMap<K, V, IdHasher>;

/// The hasher of an [`IdMap`], also for picking a shard by id.
pub(crate) type IdHasher = foldhash::fast::RandomState;
