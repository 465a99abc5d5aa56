//! Merkle trees for sync: a namespace's tree copied into the caller's buffer.

use edgestore_core::MerkleTree;

use crate::args;
use crate::db::lookup_db;
use crate::snapshot::SNAPSHOTS;
use crate::status::{boundary, edgestore_status, Fail};
use crate::{edgestore_db, edgestore_snapshot};

const OK: Result<edgestore_status, Fail> = Ok(edgestore_status::EDGESTORE_OK);

/// Bytes of one node hash.
const HASH_LEN: usize = 32;

/// Writes to `*count_out` the number of nodes in a Merkle tree of `depth`
/// levels below the root (1 to 4): `(16^(depth+1) - 1) / 15`, so a buffer of
/// `count * 32` bytes holds every node. Errors: `EDGESTORE_INVALID_ARGUMENT`
/// (depth out of range, NULL `count_out`). Thread safety: any thread.
///
/// # Safety
/// `count_out` must be NULL or valid for writing a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn edgestore_merkle_node_count(
    depth: u32,
    count_out: *mut usize,
) -> edgestore_status {
    boundary("edgestore_merkle_node_count", || {
        args::out(count_out, "count_out")?;
        let n = MerkleTree::node_count(depth)?;
        // SAFETY: count_out was checked non-NULL; the caller guarantees it is writable.
        unsafe { args::write(count_out, n) };
        OK
    })
}

/// Writes to `*leaf_out` the leaf `key` belongs to in a Merkle tree of
/// `depth` levels (0 to `16^depth - 1`): a replica sends, for each leaf
/// whose hash differs from its peer's, the keys of that leaf. Depends on
/// the key alone. Errors: `EDGESTORE_INVALID_ARGUMENT`. Thread safety: any
/// thread.
///
/// # Safety
/// `key` must point to `key_len` readable bytes (or be NULL with `key_len`
/// 0); `leaf_out` must be NULL or valid for writing a `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn edgestore_merkle_leaf_of(
    key: *const u8,
    key_len: usize,
    depth: u32,
    leaf_out: *mut u32,
) -> edgestore_status {
    boundary("edgestore_merkle_leaf_of", || {
        // SAFETY: the caller guarantees a non-NULL key covers key_len bytes.
        let key = unsafe { args::key(key, key_len, "key")? };
        args::out(leaf_out, "leaf_out")?;
        let leaf = MerkleTree::leaf_of(key, depth)?;
        // SAFETY: leaf_out was checked non-NULL; the caller guarantees it is writable.
        unsafe { args::write(leaf_out, leaf) };
        OK
    })
}

/// Checks the output arguments of a tree call before any reading: the
/// buffer must hold every node of a `depth` tree.
fn check_out(
    depth: u32,
    nodes_out: *mut u8,
    nodes_cap: usize,
    entries_out: *mut u64,
) -> Result<(), Fail> {
    let need = MerkleTree::node_count(depth)? * HASH_LEN;
    if nodes_out.is_null() {
        return Err(Fail::invalid("nodes_out is NULL"));
    }
    if nodes_cap < need {
        return Err(Fail::new(
            edgestore_status::EDGESTORE_BUFFER_TOO_SMALL,
            format!("a depth {depth} tree needs {need} bytes; nodes_cap is {nodes_cap}"),
        ));
    }
    args::out(entries_out, "entries_out")
}

/// The body of the two tree calls: checks every argument, then computes
/// the tree of `ns` with `tree` and copies it out.
///
/// # Safety
/// As for `edgestore_merkle_tree()`.
unsafe fn tree_into(
    ns: *const u8,
    ns_len: usize,
    depth: u32,
    nodes_out: *mut u8,
    nodes_cap: usize,
    entries_out: *mut u64,
    tree: impl FnOnce(&[u8]) -> Result<MerkleTree, Fail>,
) -> Result<edgestore_status, Fail> {
    // SAFETY: the caller guarantees a non-NULL ns covers ns_len bytes.
    let ns = unsafe { args::namespace(ns, ns_len)? };
    check_out(depth, nodes_out, nodes_cap, entries_out)?;
    let tree = tree(ns)?;
    let nodes = tree.nodes();
    // SAFETY: check_out verified the buffer holds node_count(depth) hashes,
    // which is nodes.len(); a caller-owned buffer cannot overlap the tree.
    unsafe {
        std::ptr::copy_nonoverlapping(
            nodes.as_ptr().cast::<u8>(),
            nodes_out,
            nodes.len() * HASH_LEN,
        )
    };
    // SAFETY: entries_out was checked non-NULL; the caller guarantees it is writable.
    unsafe { args::write(entries_out, tree.entries()) };
    OK
}

/// Computes the Merkle tree of the live entries of `ns` as they are now
/// (one scan of the namespace from a consistent view) with `16^depth`
/// leaves, `depth` 1 to 4, and copies every node into `nodes_out`: 32 bytes
/// each, level by level from the root (node `i` of level `l` starts at byte
/// `32 * ((16^l - 1) / 15 + i)`; its children are nodes `16i .. 16i + 15`
/// of level `l + 1`). `*entries_out` is the number of entries hashed.
///
/// Sync: two replicas compare roots (the first 32 bytes), then the children
/// of differing nodes, then exchange the keys of differing leaves
/// (`edgestore_merkle_leaf_of()`). The hashes are fixed in `core/FORMAT.md`
/// and do not depend on TTLs, write order, flushes or compaction.
///
/// `nodes_cap` must be at least `edgestore_merkle_node_count(depth) * 32`,
/// else `EDGESTORE_BUFFER_TOO_SMALL` (checked before anything is read).
/// Nothing is written unless the call returns `EDGESTORE_OK`. Errors:
/// `EDGESTORE_INVALID_ARGUMENT`, `EDGESTORE_BUFFER_TOO_SMALL`,
/// `EDGESTORE_CLOSED`, `EDGESTORE_IO`, `EDGESTORE_CORRUPTION`. Thread
/// safety: any thread.
///
/// # Safety
/// `ns` must point to `ns_len` readable bytes (or be NULL with `ns_len` 0);
/// `nodes_out` must have `nodes_cap` writable bytes; `entries_out` must be
/// NULL or valid for writing a `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn edgestore_merkle_tree(
    db: *mut edgestore_db,
    ns: *const u8,
    ns_len: usize,
    depth: u32,
    nodes_out: *mut u8,
    nodes_cap: usize,
    entries_out: *mut u64,
) -> edgestore_status {
    boundary("edgestore_merkle_tree", || {
        // SAFETY: forwarded contract.
        unsafe {
            tree_into(ns, ns_len, depth, nodes_out, nodes_cap, entries_out, |ns| {
                Ok(lookup_db(db)?.engine.merkle_tree(ns, depth)?)
            })
        }
    })
}

/// `edgestore_merkle_tree()` as of the snapshot: the tree of exactly the
/// data the snapshot reads, so a replica can send the keys of differing
/// leaves from the same view it hashed. Arguments, errors and layout as for
/// `edgestore_merkle_tree()`. Thread safety: any thread.
///
/// # Safety
/// As for `edgestore_merkle_tree()`.
#[no_mangle]
pub unsafe extern "C" fn edgestore_snapshot_merkle_tree(
    snapshot: *mut edgestore_snapshot,
    ns: *const u8,
    ns_len: usize,
    depth: u32,
    nodes_out: *mut u8,
    nodes_cap: usize,
    entries_out: *mut u64,
) -> edgestore_status {
    boundary("edgestore_snapshot_merkle_tree", || {
        // SAFETY: forwarded contract.
        unsafe {
            tree_into(ns, ns_len, depth, nodes_out, nodes_cap, entries_out, |ns| {
                Ok(SNAPSHOTS
                    .get(snapshot, "snapshot")?
                    .merkle_tree(ns, depth)?)
            })
        }
    })
}
