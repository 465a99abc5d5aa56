//! `edgestore._native`: the compiled half of the `edgestore` Python package.
//!
//! Every call that does engine work releases the GIL (`Python::detach`). A
//! [`Database`] wraps the engine in `RwLock<Option<Engine>>`: operations hold
//! the read side for their duration, `close()` takes the write side, so closing
//! from one thread while others use the database is safe and later calls raise
//! `ClosedError`.

mod vector;

// The engine's allocations in this module go to mimalloc rather than glibc:
// with glibc, a writer's mallocs contended for the main arena's lock with the
// flush thread freeing the flushed memtable (futex wake-ups in a perf profile
// of `put`), and a large free after a flush ran `malloc_consolidate` in the
// next read. bench_kv.py, five alternating runs each: put median 2,178 ->
// 1,916 ns, get 896 -> 836 ns, range 96 -> 90 ns. Python's own objects still
// use Python's allocator. (The C library keeps the system allocator: a
// firmware host decides its process's allocator.)
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, TryLockError};
use std::time::Duration;

use edgestore::{EdgestoreConfig, Engine, RangeIter, SyncMode};
use pyo3::exceptions::{PyKeyError, PyOSError, PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString, PyTuple, PyType};

// ---------------------------------------------------------------------------
// Exceptions
// ---------------------------------------------------------------------------

struct Exceptions {
    error: Py<PyType>,
    corruption: Py<PyType>,
    locked: Py<PyType>,
    closed: Py<PyType>,
    poisoned: Py<PyType>,
    invalid_argument: Py<PyType>,
    io: Py<PyType>,
}

static EXCEPTIONS: PyOnceLock<Exceptions> = PyOnceLock::new();

/// Creates `class name(*bases)` with `__module__ = "edgestore"`.
fn make_exception<'py>(
    py: Python<'py>,
    name: &str,
    doc: &str,
    bases: &[&Bound<'py, PyAny>],
) -> PyResult<Py<PyType>> {
    let ns = PyDict::new(py);
    ns.set_item("__module__", "edgestore")?;
    ns.set_item("__doc__", doc)?;
    let bases = PyTuple::new(py, bases)?;
    let ty = py.get_type::<PyType>().call1((name, bases, ns))?;
    Ok(ty.cast_into::<PyType>()?.unbind())
}

fn exceptions(py: Python<'_>) -> PyResult<&Exceptions> {
    EXCEPTIONS.get_or_try_init(py, || {
        let base = make_exception(
            py,
            "Error",
            "Base class of every error raised by edgestore.",
            &[py.get_type::<pyo3::exceptions::PyException>().as_any()],
        )?;
        let b = base.bind(py).clone().into_any();
        let sub = |name: &str, doc: &str| make_exception(py, name, doc, &[&b]);
        Ok::<_, PyErr>(Exceptions {
            corruption: sub(
                "CorruptionError",
                "A checksum, magic number or structural check failed in a database file.",
            )?,
            locked: sub(
                "LockedError",
                "Another process (or another open Database) holds the database lock.",
            )?,
            closed: sub(
                "ClosedError",
                "The database, snapshot or batch was closed (or already committed).",
            )?,
            poisoned: sub(
                "PoisonedError",
                "An earlier write or fsync failed; the database refuses writes until reopened.",
            )?,
            invalid_argument: make_exception(
                py,
                "InvalidArgumentError",
                "The engine refused an argument (too long, out of range, bad option).",
                &[&b, py.get_type::<PyValueError>().as_any()],
            )?,
            io: make_exception(
                py,
                "EdgestoreIOError",
                "An operating-system I/O error; `errno` is set when the OS reported one.",
                &[&b, py.get_type::<PyOSError>().as_any()],
            )?,
            error: base,
        })
    })
}

fn raise<A: PyErrArgumentsLike>(
    py: Python<'_>,
    pick: fn(&Exceptions) -> &Py<PyType>,
    args: A,
) -> PyErr {
    match exceptions(py) {
        Ok(ex) => args.into_err(pick(ex).bind(py).clone()),
        Err(e) => e,
    }
}

/// Arguments an exception can be built from.
trait PyErrArgumentsLike {
    fn into_err(self, ty: Bound<'_, PyType>) -> PyErr;
}

impl PyErrArgumentsLike for String {
    fn into_err(self, ty: Bound<'_, PyType>) -> PyErr {
        PyErr::from_type(ty, (self,))
    }
}

impl PyErrArgumentsLike for (i32, String) {
    fn into_err(self, ty: Bound<'_, PyType>) -> PyErr {
        PyErr::from_type(ty, self)
    }
}

fn to_py_err(py: Python<'_>, e: edgestore::Error) -> PyErr {
    use edgestore::Error as E;
    let msg = e.to_string();
    match &e {
        E::Io { source, .. } => match source.raw_os_error() {
            Some(errno) => raise(py, |x| &x.io, (errno, msg)),
            None => raise(py, |x| &x.io, msg),
        },
        E::Corruption { .. } => raise(py, |x| &x.corruption, msg),
        E::InvalidArgument(_) => raise(py, |x| &x.invalid_argument, msg),
        E::Locked(_) => raise(py, |x| &x.locked, msg),
        E::Closed => raise(py, |x| &x.closed, msg),
        E::Poisoned(_) => raise(py, |x| &x.poisoned, msg),
        _ => raise(py, |x| &x.error, msg),
    }
}

fn invalid(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    raise(py, |x| &x.invalid_argument, msg.into())
}

fn closed(py: Python<'_>, what: &str) -> PyErr {
    raise(py, |x| &x.closed, format!("{what} is closed"))
}

/// Engine result -> Python result.
trait IntoPy<T> {
    fn py(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPy<T> for edgestore::Result<T> {
    fn py(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py_err(py, e))
    }
}

// ---------------------------------------------------------------------------
// Argument conversion
// ---------------------------------------------------------------------------

/// Bytes borrowed from an immutable `bytes` object, or copied from any other
/// buffer (bytearray, memoryview, array, numpy, ...), so they can be read with
/// the GIL released.
enum Buf<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

impl Buf<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Buf::Borrowed(b) => b,
            Buf::Owned(v) => v,
        }
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// A bytes-like object (anything with the buffer protocol; not `str`).
fn bytes_like<'a>(obj: &'a Bound<'_, PyAny>, what: &str) -> PyResult<Buf<'a>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Buf::Borrowed(b.as_bytes()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Buf::Owned(b.to_vec()));
    }
    if !obj.is_instance_of::<PyString>() {
        // memoryview() accepts exactly the objects with the buffer protocol;
        // tobytes() copies any shape/stride into C order.
        let py = obj.py();
        let mv = py.import("builtins")?.getattr("memoryview")?.call1((obj,));
        if let Ok(mv) = mv {
            let data = mv.call_method0("tobytes")?;
            let _ = mv.call_method0("release");
            return Ok(Buf::Owned(data.cast::<PyBytes>()?.as_bytes().to_vec()));
        }
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be a bytes-like object, not '{}'",
        type_name(obj)
    )))
}

/// A namespace: `str` (encoded as UTF-8) or `bytes`.
fn namespace<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<Buf<'a>> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Buf::Borrowed(s.to_str()?.as_bytes()));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Buf::Borrowed(b.as_bytes()));
    }
    Err(PyTypeError::new_err(format!(
        "namespace must be str or bytes, not '{}'",
        type_name(obj)
    )))
}

/// An integer argument. Past 64 bits it is a bad value
/// (`InvalidArgumentError`, like any other out-of-range value), not the
/// `OverflowError` a plain `i64` argument raises.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Int(pub(crate) i64);

impl<'a, 'py> FromPyObject<'a, 'py> for Int {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match obj.extract::<i64>() {
            Ok(v) => Ok(Int(v)),
            Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => Err(invalid(
                obj.py(),
                format!("{} is out of range (at most 64 bits)", obj.repr()?),
            )),
            Err(e) => Err(e),
        }
    }
}

/// `ttl=None` means never; otherwise whole seconds in 1..=2**32-1.
fn ttl_secs(py: Python<'_>, ttl: Option<&Bound<'_, PyAny>>) -> PyResult<u32> {
    let Some(ttl) = ttl else { return Ok(0) };
    if ttl.is_none() {
        return Ok(0);
    }
    if ttl.is_instance_of::<pyo3::types::PyBool>() {
        return Err(PyTypeError::new_err(
            "ttl must be an int number of seconds or None, not 'bool'",
        ));
    }
    if !ttl.is_instance_of::<pyo3::types::PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "ttl must be an int number of seconds or None, not '{}'",
            type_name(ttl)
        )));
    }
    // Out of i64 range counts as out of range below.
    let secs: i64 = ttl.extract().unwrap_or(-1);
    if secs < 1 || secs > u32::MAX as i64 {
        return Err(invalid(
            py,
            format!("ttl must be between 1 and {} seconds, got {ttl}", u32::MAX),
        ));
    }
    Ok(secs as u32)
}

/// Values up to this many bytes leave a point read through a stack buffer.
const INLINE_VALUE: usize = 256;

/// Where a point read puts the value while the GIL is released: the engine
/// calls [`ValueBuf::fill`] on the value in place, and the `bytes` object is
/// built from the copy once the GIL is held again. Small values (the common
/// case) go through a buffer on the caller's stack, so a read allocates
/// nothing besides the `bytes` object.
struct ValueBuf {
    inline: [u8; INLINE_VALUE],
}

/// What [`ValueBuf::fill`] kept: the length of a value in the inline buffer,
/// or a larger value copied to the heap.
enum Filled {
    Inline(usize),
    Heap(Vec<u8>),
}

impl ValueBuf {
    fn new() -> Self {
        ValueBuf {
            inline: [0; INLINE_VALUE],
        }
    }

    /// Copies `v` out of the engine (runs without the GIL).
    fn fill(&mut self, v: &[u8]) -> Filled {
        match self.inline.get_mut(..v.len()) {
            Some(dst) => {
                dst.copy_from_slice(v);
                Filled::Inline(v.len())
            }
            None => Filled::Heap(v.to_vec()),
        }
    }

    /// The value as a Python `bytes`.
    fn to_bytes<'py>(&self, py: Python<'py>, v: Filled) -> Bound<'py, PyBytes> {
        match v {
            Filled::Inline(n) => PyBytes::new(py, &self.inline[..n]),
            Filled::Heap(h) => PyBytes::new(py, &h),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------
// Result objects
// ---------------------------------------------------------------------------

/// What one `Database.compact()` call did.
#[pyclass(module = "edgestore._native", frozen, get_all)]
#[derive(Clone)]
struct CompactionStats {
    cohorts_collected: u64,
    segments_removed: u64,
    segments_written: u64,
    bytes_written: u64,
    bytes_reclaimed: u64,
    live_records_relocated: u64,
    records_dropped: u64,
    tombstones_kept: u64,
    jobs_deferred: u64,
}

#[pymethods]
impl CompactionStats {
    fn __repr__(&self) -> String {
        format!(
            "CompactionStats(cohorts_collected={}, segments_removed={}, segments_written={}, \
             bytes_written={}, bytes_reclaimed={}, live_records_relocated={}, records_dropped={}, \
             tombstones_kept={}, jobs_deferred={})",
            self.cohorts_collected,
            self.segments_removed,
            self.segments_written,
            self.bytes_written,
            self.bytes_reclaimed,
            self.live_records_relocated,
            self.records_dropped,
            self.tombstones_kept,
            self.jobs_deferred
        )
    }
}

impl From<edgestore::CompactionStats> for CompactionStats {
    fn from(s: edgestore::CompactionStats) -> Self {
        CompactionStats {
            cohorts_collected: s.cohorts_collected,
            segments_removed: s.segments_removed,
            segments_written: s.segments_written,
            bytes_written: s.bytes_written,
            bytes_reclaimed: s.bytes_reclaimed,
            live_records_relocated: s.live_records_relocated,
            records_dropped: s.records_dropped,
            tombstones_kept: s.tombstones_kept,
            jobs_deferred: s.jobs_deferred,
        }
    }
}

// The `depth=3` defaults of the merkle methods spell the engine's default as a literal, so
// the signature Python shows (and stubtest checks) has it.
const _: () = assert!(edgestore::MERKLE_DEFAULT_DEPTH == 3);

/// A tree depth from Python: out-of-range values (negative ones too) are
/// `InvalidArgumentError`, as the engine reports 0 or 5.
fn merkle_depth(py: Python<'_>, depth: i64) -> PyResult<u32> {
    u32::try_from(depth).map_err(|_| {
        invalid(
            py,
            format!(
                "merkle depth {depth} is outside 1..={}",
                edgestore::MERKLE_MAX_DEPTH
            ),
        )
    })
}

/// Leaf indexes for `merkle_leaves`: any iterable of ints (not a
/// `str` or bytes-like object, whose items would be read as indexes);
/// the engine checks them against the depth.
fn merkle_leaf_list(py: Python<'_>, leaves: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
    if leaves.is_instance_of::<PyString>()
        || leaves.is_instance_of::<PyBytes>()
        || leaves.is_instance_of::<PyByteArray>()
    {
        return Err(PyTypeError::new_err(format!(
            "leaves must be an iterable of ints, not '{}'",
            type_name(leaves)
        )));
    }
    let mut out = Vec::new();
    for item in leaves.try_iter()? {
        let item = item?;
        if item.is_instance_of::<pyo3::types::PyBool>() {
            return Err(PyTypeError::new_err(
                "a merkle leaf must be an int, not 'bool'",
            ));
        }
        match item.extract::<u32>() {
            Ok(leaf) => out.push(leaf),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyOverflowError>(py) => {
                return Err(invalid(py, format!("merkle leaf {item} is out of range")));
            }
            Err(_) => {
                return Err(PyTypeError::new_err(format!(
                    "a merkle leaf must be an int, not '{}'",
                    type_name(&item)
                )));
            }
        }
    }
    Ok(out)
}

/// The arguments of `merkle_leaves` (on a database or a snapshot), checked.
fn merkle_leaves_args<'a>(
    py: Python<'_>,
    ns: &'a Bound<'_, PyAny>,
    leaves: &Bound<'_, PyAny>,
    depth: i64,
) -> PyResult<(Buf<'a>, Vec<u32>, u32)> {
    let depth = merkle_depth(py, depth)?;
    Ok((namespace(ns)?, merkle_leaf_list(py, leaves)?, depth))
}

/// A Merkle tree of one namespace's live `(key, value)` pairs, for sync
/// between replicas (see `Database.merkle`).
#[pyclass(module = "edgestore._native", frozen, eq)]
#[derive(PartialEq)]
struct MerkleTree {
    tree: edgestore::MerkleTree,
}

#[pymethods]
impl MerkleTree {
    /// The root hash (32 bytes).
    #[getter]
    fn root<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.tree.root())
    }

    /// Levels below the root: the tree has `16 ** depth` leaves.
    #[getter]
    fn depth(&self) -> u32 {
        self.tree.depth()
    }

    /// Live entries hashed.
    #[getter]
    fn entries(&self) -> u64 {
        self.tree.entries()
    }

    /// Node `index` of `level` (0: the root; `depth`: the leaves), 32 bytes.
    fn node<'py>(&self, py: Python<'py>, level: Int, index: Int) -> PyResult<Bound<'py, PyBytes>> {
        let (level, index) = (level.0, index.0);
        let found = match (u32::try_from(level), usize::try_from(index)) {
            (Ok(l), Ok(i)) => self.tree.node(l, i),
            _ => None,
        };
        match found {
            Some(h) => Ok(PyBytes::new(py, &h)),
            None => Err(invalid(
                py,
                format!(
                    "no node {index} at level {level} of a depth {} tree",
                    self.tree.depth()
                ),
            )),
        }
    }

    /// Every node of `level`, in index order: the children of node `i` of
    /// level `l` are nodes `16 * i` to `16 * i + 15` of level `l + 1`.
    fn level<'py>(&self, py: Python<'py>, level: Int) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let level = level.0;
        match u32::try_from(level).ok().and_then(|l| self.tree.level(l)) {
            Some(nodes) => Ok(nodes.iter().map(|h| PyBytes::new(py, h)).collect()),
            None => Err(invalid(
                py,
                format!("no level {level} in a depth {} tree", self.tree.depth()),
            )),
        }
    }

    /// Every node, 32 bytes each, root first, level by level (what a
    /// replica sends its peer; `MerkleTree.from_bytes` reads it back).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.tree.nodes().as_flattened())
    }

    /// A peer's tree from its `to_bytes()` and the entry count it reported
    /// (0 when unknown), to compare with a local tree.
    #[staticmethod]
    #[pyo3(signature = (data, depth=Int(3), entries=Int(0)), text_signature = "(data, depth=3, entries=0)")]
    fn from_bytes(
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        depth: Int,
        entries: Int,
    ) -> PyResult<MerkleTree> {
        let (depth, entries) = (depth.0, entries.0);
        let depth = merkle_depth(py, depth)?;
        let entries = u64::try_from(entries)
            .map_err(|_| invalid(py, format!("entries must not be negative, got {entries}")))?;
        let data = bytes_like(data, "data")?;
        let (nodes, rest) = data.as_slice().as_chunks::<32>();
        if !rest.is_empty() {
            return Err(invalid(
                py,
                format!(
                    "{} bytes are not a whole number of 32-byte nodes",
                    data.as_slice().len()
                ),
            ));
        }
        let tree = edgestore::MerkleTree::from_nodes(depth, entries, nodes).py(py)?;
        Ok(MerkleTree { tree })
    }

    /// The leaves whose hashes differ from `other`'s (same depth), in order.
    fn differing_leaves(&self, py: Python<'_>, other: &MerkleTree) -> PyResult<Vec<u32>> {
        self.tree.differing_leaves(&other.tree).py(py)
    }

    /// The leaf `key` belongs to in a tree of `depth` levels.
    #[staticmethod]
    #[pyo3(signature = (key, depth=Int(3)), text_signature = "(key, depth=3)")]
    fn leaf_of(py: Python<'_>, key: &Bound<'_, PyAny>, depth: Int) -> PyResult<u32> {
        let depth = depth.0;
        let depth = merkle_depth(py, depth)?;
        let key = bytes_like(key, "key")?;
        edgestore::MerkleTree::leaf_of(key.as_slice(), depth).py(py)
    }

    fn __repr__(&self) -> String {
        let hex: String = self
            .tree
            .root()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!(
            "MerkleTree(root={hex}, depth={}, entries={})",
            self.tree.depth(),
            self.tree.entries()
        )
    }
}

/// A point-in-time copy of the engine's counters (bytes since this open).
#[pyclass(module = "edgestore._native", frozen, get_all)]
#[derive(Clone)]
struct Metrics {
    user_writes: u64,
    user_bytes_written: u64,
    wal_bytes_written: u64,
    wal_syncs: u64,
    flushes: u64,
    flush_bytes_written: u64,
    compactions: u64,
    compaction_bytes_written: u64,
    compaction_bytes_reclaimed: u64,
    segments: u64,
    segment_bytes: u64,
    memtable_bytes: u64,
    pinned_segments: u64,
    snapshot_held_bytes: u64,
    sorted_runs: u64,
    write_amplification: f64,
    compaction_write_amplification: f64,
}

#[pymethods]
impl Metrics {
    fn __repr__(&self) -> String {
        format!(
            "Metrics(user_writes={}, user_bytes_written={}, wal_bytes_written={}, wal_syncs={}, \
             flushes={}, flush_bytes_written={}, compactions={}, compaction_bytes_written={}, \
             compaction_bytes_reclaimed={}, segments={}, segment_bytes={}, memtable_bytes={}, \
             pinned_segments={}, snapshot_held_bytes={}, sorted_runs={}, \
             write_amplification={:.3}, \
             compaction_write_amplification={:.3})",
            self.user_writes,
            self.user_bytes_written,
            self.wal_bytes_written,
            self.wal_syncs,
            self.flushes,
            self.flush_bytes_written,
            self.compactions,
            self.compaction_bytes_written,
            self.compaction_bytes_reclaimed,
            self.segments,
            self.segment_bytes,
            self.memtable_bytes,
            self.pinned_segments,
            self.snapshot_held_bytes,
            self.sorted_runs,
            self.write_amplification,
            self.compaction_write_amplification
        )
    }
}

impl From<edgestore::Metrics> for Metrics {
    fn from(m: edgestore::Metrics) -> Self {
        Metrics {
            user_writes: m.user_writes,
            user_bytes_written: m.user_bytes_written,
            wal_bytes_written: m.wal_bytes_written,
            wal_syncs: m.wal_syncs,
            flushes: m.flushes,
            flush_bytes_written: m.flush_bytes_written,
            compactions: m.compactions,
            compaction_bytes_written: m.compaction_bytes_written,
            compaction_bytes_reclaimed: m.compaction_bytes_reclaimed,
            segments: m.segments,
            segment_bytes: m.segment_bytes,
            memtable_bytes: m.memtable_bytes,
            pinned_segments: m.pinned_segments,
            snapshot_held_bytes: m.snapshot_held_bytes,
            sorted_runs: m.sorted_runs,
            write_amplification: m.write_amplification(),
            compaction_write_amplification: m.compaction_write_amplification(),
        }
    }
}

/// What `Database.verify()` checked.
#[pyclass(module = "edgestore._native", frozen, get_all)]
#[derive(Clone)]
struct VerifyReport {
    segments: u64,
    segment_records: u64,
    wal_files: u64,
    wal_batches: u64,
}

#[pymethods]
impl VerifyReport {
    fn __repr__(&self) -> String {
        format!(
            "VerifyReport(segments={}, segment_records={}, wal_files={}, wal_batches={})",
            self.segments, self.segment_records, self.wal_files, self.wal_batches
        )
    }
}

// ---------------------------------------------------------------------------
// Iterators
// ---------------------------------------------------------------------------

const FIRST_CHUNK: usize = 16;
const MAX_CHUNK: usize = 1024;

struct IterState {
    it: Option<RangeIter>,
    /// Pairs fetched and not yet handed out: their bytes back to back in
    /// `data` (one allocation a chunk, none a pair), `(key_len, value_len)`
    /// in `lens`; the next one is `lens[next]`, at `data[at..]`.
    data: Vec<u8>,
    lens: Vec<(usize, usize)>,
    next: usize,
    at: usize,
    chunk: usize,
    error: Option<edgestore::Error>,
}

impl IterState {
    /// The next fetched pair as Python bytes, if one is buffered. Making
    /// `bytes` runs no Python code (they are not tracked by the garbage
    /// collector), so this may run under the state's lock.
    fn pop<'py>(&mut self, py: Python<'py>) -> Option<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        let &(kl, vl) = self.lens.get(self.next)?;
        let k = &self.data[self.at..self.at + kl];
        let v = &self.data[self.at + kl..self.at + kl + vl];
        let pair = (PyBytes::new(py, k), PyBytes::new(py, v));
        self.next += 1;
        self.at += kl + vl;
        Some(pair)
    }

    /// Fetches the next chunk from the engine into the (drained) buffer.
    fn refill(&mut self) {
        let Some(mut it) = self.it.take() else {
            return;
        };
        let n = self.chunk;
        self.chunk = (n * 2).min(MAX_CHUNK);
        self.data.clear();
        self.lens.clear();
        self.next = 0;
        self.at = 0;
        for _ in 0..n {
            match it.next_entry() {
                Ok(Some((k, v))) => {
                    self.data.extend_from_slice(k);
                    self.data.extend_from_slice(v);
                    self.lens.push((k.len(), v.len()));
                }
                Ok(None) => return,
                Err(e) => {
                    self.error = Some(e);
                    return;
                }
            }
        }
        self.it = Some(it);
    }
}

/// A lazy iterator of `(key, value)` bytes pairs in key order. It reads a
/// consistent view taken when it was created and owns everything it needs:
/// it stays valid after the database is closed. Items are fetched from the
/// engine in small, growing chunks with the GIL released.
#[pyclass(module = "edgestore._native", frozen)]
struct RangeIterator {
    state: Mutex<IterState>,
}

impl RangeIterator {
    fn new(it: RangeIter) -> Self {
        RangeIterator {
            state: Mutex::new(IterState {
                it: Some(it),
                data: Vec::new(),
                lens: Vec::new(),
                next: 0,
                at: 0,
                chunk: FIRST_CHUNK,
                error: None,
            }),
        }
    }
}

#[pymethods]
impl RangeIterator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        loop {
            // Fast path: an item already fetched needs no engine work, so no
            // GIL release (which costs more than handing the item over).
            // Never wait for the lock with the GIL held: the holder may be
            // refilling without the GIL, or waiting for it (a finaliser
            // that a collection ran on this thread may have released it).
            // So only try it here, and wait below without the GIL. The
            // tuple is made after the lock is dropped: making it may run a
            // collection, and so finalisers, which may use this iterator.
            let popped = match self.state.try_lock() {
                Ok(mut st) => st.pop(py),
                Err(TryLockError::Poisoned(p)) => p.into_inner().pop(py),
                Err(TryLockError::WouldBlock) => None,
            };
            if let Some((k, v)) = popped {
                return Ok(Some(PyTuple::new(py, [k, v])?));
            }
            let fetched = py.detach(|| {
                let mut st = lock(&self.state);
                if st.next == st.lens.len() {
                    st.refill();
                }
                if st.next < st.lens.len() {
                    return Ok(true);
                }
                match st.error.take() {
                    Some(e) => Err(e),
                    None => Ok(false),
                }
            });
            // Another thread may take the fetched items first: then fetch again.
            if !fetched.py(py)? {
                return Ok(None);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Database
// ---------------------------------------------------------------------------

/// An open edgestore database. Safe to share between threads; usable as a
/// context manager (closes on exit).
#[pyclass(module = "edgestore._native", frozen)]
struct Database {
    engine: RwLock<Option<Engine>>,
    /// Set when `close()` is called: `closed` reads this, not the lock,
    /// which a close may hold (or wait for) as long as an operation runs.
    closing: AtomicBool,
    /// Tells this database's snapshots from others' (vector calls check).
    id: u64,
    path: PathBuf,
}

/// Source of `Database::id`s.
static NEXT_DATABASE_ID: AtomicU64 = AtomicU64::new(1);

impl Database {
    /// Runs `f` on the open engine with the GIL released.
    fn with_engine<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&Engine) -> edgestore::Result<T> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let guard: RwLockReadGuard<'_, Option<Engine>> =
                self.engine.read().unwrap_or_else(|p| p.into_inner());
            match guard.as_ref() {
                Some(engine) => f(engine),
                None => Err(edgestore::Error::Closed),
            }
        })
        .py(py)
    }

    fn put_in(
        &self,
        py: Python<'_>,
        ns: &[u8],
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let key = bytes_like(key, "key")?;
        let value = bytes_like(value, "value")?;
        let ttl = ttl_secs(py, ttl)?;
        let (key, value) = (key.as_slice(), value.as_slice());
        self.with_engine(py, |e| e.put_with_ttl(ns, key, value, ttl))
    }

    fn get_in<'py>(
        &self,
        py: Python<'py>,
        ns: &[u8],
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let key = bytes_like(key, "key")?;
        let key = key.as_slice();
        let mut buf = ValueBuf::new();
        let got = self.with_engine(py, |e| e.get_with(ns, key, |v| buf.fill(v)))?;
        Ok(match got {
            Some(v) => buf.to_bytes(py, v).into_any(),
            None => default.unwrap_or_else(|| py.None().into_bound(py)),
        })
    }

    fn delete_in(&self, py: Python<'_>, ns: &[u8], key: &Bound<'_, PyAny>) -> PyResult<()> {
        let key = bytes_like(key, "key")?;
        let key = key.as_slice();
        self.with_engine(py, |e| e.delete(ns, key))
    }

    fn range_in(
        &self,
        py: Python<'_>,
        ns: &[u8],
        start: Option<&Bound<'_, PyAny>>,
        end: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<RangeIterator> {
        let start = opt_bytes(start, "start")?;
        let end = opt_bytes(end, "end")?;
        let start = start.as_ref().map_or(&b""[..], |b| b.as_slice());
        let end = end.as_ref().map(|b| b.as_slice());
        self.with_engine(py, |e| e.scan(ns, start, end))
            .map(RangeIterator::new)
    }

    fn prefix_in(
        &self,
        py: Python<'_>,
        ns: &[u8],
        prefix: &Bound<'_, PyAny>,
    ) -> PyResult<RangeIterator> {
        let prefix = bytes_like(prefix, "prefix")?;
        let prefix = prefix.as_slice();
        self.with_engine(py, |e| e.scan_prefix(ns, prefix))
            .map(RangeIterator::new)
    }
}

#[pymethods]
impl Database {
    /// The database directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Stores `value` under `key` in namespace `ns`; with `ttl` (seconds) it expires.
    #[pyo3(signature = (ns, key, value, ttl=None))]
    fn put(
        &self,
        py: Python<'_>,
        ns: &Bound<'_, PyAny>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.put_in(py, namespace(ns)?.as_slice(), key, value, ttl)
    }

    /// The value of `key` in `ns`, or `default` when it is missing or expired.
    #[pyo3(signature = (ns, key, default=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        ns: &Bound<'py, PyAny>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.get_in(py, namespace(ns)?.as_slice(), key, default)
    }

    /// Deletes `key` in `ns` (deleting a missing key is not an error).
    fn delete(
        &self,
        py: Python<'_>,
        ns: &Bound<'_, PyAny>,
        key: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.delete_in(py, namespace(ns)?.as_slice(), key)
    }

    /// Lazy iterator of `(key, value)` for keys in `[start, end)` of `ns`.
    #[pyo3(signature = (ns, start=None, end=None))]
    fn range(
        &self,
        py: Python<'_>,
        ns: &Bound<'_, PyAny>,
        start: Option<&Bound<'_, PyAny>>,
        end: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<RangeIterator> {
        self.range_in(py, namespace(ns)?.as_slice(), start, end)
    }

    /// Lazy iterator of `(key, value)` for keys of `ns` starting with `prefix`.
    fn prefix(
        &self,
        py: Python<'_>,
        ns: &Bound<'_, PyAny>,
        prefix: &Bound<'_, PyAny>,
    ) -> PyResult<RangeIterator> {
        self.prefix_in(py, namespace(ns)?.as_slice(), prefix)
    }

    /// A handle on namespace `ns` of this database: the same operations
    /// without the namespace argument, and a mapping interface.
    fn namespace(slf: &Bound<'_, Self>, ns: &Bound<'_, PyAny>) -> PyResult<Namespace> {
        let name = namespace(ns)?.as_slice().to_vec();
        edgestore::types::check_key(&name, b"").py(slf.py())?;
        Ok(Namespace {
            db: slf.clone().unbind(),
            name,
        })
    }

    /// A new, empty write batch bound to this database.
    fn batch(slf: &Bound<'_, Self>) -> Batch {
        Batch {
            db: slf.clone().unbind(),
            ops: Mutex::new(Some(edgestore::WriteBatch::new())),
        }
    }

    /// Applies `batch` atomically and empties it; on failure the batch is
    /// left as it was.
    fn write(&self, py: Python<'_>, batch: &Batch) -> PyResult<()> {
        // The batch stays locked (the GIL released) until the engine is
        // done: emptied only once written, untouched when the write fails.
        let written = self.with_engine(py, |e| {
            let mut ops = lock(&batch.ops);
            let Some(b) = ops.as_mut() else {
                return Ok(false);
            };
            e.write_ref(b)?;
            b.clear();
            Ok(true)
        })?;
        if written {
            Ok(())
        } else {
            Err(closed(py, "batch"))
        }
    }

    /// A consistent read-only view of the database as it is now.
    fn snapshot(&self, py: Python<'_>) -> PyResult<Snapshot> {
        let snap = self.with_engine(py, |e| e.snapshot())?;
        Ok(Snapshot {
            snap: RwLock::new(Some(snap)),
            closing: AtomicBool::new(false),
            db_id: self.id,
        })
    }

    /// Makes every acknowledged write durable (the barrier in "buffered" mode).
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        self.with_engine(py, |e| e.flush())
    }

    /// Writes the memtable out as segment files.
    fn flush_to_segments(&self, py: Python<'_>) -> PyResult<()> {
        self.with_engine(py, |e| e.flush_to_segments())
    }

    /// The Merkle tree of the live entries of `ns` as they are now, with
    /// `16 ** depth` leaves (depth 1 to 4); reads the whole namespace.
    #[pyo3(signature = (ns, depth=Int(3)), text_signature = "($self, ns, depth=3)")]
    fn merkle(&self, py: Python<'_>, ns: &Bound<'_, PyAny>, depth: Int) -> PyResult<MerkleTree> {
        let depth = depth.0;
        let depth = merkle_depth(py, depth)?;
        let ns = namespace(ns)?;
        let ns = ns.as_slice();
        let tree = self.with_engine(py, |e| e.merkle_tree(ns, depth))?;
        Ok(MerkleTree { tree })
    }

    /// Lazy iterator of the live `(key, value)` pairs of `ns` whose keys
    /// fall in `leaves` of a `depth` tree, in key order: what a replica
    /// sends for the leaves `MerkleTree.differing_leaves` found. Reads the
    /// whole namespace once, testing each key's leaf in the engine.
    #[pyo3(signature = (ns, leaves, depth=Int(3)), text_signature = "($self, ns, leaves, depth=3)")]
    fn merkle_leaves(
        &self,
        py: Python<'_>,
        ns: &Bound<'_, PyAny>,
        leaves: &Bound<'_, PyAny>,
        depth: Int,
    ) -> PyResult<RangeIterator> {
        let depth = depth.0;
        let (ns, leaves, depth) = merkle_leaves_args(py, ns, leaves, depth)?;
        let ns = ns.as_slice();
        self.with_engine(py, |e| e.scan_merkle_leaves(ns, depth, &leaves))
            .map(RangeIterator::new)
    }

    /// Runs one compaction cycle now.
    fn compact(&self, py: Python<'_>) -> PyResult<CompactionStats> {
        self.with_engine(py, |e| e.compact_once()).map(Into::into)
    }

    /// Counters and sizes.
    fn metrics(&self, py: Python<'_>) -> PyResult<Metrics> {
        self.with_engine(py, |e| Ok(e.metrics())).map(Into::into)
    }

    /// Reads every segment and WAL file and checks every checksum.
    fn verify(&self, py: Python<'_>) -> PyResult<VerifyReport> {
        let r = self.with_engine(py, |e| e.verify())?;
        Ok(VerifyReport {
            segments: r.segments,
            segment_records: r.segment_records,
            wal_files: r.wal_files,
            wal_batches: r.wal_batches,
        })
    }

    /// Syncs, releases the directory lock and refuses further calls with
    /// `ClosedError`. Waits for operations in flight. Closing twice is a no-op.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.closing.store(true, Ordering::Release);
        py.detach(|| {
            let engine = self
                .engine
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            match engine {
                Some(e) => {
                    // Flush first: core's close() marks the engine closed before
                    // its own final sync, which then fails with `Closed` whenever
                    // buffered writes are pending (the WAL is left unsynced).
                    // A poisoned engine has nothing it may sync; close anyway.
                    let flushed = match e.flush() {
                        Err(edgestore::Error::Poisoned(_)) => Ok(()),
                        other => other,
                    };
                    let res = e.close();
                    drop(e); // stops the background compactor, if any
                    flushed.and(res)
                }
                None => Ok(()),
            }
        })
        .py(py)
    }

    /// The vector collection `name` of `ns` (created when missing and `dim`
    /// is given). See `edgestore.VectorCollection`; the code is in vector.rs.
    #[pyo3(signature = (ns, name = "default", *, dim = None, metric = None, dtype = None, m = None,
        ef_construction = None, ef_search = None, exact_threshold = None, max_graph_bytes = None))]
    #[allow(clippy::too_many_arguments)]
    fn vectors(
        slf: &Bound<'_, Self>,
        ns: &Bound<'_, PyAny>,
        name: &str,
        dim: Option<Int>,
        metric: Option<&Bound<'_, PyAny>>,
        dtype: Option<&Bound<'_, PyAny>>,
        m: Option<Int>,
        ef_construction: Option<Int>,
        ef_search: Option<Int>,
        exact_threshold: Option<Int>,
        max_graph_bytes: Option<Int>,
    ) -> PyResult<vector::VectorCollection> {
        let dim = dim.map(|v| v.0);
        let m = m.map(|v| v.0);
        let ef_construction = ef_construction.map(|v| v.0);
        let ef_search = ef_search.map(|v| v.0);
        let exact_threshold = exact_threshold.map(|v| v.0);
        let max_graph_bytes = max_graph_bytes.map(|v| v.0);
        let o = vector::Options {
            dim,
            metric,
            dtype,
            m,
            ef_construction,
            ef_search,
            exact_threshold,
            max_graph_bytes,
        };
        vector::open_collection(slf, ns, name, o)
    }

    /// Names of the vector collections of `ns`.
    fn vector_collections(&self, py: Python<'_>, ns: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
        vector::list_collections(self, py, ns)
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<edgestore.Database path={:?}{}>",
            self.path.display().to_string(),
            if self.closed() { " closed" } else { "" }
        )
    }
}

fn opt_bytes<'a>(obj: Option<&'a Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Buf<'a>>> {
    match obj {
        None => Ok(None),
        Some(o) if o.is_none() => Ok(None),
        Some(o) => bytes_like(o, what).map(Some),
    }
}

// ---------------------------------------------------------------------------
// Namespace
// ---------------------------------------------------------------------------

/// One namespace of a database (`Database.namespace(ns)`): the keyed
/// operations without the namespace argument, and `ns[key]`, `ns[key] =
/// value`, `del ns[key]`, `key in ns`. Holds no engine state of its own: it
/// is valid as long as its database is open, and as safe to share between
/// threads.
#[pyclass(module = "edgestore._native", frozen, mapping)]
struct Namespace {
    db: Py<Database>,
    /// The namespace's bytes (a `str` name is stored UTF-8 encoded).
    name: Vec<u8>,
}

#[pymethods]
impl Namespace {
    /// The namespace's name as bytes.
    #[getter]
    fn name<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.name)
    }

    /// The database the namespace belongs to.
    #[getter]
    fn database(&self, py: Python<'_>) -> Py<Database> {
        self.db.clone_ref(py)
    }

    /// Stores `value` under `key`; with `ttl` (seconds) it expires.
    #[pyo3(signature = (key, value, ttl=None))]
    fn put(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.db.get().put_in(py, &self.name, key, value, ttl)
    }

    /// The value of `key`, or `default` when it is missing or expired.
    #[pyo3(signature = (key, default=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.db.get().get_in(py, &self.name, key, default)
    }

    /// Deletes `key` (deleting a missing key is not an error).
    fn delete(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        self.db.get().delete_in(py, &self.name, key)
    }

    /// Lazy iterator of `(key, value)` for keys in `[start, end)`.
    #[pyo3(signature = (start=None, end=None))]
    fn range(
        &self,
        py: Python<'_>,
        start: Option<&Bound<'_, PyAny>>,
        end: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<RangeIterator> {
        self.db.get().range_in(py, &self.name, start, end)
    }

    /// Lazy iterator of `(key, value)` for keys starting with `prefix`.
    fn prefix(&self, py: Python<'_>, prefix: &Bound<'_, PyAny>) -> PyResult<RangeIterator> {
        self.db.get().prefix_in(py, &self.name, prefix)
    }

    /// `ns[key]`: the value, or `KeyError` when it is missing or expired.
    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        // A stored value is always bytes, so `None` means missing.
        let value = self.db.get().get_in(py, &self.name, key, None)?;
        if value.is_none() {
            return Err(PyKeyError::new_err(key.clone().unbind()));
        }
        Ok(value)
    }

    /// `ns[key] = value`: [`Namespace::put`] without a TTL.
    fn __setitem__(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.db.get().put_in(py, &self.name, key, value, None)
    }

    /// `del ns[key]`: [`Namespace::delete`]; like it, no error for a missing key.
    fn __delitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        self.db.get().delete_in(py, &self.name, key)
    }

    /// `key in ns`: whether `key` holds a live (unexpired) value.
    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let key = bytes_like(key, "key")?;
        let key = key.as_slice();
        let got = self
            .db
            .get()
            .with_engine(py, |e| e.get_with(&self.name, key, |_| ()))?;
        Ok(got.is_some())
    }

    fn __repr__(&self) -> String {
        format!(
            "<edgestore.Namespace b'{}' of {}>",
            self.name.escape_ascii(),
            self.db.get().__repr__()
        )
    }
}

// ---------------------------------------------------------------------------
// Batch
// ---------------------------------------------------------------------------

/// Puts and deletes applied all or nothing by `commit()`. As a context
/// manager it commits when the block succeeds and discards on an exception.
#[pyclass(module = "edgestore._native", frozen)]
struct Batch {
    db: Py<Database>,
    /// `None` once discarded.
    ops: Mutex<Option<edgestore::WriteBatch>>,
}

impl Batch {
    /// The operations, locked. A commit holds the lock (without the GIL)
    /// while the engine writes, so never wait for it with the GIL held.
    fn ops(&self, py: Python<'_>) -> MutexGuard<'_, Option<edgestore::WriteBatch>> {
        loop {
            match self.ops.try_lock() {
                Ok(g) => return g,
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => py.detach(|| drop(lock(&self.ops))),
            }
        }
    }

    fn with_ops<T>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut edgestore::WriteBatch) -> edgestore::Result<T>,
    ) -> PyResult<T> {
        let mut ops = self.ops(py);
        match ops.as_mut() {
            Some(b) => f(b).py(py),
            None => Err(closed(py, "batch")),
        }
    }
}

#[pymethods]
impl Batch {
    /// Adds a put (checked against the limits now).
    #[pyo3(signature = (ns, key, value, ttl=None))]
    fn put(
        &self,
        py: Python<'_>,
        ns: &Bound<'_, PyAny>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let ns = namespace(ns)?;
        let key = bytes_like(key, "key")?;
        let value = bytes_like(value, "value")?;
        let ttl = ttl_secs(py, ttl)?;
        self.with_ops(py, |b| {
            b.put_with_ttl(ns.as_slice(), key.as_slice(), value.as_slice(), ttl)
        })
    }

    /// Adds a delete.
    fn delete(
        &self,
        py: Python<'_>,
        ns: &Bound<'_, PyAny>,
        key: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let ns = namespace(ns)?;
        let key = bytes_like(key, "key")?;
        self.with_ops(py, |b| b.delete(ns.as_slice(), key.as_slice()))
    }

    /// Applies every operation atomically; the batch is then empty and
    /// reusable. On failure it is left as it was.
    fn commit(&self, py: Python<'_>) -> PyResult<()> {
        self.db.get().write(py, self)
    }

    /// Drops every operation; further use raises `ClosedError`.
    fn discard(&self, py: Python<'_>) {
        self.ops(py).take();
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.ops(py).as_ref().map_or(0, |b| b.len())
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (exc_type, _exc_value, _traceback))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: &Bound<'_, PyAny>,
        _exc_value: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        if exc_type.is_none() {
            let res = self.commit(py);
            self.discard(py);
            res?;
        } else {
            self.discard(py);
        }
        Ok(false)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        match self.ops(py).as_ref() {
            Some(b) => format!("<edgestore.Batch ops={}>", b.len()),
            None => "<edgestore.Batch discarded>".into(),
        }
    }
}

// ---------------------------------------------------------------------------
// Snapshot
// ---------------------------------------------------------------------------

/// A consistent read-only view. TTLs are judged at the instant it was taken.
/// Usable as a context manager (released on exit); it stays readable after the
/// database is closed, until released.
#[pyclass(module = "edgestore._native", frozen)]
struct Snapshot {
    snap: RwLock<Option<edgestore::Snapshot>>,
    /// Set when `close()` is called (what `closed` reads; see `Database`).
    closing: AtomicBool,
    /// The `Database::id` it was taken from (vector calls check it). Not a
    /// reference: a snapshot must not keep its database (and its
    /// directory lock) alive.
    db_id: u64,
}

impl Snapshot {
    fn with_snap<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&edgestore::Snapshot) -> edgestore::Result<T> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let guard = self.snap.read().unwrap_or_else(|p| p.into_inner());
            guard.as_ref().map(f)
        })
        .ok_or_else(|| closed(py, "snapshot"))?
        .py(py)
    }
}

#[pymethods]
impl Snapshot {
    /// The value of `key` in `ns` as of the snapshot, or `default`.
    #[pyo3(signature = (ns, key, default=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        ns: &Bound<'py, PyAny>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let ns = namespace(ns)?;
        let key = bytes_like(key, "key")?;
        let (ns, key) = (ns.as_slice(), key.as_slice());
        let mut buf = ValueBuf::new();
        let got = self.with_snap(py, |s| s.get_with(ns, key, |v| buf.fill(v)))?;
        Ok(match got {
            Some(v) => buf.to_bytes(py, v).into_any(),
            None => default.unwrap_or_else(|| py.None().into_bound(py)),
        })
    }

    /// Lazy iterator of `(key, value)` for keys in `[start, end)` of `ns`.
    #[pyo3(signature = (ns, start=None, end=None))]
    fn range(
        &self,
        py: Python<'_>,
        ns: &Bound<'_, PyAny>,
        start: Option<&Bound<'_, PyAny>>,
        end: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<RangeIterator> {
        let ns = namespace(ns)?;
        let start = opt_bytes(start, "start")?;
        let end = opt_bytes(end, "end")?;
        let ns = ns.as_slice();
        let start = start.as_ref().map_or(&b""[..], |b| b.as_slice());
        let end = end.as_ref().map(|b| b.as_slice());
        self.with_snap(py, |s| s.scan(ns, start, end))
            .map(RangeIterator::new)
    }

    /// Lazy iterator of `(key, value)` for keys of `ns` starting with `prefix`.
    fn prefix(
        &self,
        py: Python<'_>,
        ns: &Bound<'_, PyAny>,
        prefix: &Bound<'_, PyAny>,
    ) -> PyResult<RangeIterator> {
        let ns = namespace(ns)?;
        let prefix = bytes_like(prefix, "prefix")?;
        let (ns, prefix) = (ns.as_slice(), prefix.as_slice());
        self.with_snap(py, |s| s.scan_prefix(ns, prefix))
            .map(RangeIterator::new)
    }

    /// The Merkle tree of `ns` as of the snapshot: of exactly the data it
    /// reads, so the keys of differing leaves can be sent from the same view.
    #[pyo3(signature = (ns, depth=Int(3)), text_signature = "($self, ns, depth=3)")]
    fn merkle(&self, py: Python<'_>, ns: &Bound<'_, PyAny>, depth: Int) -> PyResult<MerkleTree> {
        let depth = depth.0;
        let depth = merkle_depth(py, depth)?;
        let ns = namespace(ns)?;
        let ns = ns.as_slice();
        let tree = self.with_snap(py, |s| s.merkle_tree(ns, depth))?;
        Ok(MerkleTree { tree })
    }

    /// `Database.merkle_leaves` as of the snapshot: the pairs of the data
    /// its `merkle` tree hashed.
    #[pyo3(signature = (ns, leaves, depth=Int(3)), text_signature = "($self, ns, leaves, depth=3)")]
    fn merkle_leaves(
        &self,
        py: Python<'_>,
        ns: &Bound<'_, PyAny>,
        leaves: &Bound<'_, PyAny>,
        depth: Int,
    ) -> PyResult<RangeIterator> {
        let depth = depth.0;
        let (ns, leaves, depth) = merkle_leaves_args(py, ns, leaves, depth)?;
        let ns = ns.as_slice();
        self.with_snap(py, |s| s.scan_merkle_leaves(ns, depth, &leaves))
            .map(RangeIterator::new)
    }

    /// The sequence number the snapshot reads at.
    #[getter]
    fn sequence(&self, py: Python<'_>) -> PyResult<u64> {
        self.with_snap(py, |s| Ok(s.sequence()))
    }

    /// Whether the snapshot was released.
    #[getter]
    fn closed(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Releases the snapshot and the segment files it held open (those
    /// compaction removed meanwhile give their disk space back).
    fn close(&self, py: Python<'_>) {
        self.closing.store(true, Ordering::Release);
        let s = py.detach(|| self.snap.write().unwrap_or_else(|p| p.into_inner()).take());
        drop(s);
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        if self.closed() {
            "<edgestore.Snapshot closed>".into()
        } else {
            "<edgestore.Snapshot>".into()
        }
    }
}

// ---------------------------------------------------------------------------
// open()
// ---------------------------------------------------------------------------

/// `v` as a count or size where 0 is meaningful.
fn non_negative(py: Python<'_>, name: &str, v: i64) -> PyResult<u64> {
    u64::try_from(v).map_err(|_| invalid(py, format!("{name} must be >= 0, got {v}")))
}

fn positive<T: PartialOrd + Default + std::fmt::Display>(
    py: Python<'_>,
    name: &str,
    v: T,
) -> PyResult<T> {
    if v > T::default() {
        Ok(v)
    } else {
        Err(invalid(py, format!("{name} must be > 0, got {v}")))
    }
}

/// Opens (creating if needed) the database at `path`. See `edgestore.open`.
#[pyfunction]
#[pyo3(signature = (
    path,
    *,
    sync = "durable",
    memtable_size_bytes = None,
    segment_size_bytes = None,
    block_size_bytes = None,
    block_cache_bytes = None,
    mmap_reads = None,
    bloom_bits_per_key = None,
    cohort_window_secs = None,
    compaction_write_budget_bytes = None,
    partial_rewrite_dead_fraction = None,
    max_permanent_runs = None,
    max_permanent_space_amp = None,
    background_compaction_secs = Some(1.0),
    wal_recycle_files = None,
),
// Spelled out because PyO3 renders the non-literal `Some(1.0)` as `...`;
// mypy.stubtest checks this against the stub.
text_signature = "(path, *, sync='durable', memtable_size_bytes=None, segment_size_bytes=None, \
    block_size_bytes=None, block_cache_bytes=None, mmap_reads=None, bloom_bits_per_key=None, \
    cohort_window_secs=None, compaction_write_budget_bytes=None, \
    partial_rewrite_dead_fraction=None, max_permanent_runs=None, max_permanent_space_amp=None, \
    background_compaction_secs=1.0, wal_recycle_files=None)"
)]
#[allow(clippy::too_many_arguments)]
fn open(
    py: Python<'_>,
    path: PathBuf,
    sync: &str,
    memtable_size_bytes: Option<Int>,
    segment_size_bytes: Option<Int>,
    block_size_bytes: Option<Int>,
    block_cache_bytes: Option<Int>,
    mmap_reads: Option<bool>,
    bloom_bits_per_key: Option<Int>,
    cohort_window_secs: Option<Int>,
    compaction_write_budget_bytes: Option<Int>,
    partial_rewrite_dead_fraction: Option<f64>,
    max_permanent_runs: Option<Int>,
    max_permanent_space_amp: Option<f64>,
    background_compaction_secs: Option<f64>,
    wal_recycle_files: Option<Int>,
) -> PyResult<Database> {
    let memtable_size_bytes = memtable_size_bytes.map(|v| v.0);
    let segment_size_bytes = segment_size_bytes.map(|v| v.0);
    let block_size_bytes = block_size_bytes.map(|v| v.0);
    let block_cache_bytes = block_cache_bytes.map(|v| v.0);
    let bloom_bits_per_key = bloom_bits_per_key.map(|v| v.0);
    let cohort_window_secs = cohort_window_secs.map(|v| v.0);
    let compaction_write_budget_bytes = compaction_write_budget_bytes.map(|v| v.0);
    let max_permanent_runs = max_permanent_runs.map(|v| v.0);
    let wal_recycle_files = wal_recycle_files.map(|v| v.0);
    let mut cfg = EdgestoreConfig::new(&path);
    cfg.sync_mode = match sync {
        "durable" => SyncMode::Durable,
        "buffered" => SyncMode::Buffered,
        other => {
            return Err(invalid(
                py,
                format!("sync must be \"durable\" or \"buffered\", got {other:?}"),
            ))
        }
    };
    let as_usize = |name: &str, v: i64| -> PyResult<usize> { Ok(positive(py, name, v)? as usize) };
    if let Some(v) = memtable_size_bytes {
        cfg.memtable_size_bytes = as_usize("memtable_size_bytes", v)?;
    }
    if let Some(v) = segment_size_bytes {
        cfg.segment_size_bytes = as_usize("segment_size_bytes", v)? as u64;
    }
    if let Some(v) = block_size_bytes {
        cfg.block_size_bytes = as_usize("block_size_bytes", v)?;
    }
    if let Some(v) = block_cache_bytes {
        // 0 is valid: it turns the cache off.
        cfg.block_cache_bytes = non_negative(py, "block_cache_bytes", v)?;
    }
    if let Some(v) = mmap_reads {
        cfg.mmap_reads = v;
    }
    if let Some(v) = wal_recycle_files {
        // 0 is valid: obsolete WAL files are deleted.
        let n = non_negative(py, "wal_recycle_files", v)?;
        cfg.wal_recycle_files = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(v) = bloom_bits_per_key {
        if !(0..=64).contains(&v) {
            return Err(invalid(
                py,
                format!("bloom_bits_per_key must be in 0..=64, got {v}"),
            ));
        }
        cfg.bloom_bits_per_key = v as u32;
    }
    if let Some(v) = cohort_window_secs {
        cfg.cohort_window_secs = as_usize("cohort_window_secs", v)? as u64;
    }
    if let Some(v) = compaction_write_budget_bytes {
        cfg.compaction_write_budget_bytes = as_usize("compaction_write_budget_bytes", v)? as u64;
    }
    if let Some(v) = partial_rewrite_dead_fraction {
        cfg.partial_rewrite_dead_fraction = v;
    }
    if let Some(v) = max_permanent_runs {
        cfg.max_permanent_runs = as_usize("max_permanent_runs", v)?;
    }
    if let Some(v) = max_permanent_space_amp {
        cfg.max_permanent_space_amp = v;
    }
    // On by default (the signature's 1.0), unlike the core's config: None
    // (passed explicitly) turns it off.
    cfg.background_compaction = match background_compaction_secs {
        None => None,
        // Negative, NaN, infinite, too large for a Duration, or rounding to 0.
        Some(v) => match Duration::try_from_secs_f64(v) {
            Ok(d) if !d.is_zero() => Some(d),
            _ => {
                return Err(invalid(
                    py,
                    format!(
                        "background_compaction_secs must be a positive number of seconds, got {v}"
                    ),
                ))
            }
        },
    };
    let engine = py.detach(|| Engine::open(cfg)).py(py)?;
    Ok(Database {
        engine: RwLock::new(Some(engine)),
        closing: AtomicBool::new(false),
        id: NEXT_DATABASE_ID.fetch_add(1, Ordering::Relaxed),
        path,
    })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let ex = exceptions(py)?;
    m.add("Error", ex.error.bind(py))?;
    m.add("CorruptionError", ex.corruption.bind(py))?;
    m.add("LockedError", ex.locked.bind(py))?;
    m.add("ClosedError", ex.closed.bind(py))?;
    m.add("PoisonedError", ex.poisoned.bind(py))?;
    m.add("InvalidArgumentError", ex.invalid_argument.bind(py))?;
    m.add("EdgestoreIOError", ex.io.bind(py))?;
    m.add_class::<Database>()?;
    m.add_class::<Batch>()?;
    m.add_class::<Namespace>()?;
    m.add_class::<Snapshot>()?;
    m.add_class::<RangeIterator>()?;
    m.add_class::<CompactionStats>()?;
    m.add_class::<MerkleTree>()?;
    m.add_class::<Metrics>()?;
    m.add_class::<VerifyReport>()?;
    m.add_function(wrap_pyfunction!(open, m)?)?;
    vector::register(m)?;
    m.add("MAX_NAMESPACE_LEN", edgestore::types::MAX_NAMESPACE_LEN)?;
    m.add("MAX_KEY_LEN", edgestore::types::MAX_KEY_LEN)?;
    m.add("MAX_VALUE_LEN", edgestore::types::MAX_VALUE_LEN)?;
    Ok(())
}
