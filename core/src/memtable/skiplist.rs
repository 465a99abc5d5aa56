//! The memtable's skip list: nodes carved from an arena, one writer at a
//! time, readers without locks, nothing freed until the whole list is.
//!
//! A memtable only grows and is dropped whole, and the engine already
//! serialises its writes under the WAL lock. So a node needs no reference
//! count, no epoch and no allocation of its own: header, tower, key and value
//! sit in one arena slot (one or two cache lines for a small record), a read
//! is a walk of acquire loads, and dropping a flushed memtable frees a few
//! large chunks instead of several small allocations a record.
//!
//! Ordering: internal key ascending ([`key_cmp`]), then LSN descending, so the
//! newest version of a key visible at some LSN is the first entry at or after
//! `(key, lsn)`, and its older versions follow it.
//!
//! Beside the list, a hash index maps each key to its newest version, so a
//! point read costs a probe or two instead of a walk down the towers (some
//! thirty dependent cache misses in a memtable of 50k records), and a read of
//! a key the memtable does not hold usually stops at an empty slot.

use std::alloc::{self, Layout};
use std::cmp::Ordering;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ptr::{self, NonNull};
use std::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering as AtomicOrdering,
};
use std::sync::{Mutex, PoisonError};

use crate::types::{key_cmp, key_hash, EntryRef, Operation};

/// Levels of the tallest tower: with a branching factor of 4, searches stay
/// logarithmic up to 4^12 (16M) entries, far past any memtable's size.
const MAX_HEIGHT: usize = 12;

/// A node's fixed part. In the arena it is followed by `height` tower slots
/// (`AtomicPtr<Node>`, the successor at each level), the key, then the value.
/// Everything but the tower is written once, before the node is published.
#[repr(C)]
struct Node {
    lsn: u64,
    timestamp: i64,
    ttl: u32,
    key_len: u32,
    value_len: u32,
    op: Operation,
    has_value: bool,
    height: u8,
}

const HEADER: usize = size_of::<Node>();
const SLOT: usize = size_of::<AtomicPtr<Node>>();
/// Alignment of every node (and so of every arena slot).
const ALIGN: usize = align_of::<Node>();
const _: () = assert!(HEADER.is_multiple_of(SLOT) && align_of::<AtomicPtr<Node>>() <= ALIGN);

/// The tower slot of `node` at `level`.
///
/// # Safety
/// `node` points to a node of a live list (from its arena, with provenance
/// over the whole slot) whose tower has been initialised, and `level <
/// height` of that node.
#[inline]
unsafe fn slot<'a>(node: *const Node, level: usize) -> &'a AtomicPtr<Node> {
    // SAFETY: per the contract, the slot lies inside the node's arena slot,
    // is aligned (HEADER and SLOT are multiples of the pointer's alignment)
    // and initialised; slots are only ever accessed atomically.
    unsafe {
        &*node
            .cast::<u8>()
            .add(HEADER + level * SLOT)
            .cast::<AtomicPtr<Node>>()
    }
}

/// The bytes `len` long at `offset` past the end of `node`'s tower.
///
/// # Safety
/// As for [`slot`]; `node` is published (its key and value are written and
/// never change), and `offset + len` lies within its slot.
#[inline]
unsafe fn bytes<'a>(node: *const Node, offset: usize, len: usize) -> &'a [u8] {
    // SAFETY: per the contract.
    unsafe {
        let height = usize::from((*node).height);
        let start = node.cast::<u8>().add(HEADER + height * SLOT + offset);
        std::slice::from_raw_parts(start, len)
    }
}

/// A published entry of a list borrowed for `'a`.
#[derive(Clone, Copy)]
pub(super) struct Entry<'a> {
    node: NonNull<Node>,
    _list: PhantomData<&'a SkipList>,
}

impl<'a> Entry<'a> {
    /// # Safety
    /// `node` is null or a published node of a list that lives for `'a`.
    #[inline]
    unsafe fn new(node: *mut Node) -> Option<Self> {
        NonNull::new(node).map(|node| Entry {
            node,
            _list: PhantomData,
        })
    }

    #[inline]
    fn header(&self) -> &'a Node {
        // SAFETY: an entry only exists for a published node of a list
        // borrowed for 'a; its header is never written after publication.
        unsafe { &*self.node.as_ptr() }
    }

    /// The internal key.
    #[inline]
    pub(super) fn key(&self) -> &'a [u8] {
        // SAFETY: an entry is a published node of a live list.
        unsafe { key_of(self.node.as_ptr()) }
    }

    /// The version's sequence number.
    #[inline]
    pub(super) fn lsn(&self) -> u64 {
        self.header().lsn
    }

    /// The record as the memtable's readers see it, borrowed in place.
    #[inline]
    pub(super) fn record(&self) -> EntryRef<'a> {
        let n = self.header();
        let value = n.has_value.then(|| {
            // SAFETY: the value follows the key and was written before publication.
            unsafe { bytes(self.node.as_ptr(), n.key_len as usize, n.value_len as usize) }
        });
        EntryRef {
            value,
            op: n.op,
            lsn: n.lsn,
            timestamp: n.timestamp,
            ttl: n.ttl,
        }
    }

    /// The entry after this one in list order.
    #[inline]
    pub(super) fn next(&self) -> Option<Entry<'a>> {
        // SAFETY: a published node's level-0 slot is initialised, and what it
        // points to was published (release store, read by acquire).
        unsafe { Entry::new(slot(self.node.as_ptr(), 0).load(AtomicOrdering::Acquire)) }
    }
}

/// The key of `node`.
///
/// # Safety
/// `node` is a published node of a live list.
#[inline]
unsafe fn key_of<'a>(node: *const Node) -> &'a [u8] {
    // SAFETY: per the contract.
    unsafe { bytes(node, 0, (*node).key_len as usize) }
}

/// Where an entry is, without a borrow of its list: what a cursor that owns
/// its memtable keeps between steps. Only [`SkipList::at`] of the same list
/// turns it back into an entry.
#[derive(Clone, Copy)]
pub(super) struct Position(NonNull<Node>);

// SAFETY: a position is the address of a published node, which never
// changes or moves while its list lives; it is only dereferenced through
// `SkipList::at`, whose caller vouches that the list is the node's.
unsafe impl Send for Position {}
// SAFETY: as above.
unsafe impl Sync for Position {}

impl Entry<'_> {
    /// This entry's position.
    pub(super) fn position(&self) -> Position {
        Position(self.node)
    }
}

/// Whether `node` sorts before the version `(key, lsn)`.
///
/// # Safety
/// `node` is a published node of a live list.
#[inline]
unsafe fn before(node: *const Node, key: &[u8], lsn: u64) -> bool {
    // SAFETY: per the contract.
    let (node_key, node_lsn) = unsafe { (key_of(node), (*node).lsn) };
    match key_cmp(node_key, key) {
        Ordering::Less => true,
        Ordering::Equal => node_lsn > lsn,
        Ordering::Greater => false,
    }
}

/// Open-addressing hash index from a key to its newest version: one word a
/// slot, the node's address (48 bits) under 16 bits of the key's hash, so
/// most probes of other keys end without touching their nodes. 0 is empty.
///
/// Only the list's writer changes it, under the writer mutex: a slot, once
/// given to a key, keeps it and only ever points to newer versions of it.
/// Past three quarters full a new key is left out and `partial` set, and a
/// reader that misses then searches the list. A node whose address does not
/// fit in 48 bits (none on today's 64-bit systems) turns the index `off`,
/// since its key's slot could no longer be kept current. So the index only
/// ever makes reads faster, never wrong.
struct PointIndex {
    slots: Box<[AtomicU64]>,
    mask: usize,
    partial: AtomicBool,
    off: AtomicBool,
}

/// `n` zeroed atomic words straight from the allocator, so a large table's
/// pages are only touched as keys land in them.
fn zeroed_words(n: usize) -> Box<[AtomicU64]> {
    let layout = Layout::array::<AtomicU64>(n).expect("index size is bounded");
    // SAFETY: `n >= 256`, so the layout is not zero-sized.
    let p = unsafe { alloc::alloc_zeroed(layout) }.cast::<AtomicU64>();
    if p.is_null() {
        alloc::handle_alloc_error(layout);
    }
    // SAFETY: `p` is a fresh allocation of `n` AtomicU64 from the global
    // allocator with this array layout (what a Box of the slice frees), and
    // all zero bits is a valid AtomicU64.
    unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(p, n)) }
}

const ADDR_BITS: u32 = 48;
const ADDR_MASK: u64 = (1 << ADDR_BITS) - 1;

/// What a lookup of the index found.
enum Probe {
    /// The slot of the key, and the key's newest version.
    Found(usize, *mut Node),
    /// The key has no slot; the first empty slot of its probe sequence.
    Vacant(usize),
    /// The index cannot tell: search the list.
    Unknown,
}

impl PointIndex {
    fn new(slots: usize) -> Self {
        let slots = slots.clamp(256, 1 << 22).next_power_of_two();
        PointIndex {
            slots: zeroed_words(slots),
            mask: slots - 1,
            partial: AtomicBool::new(false),
            off: AtomicBool::new(false),
        }
    }

    /// Looks `key` (hashed to `hash`) up. Terminates: some slot is always empty.
    #[inline]
    fn probe(&self, key: &[u8], hash: u64) -> Probe {
        if self.off.load(AtomicOrdering::Acquire) {
            return Probe::Unknown;
        }
        let tag = hash >> ADDR_BITS;
        let mut i = hash as usize & self.mask;
        loop {
            let word = self.slots[i].load(AtomicOrdering::Acquire);
            if word == 0 {
                return Probe::Vacant(i);
            }
            if word >> ADDR_BITS == tag {
                let node = ptr::with_exposed_provenance_mut::<Node>((word & ADDR_MASK) as usize);
                // SAFETY: a slot holds only nodes of this list, published
                // (stored with release after linking, loaded with acquire).
                if unsafe { key_of(node) } == key {
                    return Probe::Found(i, node);
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Points `key`'s slot at `node` if it is the key's newest version.
    /// Writer only; `used` counts the slots taken.
    fn insert(&self, used: &mut usize, key: &[u8], hash: u64, node: *mut Node) {
        let addr = node.expose_provenance() as u64;
        if addr > ADDR_MASK {
            self.off.store(true, AtomicOrdering::Release);
            return;
        }
        let word = (hash >> ADDR_BITS << ADDR_BITS) | addr;
        match self.probe(key, hash) {
            Probe::Found(i, newest) => {
                // SAFETY: both are published nodes of this list (`node` was
                // linked before this call).
                if unsafe { (*newest).lsn < (*node).lsn } {
                    self.slots[i].store(word, AtomicOrdering::Release);
                }
            }
            Probe::Vacant(i) if *used < self.slots.len() / 4 * 3 => {
                *used += 1;
                self.slots[i].store(word, AtomicOrdering::Release);
            }
            Probe::Vacant(_) => self.partial.store(true, AtomicOrdering::Release),
            Probe::Unknown => {}
        }
    }
}

/// Bump allocation out of large chunks, freed together when the list drops.
struct Arena {
    chunks: Vec<(NonNull<u8>, Layout)>,
    /// Free space of the current chunk: `left` bytes from `cur`.
    cur: *mut u8,
    left: usize,
    chunk_size: usize,
}

impl Arena {
    fn new(chunk_size: usize) -> Self {
        Arena {
            chunks: Vec::new(),
            cur: ptr::null_mut(),
            left: 0,
            chunk_size,
        }
    }

    /// `size` bytes aligned to [`ALIGN`], uninitialised. A slot larger than a
    /// quarter of a chunk gets a chunk of its own, so big values waste little.
    fn alloc(&mut self, size: usize) -> NonNull<u8> {
        let size = size.next_multiple_of(ALIGN);
        if size > self.chunk_size / 4 {
            return self.chunk(size);
        }
        if self.left < size {
            self.cur = self.chunk(self.chunk_size).as_ptr();
            self.left = self.chunk_size;
        }
        let p = self.cur;
        // SAFETY: `size <= left`, so both the slot and the new cursor stay
        // inside (or one past the end of) the current chunk.
        self.cur = unsafe { p.add(size) };
        self.left -= size;
        // SAFETY: `p` points into a chunk allocation, so it is not null.
        unsafe { NonNull::new_unchecked(p) }
    }

    fn chunk(&mut self, size: usize) -> NonNull<u8> {
        // Record sizes are bounded by the engine's key and value limits, far
        // below isize::MAX.
        let layout = Layout::from_size_align(size, 64).expect("arena chunk layout");
        // SAFETY: `size` is at least one node header, so the layout is not zero-sized.
        let p = unsafe { alloc::alloc(layout) };
        let Some(p) = NonNull::new(p) else {
            alloc::handle_alloc_error(layout)
        };
        self.chunks.push((p, layout));
        p
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        for (p, layout) in self.chunks.drain(..) {
            // SAFETY: allocated by `chunk` with this layout and freed only here.
            unsafe { alloc::dealloc(p.as_ptr(), layout) };
        }
    }
}

struct Writer {
    arena: Arena,
    rng: u64,
    /// Slots of the point index in use.
    index_used: usize,
}

impl Writer {
    /// A tower height: 1, and one more with probability 1/4 each, at most
    /// [`MAX_HEIGHT`].
    fn random_height(&mut self) -> usize {
        // xorshift64: any fixed seed gives the expected distribution.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (1 + x.trailing_zeros() as usize / 2).min(MAX_HEIGHT)
    }
}

/// The list. Insert takes a mutex (uncontended under the engine's WAL lock);
/// reads take nothing.
pub(super) struct SkipList {
    /// A node without a record, with a tower of [`MAX_HEIGHT`] slots.
    head: NonNull<Node>,
    /// Levels in use; a reader that sees a stale value starts lower.
    height: AtomicUsize,
    len: AtomicUsize,
    index: PointIndex,
    writer: Mutex<Writer>,
}

// SAFETY: a published node is immutable but for its tower slots, which are
// atomics written with release and read with acquire ordering; nodes are only
// linked, never unlinked or freed, until the list drops (which needs `&mut`);
// the arena and random state are only touched under the writer mutex.
unsafe impl Send for SkipList {}
// SAFETY: as above.
unsafe impl Sync for SkipList {}

impl SkipList {
    /// An empty list whose arena grows in chunks of `chunk_size` bytes
    /// (clamped to 4 KiB..1 MiB), with a point index of `index_slots` words
    /// (rounded to a power of two from 256 to 4M) for up to three quarters
    /// as many keys.
    pub(super) fn new(chunk_size: usize, index_slots: usize) -> Self {
        let mut arena = Arena::new(chunk_size.clamp(4 << 10, 1 << 20));
        let head = arena.alloc(HEADER + MAX_HEIGHT * SLOT).cast::<Node>();
        // SAFETY: the slot is fresh, aligned and large enough for the header
        // and MAX_HEIGHT tower slots.
        unsafe {
            head.as_ptr().write(Node {
                lsn: 0,
                timestamp: 0,
                ttl: 0,
                key_len: 0,
                value_len: 0,
                op: Operation::Delete,
                has_value: false,
                height: MAX_HEIGHT as u8,
            });
            let tower = head
                .as_ptr()
                .cast::<u8>()
                .add(HEADER)
                .cast::<AtomicPtr<Node>>();
            for level in 0..MAX_HEIGHT {
                tower.add(level).write(AtomicPtr::new(ptr::null_mut()));
            }
        }
        SkipList {
            head,
            height: AtomicUsize::new(1),
            len: AtomicUsize::new(0),
            index: PointIndex::new(index_slots),
            writer: Mutex::new(Writer {
                arena,
                rng: 0x9E37_79B9_7F4A_7C15,
                index_used: 0,
            }),
        }
    }

    /// Entries held.
    pub(super) fn len(&self) -> usize {
        self.len.load(AtomicOrdering::Relaxed)
    }

    /// Inserts the version `(key, record.lsn)`. Versions must be unique; a
    /// reader sees the entry complete or not at all.
    pub(super) fn insert(&self, key: &[u8], record: EntryRef<'_>) {
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let value = record.value.unwrap_or_default();
        let height = w.random_height();
        let top = self.height.load(AtomicOrdering::Relaxed);

        // The last node before the new one at each level (the head above `top`).
        let head = self.head.as_ptr().cast_const();
        let mut prev = [head; MAX_HEIGHT];
        let mut x = head;
        for level in (0..top).rev() {
            loop {
                // SAFETY: `x` is the head or a published node of this list,
                // and level < top <= its height (we only step right on a
                // level when the next node's tower reaches it).
                let next = unsafe { slot(x, level).load(AtomicOrdering::Acquire) };
                // SAFETY: a non-null slot points to a published node.
                if !next.is_null() && unsafe { before(next, key, record.lsn) } {
                    x = next;
                } else {
                    break;
                }
            }
            prev[level] = x;
        }

        // The engine bounds keys (MAX_KEY_LEN plus namespace) and values
        // (MAX_VALUE_LEN) far below u32::MAX; a replayed record is bounded by
        // the same u32 length fields in the WAL.
        let key_len = u32::try_from(key.len()).expect("key length fits in u32");
        let value_len = u32::try_from(value.len()).expect("value length fits in u32");
        let size = HEADER + height * SLOT + key.len() + value.len();
        let node = w.arena.alloc(size).cast::<Node>().as_ptr();
        // SAFETY: `node` is a fresh slot of `size` bytes, aligned for Node;
        // nothing else can reach it until it is linked below.
        unsafe {
            node.write(Node {
                lsn: record.lsn,
                timestamp: record.timestamp,
                ttl: record.ttl,
                key_len,
                value_len,
                op: record.op,
                has_value: record.value.is_some(),
                height: height as u8,
            });
            let tower = node.cast::<u8>().add(HEADER).cast::<AtomicPtr<Node>>();
            for (level, p) in prev.iter().enumerate().take(height) {
                let succ = slot(*p, level).load(AtomicOrdering::Relaxed);
                tower.add(level).write(AtomicPtr::new(succ));
            }
            let data = node.cast::<u8>().add(HEADER + height * SLOT);
            ptr::copy_nonoverlapping(key.as_ptr(), data, key.len());
            ptr::copy_nonoverlapping(value.as_ptr(), data.add(key.len()), value.len());
        }
        // Publish bottom-up: a reader that finds the node on any level can
        // follow it down. The release stores make the writes above visible
        // to whoever loads the pointer.
        for (level, p) in prev.iter().enumerate().take(height) {
            // SAFETY: `p` is the head or a published node whose tower
            // reaches `level` (it was found on that level).
            unsafe { slot(*p, level).store(node, AtomicOrdering::Release) };
        }
        if height > top {
            self.height.store(height, AtomicOrdering::Relaxed);
        }
        self.index
            .insert(&mut w.index_used, key, key_hash(key), node);
        self.len.fetch_add(1, AtomicOrdering::Relaxed);
    }

    /// The newest version of `key` (whose [`key_hash`] is `hash`) with an LSN
    /// at most `lsn`.
    #[inline]
    pub(super) fn get(&self, key: &[u8], hash: u64, lsn: u64) -> Option<Entry<'_>> {
        match self.index.probe(key, hash) {
            Probe::Found(_, newest) => {
                // SAFETY: the index holds published nodes of this list.
                let mut e = unsafe { Entry::new(newest) }?;
                // Older versions follow the newest, in LSN order descending.
                while e.lsn() > lsn {
                    e = e.next().filter(|e| e.key() == key)?;
                }
                Some(e)
            }
            Probe::Vacant(_) if !self.index.partial.load(AtomicOrdering::Acquire) => None,
            _ => self.seek(key, lsn).filter(|e| e.key() == key),
        }
    }

    /// The first entry for which `before` is false, given that `before` is
    /// true of a prefix of the list.
    #[inline]
    fn find(&self, before: impl Fn(*const Node) -> bool) -> Option<Entry<'_>> {
        let mut x = self.head.as_ptr().cast_const();
        let mut level = self.height.load(AtomicOrdering::Relaxed).max(1) - 1;
        loop {
            // SAFETY: `x` is the head or a published node reached on `level`,
            // so its tower reaches `level`.
            let next = unsafe { slot(x, level).load(AtomicOrdering::Acquire) };
            if !next.is_null() && before(next) {
                x = next;
            } else if level == 0 {
                // SAFETY: `next` is null or a published node of this list.
                return unsafe { Entry::new(next) };
            } else {
                level -= 1;
            }
        }
    }

    /// The first entry at or after the version `(key, lsn)`.
    #[inline]
    pub(super) fn seek(&self, key: &[u8], lsn: u64) -> Option<Entry<'_>> {
        // SAFETY: `find` passes only published nodes of this list.
        self.find(|n| unsafe { before(n, key, lsn) })
    }

    /// The first entry.
    pub(super) fn first(&self) -> Option<Entry<'_>> {
        // SAFETY: the head's level-0 slot is initialised; what it points to
        // is published.
        unsafe { Entry::new(slot(self.head.as_ptr(), 0).load(AtomicOrdering::Acquire)) }
    }

    /// The last entry.
    pub(super) fn last(&self) -> Option<Entry<'_>> {
        let head = self.head.as_ptr();
        let mut x = head;
        for level in (0..self.height.load(AtomicOrdering::Relaxed)).rev() {
            loop {
                // SAFETY: as in `find`.
                let next = unsafe { slot(x, level).load(AtomicOrdering::Acquire) };
                if next.is_null() {
                    break;
                }
                x = next;
            }
        }
        if x == head {
            return None;
        }
        // SAFETY: `x` is a published node of this list.
        unsafe { Entry::new(x) }
    }

    /// The entry at `pos`.
    ///
    /// # Safety
    /// `pos` is the position of an entry of this list.
    #[inline]
    pub(super) unsafe fn at(&self, pos: Position) -> Entry<'_> {
        Entry {
            node: pos.0,
            _list: PhantomData,
        }
    }

    /// Entries in list order, from `from`.
    pub(super) fn iter_from<'a>(
        &'a self,
        from: Option<Entry<'a>>,
    ) -> impl Iterator<Item = Entry<'a>> {
        std::iter::successors(from, Entry::next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn rec(lsn: u64, value: Option<&[u8]>) -> EntryRef<'_> {
        EntryRef {
            value,
            op: if value.is_some() {
                Operation::Put
            } else {
                Operation::Delete
            },
            lsn,
            timestamp: lsn as i64 * 10,
            ttl: lsn as u32,
        }
    }

    fn keys(list: &SkipList) -> Vec<(Vec<u8>, u64)> {
        list.iter_from(list.first())
            .map(|e| (e.key().to_vec(), e.lsn()))
            .collect()
    }

    #[test]
    fn entries_sort_by_key_then_newest_first_and_keep_their_fields() {
        let list = SkipList::new(0, 0);
        let mut want = Vec::new();
        // Keys inserted out of order, several versions each; sizes across
        // the arena's own-chunk threshold (a quarter of 4 KiB).
        for i in 0..300u64 {
            let k = format!("k{:03}", (i * 37) % 100).into_bytes();
            let v = vec![i as u8; (i as usize * 7) % 1500];
            let value = (i % 5 != 0).then_some(&v[..]);
            list.insert(&k, rec(i + 1, value));
            want.push((k, i + 1, value.map(<[u8]>::to_vec)));
        }
        want.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let got: Vec<_> = list
            .iter_from(list.first())
            .map(|e| {
                let r = e.record();
                assert_eq!(r.timestamp, r.lsn as i64 * 10);
                assert_eq!(r.ttl, r.lsn as u32);
                assert_eq!(r.op == Operation::Put, r.value.is_some());
                (e.key().to_vec(), e.lsn(), r.value.map(<[u8]>::to_vec))
            })
            .collect();
        assert_eq!(got, want);
        assert_eq!(list.len(), 300);
        assert_eq!(
            list.last().map(|e| e.key().to_vec()),
            Some(b"k099".to_vec())
        );
    }

    #[test]
    fn seeks_find_the_newest_visible_version_and_the_next_key() {
        let list = SkipList::new(0, 0);
        for (k, lsn) in [(&b"b"[..], 2), (b"b", 5), (b"b", 9), (b"d", 3), (b"a", 1)] {
            list.insert(k, rec(lsn, Some(b"v")));
        }
        let at = |k: &[u8], lsn| list.seek(k, lsn).map(|e| (e.key().to_vec(), e.lsn()));
        assert_eq!(at(b"b", 100), Some((b"b".to_vec(), 9)));
        assert_eq!(at(b"b", 8), Some((b"b".to_vec(), 5)));
        assert_eq!(at(b"b", 5), Some((b"b".to_vec(), 5)));
        assert_eq!(at(b"b", 1), Some((b"d".to_vec(), 3)));
        assert_eq!(at(b"c", 100), Some((b"d".to_vec(), 3)));
        assert_eq!(at(b"e", 100), None);
        assert_eq!(at(b"", 0), Some((b"a".to_vec(), 1)));
        let empty = SkipList::new(0, 0);
        assert!(empty.first().is_none() && empty.last().is_none());
        assert!(empty.seek(b"a", 1).is_none());
    }

    /// Readers walk the list and read points while one writer inserts. As
    /// in the engine, a reader reads only what was published before it
    /// looked (`published`, the engine's visible LSN); the list may show it
    /// more, which it must still show whole.
    #[test]
    fn readers_see_whole_entries_while_one_writer_inserts() {
        let list = Arc::new(SkipList::new(0, 0));
        let published = Arc::new(AtomicU64::new(0));
        let n: u32 = 20_000;
        let writer = {
            let (list, published) = (Arc::clone(&list), Arc::clone(&published));
            std::thread::spawn(move || {
                for i in 0..n {
                    let k = ((i * 7919) % n).to_be_bytes();
                    let lsn = u64::from(i) + 1;
                    list.insert(&k, rec(lsn, Some(&k)));
                    published.store(lsn, AtomicOrdering::Release);
                }
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (list, published) = (Arc::clone(&list), Arc::clone(&published));
                std::thread::spawn(move || {
                    let mut seen = 0;
                    while seen < n as usize {
                        let upto = published.load(AtomicOrdering::Acquire);
                        // Every entry a reader reaches is complete, in order.
                        let all = keys(&list);
                        assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
                        assert!(all.len() as u64 >= upto);
                        for e in list.iter_from(list.first()) {
                            assert_eq!(e.record().value, Some(e.key()));
                            if e.lsn() <= upto {
                                // The index finds what was published.
                                let got =
                                    list.get(e.key(), key_hash(e.key()), upto).map(|g| g.lsn());
                                assert_eq!(got, Some(e.lsn()));
                            }
                        }
                        seen = all.len();
                    }
                })
            })
            .collect();
        writer.join().unwrap();
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(list.len(), n as usize);
    }

    /// Every get against a model: keys with several versions read at every
    /// LSN, keys never written, with the index complete, partial (more keys
    /// than three quarters of its 256 slots) and off.
    #[test]
    fn gets_read_the_newest_visible_version_whatever_the_index_holds() {
        for (keys, off) in [(150u32, false), (600, false), (150, true)] {
            let list = SkipList::new(0, 0);
            if off {
                list.index.off.store(true, AtomicOrdering::Release);
            }
            let mut model: std::collections::BTreeMap<(u32, u64), Option<Vec<u8>>> =
                Default::default();
            let mut lsn = 0;
            for round in 0..3u32 {
                for k in 0..keys {
                    if (k + round) % 3 == 0 {
                        continue;
                    }
                    lsn += 1;
                    let v = (k % 7 != 0).then(|| format!("{k}@{lsn}").into_bytes());
                    list.insert(&k.to_be_bytes(), rec(lsn, v.as_deref()));
                    model.insert((k, lsn), v);
                }
            }
            assert_eq!(list.index.partial.load(AtomicOrdering::Relaxed), keys > 192);
            for k in 0..keys + 50 {
                for at in (0..=lsn).step_by(97).chain([lsn]) {
                    let want = model
                        .range((k, 0)..=(k, at))
                        .next_back()
                        .map(|(&(_, l), v)| (l, v.clone()));
                    let got = list
                        .get(&k.to_be_bytes(), key_hash(&k.to_be_bytes()), at)
                        .map(|e| (e.lsn(), e.record().value.map(<[u8]>::to_vec)));
                    assert_eq!(got, want, "key {k} at {at} (keys {keys}, off {off})");
                }
            }
        }
    }
}
