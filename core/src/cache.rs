//! The block cache: checked data blocks shared by every reader of one
//! engine, bounded in bytes. A hit costs a hash lookup instead of a `pread`
//! (or, for a memory-mapped segment, a walk of the mapped pages) and a CRC
//! over the block. A block of a mapped segment is cached as its place in the
//! map and its entry offsets only, so the same budget covers about twenty
//! times as many blocks; the page cache holds the bytes.

use std::sync::Arc;

use crate::storage::Mapping;

use quick_cache::sync::Cache;
use quick_cache::Weighter;

/// A data block whose checksum has been verified (CRC trailer removed), with
/// the start offset of each entry, found once when the block is loaded, so a
/// lookup is a binary search instead of a walk.
#[derive(Debug)]
pub struct BlockData {
    bytes: BlockBytes,
    index: BlockIndex,
}

/// What a loaded block knows about its entries, in key order: where each
/// starts, and two bytes of each key taken just past the prefix all its keys
/// share (zero-padded), so a point lookup binary-searches one small array
/// and reads a key from the block only to confirm the match. Four bytes an
/// entry for blocks under 64 KiB (as much as the offsets alone took as
/// `u32`s): the cache's budget is spent on covering more blocks.
#[derive(Debug, Default)]
pub struct BlockIndex {
    /// The entries' offsets (one `u16` each, or two, low half first, in a
    /// block of 64 KiB or more), then their key prefixes.
    slots: Box<[u16]>,
    /// Number of entries (offsets take two slots each when
    /// `slots.len() == 3 * n`).
    n: u32,
    /// Length of the prefix every key of the block shares.
    common: u32,
}

impl BlockIndex {
    /// An index from entry offsets and key prefixes (same length).
    pub fn new(offsets: &[u32], prefixes: &[u16], common: u32) -> Self {
        debug_assert_eq!(offsets.len(), prefixes.len());
        let wide = offsets.iter().any(|&o| o > u16::MAX as u32);
        let mut slots = Vec::with_capacity(offsets.len() * if wide { 3 } else { 2 });
        for &o in offsets {
            slots.push(o as u16);
            if wide {
                slots.push((o >> 16) as u16);
            }
        }
        slots.extend_from_slice(prefixes);
        BlockIndex {
            slots: slots.into(),
            n: offsets.len() as u32,
            common,
        }
    }

    /// Whether offsets take two slots.
    #[inline]
    fn wide(&self) -> bool {
        self.slots.len() > 2 * self.n as usize
    }
}

/// Where a block's bytes live.
#[derive(Debug)]
enum BlockBytes {
    /// Read into memory.
    Owned(Box<[u8]>),
    /// `map[start..start + len]` of a memory-mapped segment.
    Mapped {
        map: Arc<Mapping>,
        start: usize,
        len: usize,
    },
}

impl BlockData {
    /// A block read into memory.
    pub fn owned(bytes: Box<[u8]>, index: BlockIndex) -> Self {
        BlockData {
            bytes: BlockBytes::Owned(bytes),
            index,
        }
    }

    /// A block inside a mapped file; `None` when the range is outside it.
    pub fn mapped(map: Arc<Mapping>, start: usize, len: usize, index: BlockIndex) -> Option<Self> {
        map.get(start..start.checked_add(len)?)?;
        Some(BlockData {
            bytes: BlockBytes::Mapped { map, start, len },
            index,
        })
    }

    /// Number of entries.
    #[inline]
    pub fn entry_count(&self) -> usize {
        self.index.n as usize
    }

    /// Offset in `bytes` of entry `i` (in key order), if there is one.
    #[inline]
    pub fn entry(&self, i: usize) -> Option<u32> {
        let ix = &self.index;
        if i >= ix.n as usize {
            return None;
        }
        Some(if ix.wide() {
            ix.slots[2 * i] as u32 | (ix.slots[2 * i + 1] as u32) << 16
        } else {
            ix.slots[i] as u32
        })
    }

    /// Each entry's key prefix (see [`BlockIndex`]), in key order.
    #[inline]
    pub fn key_prefixes(&self) -> &[u16] {
        let ix = &self.index;
        let start = ix.n as usize * if ix.wide() { 2 } else { 1 };
        &ix.slots[start..]
    }

    /// Length of the prefix every key of the block shares.
    #[inline]
    pub fn common_prefix_len(&self) -> usize {
        self.index.common as usize
    }

    /// The block's entries followed by its entry-count trailer.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        match &self.bytes {
            BlockBytes::Owned(b) => b,
            // In range: checked by `BlockData::mapped`, and a map never shrinks.
            BlockBytes::Mapped { map, start, len } => &map[*start..*start + *len],
        }
    }

    /// Heap bytes this block holds (the mapped bytes belong to the page cache).
    fn heap_bytes(&self) -> usize {
        let own = match &self.bytes {
            BlockBytes::Owned(b) => b.len(),
            BlockBytes::Mapped { .. } => 0,
        };
        own + 2 * self.index.slots.len()
    }
}

/// A shared, verified block.
pub type Block = Arc<BlockData>;

/// Blocks are keyed by the reader's process-unique cache id (see
/// `SegmentReader`) and the block number inside the segment.
type Key = (u64, u32);

#[derive(Debug, Clone, Copy)]
struct BlockWeight;

impl Weighter<Key, Block> for BlockWeight {
    fn weight(&self, _key: &Key, block: &Block) -> u64 {
        // Count the allocation's bookkeeping too, so tiny blocks are not free.
        block.heap_bytes() as u64 + 64
    }
}

/// A byte-bounded cache of verified data blocks.
#[derive(Debug)]
pub struct BlockCache {
    blocks: Cache<Key, Block, BlockWeight>,
}

impl BlockCache {
    /// A cache holding up to `capacity_bytes` of blocks, sized for blocks of
    /// about `block_size` bytes (`mapped`: blocks of mapped segments, which
    /// weigh only their entry offsets, so many more fit).
    pub fn new(capacity_bytes: u64, block_size: usize, mapped: bool) -> Self {
        let weight = if mapped {
            (block_size / 32).max(64) // ~4 bytes per 128-byte entry + bookkeeping
        } else {
            block_size.max(64)
        };
        let items = (capacity_bytes / weight as u64).max(16) as usize;
        BlockCache {
            blocks: Cache::with_weighter(items, capacity_bytes, BlockWeight),
        }
    }

    /// The cached block `block` of the file with cache id `file`, if present.
    pub fn get(&self, file: u64, block: u32) -> Option<Block> {
        self.blocks.get(&(file, block))
    }

    /// Remembers a verified block.
    pub fn insert(&self, file: u64, block: u32, data: Block) {
        self.blocks.insert((file, block), data);
    }

    /// Drops the blocks `0..blocks` of the file with cache id `file`: its
    /// reader is gone, so nothing will ask for them again, and a block of a
    /// mapped file would keep the whole mapping (and a removed file's disk
    /// space) alive until evicted.
    pub fn forget_file(&self, file: u64, blocks: u32) {
        for block in 0..blocks {
            self.blocks.remove(&(file, block));
        }
    }

    /// Bytes currently held.
    pub fn used_bytes(&self) -> u64 {
        self.blocks.weight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_blocks_and_stays_within_capacity() {
        let cache = BlockCache::new(64 << 10, 4096, false);
        let block = |n: usize| -> Block {
            Arc::new(BlockData::owned(
                vec![7u8; n].into(),
                BlockIndex::new(&[0; 4], &[0; 4], 0),
            ))
        };
        let b = block(4096);
        cache.insert(1, 0, Arc::clone(&b));
        assert!(Arc::ptr_eq(&cache.get(1, 0).unwrap(), &b));
        assert!(cache.get(1, 1).is_none());
        assert!(cache.get(2, 0).is_none());
        for i in 0..1000 {
            cache.insert(3, i, block(4096));
        }
        assert!(cache.used_bytes() <= 64 << 10, "{}", cache.used_bytes());
    }

    #[test]
    fn offsets_past_64_kib_take_two_slots() {
        for offsets in [vec![0u32, 7, 65_535], vec![0u32, 65_536, 1 << 23]] {
            let prefixes: Vec<u16> = (0..offsets.len() as u16).map(|p| p * 3).collect();
            let b = BlockData::owned(vec![0u8; 4].into(), BlockIndex::new(&offsets, &prefixes, 5));
            assert_eq!(b.entry_count(), offsets.len());
            let got: Vec<u32> = (0..offsets.len()).map(|i| b.entry(i).unwrap()).collect();
            assert_eq!(got, offsets);
            assert_eq!(b.entry(offsets.len()), None);
            assert_eq!(b.key_prefixes(), prefixes.as_slice());
            assert_eq!(b.common_prefix_len(), 5);
        }
    }
}
