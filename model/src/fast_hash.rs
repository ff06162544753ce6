//! Hash maps for the pipeline's hot path, keyed by plates, tag fingerprints,
//! reader ids and partition numbers.
//!
//! The standard library's SipHash-1-3 resists hash flooding from untrusted keys,
//! and pays for it on every probe: for a 17-byte plate key, hashing cost about as
//! much as the probe's likely cache miss. The keys here come from the city's own
//! authenticated devices through Kafka, and from hotlists only police may edit,
//! not from the open internet, so foldhash's per-process random seed is enough (it
//! is what hashbrown itself defaults to). The API's own maps keep the standard
//! hasher.

/// A `HashMap` with foldhash's randomly seeded fast hasher.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// A `HashSet` with foldhash's randomly seeded fast hasher.
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// An empty map with room for `capacity` entries.
pub fn map_with_capacity<K, V>(capacity: usize) -> FastMap<K, V> {
    FastMap::with_capacity_and_hasher(capacity, Default::default())
}
