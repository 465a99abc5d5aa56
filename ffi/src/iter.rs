//! `edgestore_iter`: range and prefix iteration over a database or a snapshot.
//!
//! `edgestore_iter_next` runs once per pair, so its handle check has a fast
//! path: each thread keeps the iterator it stepped last (its token and one
//! strong count, see [`LastIter`]). A call with that token skips the registry
//! (its lock, map lookup and count) and takes only the iterator's own mutex.
//! The check stays complete: tokens are never reused, so the same token is
//! the same object, and `edgestore_iter_free` empties the object (`None`)
//! under that mutex before it returns, so a freed handle found in any
//! thread's cache is `EDGESTORE_CLOSED`, as the registry would say.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use edgestore_core::RangeIter;

use crate::args;
use crate::db::lookup_db;
use crate::handles::{disguise, Kind, Registry};
use crate::snapshot::SNAPSHOTS;
use crate::status::{boundary, edgestore_status, Fail};
use crate::{edgestore_db, edgestore_iter, edgestore_snapshot};

/// An iterator and the item it last returned (whose bytes C borrows).
pub(crate) struct IterState {
    iter: RangeIter,
    finished: bool,
}

/// What an iterator handle refers to: its state until it is freed, then
/// `None` (what a thread's [`LastIter`] may still hold).
pub(crate) type IterCell = Mutex<Option<IterState>>;

pub(crate) static ITERS: Registry<IterCell> = Registry::new(Kind::Iter);

fn lock(m: &IterCell) -> MutexGuard<'_, Option<IterState>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The iterator a thread stepped last: its token and one strong count of its
/// `Arc`, the address disguised as in the registry, so an iterator the program
/// forgets to free is still reported as a leak by valgrind and LeakSanitizer.
struct LastIter {
    token: usize,
    hidden: usize,
}

impl LastIter {
    fn new(token: usize, cell: Arc<IterCell>) -> Self {
        let raw = Arc::into_raw(cell);
        LastIter {
            token,
            hidden: disguise(raw.expose_provenance()),
        }
    }

    fn cell(&self) -> &IterCell {
        let raw = std::ptr::with_exposed_provenance::<IterCell>(disguise(self.hidden));
        // SAFETY: `raw` came from Arc::into_raw in `new` and this value owns
        // that strong count until it is dropped, so the object outlives the
        // borrow of `self`.
        unsafe { &*raw }
    }
}

impl Drop for LastIter {
    fn drop(&mut self) {
        let raw = std::ptr::with_exposed_provenance::<IterCell>(disguise(self.hidden));
        // SAFETY: gives back the one strong count taken by Arc::into_raw in
        // `new`, exactly once (this value is being dropped).
        drop(unsafe { Arc::from_raw(raw) });
    }
}

thread_local! {
    static LAST_ITER: RefCell<Option<LastIter>> = const { RefCell::new(None) };
}

/// Freed iterators that another thread's [`LastIter`] (or a call still
/// running) holds a count of: kept here, in plain sight, so that leak
/// checkers do not report a correctly freed iterator that way; dropped here
/// once nothing else holds them. Their state was released at free.
static FREED_SHELLS: Mutex<Vec<Arc<IterCell>>> = Mutex::new(Vec::new());
static FREED_SHELL_COUNT: AtomicUsize = AtomicUsize::new(0);

const OK: Result<edgestore_status, Fail> = Ok(edgestore_status::EDGESTORE_OK);

/// Where an iterator reads from.
enum Source {
    Db(*mut edgestore_db),
    Snapshot(*mut edgestore_snapshot),
}

/// Which keys an iterator yields.
enum Bounds<'a> {
    Range(&'a [u8], Option<&'a [u8]>),
    Prefix(&'a [u8]),
    /// The keys in these leaves of a Merkle tree of this depth.
    MerkleLeaves(u32, &'a [u32]),
}

/// Shared body of the constructors.
///
/// # Safety
/// `iter_out` must be NULL or writable.
unsafe fn make(
    source: Source,
    ns: &[u8],
    bounds: Bounds<'_>,
    iter_out: *mut *mut edgestore_iter,
) -> Result<edgestore_status, Fail> {
    args::out(iter_out, "iter_out")?;
    let iter = match source {
        Source::Db(d) => {
            let d = lookup_db(d)?;
            match bounds {
                Bounds::Range(start, end) => d.engine.scan(ns, start, end)?,
                Bounds::Prefix(p) => d.engine.scan_prefix(ns, p)?,
                Bounds::MerkleLeaves(depth, leaves) => {
                    d.engine.scan_merkle_leaves(ns, depth, leaves)?
                }
            }
        }
        Source::Snapshot(s) => {
            let s = SNAPSHOTS.get(s, "snapshot")?;
            match bounds {
                Bounds::Range(start, end) => s.scan(ns, start, end)?,
                Bounds::Prefix(p) => s.scan_prefix(ns, p)?,
                Bounds::MerkleLeaves(depth, leaves) => s.scan_merkle_leaves(ns, depth, leaves)?,
            }
        }
    };
    let handle = ITERS.insert(Mutex::new(Some(IterState {
        iter,
        finished: false,
    })))?;
    // SAFETY: iter_out was checked non-NULL; the caller guarantees it is writable.
    unsafe { args::write(iter_out, handle) };
    OK
}

/// Range bounds: `end_len == 0` means no upper bound.
///
/// # Safety
/// Non-NULL pointers must cover their lengths.
unsafe fn range_bounds<'a>(
    start: *const u8,
    start_len: usize,
    end: *const u8,
    end_len: usize,
) -> Result<Bounds<'a>, Fail> {
    // SAFETY: forwarded contract.
    let start = unsafe { args::key(start, start_len, "start")? };
    // SAFETY: forwarded contract.
    let end = unsafe { args::key(end, end_len, "end")? };
    Ok(Bounds::Range(start, (!end.is_empty()).then_some(end)))
}

/// Creates an iterator over the live keys of `ns` in `[start, end)`, in key
/// order, reading a consistent view of `db` taken now.
///
/// `end_len == 0` means "to the end of the namespace" (no key sorts before the
/// empty key, so an empty upper bound would be useless); `start_len == 0` starts
/// at the first key. Ownership: the caller owns `*iter_out` and frees it with
/// `edgestore_iter_free()`; it stays valid after `edgestore_close(db)`.
/// Errors: `EDGESTORE_INVALID_ARGUMENT`, `EDGESTORE_CLOSED`, `EDGESTORE_IO`,
/// `EDGESTORE_CORRUPTION`.
///
/// # Safety
/// Each non-NULL input pointer must point to at least its length in readable
/// bytes; `iter_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgestore_iter_range(
    db: *mut edgestore_db,
    ns: *const u8,
    ns_len: usize,
    start: *const u8,
    start_len: usize,
    end: *const u8,
    end_len: usize,
    iter_out: *mut *mut edgestore_iter,
) -> edgestore_status {
    boundary("edgestore_iter_range", || {
        // SAFETY: the caller guarantees each non-NULL pointer covers its length.
        let ns = unsafe { args::namespace(ns, ns_len)? };
        // SAFETY: as above.
        let bounds = unsafe { range_bounds(start, start_len, end, end_len)? };
        // SAFETY: iter_out is NULL (rejected) or writable per the contract.
        unsafe { make(Source::Db(db), ns, bounds, iter_out) }
    })
}

/// Creates an iterator over the live keys of `ns` that start with `prefix`
/// (all keys of `ns` when `prefix_len` is 0). Ownership, lifetime and errors as
/// for `edgestore_iter_range()`.
///
/// # Safety
/// Each non-NULL input pointer must point to at least its length in readable
/// bytes; `iter_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgestore_iter_prefix(
    db: *mut edgestore_db,
    ns: *const u8,
    ns_len: usize,
    prefix: *const u8,
    prefix_len: usize,
    iter_out: *mut *mut edgestore_iter,
) -> edgestore_status {
    boundary("edgestore_iter_prefix", || {
        // SAFETY: the caller guarantees each non-NULL pointer covers its length.
        let (ns, prefix) = unsafe {
            (
                args::namespace(ns, ns_len)?,
                args::key(prefix, prefix_len, "prefix")?,
            )
        };
        // SAFETY: iter_out is NULL (rejected) or writable per the contract.
        unsafe { make(Source::Db(db), ns, Bounds::Prefix(prefix), iter_out) }
    })
}

/// Like `edgestore_iter_range()`, reading the snapshot's view. The iterator
/// stays valid after the snapshot is freed.
///
/// # Safety
/// Each non-NULL input pointer must point to at least its length in readable
/// bytes; `iter_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgestore_snapshot_iter_range(
    snapshot: *mut edgestore_snapshot,
    ns: *const u8,
    ns_len: usize,
    start: *const u8,
    start_len: usize,
    end: *const u8,
    end_len: usize,
    iter_out: *mut *mut edgestore_iter,
) -> edgestore_status {
    boundary("edgestore_snapshot_iter_range", || {
        // SAFETY: the caller guarantees each non-NULL pointer covers its length.
        let ns = unsafe { args::namespace(ns, ns_len)? };
        // SAFETY: as above.
        let bounds = unsafe { range_bounds(start, start_len, end, end_len)? };
        // SAFETY: iter_out is NULL (rejected) or writable per the contract.
        unsafe { make(Source::Snapshot(snapshot), ns, bounds, iter_out) }
    })
}

/// Like `edgestore_iter_prefix()`, reading the snapshot's view.
///
/// # Safety
/// Each non-NULL input pointer must point to at least its length in readable
/// bytes; `iter_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgestore_snapshot_iter_prefix(
    snapshot: *mut edgestore_snapshot,
    ns: *const u8,
    ns_len: usize,
    prefix: *const u8,
    prefix_len: usize,
    iter_out: *mut *mut edgestore_iter,
) -> edgestore_status {
    boundary("edgestore_snapshot_iter_prefix", || {
        // SAFETY: the caller guarantees each non-NULL pointer covers its length.
        let (ns, prefix) = unsafe {
            (
                args::namespace(ns, ns_len)?,
                args::key(prefix, prefix_len, "prefix")?,
            )
        };
        // SAFETY: iter_out is NULL (rejected) or writable per the contract.
        unsafe {
            make(
                Source::Snapshot(snapshot),
                ns,
                Bounds::Prefix(prefix),
                iter_out,
            )
        }
    })
}

/// Creates an iterator over the live pairs of `ns` whose keys fall in the
/// `n_leaves` leaves `leaves` (indexes 0 to `16^depth - 1`, in any order;
/// at most 65,536 entries, the leaves of the deepest tree) of a Merkle tree
/// of `depth` levels (1 to 4), in key order, reading a consistent view of
/// `db` taken now: the pairs a replica sends its peer for the leaves whose
/// hashes differ (see `edgestore_merkle_tree()`). It reads the whole
/// namespace once, testing each key's leaf (a leaf's keys are spread over
/// the key space). `n_leaves == 0` gives an iterator with no items.
/// Ownership: the caller owns `*iter_out` and frees it with
/// `edgestore_iter_free()`; it stays valid after `edgestore_close(db)`.
/// Errors: `EDGESTORE_INVALID_ARGUMENT` (depth or a leaf out of range,
/// `n_leaves` over 65,536, `leaves` NULL with `n_leaves > 0` or not aligned
/// for `uint32_t`, NULL `iter_out`), `EDGESTORE_CLOSED`, `EDGESTORE_IO`,
/// `EDGESTORE_CORRUPTION`; `*iter_out` is written only on success. Thread
/// safety: callable from any thread, `db` shared; the iterator is used from
/// one thread at a time (the pointers `edgestore_iter_next()` returns are
/// invalidated by its next call).
///
/// # Safety
/// `ns` must point to `ns_len` readable bytes and `leaves` to `n_leaves`
/// readable `uint32_t` (either may be NULL with length 0); `iter_out` must
/// be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgestore_iter_merkle_leaves(
    db: *mut edgestore_db,
    ns: *const u8,
    ns_len: usize,
    depth: u32,
    leaves: *const u32,
    n_leaves: usize,
    iter_out: *mut *mut edgestore_iter,
) -> edgestore_status {
    boundary("edgestore_iter_merkle_leaves", || {
        // SAFETY: forwarded contract.
        unsafe {
            merkle_leaves(
                Source::Db(db),
                ns,
                ns_len,
                depth,
                leaves,
                n_leaves,
                iter_out,
            )
        }
    })
}

/// Like `edgestore_iter_merkle_leaves()`, reading the snapshot's view (the
/// same data as `edgestore_snapshot_merkle_tree()`). The iterator stays
/// valid after the snapshot is freed.
///
/// # Safety
/// As for `edgestore_iter_merkle_leaves()`.
#[no_mangle]
pub unsafe extern "C" fn edgestore_snapshot_iter_merkle_leaves(
    snapshot: *mut edgestore_snapshot,
    ns: *const u8,
    ns_len: usize,
    depth: u32,
    leaves: *const u32,
    n_leaves: usize,
    iter_out: *mut *mut edgestore_iter,
) -> edgestore_status {
    boundary("edgestore_snapshot_iter_merkle_leaves", || {
        // SAFETY: forwarded contract.
        unsafe {
            merkle_leaves(
                Source::Snapshot(snapshot),
                ns,
                ns_len,
                depth,
                leaves,
                n_leaves,
                iter_out,
            )
        }
    })
}

/// Most leaf indexes a call takes: the leaves of the deepest tree (16^4).
const MAX_MERKLE_LEAVES: usize = 1 << 16;

/// Shared body of the two Merkle-leaf constructors.
///
/// # Safety
/// As for `edgestore_iter_merkle_leaves()`.
unsafe fn merkle_leaves(
    source: Source,
    ns: *const u8,
    ns_len: usize,
    depth: u32,
    leaves: *const u32,
    n_leaves: usize,
    iter_out: *mut *mut edgestore_iter,
) -> Result<edgestore_status, Fail> {
    // SAFETY: the caller guarantees each non-NULL pointer covers its length.
    let (ns, leaves) = unsafe {
        (
            args::namespace(ns, ns_len)?,
            args::array(leaves, n_leaves, MAX_MERKLE_LEAVES, "leaves")?,
        )
    };
    // SAFETY: iter_out is NULL (rejected) or writable per the contract.
    unsafe { make(source, ns, Bounds::MerkleLeaves(depth, leaves), iter_out) }
}

/// Advances the iterator.
///
/// Returns `EDGESTORE_OK` with the next item: `*key_out`/`*key_len_out` and
/// `*value_out`/`*value_len_out` point into memory owned by the iterator, valid
/// until the next call on this iterator or `edgestore_iter_free()` (copy to
/// keep; pointers are non-NULL even for empty keys/values). Returns
/// `EDGESTORE_DONE` (not an error; out-parameters untouched, last error
/// unchanged) when there are no more items, and again on every later call.
/// Errors: `EDGESTORE_INVALID_ARGUMENT` (NULL out-parameter, bad handle),
/// `EDGESTORE_CLOSED` (freed iterator), `EDGESTORE_IO`/`EDGESTORE_CORRUPTION`
/// (after a read error the iterator is finished). Typical loop:
/// `while ((st = edgestore_iter_next(it, &k, &kl, &v, &vl)) == EDGESTORE_OK) {...}`
/// then check `st == EDGESTORE_DONE`.
///
/// # Safety
/// Each out-parameter must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgestore_iter_next(
    iter: *mut edgestore_iter,
    key_out: *mut *const u8,
    key_len_out: *mut usize,
    value_out: *mut *const u8,
    value_len_out: *mut usize,
) -> edgestore_status {
    boundary("edgestore_iter_next", || {
        args::out(key_out, "key_out")?;
        args::out(key_len_out, "key_len_out")?;
        args::out(value_out, "value_out")?;
        args::out(value_len_out, "value_len_out")?;
        // SAFETY: the four out-parameters were checked non-NULL above and are
        // writable per the contract.
        let step = |cell: &IterCell| unsafe {
            next_into(cell, iter, key_out, key_len_out, value_out, value_len_out)
        };
        let token = iter.addr();
        let cached = LAST_ITER.try_with(|slot| {
            // Never fails: nothing in here calls back into this function.
            let Ok(mut slot) = slot.try_borrow_mut() else {
                return step(&*ITERS.get(iter, "iter")?);
            };
            match &*slot {
                Some(last) if last.token == token => {}
                _ => *slot = Some(LastIter::new(token, ITERS.get(iter, "iter")?)),
            }
            match &*slot {
                Some(last) => step(last.cell()),
                None => step(&*ITERS.get(iter, "iter")?),
            }
        });
        match cached {
            Ok(result) => result,
            // The thread is exiting and its cache is gone: the registry alone.
            Err(_) => step(&*ITERS.get(iter, "iter")?),
        }
    })
}

/// The body of `edgestore_iter_next` on the object behind `iter`.
///
/// # Safety
/// The four out-parameters must be non-NULL and writable.
unsafe fn next_into(
    cell: &IterCell,
    iter: *mut edgestore_iter,
    key_out: *mut *const u8,
    key_len_out: *mut usize,
    value_out: *mut *const u8,
    value_len_out: *mut usize,
) -> Result<edgestore_status, Fail> {
    let mut state = lock(cell);
    let Some(state) = state.as_mut() else {
        return Err(ITERS.closed(iter, "iter"));
    };
    if state.finished {
        return Ok(edgestore_status::EDGESTORE_DONE);
    }
    match state.iter.next_entry() {
        Ok(None) => {
            state.finished = true;
            Ok(edgestore_status::EDGESTORE_DONE)
        }
        Err(e) => {
            state.finished = true;
            Err(e.into())
        }
        Ok(Some((k, v))) => {
            // SAFETY: the caller guarantees the four out-parameters are
            // non-NULL and writable. The pointers point into the entry the
            // iterator holds as its current one (a memtable copy or a segment
            // block it keeps alive), valid until the iterator moves on or is
            // freed: the next call or free.
            unsafe {
                args::write(key_out, k.as_ptr());
                args::write(key_len_out, k.len());
                args::write(value_out, v.as_ptr());
                args::write(value_len_out, v.len());
            }
            OK
        }
    }
}

/// Frees an iterator. NULL is accepted; freeing twice returns `EDGESTORE_CLOSED`.
/// Pointers returned by `edgestore_iter_next()` become invalid.
#[no_mangle]
pub extern "C" fn edgestore_iter_free(iter: *mut edgestore_iter) -> edgestore_status {
    boundary("edgestore_iter_free", || {
        let Some(cell) = ITERS.remove(iter, "iter")? else {
            return OK;
        };
        // Release what the iterator holds now (waiting for a call running
        // on it), even while a thread's cache still holds the object.
        let state = lock(&cell).take();
        drop(state);
        let token = iter.addr();
        let _ = LAST_ITER.try_with(|slot| {
            if let Ok(mut slot) = slot.try_borrow_mut() {
                if slot.as_ref().is_some_and(|last| last.token == token) {
                    *slot = None;
                }
            }
        });
        // Counts are only given back from here on (the handle is no longer
        // in the registry), so a shell nobody else holds now never needs
        // keeping.
        if Arc::strong_count(&cell) > 1 || FREED_SHELL_COUNT.load(Ordering::Relaxed) > 0 {
            let mut shells = FREED_SHELLS.lock().unwrap_or_else(|p| p.into_inner());
            if Arc::strong_count(&cell) > 1 {
                shells.push(cell);
            }
            shells.retain(|c| Arc::strong_count(c) > 1);
            FREED_SHELL_COUNT.store(shells.len(), Ordering::Relaxed);
        }
        OK
    })
}
