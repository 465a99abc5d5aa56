//! A Bloom filter over internal keys, one per segment, so a point lookup reads
//! a data block only from segments that may hold the key.
//!
//! Segments of format version 2 use a cache-local ("blocked") filter: each
//! key sets its `k` bits inside one 512-bit line chosen by the high half of
//! its hash, so a probe touches one cache line instead of `k` (a point read
//! of a stored key checks every bit, and the filters of a large database do
//! not fit in the CPU cache). Version 1 files keep the classic filter
//! (`k` bits spread over the whole array), read as before.

pub(crate) use crate::types::key_hash;

/// Flag in the stored `k` field marking a blocked filter.
const BLOCKED: u32 = 1 << 31;
/// Bits per line of a blocked filter (one 64-byte cache line).
const LINE_BITS: u64 = 512;

/// One cache line of a blocked filter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(align(64))]
pub(crate) struct Line([u64; 8]);

/// A built or loaded Bloom filter.
#[derive(Debug, Clone)]
pub(crate) enum Bloom {
    /// Version 1: `k` probes over the whole bit array (double hashing).
    Classic { bits: Vec<u8>, k: u32 },
    /// Version 2: `k` probes inside one 512-bit line.
    Blocked { lines: Vec<Line>, k: u32 },
}

/// Probes per key: ln(2) * bits/key minimises the false-positive rate.
fn probes(bits_per_key: u32) -> u32 {
    ((bits_per_key as f64 * 0.69) as u32).clamp(1, 30)
}

/// The line of a blocked filter of `n` lines that `hash` selects.
#[inline]
fn line_of(hash: u64, n: usize) -> usize {
    // Multiply-shift of the high half: uniform, and no division.
    (((hash >> 32) * n as u64) >> 32) as usize
}

/// The in-line bit positions of `hash`: the low half, remixed per probe.
#[inline]
fn line_bits(hash: u64, k: u32) -> impl Iterator<Item = u32> {
    let mut h = hash as u32;
    (0..k).map(move |_| {
        let bit = h >> (32 - 9);
        h = h.wrapping_mul(0x9E37_79B9);
        bit
    })
}

impl Bloom {
    /// Builds a blocked filter over the given key hashes (`bits_per_key` 0:
    /// no filter, every key may be present).
    pub(crate) fn build(hashes: &[u64], bits_per_key: u32) -> Self {
        if bits_per_key == 0 {
            return Bloom::Blocked {
                lines: Vec::new(),
                k: 0,
            };
        }
        let nbits = (hashes.len() as u64 * bits_per_key as u64).max(LINE_BITS);
        let n = nbits.div_ceil(LINE_BITS) as usize;
        let k = probes(bits_per_key);
        let mut lines = vec![Line::default(); n];
        for &h in hashes {
            let line = &mut lines[line_of(h, n)];
            for bit in line_bits(h, k) {
                line.0[(bit / 64) as usize] |= 1 << (bit % 64);
            }
        }
        Bloom::Blocked { lines, k }
    }

    /// Builds a classic (version 1) filter: what older segments hold.
    pub(crate) fn build_classic(hashes: &[u64], bits_per_key: u32) -> Self {
        if bits_per_key == 0 {
            return Bloom::Classic {
                bits: Vec::new(),
                k: 0,
            };
        }
        let nbits = (hashes.len() * bits_per_key as usize).max(64);
        let nbytes = nbits.div_ceil(8);
        let k = probes(bits_per_key);
        let mut bits = vec![0u8; nbytes];
        let nbits = (nbytes * 8) as u64;
        for &h in hashes {
            let mut x = h;
            let delta = h.rotate_right(33) | 1;
            for _ in 0..k {
                let bit = x % nbits;
                bits[(bit / 8) as usize] |= 1 << (bit % 8);
                x = x.wrapping_add(delta);
            }
        }
        Bloom::Classic { bits, k }
    }

    /// Asks the CPU to start loading the cache line that
    /// [`Bloom::may_contain`] will read for `hash`: a hint with no effect on
    /// results, so that the probes of many filters (one per sorted run) wait
    /// for their cache misses together instead of one after another.
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64) {
        if let Bloom::Blocked { lines, .. } = self {
            if !lines.is_empty() {
                super::prefetch(&lines[line_of(hash, lines.len())]);
            }
        }
    }

    /// False means the key is certainly absent.
    #[inline]
    pub(crate) fn may_contain(&self, hash: u64) -> bool {
        match self {
            Bloom::Blocked { lines, k } => {
                if *k == 0 || lines.is_empty() {
                    return true;
                }
                let line = &lines[line_of(hash, lines.len())];
                // Every probe, without stopping at the first clear bit: a
                // point read asks one filter per run, mostly for keys the run
                // lacks, and an early exit there is a branch taken at random.
                line_bits(hash, *k).fold(true, |all, bit| {
                    all & (line.0[(bit / 64) as usize] >> (bit % 64) & 1 != 0)
                })
            }
            Bloom::Classic { bits, k } => {
                if *k == 0 || bits.is_empty() {
                    return true;
                }
                let nbits = (bits.len() * 8) as u64;
                let mut x = hash;
                let delta = hash.rotate_right(33) | 1;
                for _ in 0..*k {
                    let bit = x % nbits;
                    if bits[(bit / 8) as usize] & (1 << (bit % 8)) == 0 {
                        return false;
                    }
                    x = x.wrapping_add(delta);
                }
                true
            }
        }
    }

    /// `k u32` (with the blocked flag for version 2) then the bits; the
    /// lines' words little-endian.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Bloom::Blocked { lines, k } => {
                out.extend_from_slice(&(k | BLOCKED).to_le_bytes());
                for w in lines.iter().flat_map(|l| l.0) {
                    out.extend_from_slice(&w.to_le_bytes());
                }
            }
            Bloom::Classic { bits, k } => {
                out.extend_from_slice(&k.to_le_bytes());
                out.extend_from_slice(bits);
            }
        }
    }

    /// Decodes a filter of a segment of format `version`: version 1 holds a
    /// classic filter, versions 2 and later a blocked one. `None` when it is
    /// malformed.
    pub(crate) fn decode(buf: &[u8], version: u32) -> Option<Self> {
        let field = u32::from_le_bytes(buf.get(0..4)?.try_into().ok()?);
        let body = &buf[4..];
        match (version, field & BLOCKED != 0) {
            (1, false) => {
                if field > 30 {
                    return None;
                }
                Some(Bloom::Classic {
                    bits: body.to_vec(),
                    k: field,
                })
            }
            (2.., true) => {
                let k = field & !BLOCKED;
                if k > 30 || !body.len().is_multiple_of(64) {
                    return None;
                }
                let lines = body
                    .chunks_exact(64)
                    .map(|c| {
                        let mut l = Line::default();
                        for (w, b) in l.0.iter_mut().zip(c.chunks_exact(8)) {
                            *w = u64::from_le_bytes(b.try_into().unwrap_or_default());
                        }
                        l
                    })
                    .collect();
                Some(Bloom::Blocked { lines, k })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(b: &Bloom, version: u32) -> Bloom {
        let mut v = Vec::new();
        b.encode(&mut v);
        Bloom::decode(&v, version).unwrap()
    }

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let hashes: Vec<u64> = (0..10_000u32).map(|i| key_hash(&i.to_le_bytes())).collect();
        for (b, version, most) in [
            (Bloom::build(&hashes, 10), 2, 2_000),
            (Bloom::build_classic(&hashes, 10), 1, 2_000),
        ] {
            assert!(hashes.iter().all(|&h| b.may_contain(h)));
            let fp = (10_000..110_000u32)
                .filter(|i| b.may_contain(key_hash(&i.to_le_bytes())))
                .count();
            eprintln!("v{version}: {fp} false positives in 100000");
            assert!(
                fp < most,
                "false positive rate too high: {fp}/100000 (v{version})"
            );
            let d = roundtrip(&b, version);
            assert!(hashes.iter().all(|&h| d.may_contain(h)));
            let fp2 = (10_000..110_000u32)
                .filter(|i| d.may_contain(key_hash(&i.to_le_bytes())))
                .count();
            assert_eq!(fp, fp2, "decoding changed the filter (v{version})");
        }
    }

    #[test]
    fn a_filter_is_read_only_as_its_own_version() {
        let hashes: Vec<u64> = (0..100u32).map(|i| key_hash(&i.to_le_bytes())).collect();
        let mut blocked = Vec::new();
        Bloom::build(&hashes, 10).encode(&mut blocked);
        let mut classic = Vec::new();
        Bloom::build_classic(&hashes, 10).encode(&mut classic);
        assert!(Bloom::decode(&blocked, 1).is_none());
        assert!(Bloom::decode(&classic, 2).is_none());
        assert!(Bloom::decode(&classic, 3).is_none());
        assert!(Bloom::decode(&blocked, 3).is_some());
        // A blocked filter's bits are whole lines.
        assert!(Bloom::decode(&blocked[..blocked.len() - 1], 2).is_none());
        // No filter (0 bits per key) admits every key, in both encodings.
        assert!(roundtrip(&Bloom::build(&hashes, 0), 2).may_contain(12345));
        assert!(roundtrip(&Bloom::build_classic(&hashes, 0), 1).may_contain(12345));
    }
}
