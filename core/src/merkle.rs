//! Merkle trees of a namespace's live contents, for sync between replicas.
//!
//! Two devices holding the same namespace compare roots; where the roots
//! differ they compare the 16 children of each differing node, level by
//! level, down to the leaves, and then exchange only the keys of the leaves
//! that differ. A key's leaf depends on the key alone
//! ([`MerkleTree::leaf_of`]), so a changed, added or deleted key changes one
//! leaf and the nodes above it.
//!
//! The hashes are a wire format (both replicas must compute the same bytes),
//! fixed here and in `core/FORMAT.md` ("Merkle trees"), independent of the
//! engine's layout, flushes and compactions:
//!
//! * entry: `E = BLAKE3-derive-key("edgestore merkle entry v1",
//!   u32le(key_len) || key || u64le(value_len) || value)` for each live user
//!   key of the namespace (not deleted, not expired when read) and its value;
//! * leaf of a key: the first four bytes of
//!   `BLAKE3-derive-key("edgestore merkle leaf index v1", key)` read as a
//!   little-endian u32, shifted right by `32 - 4 * depth`;
//! * leaf hash: `L = [0; 32]`, then for each of its entries in key order
//!   (unsigned bytewise order of the user keys, the namespace not part of
//!   them) `L = BLAKE3-derive-key("edgestore merkle leaf v1", L || E)`: a
//!   leaf without entries is 32 zero bytes;
//! * node hash: `BLAKE3-derive-key("edgestore merkle node v1", child_0 ||
//!   ... || child_15)` over its 16 children, up to the root.
//!
//! TTLs and sequence numbers are not hashed: replicas that wrote the same
//! value at different times, or with different expiry instants, agree.

use crate::error::{Error, Result};

/// Children of each inner node.
pub const MERKLE_FANOUT: usize = 16;
/// The deepest tree [`MerkleTree`] builds: 16^4 = 65,536 leaves.
pub const MERKLE_MAX_DEPTH: u32 = 4;
/// The depth the bindings default to: 16^3 = 4,096 leaves, 4,369 nodes
/// (about 140 KB), about 250 keys a leaf at a million keys.
pub const MERKLE_DEFAULT_DEPTH: u32 = 3;

const ENTRY_CONTEXT: &str = "edgestore merkle entry v1";
const LEAF_INDEX_CONTEXT: &str = "edgestore merkle leaf index v1";
const LEAF_CONTEXT: &str = "edgestore merkle leaf v1";
const NODE_CONTEXT: &str = "edgestore merkle node v1";

/// A Merkle tree over one namespace's live `(key, value)` pairs (see the
/// module docs for the exact hashes). Level 0 is the root, level `depth`
/// holds the `16^depth` leaves. Two trees are equal when their depths and
/// nodes are (the entry count is informational).
#[derive(Debug, Clone)]
pub struct MerkleTree {
    depth: u32,
    entries: u64,
    /// Every node, level by level from the root, each level in index order.
    nodes: Vec<[u8; 32]>,
}

/// Index in [`MerkleTree::nodes`] of the first node of `level`:
/// `(16^level - 1) / 15`.
fn level_start(level: u32) -> usize {
    (MERKLE_FANOUT.pow(level) - 1) / (MERKLE_FANOUT - 1)
}

/// The leaf of `key` in a tree of `depth` (checked) levels, hashed with
/// `h`, a fresh or reset hasher of [`LEAF_INDEX_CONTEXT`].
fn leaf_index(h: &mut blake3::Hasher, key: &[u8], depth: u32) -> u32 {
    let b = *h.update(key).finalize().as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) >> (32 - 4 * depth)
}

fn check_depth(depth: u32) -> Result<()> {
    if (1..=MERKLE_MAX_DEPTH).contains(&depth) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "merkle depth {depth} is outside 1..={MERKLE_MAX_DEPTH}"
        )))
    }
}

impl PartialEq for MerkleTree {
    fn eq(&self, other: &Self) -> bool {
        self.depth == other.depth && self.nodes == other.nodes
    }
}

impl Eq for MerkleTree {}

impl MerkleTree {
    /// A peer's tree from its nodes as [`MerkleTree::nodes`] lays them out
    /// (every node, root first, level by level) and the entry count it
    /// reported (0 when unknown), to compare with a local one.
    pub fn from_nodes(depth: u32, entries: u64, nodes: &[[u8; 32]]) -> Result<Self> {
        let want = Self::node_count(depth)?;
        if nodes.len() != want {
            return Err(Error::invalid(format!(
                "a depth {depth} tree has {want} nodes, not {}",
                nodes.len()
            )));
        }
        Ok(MerkleTree {
            depth,
            entries,
            nodes: nodes.to_vec(),
        })
    }

    /// Nodes in a tree of `depth` levels below the root (1 to
    /// [`MERKLE_MAX_DEPTH`]): the length of [`MerkleTree::nodes`].
    pub fn node_count(depth: u32) -> Result<usize> {
        check_depth(depth)?;
        Ok(level_start(depth + 1))
    }

    /// The leaf `key` belongs to in a tree of `depth` levels.
    pub fn leaf_of(key: &[u8], depth: u32) -> Result<u32> {
        check_depth(depth)?;
        Ok(leaf_index(
            &mut blake3::Hasher::new_derive_key(LEAF_INDEX_CONTEXT),
            key,
            depth,
        ))
    }

    /// The root hash.
    pub fn root(&self) -> [u8; 32] {
        self.nodes[0]
    }

    /// Levels below the root.
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Live entries hashed (for a tree made by [`MerkleTree::from_nodes`],
    /// what the peer reported).
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Node `index` of `level` (0: the root; `depth`: the leaves), or `None`
    /// when there is no such node.
    pub fn node(&self, level: u32, index: usize) -> Option<[u8; 32]> {
        self.level(level)?.get(index).copied()
    }

    /// Every node of `level`, in index order (the children of node `i` of
    /// level `l` are nodes `16 i .. 16 i + 16` of level `l + 1`).
    pub fn level(&self, level: u32) -> Option<&[[u8; 32]]> {
        (level <= self.depth).then(|| &self.nodes[level_start(level)..level_start(level + 1)])
    }

    /// Every node, level by level from the root (the layout the C API
    /// copies out).
    pub fn nodes(&self) -> &[[u8; 32]] {
        &self.nodes
    }

    /// The leaves whose hashes differ from `other`'s, in index order, found
    /// by descending only into differing nodes. Both trees must have the
    /// same depth.
    pub fn differing_leaves(&self, other: &MerkleTree) -> Result<Vec<u32>> {
        if other.depth != self.depth {
            return Err(Error::invalid(format!(
                "merkle trees of depths {} and {} cannot be compared",
                self.depth, other.depth
            )));
        }
        let mut differ: Vec<usize> = if self.root() == other.root() {
            Vec::new()
        } else {
            vec![0]
        };
        for level in 1..=self.depth {
            let start = level_start(level);
            differ = differ
                .into_iter()
                .flat_map(|i| i * MERKLE_FANOUT..(i + 1) * MERKLE_FANOUT)
                .filter(|&i| self.nodes[start + i] != other.nodes[start + i])
                .collect();
        }
        // At most 16^4 leaves: every index fits in a u32.
        Ok(differ.into_iter().map(|i| i as u32).collect())
    }
}

/// The leaves a sync asks the pairs of ([`crate::Engine::scan_merkle_leaves`]):
/// a set of leaf indexes of a tree of one depth, and the test of a key
/// against it.
#[derive(Debug)]
pub(crate) struct LeafSet {
    depth: u32,
    /// One bit a leaf (`16^depth` bits, at most 8 KiB).
    wanted: Vec<u64>,
    any: bool,
    index: blake3::Hasher,
}

impl LeafSet {
    /// The set of `leaves` (in any order, repeats allowed) of a tree of
    /// `depth` levels; a leaf past `16^depth - 1` is an error.
    pub(crate) fn new(depth: u32, leaves: &[u32]) -> Result<Self> {
        check_depth(depth)?;
        let n = MERKLE_FANOUT.pow(depth);
        let mut wanted = vec![0u64; n.div_ceil(64)];
        for &leaf in leaves {
            let i = leaf as usize;
            if i >= n {
                return Err(Error::invalid(format!(
                    "merkle leaf {leaf} is outside 0..{n} (depth {depth})"
                )));
            }
            wanted[i / 64] |= 1 << (i % 64);
        }
        Ok(LeafSet {
            depth,
            wanted,
            any: !leaves.is_empty(),
            index: blake3::Hasher::new_derive_key(LEAF_INDEX_CONTEXT),
        })
    }

    /// Whether the set holds no leaf.
    pub(crate) fn is_empty(&self) -> bool {
        !self.any
    }

    /// Whether `key`'s leaf is in the set.
    pub(crate) fn contains_key(&mut self, key: &[u8]) -> bool {
        let i = leaf_index(&mut self.index, key, self.depth) as usize;
        self.index.reset();
        self.wanted[i / 64] >> (i % 64) & 1 == 1
    }
}

/// Builds a [`MerkleTree`] from a namespace's live entries, fed in key order.
#[derive(Debug)]
pub(crate) struct MerkleBuilder {
    depth: u32,
    entries: u64,
    leaves: Vec<[u8; 32]>,
    /// One hasher per context, reset after each use: a new derive-key
    /// hasher hashes its context string first, which doubled the cost of
    /// hashing a short pair.
    entry: blake3::Hasher,
    index: blake3::Hasher,
    chain: blake3::Hasher,
}

impl MerkleBuilder {
    pub(crate) fn new(depth: u32) -> Result<Self> {
        check_depth(depth)?;
        Ok(MerkleBuilder {
            depth,
            entries: 0,
            leaves: vec![[0; 32]; MERKLE_FANOUT.pow(depth)],
            entry: blake3::Hasher::new_derive_key(ENTRY_CONTEXT),
            index: blake3::Hasher::new_derive_key(LEAF_INDEX_CONTEXT),
            chain: blake3::Hasher::new_derive_key(LEAF_CONTEXT),
        })
    }

    /// Adds a live entry; keys must come in ascending order (a scan's).
    pub(crate) fn add(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let key_len = u32::try_from(key.len())
            .map_err(|_| Error::invalid("key too long for a merkle entry"))?;
        let entry = self
            .entry
            .update(&key_len.to_le_bytes())
            .update(key)
            .update(&(value.len() as u64).to_le_bytes())
            .update(value)
            .finalize();
        self.entry.reset();
        let i = leaf_index(&mut self.index, key, self.depth) as usize;
        self.index.reset();
        let leaf = &mut self.leaves[i];
        *leaf = *self
            .chain
            .update(leaf.as_slice())
            .update(entry.as_bytes())
            .finalize()
            .as_bytes();
        self.chain.reset();
        self.entries += 1;
        Ok(())
    }

    pub(crate) fn finish(self) -> MerkleTree {
        // Levels are built from the leaves up, then laid out root first.
        let mut node = blake3::Hasher::new_derive_key(NODE_CONTEXT);
        let mut levels = vec![self.leaves];
        while let Some(below) = levels.last().filter(|l| l.len() > 1) {
            let above = below
                .chunks(MERKLE_FANOUT)
                .map(|children| {
                    let h = *node.update(children.as_flattened()).finalize().as_bytes();
                    node.reset();
                    h
                })
                .collect();
            levels.push(above);
        }
        MerkleTree {
            depth: self.depth,
            entries: self.entries,
            nodes: levels.into_iter().rev().flatten().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(depth: u32, pairs: &[(&[u8], &[u8])]) -> MerkleTree {
        let mut b = MerkleBuilder::new(depth).unwrap();
        for (k, v) in pairs {
            b.add(k, v).unwrap();
        }
        b.finish()
    }

    #[test]
    fn layout_and_bounds() {
        for depth in 1..=MERKLE_MAX_DEPTH {
            let t = tree(depth, &[(b"a", b"1")]);
            assert_eq!(t.nodes().len(), MerkleTree::node_count(depth).unwrap());
            assert_eq!(t.level(depth).unwrap().len(), 16usize.pow(depth));
            assert_eq!(t.level(0).unwrap(), &[t.root()]);
            assert!(t.level(depth + 1).is_none());
            assert!(t.node(depth, 16usize.pow(depth)).is_none());
            // Each inner node hashes its 16 children.
            for level in 0..depth {
                for (i, n) in t.level(level).unwrap().iter().enumerate() {
                    let mut h = blake3::Hasher::new_derive_key(NODE_CONTEXT);
                    for c in &t.level(level + 1).unwrap()[16 * i..16 * i + 16] {
                        h.update(c);
                    }
                    assert_eq!(h.finalize().as_bytes(), n);
                }
            }
        }
        for bad in [0, MERKLE_MAX_DEPTH + 1] {
            assert!(MerkleBuilder::new(bad).is_err());
            assert!(MerkleTree::leaf_of(b"k", bad).is_err());
            assert!(MerkleTree::node_count(bad).is_err());
        }
    }

    #[test]
    fn known_answer() {
        // Pins the wire format: a change to any hash, context string, length
        // encoding or layout changes these bytes, and replicas running the
        // old and new code would disagree forever.
        let t = tree(1, &[(b"k1", b"v1"), (b"k2", b"")]);
        assert_eq!(t.entries(), 2);
        let leaf = |k: &[u8]| MerkleTree::leaf_of(k, 1).unwrap();
        let e = |k: &[u8], v: &[u8]| {
            let mut m = Vec::new();
            m.extend_from_slice(&(k.len() as u32).to_le_bytes());
            m.extend_from_slice(k);
            m.extend_from_slice(&(v.len() as u64).to_le_bytes());
            m.extend_from_slice(v);
            blake3::derive_key(ENTRY_CONTEXT, &m)
        };
        let chain = |l: [u8; 32], e: [u8; 32]| {
            let mut m = l.to_vec();
            m.extend_from_slice(&e);
            blake3::derive_key(LEAF_CONTEXT, &m)
        };
        let mut leaves = [[0u8; 32]; 16];
        for (k, v) in [(&b"k1"[..], &b"v1"[..]), (b"k2", b"")] {
            let i = leaf(k) as usize;
            leaves[i] = chain(leaves[i], e(k, v));
        }
        assert_eq!(t.level(1).unwrap(), &leaves);
        assert_eq!(t.root(), blake3::derive_key(NODE_CONTEXT, &leaves.concat()));
        assert_eq!(
            blake3::Hash::from(t.root()).to_hex().as_str(),
            "3996ef4e76afe7279a9fb4ba4f626b5759b4845afbd8f29c811192f38e3c0395"
        );
    }

    #[test]
    fn a_changed_key_changes_its_leaf_and_nothing_else() {
        let keys: Vec<Vec<u8>> = (0..2000u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let pairs = |changed: Option<usize>| -> MerkleTree {
            let mut b = MerkleBuilder::new(3).unwrap();
            for (i, k) in keys.iter().enumerate() {
                let v: &[u8] = if Some(i) == changed { b"new" } else { b"old" };
                b.add(k, v).unwrap();
            }
            b.finish()
        };
        let base = pairs(None);
        assert_eq!(base.differing_leaves(&base).unwrap(), Vec::<u32>::new());
        for changed in [0, 777, 1999] {
            let t = pairs(Some(changed));
            assert_ne!(t.root(), base.root());
            assert_eq!(
                t.differing_leaves(&base).unwrap(),
                vec![MerkleTree::leaf_of(&keys[changed], 3).unwrap()]
            );
        }
        // A missing key: its leaf differs too.
        let mut b = MerkleBuilder::new(3).unwrap();
        for k in keys.iter().skip(1) {
            b.add(k, b"old").unwrap();
        }
        let t = b.finish();
        assert_eq!(
            t.differing_leaves(&base).unwrap(),
            vec![MerkleTree::leaf_of(&keys[0], 3).unwrap()]
        );
        assert!(t.differing_leaves(&tree(2, &[])).is_err());
    }

    #[test]
    fn a_peer_tree_is_rebuilt_from_its_nodes() {
        let local = tree(2, &[(b"a", b"1"), (b"b", b"2")]);
        let peer = MerkleTree::from_nodes(2, 2, local.nodes()).unwrap();
        assert_eq!(peer, local);
        assert_eq!((peer.root(), peer.entries()), (local.root(), 2));
        // The count is informational: equal nodes, equal trees.
        assert_eq!(MerkleTree::from_nodes(2, 0, local.nodes()).unwrap(), local);
        let other = tree(2, &[(b"a", b"1")]);
        let theirs = MerkleTree::from_nodes(2, 1, other.nodes()).unwrap();
        assert_eq!(
            local.differing_leaves(&theirs).unwrap(),
            vec![MerkleTree::leaf_of(b"b", 2).unwrap()]
        );
        assert!(MerkleTree::from_nodes(2, 0, &local.nodes()[1..]).is_err());
        assert!(MerkleTree::from_nodes(1, 0, local.nodes()).is_err());
        assert!(MerkleTree::from_nodes(0, 0, &[]).is_err());
    }

    #[test]
    fn key_and_value_boundaries_are_part_of_the_hash() {
        // ("ab", "c") and ("a", "bc") concatenate alike: the lengths tell them apart.
        let a = tree(1, &[(b"ab", b"c")]);
        let b = tree(1, &[(b"a", b"bc")]);
        assert_ne!(a.root(), b.root());
        assert_ne!(tree(1, &[]).root(), tree(1, &[(b"", b"")]).root());
    }
}
