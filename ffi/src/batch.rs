//! `edgestore_batch`: atomic write batches.

use std::sync::{Mutex, MutexGuard};

use edgestore_core::WriteBatch;

use crate::args;
use crate::db::lookup_db;
use crate::handles::{Kind, Registry};
use crate::status::{boundary, edgestore_status, Fail};
use crate::{edgestore_batch, edgestore_db};

pub(crate) static BATCHES: Registry<Mutex<WriteBatch>> = Registry::new(Kind::Batch);

fn lock(m: &Mutex<WriteBatch>) -> MutexGuard<'_, WriteBatch> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

const OK: Result<edgestore_status, Fail> = Ok(edgestore_status::EDGESTORE_OK);

/// Creates an empty write batch.
///
/// Ownership: the caller owns `*batch_out` and frees it with
/// `edgestore_batch_free()`. Errors: `EDGESTORE_INVALID_ARGUMENT` if
/// `batch_out` is NULL.
///
/// # Safety
/// `batch_out` must be NULL or valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn edgestore_batch_new(
    batch_out: *mut *mut edgestore_batch,
) -> edgestore_status {
    boundary("edgestore_batch_new", || {
        args::out(batch_out, "batch_out")?;
        let handle = BATCHES.insert(Mutex::new(WriteBatch::new()))?;
        // SAFETY: batch_out was checked non-NULL; the caller guarantees it is writable.
        unsafe { args::write(batch_out, handle) };
        OK
    })
}

/// Frees a batch (uncommitted operations are discarded). NULL is accepted;
/// freeing twice returns `EDGESTORE_CLOSED`.
#[no_mangle]
pub extern "C" fn edgestore_batch_free(batch: *mut edgestore_batch) -> edgestore_status {
    boundary("edgestore_batch_free", || {
        BATCHES.remove(batch, "batch")?;
        OK
    })
}

/// Adds a put that never expires. The bytes are copied. Limits as for
/// `edgestore_put()`; a batch holds at most 256 MiB.
/// Errors: `EDGESTORE_INVALID_ARGUMENT`, `EDGESTORE_CLOSED` (freed batch).
///
/// # Safety
/// Each non-NULL pointer must point to at least its length in readable bytes.
#[no_mangle]
pub unsafe extern "C" fn edgestore_batch_put(
    batch: *mut edgestore_batch,
    ns: *const u8,
    ns_len: usize,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
) -> edgestore_status {
    // SAFETY: same contract as this function.
    unsafe {
        batch_put(
            "edgestore_batch_put",
            batch,
            ns,
            ns_len,
            key,
            key_len,
            value,
            value_len,
            0,
        )
    }
}

/// Adds a put that expires `ttl_seconds` after the batch is committed (0 = never).
///
/// # Safety
/// Each non-NULL pointer must point to at least its length in readable bytes.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn edgestore_batch_put_with_ttl(
    batch: *mut edgestore_batch,
    ns: *const u8,
    ns_len: usize,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    ttl_seconds: u32,
) -> edgestore_status {
    // SAFETY: same contract as this function.
    unsafe {
        batch_put(
            "edgestore_batch_put_with_ttl",
            batch,
            ns,
            ns_len,
            key,
            key_len,
            value,
            value_len,
            ttl_seconds,
        )
    }
}

/// The body of both batch puts, under `name`'s panic boundary.
///
/// # Safety
/// As for [`edgestore_batch_put_with_ttl`].
#[allow(clippy::too_many_arguments)]
unsafe fn batch_put(
    name: &'static str,
    batch: *mut edgestore_batch,
    ns: *const u8,
    ns_len: usize,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    ttl_seconds: u32,
) -> edgestore_status {
    boundary(name, || {
        // SAFETY: the caller guarantees each non-NULL pointer covers its length.
        let (ns, key, value) = unsafe {
            (
                args::namespace(ns, ns_len)?,
                args::key(key, key_len, "key")?,
                args::value(value, value_len)?,
            )
        };
        let b = BATCHES.get(batch, "batch")?;
        lock(&b).put_with_ttl(ns, key, value, ttl_seconds)?;
        OK
    })
}

/// Adds a delete of `key` in `ns`.
///
/// # Safety
/// Each non-NULL pointer must point to at least its length in readable bytes.
#[no_mangle]
pub unsafe extern "C" fn edgestore_batch_delete(
    batch: *mut edgestore_batch,
    ns: *const u8,
    ns_len: usize,
    key: *const u8,
    key_len: usize,
) -> edgestore_status {
    boundary("edgestore_batch_delete", || {
        // SAFETY: the caller guarantees each non-NULL pointer covers its length.
        let (ns, key) = unsafe {
            (
                args::namespace(ns, ns_len)?,
                args::key(key, key_len, "key")?,
            )
        };
        let b = BATCHES.get(batch, "batch")?;
        lock(&b).delete(ns, key)?;
        OK
    })
}

/// Writes the number of operations in the batch to `*len_out`.
///
/// # Safety
/// `len_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgestore_batch_len(
    batch: *mut edgestore_batch,
    len_out: *mut usize,
) -> edgestore_status {
    boundary("edgestore_batch_len", || {
        args::out(len_out, "len_out")?;
        let n = lock(&*BATCHES.get(batch, "batch")?).len();
        // SAFETY: len_out was checked non-NULL; the caller guarantees it is writable.
        unsafe { args::write(len_out, n) };
        OK
    })
}

/// Removes every operation from the batch.
#[no_mangle]
pub extern "C" fn edgestore_batch_clear(batch: *mut edgestore_batch) -> edgestore_status {
    boundary("edgestore_batch_clear", || {
        lock(&*BATCHES.get(batch, "batch")?).clear();
        OK
    })
}

/// Applies the batch to `db` atomically (all or nothing, also across a
/// crash); later operations on the same key win. Returns once durable per the
/// sync mode. On `EDGESTORE_OK` the batch is emptied and can be reused; on
/// failure it is left unchanged. The caller still frees it.
/// Errors: `EDGESTORE_INVALID_ARGUMENT`, `EDGESTORE_CLOSED`, `EDGESTORE_IO`,
/// `EDGESTORE_POISONED`.
#[no_mangle]
pub extern "C" fn edgestore_batch_commit(
    db: *mut edgestore_db,
    batch: *mut edgestore_batch,
) -> edgestore_status {
    boundary("edgestore_batch_commit", || {
        let d = lookup_db(db)?;
        let b = BATCHES.get(batch, "batch")?;
        let mut guard = lock(&b);
        d.engine.write_ref(&guard)?;
        guard.clear();
        OK
    })
}
