//! Values handed to C: library-allocated buffers (tracked, so a wrong or
//! double free is reported instead of corrupting the heap) and copies into
//! caller buffers.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::args;
use crate::handles::disguise;
use crate::status::{edgestore_status, Fail};

/// Live library-allocated value buffers: disguised address -> allocated
/// length. Disguised (see `handles::disguise`) so that a value the program
/// forgets to free is reported by valgrind / LeakSanitizer.
static LIVE: Mutex<BTreeMap<usize, usize>> = Mutex::new(BTreeMap::new());

fn live() -> std::sync::MutexGuard<'static, BTreeMap<usize, usize>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Moves `value` into a fresh buffer of at least one byte (so the pointer is
/// never NULL or shared, even for an empty value) and registers it.
pub(crate) fn into_c(value: Vec<u8>) -> *mut u8 {
    let mut buf = value;
    if buf.is_empty() {
        buf.push(0);
    }
    let boxed = buf.into_boxed_slice();
    let len = boxed.len();
    let ptr = Box::into_raw(boxed) as *mut u8;
    live().insert(disguise(ptr.addr()), len);
    ptr
}

/// Frees a buffer from [`into_c`]; NULL is a no-op.
pub(crate) fn free(ptr: *mut u8) -> Result<(), Fail> {
    if ptr.is_null() {
        return Ok(());
    }
    let Some(len) = live().remove(&disguise(ptr.addr())) else {
        return Err(Fail::invalid(
            "pointer is not a live value buffer from this library (already freed, or never allocated by it)",
        ));
    };
    // SAFETY: ptr/len were produced by Box::into_raw of a Box<[u8]> of exactly
    // len bytes in into_c, and removing the entry from LIVE guarantees it is
    // reconstructed (and freed) once.
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
    Ok(())
}

/// Output of a get in library-allocated form.
///
/// # Safety
/// `value_out` and `len_out` must have been checked by `args::out` and be writable.
pub(crate) unsafe fn emit_owned(
    found: Option<Vec<u8>>,
    value_out: *mut *mut u8,
    len_out: *mut usize,
) -> Result<edgestore_status, Fail> {
    let Some(v) = found else {
        return Err(Fail::new(
            edgestore_status::EDGESTORE_NOT_FOUND,
            "key not found",
        ));
    };
    let len = v.len();
    let ptr = into_c(v);
    // SAFETY: both out-parameters were checked non-NULL by the caller.
    unsafe {
        args::write(value_out, ptr);
        args::write(len_out, len);
    }
    Ok(edgestore_status::EDGESTORE_OK)
}

/// Output of a get copied into a caller buffer: `found` is what the engine's
/// in-place read (`get_with`) returned after calling [`copy_into`].
pub(crate) fn emit_into(
    found: Option<Result<edgestore_status, Fail>>,
) -> Result<edgestore_status, Fail> {
    found.unwrap_or_else(|| {
        Err(Fail::new(
            edgestore_status::EDGESTORE_NOT_FOUND,
            "key not found",
        ))
    })
}

/// Copies a value borrowed from the engine (memtable or block cache) into a
/// caller buffer: the allocation-free read path.
///
/// # Safety
/// `len_out` must have been checked by `args::out`; when `cap > 0`, `buf` must be
/// non-NULL (checked by `check_buf`) and point to `cap` writable bytes.
pub(crate) unsafe fn copy_into(
    v: &[u8],
    buf: *mut u8,
    cap: usize,
    len_out: *mut usize,
) -> Result<edgestore_status, Fail> {
    if v.len() > cap {
        // SAFETY: len_out was checked non-NULL by the caller.
        unsafe { args::write(len_out, v.len()) };
        return Err(Fail::new(
            edgestore_status::EDGESTORE_BUFFER_TOO_SMALL,
            format!(
                "value is {} bytes but the buffer holds {cap}; the needed length was written to value_len_out",
                v.len()
            ),
        ));
    }
    if !v.is_empty() {
        // SAFETY: buf is non-NULL (checked by check_buf before the read) and has
        // cap >= v.len() writable bytes per the contract; the regions cannot
        // overlap because v is engine-owned memory never handed to the caller.
        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), buf, v.len()) };
    }
    // SAFETY: len_out was checked non-NULL by the caller.
    unsafe { args::write(len_out, v.len()) };
    Ok(edgestore_status::EDGESTORE_OK)
}

/// Checks a caller buffer: NULL is only allowed with `cap == 0`.
pub(crate) fn check_buf(buf: *mut u8, cap: usize) -> Result<(), Fail> {
    if buf.is_null() && cap > 0 {
        return Err(Fail::invalid(format!("buf is NULL but cap is {cap}")));
    }
    Ok(())
}
