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
    /// Offset of each entry in `bytes`, in key order.
    pub entries: Box<[u32]>,
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
    pub fn owned(bytes: Box<[u8]>, entries: Box<[u32]>) -> Self {
        BlockData {
            bytes: BlockBytes::Owned(bytes),
            entries,
        }
    }

    /// A block inside a mapped file; `None` when the range is outside it.
    pub fn mapped(
        map: Arc<Mapping>,
        start: usize,
        len: usize,
        entries: Box<[u32]>,
    ) -> Option<Self> {
        map.get(start..start.checked_add(len)?)?;
        Some(BlockData {
            bytes: BlockBytes::Mapped { map, start, len },
            entries,
        })
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
        own + 4 * self.entries.len()
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
            (block_size / 32).max(64) // ~one u32 offset per 128-byte entry + bookkeeping
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
            Arc::new(BlockData::owned(vec![7u8; n].into(), vec![0u32; 4].into()))
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
}
