//! Status codes, the failure type used inside the crate, the thread-local
//! "last error" message and the panic boundary wrapped around every export.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Result of every edgestore function that can fail.
///
/// The numeric values are part of the ABI: they never change and new codes are
/// only ever appended. `EDGESTORE_OK` is 0, so `if (status) { error }` works.
/// On any status other than `EDGESTORE_OK` and `EDGESTORE_DONE`,
/// `edgestore_last_error()` returns a detailed message for this thread.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum edgestore_status {
    /// Success.
    EDGESTORE_OK = 0,
    /// The key does not exist, was deleted or has expired.
    EDGESTORE_NOT_FOUND = 1,
    /// A NULL pointer, a wrong or foreign handle, a length over a limit, an
    /// unknown enum value, an invalid option or a malformed path.
    EDGESTORE_INVALID_ARGUMENT = 2,
    /// An operating-system I/O error (message says what the engine was doing).
    EDGESTORE_IO = 3,
    /// A checksum, magic number or structural check failed in a database file.
    EDGESTORE_CORRUPTION = 4,
    /// The database directory is locked by another process or another open handle.
    EDGESTORE_LOCKED = 5,
    /// The handle was closed or freed (use after close, double close/free).
    EDGESTORE_CLOSED = 6,
    /// An earlier write or fsync failed; the database refuses writes until reopened.
    EDGESTORE_POISONED = 7,
    /// The caller's buffer is too small. What is written then differs by
    /// function and its documentation says: the needed length (a value
    /// read into a caller's buffer), the counts needed (vector search), or
    /// nothing (Merkle tree nodes, whose sizes are fixed).
    EDGESTORE_BUFFER_TOO_SMALL = 8,
    /// A bug: Rust code panicked. The panic was caught at the boundary; the
    /// handle involved should be closed.
    EDGESTORE_PANIC = 9,
    /// Not an error: an iterator has no more items.
    EDGESTORE_DONE = 10,
    /// An error kind this version of the C library does not classify.
    EDGESTORE_INTERNAL = 11,
}

/// How a write becomes durable; pass to `edgestore_options_set_sync_mode`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum edgestore_sync_mode {
    /// Every write returns after its WAL record is on stable storage (fdatasync;
    /// concurrent writers share one fsync). The default.
    EDGESTORE_SYNC_DURABLE = 0,
    /// A write returns once its WAL record is handed to the OS. A process crash
    /// loses nothing; a power loss may lose writes since the last
    /// `edgestore_flush()`, which is the durability barrier.
    EDGESTORE_SYNC_BUFFERED = 1,
}

/// A failed call: the status to return and the message for `edgestore_last_error()`.
#[derive(Debug)]
pub(crate) struct Fail {
    pub status: edgestore_status,
    pub message: String,
}

impl Fail {
    pub(crate) fn new(status: edgestore_status, message: impl Into<String>) -> Self {
        Fail {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Fail::new(edgestore_status::EDGESTORE_INVALID_ARGUMENT, message)
    }
}

impl From<edgestore_core::Error> for Fail {
    fn from(e: edgestore_core::Error) -> Self {
        use edgestore_core::Error as E;
        use edgestore_status::*;
        let status = match &e {
            E::Io { .. } => EDGESTORE_IO,
            E::Corruption { .. } => EDGESTORE_CORRUPTION,
            E::InvalidArgument(_) => EDGESTORE_INVALID_ARGUMENT,
            E::Locked(_) => EDGESTORE_LOCKED,
            E::Closed => EDGESTORE_CLOSED,
            E::Poisoned(_) => EDGESTORE_POISONED,
            _ => EDGESTORE_INTERNAL,
        };
        Fail::new(status, e.to_string())
    }
}

/// Static, NUL-terminated name of a status code.
pub(crate) fn status_name(code: i64) -> &'static std::ffi::CStr {
    match code {
        0 => c"EDGESTORE_OK",
        1 => c"EDGESTORE_NOT_FOUND",
        2 => c"EDGESTORE_INVALID_ARGUMENT",
        3 => c"EDGESTORE_IO",
        4 => c"EDGESTORE_CORRUPTION",
        5 => c"EDGESTORE_LOCKED",
        6 => c"EDGESTORE_CLOSED",
        7 => c"EDGESTORE_POISONED",
        8 => c"EDGESTORE_BUFFER_TOO_SMALL",
        9 => c"EDGESTORE_PANIC",
        10 => c"EDGESTORE_DONE",
        11 => c"EDGESTORE_INTERNAL",
        _ => c"EDGESTORE_UNKNOWN_STATUS",
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `message` as this thread's last error (interior NULs become '?').
pub(crate) fn set_last_error(function: &str, message: &str) {
    let text = format!("{function}: {message}").replace('\0', "?");
    let c = CString::new(text).unwrap_or_default();
    // try_with: during thread teardown the slot may be gone; then there is no
    // one left to read the message anyway.
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = c);
}

/// Pointer to this thread's last error message ("" if none yet).
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR
        .try_with(|slot| slot.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

/// The boundary every exported function runs its body inside: converts a
/// `Fail` into its status (recording the message) and a panic into
/// `EDGESTORE_PANIC`, so no panic ever unwinds into C.
pub(crate) fn boundary(
    function: &'static str,
    body: impl FnOnce() -> Result<edgestore_status, Fail>,
) -> edgestore_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(status)) => status,
        Ok(Err(fail)) => {
            set_last_error(function, &fail.message);
            fail.status
        }
        Err(payload) => {
            let msg = format!("internal panic (a bug): {}", panic_message(&*payload));
            // Setting the message must not unwind either.
            let _ = catch_unwind(AssertUnwindSafe(|| set_last_error(function, &msg)));
            edgestore_status::EDGESTORE_PANIC
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> String {
        // SAFETY: last_error_ptr returns a valid NUL-terminated string owned by
        // this thread's slot, read before any other call on this thread.
        unsafe { CStr::from_ptr(last_error_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn panics_become_status_and_message() {
        let st = boundary("edgestore_test", || panic!("boom {}", 42));
        assert_eq!(st, edgestore_status::EDGESTORE_PANIC);
        assert!(last().contains("boom 42"), "{}", last());
    }

    #[test]
    fn failures_set_message_and_success_keeps_it() {
        let st = boundary("edgestore_x", || Err(Fail::invalid("bad\0thing")));
        assert_eq!(st, edgestore_status::EDGESTORE_INVALID_ARGUMENT);
        assert_eq!(last(), "edgestore_x: bad?thing");
        assert_eq!(
            boundary("edgestore_y", || Ok(edgestore_status::EDGESTORE_OK)),
            edgestore_status::EDGESTORE_OK
        );
        assert_eq!(last(), "edgestore_x: bad?thing");
    }

    #[test]
    fn every_code_has_a_name() {
        for code in 0..=11 {
            assert_ne!(status_name(code), c"EDGESTORE_UNKNOWN_STATUS");
        }
        assert_eq!(status_name(-1), c"EDGESTORE_UNKNOWN_STATUS");
        assert_eq!(
            status_name(edgestore_status::EDGESTORE_DONE as i64),
            c"EDGESTORE_DONE"
        );
    }
}
