//! A Bloom filter over internal keys, one per segment, so a point lookup reads
//! a data block only from segments that may hold the key.

use xxhash_rust::xxh3::xxh3_64;

/// Hash used for the filter (and stored nowhere else).
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// A built or loaded Bloom filter.
#[derive(Debug, Clone)]
pub(crate) struct Bloom {
    bits: Vec<u8>,
    k: u32,
}

impl Bloom {
    /// Builds a filter over the given key hashes.
    pub(crate) fn build(hashes: &[u64], bits_per_key: u32) -> Self {
        if bits_per_key == 0 {
            return Bloom {
                bits: Vec::new(),
                k: 0,
            };
        }
        let nbits = (hashes.len() * bits_per_key as usize).max(64);
        let nbytes = nbits.div_ceil(8);
        // ln(2) * bits/key probes minimise the false-positive rate.
        let k = ((bits_per_key as f64 * 0.69) as u32).clamp(1, 30);
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
        Bloom { bits, k }
    }

    /// False means the key is certainly absent.
    pub(crate) fn may_contain(&self, hash: u64) -> bool {
        if self.k == 0 || self.bits.is_empty() {
            return true;
        }
        let nbits = (self.bits.len() * 8) as u64;
        let mut x = hash;
        let delta = hash.rotate_right(33) | 1;
        for _ in 0..self.k {
            let bit = x % nbits;
            if self.bits[(bit / 8) as usize] & (1 << (bit % 8)) == 0 {
                return false;
            }
            x = x.wrapping_add(delta);
        }
        true
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.k.to_le_bytes());
        out.extend_from_slice(&self.bits);
    }

    pub(crate) fn decode(buf: &[u8]) -> Option<Self> {
        let k = u32::from_le_bytes(buf.get(0..4)?.try_into().ok()?);
        if k > 30 {
            return None;
        }
        Some(Bloom {
            bits: buf[4..].to_vec(),
            k,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let hashes: Vec<u64> = (0..10_000u32).map(|i| key_hash(&i.to_le_bytes())).collect();
        let b = Bloom::build(&hashes, 10);
        assert!(hashes.iter().all(|&h| b.may_contain(h)));
        let fp = (10_000..110_000u32)
            .filter(|i| b.may_contain(key_hash(&i.to_le_bytes())))
            .count();
        assert!(fp < 2_000, "false positive rate too high: {fp}/100000");
        let d = Bloom::decode(&{
            let mut v = Vec::new();
            b.encode(&mut v);
            v
        })
        .unwrap();
        assert!(hashes.iter().all(|&h| d.may_contain(h)));
    }
}
