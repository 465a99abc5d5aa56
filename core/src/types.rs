//! Record types shared by the WAL, memtable, segments and compactor, the
//! internal key encoding, and the documented size limits.

use crate::error::{Error, Result};

/// Longest namespace, in bytes. Namespaces may be empty.
pub const MAX_NAMESPACE_LEN: usize = 255;
/// Longest key, in bytes. Keys may be empty (the empty key sorts first).
pub const MAX_KEY_LEN: usize = 16 * 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_LEN: usize = 64 * 1024 * 1024;
/// Largest write batch (sum of keys and values), in bytes.
pub const MAX_BATCH_BYTES: usize = 256 * 1024 * 1024;

/// Death time of a record that never expires (TTL 0).
pub const NEVER: i64 = i64::MAX;
/// Cohort bucket of records that never expire.
pub const PERMANENT_COHORT: u64 = u64::MAX;

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Kind of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// A value for the key.
    Put,
    /// A tombstone: the key is deleted.
    Delete,
}

impl Operation {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Operation::Put => 1,
            Operation::Delete => 2,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Operation::Put),
            2 => Some(Operation::Delete),
            _ => None,
        }
    }
}

/// One version of one key, as it travels from the memtable to a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemEntry {
    /// The internal key: [`encode_key`] of namespace and user key.
    pub key: Vec<u8>,
    /// The value (`None` for a tombstone).
    pub value: Option<Vec<u8>>,
    /// Put or delete.
    pub op: Operation,
    /// Sequence number: a higher LSN always wins.
    pub lsn: u64,
    /// Write time in nanoseconds since the Unix epoch (from the engine's clock).
    pub timestamp: i64,
    /// Time to live in seconds; 0 means the record never expires.
    pub ttl: u32,
}

/// A version read in place (from a memtable node or a cached block), so a
/// point read copies the value at most once, into the caller's buffer.
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a> {
    /// The value (`None` for a tombstone).
    pub value: Option<&'a [u8]>,
    /// Put or delete.
    pub op: Operation,
    /// Sequence number.
    pub lsn: u64,
    /// Write time in nanoseconds.
    pub timestamp: i64,
    /// Time to live in seconds (0 = never expires).
    pub ttl: u32,
}

impl EntryRef<'_> {
    /// An owned copy of this version under internal key `key`.
    pub fn to_owned_entry(&self, key: &[u8]) -> MemEntry {
        MemEntry {
            key: key.to_vec(),
            value: self.value.map(<[u8]>::to_vec),
            op: self.op,
            lsn: self.lsn,
            timestamp: self.timestamp,
            ttl: self.ttl,
        }
    }

    /// Whether the version is a live value at `now_nanos`.
    pub fn is_live_at(&self, now_nanos: i64) -> bool {
        is_live(self.op, self.timestamp, self.ttl, || now_nanos)
    }
}

impl MemEntry {
    /// This version borrowed as a record (what [`crate::memtable::Memtable::insert`] takes).
    pub fn record(&self) -> EntryRef<'_> {
        EntryRef {
            value: self.value.as_deref(),
            op: self.op,
            lsn: self.lsn,
            timestamp: self.timestamp,
            ttl: self.ttl,
        }
    }

    /// When this record stops being readable; [`NEVER`] for TTL 0.
    pub fn death_time(&self) -> i64 {
        death_time(self.timestamp, self.ttl)
    }

    /// Whether the record is a live value at `now_nanos`.
    pub fn is_live_at(&self, now_nanos: i64) -> bool {
        is_live(self.op, self.timestamp, self.ttl, || now_nanos)
    }
}

/// Whether a record (`op`, written at `timestamp` with `ttl_secs`) is a live
/// value at the time `now` returns. A record without a TTL never dies, so
/// `now` (a clock read) is called only for one with a TTL.
#[inline]
pub fn is_live(op: Operation, timestamp: i64, ttl_secs: u32, now: impl FnOnce() -> i64) -> bool {
    op == Operation::Put && (ttl_secs == 0 || now() < death_time(timestamp, ttl_secs))
}

/// Death time of a record written at `timestamp` with `ttl_secs` (0 = never).
pub fn death_time(timestamp: i64, ttl_secs: u32) -> i64 {
    if ttl_secs == 0 {
        NEVER
    } else {
        timestamp.saturating_add(ttl_secs as i64 * NANOS_PER_SEC)
    }
}

/// The cohort a death time belongs to: records that die in the same window
/// of `window_secs` share a bucket; records that never die share [`PERMANENT_COHORT`].
pub fn cohort_bucket(death_time_nanos: i64, window_secs: u64) -> u64 {
    if death_time_nanos == NEVER {
        return PERMANENT_COHORT;
    }
    let secs = death_time_nanos.max(0) / NANOS_PER_SEC;
    // A window of zero would divide by zero; treat it as one second.
    (secs as u64) / window_secs.max(1)
}

/// Encodes a namespace and user key into the internal key:
/// `[ns_len: u8][ns bytes][key bytes]`.
///
/// Within one namespace internal keys sort exactly as user keys do, so range
/// and prefix scans map onto contiguous internal ranges. Callers of the public
/// API are checked by [`check_key`]; this function truncates nothing and
/// assumes `ns.len() <= 255`.
pub fn encode_key(ns: &[u8], key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + ns.len() + key.len());
    out.push(ns.len().min(MAX_NAMESPACE_LEN) as u8);
    out.extend_from_slice(&ns[..ns.len().min(MAX_NAMESPACE_LEN)]);
    out.extend_from_slice(key);
    out
}

/// Calls `f` on [`encode_key`]`(ns, key)` built in a buffer on the stack when
/// it is short (the common case), on the heap otherwise: a point read
/// encodes its key once per call and this spares it an allocation.
pub(crate) fn with_encoded_key<R>(ns: &[u8], key: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    const STACK: usize = 64;
    let ns = &ns[..ns.len().min(MAX_NAMESPACE_LEN)];
    let n = 1 + ns.len() + key.len();
    if n > STACK {
        return f(&encode_key(ns, key));
    }
    let mut buf = [0u8; STACK];
    buf[0] = ns.len() as u8;
    buf[1..1 + ns.len()].copy_from_slice(ns);
    buf[1 + ns.len()..n].copy_from_slice(key);
    f(&buf[..n])
}

/// Splits an internal key back into `(namespace, user key)`.
pub fn decode_key(internal: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&len, rest) = internal.split_first()?;
    let len = len as usize;
    if rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

/// Bytewise order of two keys (as `Ord` on slices). Keys are short:
/// comparing eight bytes at a time in registers beats a call to `memcmp`,
/// and a point read or a memtable insert compares keys some twenty times.
#[inline]
pub(crate) fn key_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_be_bytes(a[i..i + 8].try_into().unwrap_or_default());
        let y = u64::from_be_bytes(b[i..i + 8].try_into().unwrap_or_default());
        if x != y {
            return x.cmp(&y);
        }
        i += 8;
    }
    if i < n && n >= 8 {
        // The tail, as the last eight bytes of the common length: the bytes
        // it shares with the words above are equal, so the first difference
        // in it is the tail's (and no call to memcmp for a few bytes).
        let x = u64::from_be_bytes(a[n - 8..n].try_into().unwrap_or_default());
        let y = u64::from_be_bytes(b[n - 8..n].try_into().unwrap_or_default());
        if x != y {
            return x.cmp(&y);
        }
        return a.len().cmp(&b.len());
    }
    a[i..].cmp(&b[i..])
}

/// The hash of an internal key: segments' Bloom filters are built from it
/// (so it is part of the file format: another function would make every
/// existing filter answer wrongly) and memtables' point indexes probe with
/// it, so a point read hashes its key once for both.
#[inline]
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// Whether key `a` sorts before `b` ([`key_cmp`]).
#[inline]
pub(crate) fn key_lt(a: &[u8], b: &[u8]) -> bool {
    key_cmp(a, b).is_lt()
}

/// The eight bytes of `key` from `at` as a big-endian word, zero-padded.
/// Ordering keys that share their first `at` bytes by this word never
/// contradicts [`key_cmp`] (equal words decide nothing): segment fences and
/// the scan merge compare words first and whole keys only on a tie.
#[inline]
pub(crate) fn word_at(key: &[u8], at: usize) -> u64 {
    if let Some(w) = key.get(at..).and_then(<[u8]>::first_chunk::<8>) {
        return u64::from_be_bytes(*w);
    }
    // Fewer than eight bytes from `at` (the end of a key, the usual case
    // for a point read's key past a long shared prefix): no variable-length
    // copy, which would be a call to `memcpy`.
    let n = key.len().saturating_sub(at);
    if n == 0 {
        return 0;
    }
    match key.last_chunk::<8>() {
        // The key's last eight bytes end with the `n` wanted: shift them up.
        Some(last) => u64::from_be_bytes(*last) << (8 * (8 - n)),
        None => key[at..]
            .iter()
            .enumerate()
            .fold(0, |w, (i, &b)| w | u64::from(b) << (56 - 8 * i)),
    }
}

/// Length of the namespace prefix of internal keys in `ns`.
pub(crate) fn ns_prefix_len(ns: &[u8]) -> usize {
    1 + ns.len()
}

/// Checks a namespace and key against the documented limits.
pub fn check_key(ns: &[u8], key: &[u8]) -> Result<()> {
    if ns.len() > MAX_NAMESPACE_LEN {
        return Err(Error::invalid(format!(
            "namespace is {} bytes; the limit is {MAX_NAMESPACE_LEN}",
            ns.len()
        )));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::invalid(format!(
            "key is {} bytes; the limit is {MAX_KEY_LEN}",
            key.len()
        )));
    }
    Ok(())
}

/// Checks a value against the documented limit.
pub fn check_value(value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_LEN {
        return Err(Error::invalid(format!(
            "value is {} bytes; the limit is {MAX_VALUE_LEN}",
            value.len()
        )));
    }
    Ok(())
}

/// The smallest byte string greater than every string that starts with `prefix`,
/// or `None` when no such string exists (prefix is all 0xFF).
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last != 0xFF {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn liveness_reads_the_clock_only_for_records_with_a_ttl() {
        let t0 = 1_000 * NANOS_PER_SEC;
        let no_clock = || -> i64 { panic!("clock read for a record without a TTL") };
        assert!(is_live(Operation::Put, t0, 0, no_clock));
        assert!(!is_live(Operation::Delete, t0, 0, no_clock));
        // TTL 0 never dies, even at the last instant the clock can tell.
        assert!(is_live(Operation::Put, t0, 0, || i64::MAX));
        let dies = death_time(t0, 5);
        assert!(is_live(Operation::Put, t0, 5, || dies - 1));
        assert!(!is_live(Operation::Put, t0, 5, || dies));
        assert!(!is_live(Operation::Delete, t0, 5, || dies - 1));
    }

    use super::*;

    #[test]
    fn stack_encoded_keys_match_encode_key() {
        for (ns, key) in [
            (&b""[..], &b""[..]),
            (b"ns", b"k"),
            (b"b", &[7u8; 62][..]),
            (b"b", &[7u8; 63][..]),
            (b"namespace", &[1u8; 200][..]),
        ] {
            with_encoded_key(ns, key, |k| assert_eq!(k, encode_key(ns, key)));
        }
    }

    #[test]
    fn encoding_keeps_user_key_order_within_namespace() {
        let a = encode_key(b"ns", b"a");
        let b = encode_key(b"ns", b"ab");
        let c = encode_key(b"ns", b"b");
        assert!(a < b && b < c);
        assert_eq!(decode_key(&b), Some((&b"ns"[..], &b"ab"[..])));
        // Namespaces never interleave: "a"+"zz" stays apart from "ab"+"".
        assert_ne!(encode_key(b"a", b"b"), encode_key(b"ab", b""));
    }

    #[test]
    fn ttl_zero_never_dies() {
        assert_eq!(death_time(123, 0), NEVER);
        assert_eq!(cohort_bucket(NEVER, 3600), PERMANENT_COHORT);
        assert_eq!(death_time(0, 2), 2_000_000_000);
        assert_eq!(cohort_bucket(7_200_000_000_000, 3600), 2);
        assert_eq!(cohort_bucket(5, 0), 0);
    }

    #[test]
    fn prefix_successor_handles_ff() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
    }

    #[test]
    fn limits_are_enforced() {
        assert!(check_key(&[0; 256], b"k").is_err());
        assert!(check_key(b"ns", &vec![0; MAX_KEY_LEN + 1]).is_err());
        assert!(check_key(b"", b"").is_ok());
        assert!(check_value(&[0; 10]).is_ok());
    }
}

#[cfg(test)]
mod key_order_tests {
    use super::{key_cmp, key_lt, word_at};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn key_lt_is_slice_order(a in proptest::collection::vec(any::<u8>(), 0..40),
                                 b in proptest::collection::vec(any::<u8>(), 0..40),
                                 shared in 0usize..24) {
            // Often share a prefix, so the tail comparison is exercised too.
            let mut b2 = a[..shared.min(a.len())].to_vec();
            b2.extend_from_slice(&b);
            for (x, y) in [(&a, &b), (&a, &b2), (&b2, &a)] {
                prop_assert_eq!(key_lt(x, y), x < y);
                prop_assert_eq!(key_cmp(x, y), x.cmp(y));
            }
        }

        #[test]
        fn words_past_a_shared_prefix_never_contradict_key_order(
            prefix in proptest::collection::vec(any::<u8>(), 0..4),
            a in proptest::collection::vec(any::<u8>(), 0..20),
            b in proptest::collection::vec(any::<u8>(), 0..20),
            shared in 0usize..12,
        ) {
            let x = [&prefix[..], &a[..]].concat();
            let mut y = [&prefix[..], &a[..shared.min(a.len())]].concat();
            y.extend_from_slice(&b);
            for (k, at) in [(&x, 0), (&x, prefix.len()), (&y, prefix.len()), (&y, 3), (&x, x.len()), (&y, y.len() + 2)] {
                // The eight bytes from `at`, zero-padded, as the simplest code says.
                let mut b = [0u8; 8];
                for (i, byte) in k.iter().skip(at).take(8).enumerate() {
                    b[i] = *byte;
                }
                prop_assert_eq!(word_at(k, at), u64::from_be_bytes(b), "{:?} at {}", k, at);
            }
            let (wx, wy) = (word_at(&x, prefix.len()), word_at(&y, prefix.len()));
            if wx != wy {
                prop_assert_eq!(wx.cmp(&wy), x.cmp(&y));
            }
        }
    }
}
