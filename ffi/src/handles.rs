//! Handle registries.
//!
//! A handle given to C is not a pointer to Rust memory: it is an opaque token
//! `(serial << 4) | kind`, where `serial` comes from a process-wide counter
//! that is never reused. Each kind has a registry mapping live tokens to an
//! `Arc` of the Rust object. Every call looks its token up, so:
//!
//! * a NULL, foreign, garbage or wrong-kind handle is `EDGESTORE_INVALID_ARGUMENT`;
//! * a closed or freed handle (use after close, double close) is `EDGESTORE_CLOSED`;
//! * a call running on one thread while another thread closes the handle keeps
//!   the object alive (it holds an `Arc`) until it returns.
//!
//! The library never dereferences a handle value, so no wrong handle can make
//! it touch freed memory.
//!
//! The registry stores each object's address disguised (bitwise NOT), not as
//! a plain pointer: a handle the program forgets to free then has no visible
//! pointer to it, so valgrind and LeakSanitizer report it as a leak instead of
//! "still reachable" through the registry.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::status::{edgestore_status, Fail};

const TAG_BITS: u32 = 4;
const TAG_MASK: usize = (1 << TAG_BITS) - 1;

/// Next serial number; starts at 1 so no handle is ever 0 (NULL).
static NEXT_SERIAL: AtomicUsize = AtomicUsize::new(1);

/// The kinds of handle, encoded in the low bits of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Db = 1,
    Options = 2,
    Batch = 3,
    Snapshot = 4,
    Iter = 5,
    Collection = 6,
}

impl Kind {
    fn from_tag(tag: usize) -> Option<Kind> {
        match tag {
            1 => Some(Kind::Db),
            2 => Some(Kind::Options),
            3 => Some(Kind::Batch),
            4 => Some(Kind::Snapshot),
            5 => Some(Kind::Iter),
            6 => Some(Kind::Collection),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Db => "edgestore_db",
            Kind::Options => "edgestore_options",
            Kind::Batch => "edgestore_batch",
            Kind::Snapshot => "edgestore_snapshot",
            Kind::Iter => "edgestore_iter",
            Kind::Collection => "edgestore_vector_collection",
        }
    }
}

/// Hides an address from conservative leak checkers (and restores it).
pub(crate) const fn disguise(addr: usize) -> usize {
    !addr
}

/// Live handles of one kind: token -> disguised `Arc::into_raw` address. Each
/// entry owns one strong count of its `Arc`.
pub(crate) struct Registry<T> {
    kind: Kind,
    live: RwLock<BTreeMap<usize, usize>>,
    _owns: std::marker::PhantomData<Arc<T>>,
}

impl<T> Registry<T> {
    pub(crate) const fn new(kind: Kind) -> Self {
        Registry {
            kind,
            live: RwLock::new(BTreeMap::new()),
            _owns: std::marker::PhantomData,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<usize, usize>> {
        // The map is never left half-updated, so a poisoned lock is still usable.
        self.live.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<usize, usize>> {
        self.live.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `value` and returns the new handle.
    pub(crate) fn insert<H>(&self, value: T) -> Result<*mut H, Fail> {
        let serial = NEXT_SERIAL.fetch_add(1, Ordering::Relaxed);
        if serial > (usize::MAX >> TAG_BITS) {
            return Err(Fail::invalid(
                "handle numbers are exhausted in this process",
            ));
        }
        let token = (serial << TAG_BITS) | self.kind as usize;
        let raw = Arc::into_raw(Arc::new(value));
        self.write()
            .insert(token, disguise(raw.expose_provenance()));
        Ok(std::ptr::without_provenance_mut(token))
    }

    /// Checks the shape of a non-NULL token; `Err` says what is wrong.
    fn check_token(&self, token: usize, what: &str) -> Result<(), Fail> {
        if token == 0 {
            return Err(Fail::invalid(format!("{what} is NULL")));
        }
        let tag = token & TAG_MASK;
        if tag != self.kind as usize {
            return Err(match Kind::from_tag(tag) {
                Some(other) if (token >> TAG_BITS) < NEXT_SERIAL.load(Ordering::Relaxed) => {
                    Fail::invalid(format!(
                        "{what} is an {} handle where an {} is expected",
                        other.name(),
                        self.kind.name()
                    ))
                }
                _ => Fail::invalid(format!(
                    "{what} is not a handle returned by this library (expected an {})",
                    self.kind.name()
                )),
            });
        }
        Ok(())
    }

    /// The error for a well-shaped token that is not live.
    fn gone(&self, token: usize, what: &str) -> Fail {
        if (token >> TAG_BITS) < NEXT_SERIAL.load(Ordering::Relaxed) {
            Fail::new(
                edgestore_status::EDGESTORE_CLOSED,
                format!(
                    "{what}: this {} was already closed or freed",
                    self.kind.name()
                ),
            )
        } else {
            Fail::invalid(format!(
                "{what} is not a handle returned by this library (expected an {})",
                self.kind.name()
            ))
        }
    }

    /// The `EDGESTORE_CLOSED` error for a handle that was live once (as
    /// [`Registry::get`] reports it once the handle is removed).
    pub(crate) fn closed<H>(&self, handle: *const H, what: &str) -> Fail {
        self.gone(handle.addr(), what)
    }

    /// The object behind a live handle.
    pub(crate) fn get<H>(&self, handle: *const H, what: &str) -> Result<Arc<T>, Fail> {
        let token = handle.addr();
        self.check_token(token, what)?;
        let live = self.read();
        match live.get(&token) {
            Some(&hidden) => {
                let raw = std::ptr::with_exposed_provenance::<T>(disguise(hidden));
                // SAFETY: `raw` came from Arc::into_raw in insert, and the entry
                // still owns that strong count; holding the read lock, no remove
                // can release it meanwhile. So the Arc is alive and adding a
                // count, then taking it with from_raw, is balanced.
                Ok(unsafe {
                    Arc::increment_strong_count(raw);
                    Arc::from_raw(raw)
                })
            }
            None => Err(self.gone(token, what)),
        }
    }

    /// Unregisters a handle: `Ok(None)` for NULL, the object for a live handle,
    /// `EDGESTORE_CLOSED` for one already removed.
    pub(crate) fn remove<H>(&self, handle: *const H, what: &str) -> Result<Option<Arc<T>>, Fail> {
        let token = handle.addr();
        if token == 0 {
            return Ok(None);
        }
        self.check_token(token, what)?;
        let removed = self.write().remove(&token);
        match removed {
            Some(hidden) => {
                let raw = std::ptr::with_exposed_provenance::<T>(disguise(hidden));
                // SAFETY: the entry owned one strong count from Arc::into_raw;
                // removing it from the map under the write lock transfers that
                // count to us exactly once.
                Ok(Some(unsafe { Arc::from_raw(raw) }))
            }
            None => Err(self.gone(token, what)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked() {
        static A: Registry<u32> = Registry::new(Kind::Batch);
        static B: Registry<u32> = Registry::new(Kind::Iter);
        let h: *mut u8 = A.insert(7).unwrap();
        assert_eq!(*A.get(h, "h").unwrap(), 7);
        let e = B.get(h, "h").unwrap_err();
        assert_eq!(e.status, edgestore_status::EDGESTORE_INVALID_ARGUMENT);
        assert!(
            e.message.contains("edgestore_batch handle"),
            "{}",
            e.message
        );
        assert!(A.remove(h, "h").unwrap().is_some());
        assert_eq!(
            A.get(h, "h").unwrap_err().status,
            edgestore_status::EDGESTORE_CLOSED
        );
        assert_eq!(
            A.remove(h, "h").unwrap_err().status,
            edgestore_status::EDGESTORE_CLOSED
        );
        assert!(A.remove(std::ptr::null::<u8>(), "h").unwrap().is_none());
        let garbage: *const u8 = std::ptr::without_provenance(usize::MAX - 12);
        assert_eq!(
            A.get(garbage, "h").unwrap_err().status,
            edgestore_status::EDGESTORE_INVALID_ARGUMENT
        );
    }
}
