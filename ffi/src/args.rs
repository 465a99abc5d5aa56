//! Checking pointer/length arguments before anything is read or written.

use std::ffi::{c_char, CStr};
use std::path::PathBuf;

use edgestore_core::types::{MAX_KEY_LEN, MAX_NAMESPACE_LEN, MAX_VALUE_LEN};

use crate::status::Fail;

/// Borrows `(ptr, len)` as a byte slice after checking `len <= max` and that
/// `ptr` is non-NULL when `len > 0`. `len == 0` yields `&[]` whatever `ptr` is.
///
/// # Safety
/// When `ptr` is non-NULL and `len <= max`, `ptr` must point to `len` readable
/// bytes that stay valid and unmodified for `'a`.
pub(crate) unsafe fn bytes<'a>(
    ptr: *const u8,
    len: usize,
    max: usize,
    what: &str,
) -> Result<&'a [u8], Fail> {
    if len > max {
        return Err(Fail::invalid(format!(
            "{what} is {len} bytes; the limit is {max}"
        )));
    }
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Fail::invalid(format!(
            "{what} is NULL but its length is {len}"
        )));
    }
    // SAFETY: ptr is non-NULL, len <= max <= isize::MAX, and the caller
    // guarantees ptr points to len readable bytes valid for 'a.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Borrows `count` elements of `T` at `ptr` after checking `count <= max`,
/// that `ptr` is non-NULL when `count > 0` and aligned for `T`.
///
/// # Safety
/// When the checks pass and `count > 0`, `ptr` must point to `count`
/// initialised `T`s that stay valid for `'a`.
pub(crate) unsafe fn array<'a, T>(
    ptr: *const T,
    count: usize,
    max: usize,
    what: &str,
) -> Result<&'a [T], Fail> {
    if count > max {
        return Err(Fail::invalid(format!(
            "{what} has {count} elements; the limit is {max}"
        )));
    }
    if count == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Fail::invalid(format!(
            "{what} is NULL but its count is {count}"
        )));
    }
    if !ptr.is_aligned() {
        return Err(Fail::invalid(format!(
            "{what} is not aligned to {} bytes",
            std::mem::align_of::<T>()
        )));
    }
    // SAFETY: ptr is non-NULL and aligned; count <= max, and every max used
    // here keeps count * size_of::<T>() far below isize::MAX; the caller
    // guarantees count readable Ts valid for 'a.
    Ok(unsafe { std::slice::from_raw_parts(ptr, count) })
}

/// A namespace argument.
///
/// # Safety
/// As for [`bytes`].
pub(crate) unsafe fn namespace<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8], Fail> {
    // SAFETY: forwarded contract.
    unsafe { bytes(ptr, len, MAX_NAMESPACE_LEN, "namespace") }
}

/// A key (or key bound, or prefix) argument.
///
/// # Safety
/// As for [`bytes`].
pub(crate) unsafe fn key<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a [u8], Fail> {
    // SAFETY: forwarded contract.
    unsafe { bytes(ptr, len, MAX_KEY_LEN, what) }
}

/// A value argument.
///
/// # Safety
/// As for [`bytes`].
pub(crate) unsafe fn value<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8], Fail> {
    // SAFETY: forwarded contract.
    unsafe { bytes(ptr, len, MAX_VALUE_LEN, "value") }
}

/// Fails unless `ptr` is non-NULL (used for out-parameters, checked before
/// the operation runs so a NULL out-parameter has no side effects).
pub(crate) fn out<T>(ptr: *mut T, what: &str) -> Result<(), Fail> {
    if ptr.is_null() {
        Err(Fail::invalid(format!("out-parameter {what} is NULL")))
    } else {
        Ok(())
    }
}

/// Writes an out-parameter already checked by [`out`].
///
/// # Safety
/// `ptr` must be non-NULL and valid for a write of `T` (alignment not required).
pub(crate) unsafe fn write<T>(ptr: *mut T, value: T) {
    // SAFETY: the caller guarantees ptr is non-NULL and writable; write_unaligned
    // tolerates any alignment.
    unsafe { ptr.write_unaligned(value) }
}

/// A NUL-terminated database path.
///
/// # Safety
/// When non-NULL, `path` must point to a NUL-terminated string.
pub(crate) unsafe fn path(path: *const c_char) -> Result<PathBuf, Fail> {
    if path.is_null() {
        return Err(Fail::invalid("path is NULL"));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
    if bytes.is_empty() {
        return Err(Fail::invalid("path is empty"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
    }
    #[cfg(not(unix))]
    {
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(PathBuf::from(s)),
            Err(_) => Err(Fail::invalid("path is not valid UTF-8")),
        }
    }
}
