//! `edgestore_snapshot`: consistent read-only views.

use edgestore_core::Snapshot;

use crate::args;
use crate::db::lookup_db;
use crate::handles::{Kind, Registry};
use crate::status::{boundary, edgestore_status, Fail};
use crate::value;
use crate::{edgestore_db, edgestore_snapshot};

/// What a snapshot handle holds: the snapshot and the token of the database
/// handle it was taken from (so a vector search through it can check that the
/// collection belongs to the same database).
pub(crate) struct Snap {
    pub snap: Snapshot,
    pub db: usize,
}

impl std::ops::Deref for Snap {
    type Target = Snapshot;
    fn deref(&self) -> &Snapshot {
        &self.snap
    }
}

pub(crate) static SNAPSHOTS: Registry<Snap> = Registry::new(Kind::Snapshot);

const OK: Result<edgestore_status, Fail> = Ok(edgestore_status::EDGESTORE_OK);

/// Takes a snapshot: a consistent view of `db` as it is now, memtable included.
/// TTLs are judged at this instant, so a record alive now stays readable through
/// the snapshot after it expires.
///
/// Ownership: the caller owns `*snapshot_out` and frees it with
/// `edgestore_snapshot_free()`. Lifetime: independent of `db` (stays valid after
/// `edgestore_close(db)`). It holds the segment files it reads open:
/// compaction goes on merging and dropping them meanwhile, and the disk space
/// of those it removed returns when the snapshot and its iterators are freed.
/// Errors: `EDGESTORE_INVALID_ARGUMENT`, `EDGESTORE_CLOSED`.
///
/// # Safety
/// `snapshot_out` must be NULL or valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn edgestore_snapshot_new(
    db: *mut edgestore_db,
    snapshot_out: *mut *mut edgestore_snapshot,
) -> edgestore_status {
    boundary("edgestore_snapshot_new", || {
        args::out(snapshot_out, "snapshot_out")?;
        let snap = lookup_db(db)?.engine.snapshot()?;
        let handle = SNAPSHOTS.insert(Snap {
            snap,
            db: db.addr(),
        })?;
        // SAFETY: snapshot_out was checked non-NULL; the caller guarantees it is writable.
        unsafe { args::write(snapshot_out, handle) };
        OK
    })
}

/// Frees a snapshot, releasing the files it holds open. NULL is accepted; freeing
/// twice returns `EDGESTORE_CLOSED`. Iterators created from it stay valid.
#[no_mangle]
pub extern "C" fn edgestore_snapshot_free(snapshot: *mut edgestore_snapshot) -> edgestore_status {
    boundary("edgestore_snapshot_free", || {
        SNAPSHOTS.remove(snapshot, "snapshot")?;
        OK
    })
}

/// Reads `key` in `ns` as of the snapshot into a library-allocated buffer
/// (free with `edgestore_value_free()`). Semantics and errors as for
/// `edgestore_get()`. Thread safety: any thread.
///
/// # Safety
/// Each non-NULL input pointer must point to at least its length in readable
/// bytes; `value_out` and `value_len_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgestore_snapshot_get(
    snapshot: *mut edgestore_snapshot,
    ns: *const u8,
    ns_len: usize,
    key: *const u8,
    key_len: usize,
    value_out: *mut *mut u8,
    value_len_out: *mut usize,
) -> edgestore_status {
    boundary("edgestore_snapshot_get", || {
        // SAFETY: the caller guarantees each non-NULL pointer covers its length.
        let (ns, key) = unsafe {
            (
                args::namespace(ns, ns_len)?,
                args::key(key, key_len, "key")?,
            )
        };
        args::out(value_out, "value_out")?;
        args::out(value_len_out, "value_len_out")?;
        let found = SNAPSHOTS.get(snapshot, "snapshot")?.get(ns, key)?;
        // SAFETY: both out-parameters were checked non-NULL above.
        unsafe { value::emit_owned(found, value_out, value_len_out) }
    })
}

/// Reads `key` in `ns` as of the snapshot into the caller's buffer. Semantics
/// and errors as for `edgestore_get_into()` (`EDGESTORE_BUFFER_TOO_SMALL` writes
/// the needed length).
///
/// # Safety
/// Each non-NULL input pointer must point to at least its length in readable
/// bytes; `buf` must have `cap` writable bytes; `value_len_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgestore_snapshot_get_into(
    snapshot: *mut edgestore_snapshot,
    ns: *const u8,
    ns_len: usize,
    key: *const u8,
    key_len: usize,
    buf: *mut u8,
    cap: usize,
    value_len_out: *mut usize,
) -> edgestore_status {
    boundary("edgestore_snapshot_get_into", || {
        // SAFETY: the caller guarantees each non-NULL pointer covers its length.
        let (ns, key) = unsafe {
            (
                args::namespace(ns, ns_len)?,
                args::key(key, key_len, "key")?,
            )
        };
        value::check_buf(buf, cap)?;
        args::out(value_len_out, "value_len_out")?;
        let found = SNAPSHOTS
            .get(snapshot, "snapshot")?
            .get_with(ns, key, |v| {
                // SAFETY: buf/cap checked above and covered by the contract; value_len_out non-NULL.
                unsafe { value::copy_into(v, buf, cap, value_len_out) }
            })?;
        value::emit_into(found)
    })
}

/// Writes the sequence number the snapshot reads at to `*sequence_out`
/// (later snapshots have greater or equal numbers).
///
/// # Safety
/// `sequence_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgestore_snapshot_sequence(
    snapshot: *mut edgestore_snapshot,
    sequence_out: *mut u64,
) -> edgestore_status {
    boundary("edgestore_snapshot_sequence", || {
        args::out(sequence_out, "sequence_out")?;
        let seq = SNAPSHOTS.get(snapshot, "snapshot")?.sequence();
        // SAFETY: sequence_out was checked non-NULL; the caller guarantees it is writable.
        unsafe { args::write(sequence_out, seq) };
        OK
    })
}
