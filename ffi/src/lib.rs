//! C ABI of edgestore: builds `libedgestore.so` / `libedgestore.a`; cbindgen
//! turns this crate into `include/edgestore.h` (run `ffi/generate-header.sh`).
//!
//! Conventions (see `ffi/README-C.md`): every function returns an
//! [`edgestore_status`]; in-parameters come first and out-parameters last, and
//! out-parameters are written only on `EDGESTORE_OK` (the single documented
//! exception: the needed length on `EDGESTORE_BUFFER_TOO_SMALL`); every pointer
//! is checked; no panic crosses the boundary; `_free` / `_close` accept NULL.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![allow(non_camel_case_types)]

mod args;
mod batch;
mod db;
mod handles;
mod iter;
mod merkle;
mod options;
mod snapshot;
mod status;
mod value;
mod vector;

pub use batch::*;
pub use db::*;
pub use iter::*;
pub use options::*;
pub use snapshot::*;
pub use status::{edgestore_status, edgestore_sync_mode};
pub use vector::*;

use std::ffi::{c_char, c_int};

/// Major version of the library this header belongs to.
pub const EDGESTORE_VERSION_MAJOR: u32 = 0;
/// Minor version of the library this header belongs to.
pub const EDGESTORE_VERSION_MINOR: u32 = 3;
/// Patch version of the library this header belongs to.
pub const EDGESTORE_VERSION_PATCH: u32 = 0;

/// An open database.
///
/// Create with `edgestore_open()`, release with `edgestore_close()`.
/// Thread safety: one handle may be used from any number of threads at once;
/// reads run in parallel, concurrent durable writes share fsyncs.
/// A handle is an opaque token, never a pointer to memory: a closed handle is
/// reported as `EDGESTORE_CLOSED`, a foreign value as `EDGESTORE_INVALID_ARGUMENT`.
pub struct edgestore_db {
    _opaque: [u8; 0],
}

/// Options for `edgestore_open()`: sync mode, sizes, cohort window,
/// compaction budget, background compaction, and a manual clock for tests.
///
/// Create with `edgestore_options_new()`, free with `edgestore_options_free()`.
/// `edgestore_open()` copies what it needs, so the options may be freed or
/// reused right after. Safe to share between threads (calls are serialised).
pub struct edgestore_options {
    _opaque: [u8; 0],
}

/// A write batch: puts and deletes applied all or nothing, also across a crash.
///
/// Create with `edgestore_batch_new()`, apply with `edgestore_batch_commit()`,
/// free with `edgestore_batch_free()`. A batch is not bound to a database. Calls
/// on one batch from several threads are serialised (safe, but the order is
/// then up to the scheduler).
pub struct edgestore_batch {
    _opaque: [u8; 0],
}

/// A consistent, read-only view of a database as it was when taken
/// (`edgestore_snapshot_new()`); free with `edgestore_snapshot_free()`.
///
/// Lifetime: independent of the database handle. A snapshot stays readable
/// after `edgestore_close()` of its database; it holds the files it reads
/// open until freed (compaction does not wait for it). Thread safety: usable
/// from many threads at once.
pub struct edgestore_snapshot {
    _opaque: [u8; 0],
}

/// A forward iterator over keys of one namespace, in key order, reading a
/// consistent view taken when it was created. Advance with
/// `edgestore_iter_next()`, free with `edgestore_iter_free()`.
///
/// Lifetime: independent of the database or snapshot it came from (it stays
/// valid after they are closed or freed). Thread safety: calls are serialised,
/// but the key/value pointers returned by `edgestore_iter_next()` are only
/// valid until the next call on the iterator, so use one iterator from one
/// thread at a time.
pub struct edgestore_iter {
    _opaque: [u8; 0],
}

/// The library version as a static NUL-terminated string, e.g. "0.1.0".
///
/// Ownership: static, never free it. Thread safety: any thread. Never fails.
/// Compare with `EDGESTORE_VERSION_MAJOR`/`_MINOR`/`_PATCH` to detect a header
/// and library mismatch.
#[no_mangle]
pub extern "C" fn edgestore_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The static name of a status code ("EDGESTORE_OK", ...), or
/// "EDGESTORE_UNKNOWN_STATUS" for a value that is not a status.
///
/// Ownership: static, never free it. Thread safety: any thread. Never fails.
#[no_mangle]
pub extern "C" fn edgestore_status_name(code: c_int) -> *const c_char {
    status::status_name(i64::from(code)).as_ptr()
}

/// A detailed, NUL-terminated message about the last failure (any status other
/// than `EDGESTORE_OK` and `EDGESTORE_DONE`) on the calling thread, prefixed
/// with the function name; "" if this thread has had no failure.
///
/// Ownership: owned by the library, never free it. Lifetime: valid until the
/// next failing edgestore call on the same thread, or the thread's exit; copy it
/// to keep it. Successful calls do not clear it. Thread safety: per thread.
#[no_mangle]
pub extern "C" fn edgestore_last_error() -> *const c_char {
    std::panic::catch_unwind(status::last_error_ptr).unwrap_or(c"".as_ptr())
}

/// Frees a value returned by `edgestore_get()` or `edgestore_snapshot_get()`.
///
/// NULL is accepted and does nothing. The library tracks its buffers, so a
/// pointer it did not allocate, or one already freed, is rejected with
/// `EDGESTORE_INVALID_ARGUMENT` instead of corrupting the heap (do not rely
/// on this: it is a safety net). Thread safety: any thread.
#[no_mangle]
pub extern "C" fn edgestore_value_free(value: *mut u8) -> edgestore_status {
    status::boundary("edgestore_value_free", || {
        value::free(value)?;
        Ok(edgestore_status::EDGESTORE_OK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn version_constants_match_the_crate() {
        let want = format!(
            "{EDGESTORE_VERSION_MAJOR}.{EDGESTORE_VERSION_MINOR}.{EDGESTORE_VERSION_PATCH}"
        );
        assert_eq!(want, env!("CARGO_PKG_VERSION"));
        // SAFETY: edgestore_version returns a static NUL-terminated string.
        let got = unsafe { CStr::from_ptr(edgestore_version()) };
        assert_eq!(got.to_str().unwrap(), want);
    }
}
