//! Vector collections for Python: `Database.vectors(...)` returns a
//! [`VectorCollection`] that takes and returns numpy arrays.
//!
//! Arrays are read in place through numpy's array interface
//! (`__array_interface__`): a C-contiguous, aligned `float32`, `float16` or
//! `int8` array is never copied on the way in; anything else is refused with
//! `TypeError` (not an ndarray, wrong dtype) or `InvalidArgumentError`
//! (a `ValueError`: not C-contiguous, wrong shape or dimension, NaN, ...).
//! Every engine call runs with the GIL released.

use std::sync::RwLockReadGuard;

use edgestore::vector::distance::f32_to_f16;
use edgestore::vector::{quantize_i8, OwnedVector, VectorEntry};
use edgestore::{
    DType, Engine, Filter, MetaValue, Metadata, Metric, SearchParams, VectorConfig, VectorInput,
    VectorPut,
};
use pyo3::exceptions::{PyMemoryError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyType,
};

use super::{bytes_like, invalid, ttl_secs, type_name, Database, Int, Snapshot};

// ---------------------------------------------------------------------------
// numpy
// ---------------------------------------------------------------------------

struct Numpy {
    ndarray: Py<PyType>,
    frombuffer: Py<PyAny>,
    asarray: Py<PyAny>,
    dtype: Py<PyAny>,
}

static NUMPY: PyOnceLock<Numpy> = PyOnceLock::new();

fn numpy(py: Python<'_>) -> PyResult<&Numpy> {
    NUMPY.get_or_try_init(py, || {
        let np = py.import("numpy").map_err(|e| {
            PyTypeError::new_err(format!("edgestore vector collections need numpy: {e}"))
        })?;
        Ok::<_, PyErr>(Numpy {
            ndarray: np.getattr("ndarray")?.cast_into::<PyType>()?.unbind(),
            frombuffer: np.getattr("frombuffer")?.unbind(),
            asarray: np.getattr("asarray")?.unbind(),
            dtype: np.getattr("dtype")?.unbind(),
        })
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    F32,
    F16,
    I8,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::F32 => "float32",
            Kind::F16 => "float16",
            Kind::I8 => "int8",
        }
    }
}

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "float32",
        DType::F16 => "float16",
        DType::I8 => "int8",
    }
}

fn metric_name(m: Metric) -> &'static str {
    match m {
        Metric::L2 => "l2",
        Metric::Cosine => "cosine",
        Metric::InnerProduct => "ip",
    }
}

/// Elements of an array argument, borrowed from the array or (only when the
/// array's data is misaligned for its type) copied.
enum Elems<'a> {
    F32(&'a [f32]),
    F16(&'a [u16]),
    I8(&'a [i8]),
}

enum Copied {
    None,
    F32(Vec<f32>),
    F16(Vec<u16>),
}

/// A numpy array argument: a strong reference (so its buffer stays alive),
/// its element type, shape and data address.
struct NdArray<'py> {
    _keep: Bound<'py, PyAny>,
    kind: Kind,
    shape: Vec<usize>,
    ptr: usize,
    len: usize,
    copied: Copied,
}

impl NdArray<'_> {
    /// The elements in C order.
    fn elems(&self) -> Elems<'_> {
        if self.len == 0 {
            return match self.kind {
                Kind::F32 => Elems::F32(&[]),
                Kind::F16 => Elems::F16(&[]),
                Kind::I8 => Elems::I8(&[]),
            };
        }
        match (&self.copied, self.kind) {
            (Copied::F32(v), _) => Elems::F32(v),
            (Copied::F16(v), _) => Elems::F16(v),
            // SAFETY (all three arms): `ptr` is the data address numpy reports
            // for a C-contiguous array (`strides` is None) of `len` elements
            // of this type, checked non-null and aligned for the type in
            // `ndarray()`. `self._keep` holds a strong reference to the array
            // for as long as the returned slice (borrowed from `self`) lives,
            // so the buffer is neither freed nor reallocated (numpy refuses to
            // resize a referenced array). Writing the array from another
            // thread during the call is a data race the caller must avoid, as
            // with numpy's own GIL-releasing functions.
            (Copied::None, Kind::F32) => {
                Elems::F32(unsafe { std::slice::from_raw_parts(self.ptr as *const f32, self.len) })
            }
            (Copied::None, Kind::F16) => {
                Elems::F16(unsafe { std::slice::from_raw_parts(self.ptr as *const u16, self.len) })
            }
            (Copied::None, Kind::I8) => {
                Elems::I8(unsafe { std::slice::from_raw_parts(self.ptr as *const i8, self.len) })
            }
        }
    }
}

/// Reads `obj` as a C-contiguous numpy array of float32, float16 or int8.
fn ndarray<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<NdArray<'py>> {
    let py = obj.py();
    let np = numpy(py)?;
    if !obj.is_instance(np.ndarray.bind(py))? {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a numpy array of float32, float16 or int8, not '{}'",
            type_name(obj)
        )));
    }
    // A subclass may override `__array_interface__` (the pointer and
    // length read below): read a plain ndarray view of it instead (no copy).
    let base;
    let obj = if obj.get_type().is(np.ndarray.bind(py)) {
        obj
    } else {
        base = np.asarray.bind(py).call1((obj,))?;
        &base
    };
    let iface = obj.getattr("__array_interface__")?;
    let typestr: String = iface.get_item("typestr")?.extract()?;
    let kind = match typestr.as_str() {
        "<f4" | "=f4" => Kind::F32,
        "<f2" | "=f2" => Kind::F16,
        "|i1" | "<i1" | "=i1" => Kind::I8,
        _ => {
            let dt = obj.getattr("dtype")?.str()?.to_string();
            return Err(PyTypeError::new_err(format!(
                "{what} must have dtype float32, float16 or int8 (little-endian), not {dt}; \
                 convert it with .astype(numpy.float32)"
            )));
        }
    };
    if !iface.get_item("strides")?.is_none() {
        return Err(invalid(
            py,
            format!("{what} must be C-contiguous; use numpy.ascontiguousarray({what})"),
        ));
    }
    let shape: Vec<usize> = iface.get_item("shape")?.extract()?;
    let data = iface.get_item("data")?;
    let ptr: usize = data.get_item(0)?.extract()?;
    let len: usize = shape.iter().product();
    let mut copied = Copied::None;
    if len > 0 {
        if ptr == 0 {
            return Err(invalid(py, format!("{what} has no data")));
        }
        let align = match kind {
            Kind::F32 => 4,
            Kind::F16 => 2,
            Kind::I8 => 1,
        };
        if !ptr.is_multiple_of(align) {
            // Misaligned (e.g. numpy.frombuffer at an odd offset): copy.
            copied = match kind {
                Kind::F32 => Copied::F32(
                    (0..len)
                        // SAFETY: `ptr` addresses `len` contiguous f32 (see
                        // `NdArray::elems`); read_unaligned has no alignment
                        // requirement and `obj` is alive here.
                        .map(|i| unsafe { (ptr as *const f32).add(i).read_unaligned() })
                        .collect(),
                ),
                Kind::F16 => Copied::F16(
                    (0..len)
                        // SAFETY: as above, for `len` contiguous u16.
                        .map(|i| unsafe { (ptr as *const u16).add(i).read_unaligned() })
                        .collect(),
                ),
                Kind::I8 => Copied::None,
            };
        }
    }
    Ok(NdArray {
        _keep: obj.clone(),
        kind,
        shape,
        ptr,
        len,
        copied,
    })
}

/// Most queries one `search_batch` call takes (the C API's
/// `EDGESTORE_VECTOR_MAX_BATCH`).
const MAX_QUERIES: usize = 1 << 20;

/// `n` copies of `x`, or `MemoryError` when the allocation fails (a plain
/// `vec!` would abort the process).
fn try_filled<T: Clone>(n: usize, x: T) -> PyResult<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| PyMemoryError::new_err(format!("cannot allocate {n} result cells")))?;
    v.resize(n, x);
    Ok(v)
}

/// `float32` values as a new, writable numpy array of `shape`.
fn f32_array<'py>(py: Python<'py>, v: &[f32], shape: &[usize]) -> PyResult<Bound<'py, PyAny>> {
    let np = numpy(py)?;
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(v.len() * 4)
        .map_err(|_| PyMemoryError::new_err("cannot allocate the distances array"))?;
    for x in v {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    let buf = PyByteArray::new(py, &bytes);
    let arr = np.frombuffer.bind(py).call1((buf, "<f4"))?;
    arr.call_method1("reshape", (PyTuple::new(py, shape)?,))
}

fn stored_array<'py>(py: Python<'py>, v: &OwnedVector) -> PyResult<(Bound<'py, PyAny>, f32)> {
    let np = numpy(py)?;
    let (bytes, ty, scale): (Vec<u8>, &str, f32) = match v {
        OwnedVector::F32(x) => (x.iter().flat_map(|e| e.to_le_bytes()).collect(), "<f4", 1.0),
        OwnedVector::F16(x) => (x.iter().flat_map(|e| e.to_le_bytes()).collect(), "<f2", 1.0),
        OwnedVector::I8 { data, scale } => (data.iter().map(|&e| e as u8).collect(), "|i1", *scale),
    };
    let buf = PyByteArray::new(py, &bytes);
    Ok((np.frombuffer.bind(py).call1((buf, ty))?, scale))
}

// ---------------------------------------------------------------------------
// Metadata and filters
// ---------------------------------------------------------------------------

fn meta_value(py: Python<'_>, v: &Bound<'_, PyAny>, field: &str) -> PyResult<MetaValue> {
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(MetaValue::Bool(b.is_true()));
    }
    if v.is_instance_of::<PyInt>() {
        return v.extract::<i64>().map(MetaValue::I64).map_err(|_| {
            invalid(
                py,
                format!("metadata field {field:?}: integer {v} does not fit in 64 bits"),
            )
        });
    }
    if let Ok(f) = v.cast::<PyFloat>() {
        return Ok(MetaValue::F64(f.value()));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(MetaValue::Str(s.to_str()?.to_string()));
    }
    Err(PyTypeError::new_err(format!(
        "metadata field {field:?} must be int, float, str or bool, not '{}'",
        type_name(v)
    )))
}

fn parse_metadata(py: Python<'_>, obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Metadata>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    let d = obj.cast::<PyDict>().map_err(|_| {
        PyTypeError::new_err(format!(
            "metadata must be a dict of str to int/float/str/bool, not '{}'",
            type_name(obj)
        ))
    })?;
    let mut m = Metadata::new();
    for (k, v) in d.iter() {
        let k: String = k.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "metadata field names must be str, not '{}'",
                type_name(&k)
            ))
        })?;
        let v = meta_value(py, &v, &k)?;
        m.insert(k, v);
    }
    Ok(Some(m))
}

fn meta_to_py<'py>(py: Python<'py>, m: &Metadata) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in m {
        match v {
            MetaValue::I64(x) => d.set_item(k, x)?,
            MetaValue::F64(x) => d.set_item(k, x)?,
            MetaValue::Str(x) => d.set_item(k, x)?,
            MetaValue::Bool(x) => d.set_item(k, x)?,
        }
    }
    Ok(d)
}

/// A search filter over keys and metadata. Build one with the static
/// methods and combine with `&`, `|` and `~`.
#[pyclass(module = "edgestore._native", frozen, name = "Filter")]
#[derive(Clone)]
pub(crate) struct PyFilter {
    f: Filter,
}

fn opt_meta(
    py: Python<'_>,
    v: Option<&Bound<'_, PyAny>>,
    what: &str,
) -> PyResult<Option<MetaValue>> {
    match v {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) => meta_value(py, v, what).map(Some),
    }
}

#[pymethods]
impl PyFilter {
    /// Vectors whose metadata field `field` equals `value`.
    #[staticmethod]
    fn eq(py: Python<'_>, field: String, value: &Bound<'_, PyAny>) -> PyResult<Self> {
        let v = meta_value(py, value, &field)?;
        Ok(PyFilter {
            f: Filter::Eq(field, v),
        })
    }

    /// Vectors whose field lies between `min` and `max` (either may be None).
    #[staticmethod]
    #[pyo3(signature = (field, min=None, max=None, inclusive=true))]
    fn range(
        py: Python<'_>,
        field: String,
        min: Option<&Bound<'_, PyAny>>,
        max: Option<&Bound<'_, PyAny>>,
        inclusive: bool,
    ) -> PyResult<Self> {
        let min = opt_meta(py, min, &field)?;
        let max = opt_meta(py, max, &field)?;
        Ok(PyFilter {
            f: Filter::Range {
                field,
                min,
                max,
                inclusive,
            },
        })
    }

    /// Vectors that have the metadata field `field`.
    #[staticmethod]
    fn exists(field: String) -> Self {
        PyFilter {
            f: Filter::Exists(field),
        }
    }

    /// Vectors whose key starts with `prefix`.
    #[staticmethod]
    fn key_prefix(prefix: &Bound<'_, PyAny>) -> PyResult<Self> {
        let p = bytes_like(prefix, "prefix")?;
        Ok(PyFilter {
            f: Filter::KeyPrefix(p.as_slice().to_vec()),
        })
    }

    /// Vectors matching every filter given.
    #[staticmethod]
    #[pyo3(signature = (*filters))]
    fn all_of(filters: Vec<PyRef<'_, PyFilter>>) -> Self {
        PyFilter {
            f: Filter::And(filters.iter().map(|f| f.f.clone()).collect()),
        }
    }

    /// Vectors matching at least one filter given.
    #[staticmethod]
    #[pyo3(signature = (*filters))]
    fn any_of(filters: Vec<PyRef<'_, PyFilter>>) -> Self {
        PyFilter {
            f: Filter::Or(filters.iter().map(|f| f.f.clone()).collect()),
        }
    }

    fn __and__(&self, other: &PyFilter) -> Self {
        PyFilter {
            f: Filter::And(vec![self.f.clone(), other.f.clone()]),
        }
    }

    fn __or__(&self, other: &PyFilter) -> Self {
        PyFilter {
            f: Filter::Or(vec![self.f.clone(), other.f.clone()]),
        }
    }

    fn __invert__(&self) -> Self {
        PyFilter {
            f: Filter::Not(Box::new(self.f.clone())),
        }
    }

    fn __repr__(&self) -> String {
        format!("edgestore.Filter({:?})", self.f)
    }
}

// ---------------------------------------------------------------------------
// Result objects
// ---------------------------------------------------------------------------

/// Counters of one collection's index.
#[pyclass(module = "edgestore._native", frozen, get_all)]
#[derive(Clone)]
pub(crate) struct VectorStats {
    live: usize,
    nodes: usize,
    graph_inserts: u64,
    loaded_from_file: bool,
    rebuilt_from_records: bool,
    replayed_records: u64,
    exact_searches: u64,
    hnsw_searches: u64,
    persists: u64,
    vacuums: u64,
    memory_bytes: usize,
}

#[pymethods]
impl VectorStats {
    fn __repr__(&self) -> String {
        format!(
            "VectorStats(live={}, nodes={}, graph_inserts={}, loaded_from_file={}, \
             rebuilt_from_records={}, replayed_records={}, exact_searches={}, hnsw_searches={}, \
             persists={}, vacuums={}, memory_bytes={})",
            self.live,
            self.nodes,
            self.graph_inserts,
            if self.loaded_from_file {
                "True"
            } else {
                "False"
            },
            if self.rebuilt_from_records {
                "True"
            } else {
                "False"
            },
            self.replayed_records,
            self.exact_searches,
            self.hnsw_searches,
            self.persists,
            self.vacuums,
            self.memory_bytes
        )
    }
}

/// A stored vector as read back by `VectorCollection.get`.
#[pyclass(module = "edgestore._native", frozen, get_all)]
pub(crate) struct StoredVector {
    /// The elements in the stored dtype (a new, writable array).
    vector: Py<PyAny>,
    /// The metadata (empty when none was given).
    metadata: Py<PyDict>,
    /// int8 collections: element `i` is `vector[i] * scale`; 1.0 otherwise.
    scale: f32,
}

#[pymethods]
impl StoredVector {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "StoredVector(vector={}, metadata={}, scale={})",
            self.vector.bind(py).repr()?,
            self.metadata.bind(py).repr()?,
            self.scale
        ))
    }
}

// ---------------------------------------------------------------------------
// Collection
// ---------------------------------------------------------------------------

/// A vector collection of a `Database`, from `Database.vectors(...)`.
/// Safe to share between threads; every call releases the GIL.
#[pyclass(module = "edgestore._native", frozen)]
pub(crate) struct VectorCollection {
    db: Py<Database>,
    ns: Vec<u8>,
    name: String,
    config: VectorConfig,
}

/// Vector data prepared for a put: borrowed as given, or converted.
enum Prepared<'a> {
    Borrowed(VectorInput<'a>),
    F16(Vec<u16>),
    I8(Vec<i8>, f32),
}

impl Prepared<'_> {
    fn input(&self) -> VectorInput<'_> {
        match self {
            Prepared::Borrowed(v) => *v,
            Prepared::F16(v) => VectorInput::F16(v),
            Prepared::I8(d, s) => VectorInput::I8 { data: d, scale: *s },
        }
    }
}

/// Row `i` (of `dim` elements) of `e` as a put for a collection of `dtype`.
fn prepare<'a>(
    e: &Elems<'a>,
    i: usize,
    dim: usize,
    dtype: DType,
    scale: f32,
) -> edgestore::Result<Prepared<'a>> {
    let r = i * dim..(i + 1) * dim;
    Ok(match (e, dtype) {
        (Elems::F32(v), DType::F32) => Prepared::Borrowed(VectorInput::F32(&v[r])),
        (Elems::F16(v), DType::F16) => Prepared::Borrowed(VectorInput::F16(&v[r])),
        (Elems::I8(v), DType::I8) => Prepared::Borrowed(VectorInput::I8 { data: &v[r], scale }),
        (Elems::F32(v), DType::F16) => {
            let row = &v[r];
            if let Some(j) = row.iter().position(|x| !x.is_finite()) {
                return Err(edgestore::Error::InvalidArgument(format!(
                    "element {j} is NaN or infinite"
                )));
            }
            Prepared::F16(row.iter().map(|&x| f32_to_f16(x)).collect())
        }
        (Elems::F32(v), DType::I8) => {
            let row = &v[r];
            if let Some(j) = row.iter().position(|x| !x.is_finite()) {
                return Err(edgestore::Error::InvalidArgument(format!(
                    "element {j} is NaN or infinite"
                )));
            }
            let (d, s) = quantize_i8(row);
            Prepared::I8(d, s)
        }
        _ => unreachable!("checked by put_kind"),
    })
}

fn query_input<'a>(e: &Elems<'a>, i: usize, dim: usize) -> VectorInput<'a> {
    let r = i * dim..(i + 1) * dim;
    match e {
        Elems::F32(v) => VectorInput::F32(&v[r]),
        Elems::F16(v) => VectorInput::F16(&v[r]),
        Elems::I8(v) => VectorInput::I8 {
            data: &v[r],
            scale: 1.0,
        },
    }
}

fn key_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    Ok(bytes_like(obj, "key")?.as_slice().to_vec())
}

fn scale_arg(py: Python<'_>, scale: Option<f64>) -> PyResult<f32> {
    match scale {
        None => Ok(1.0),
        Some(s) if s.is_finite() && s > 0.0 && (s as f32).is_finite() && s as f32 > 0.0 => {
            Ok(s as f32)
        }
        Some(s) => Err(invalid(
            py,
            format!("scale must be positive and finite, got {s}"),
        )),
    }
}

fn search_params(py: Python<'_>, ef: Option<i64>, exact: bool) -> PyResult<SearchParams> {
    let ef = match ef {
        None => None,
        Some(e) if e >= 1 => Some(e as usize),
        Some(e) => return Err(invalid(py, format!("ef must be >= 1, got {e}"))),
    };
    Ok(SearchParams { ef, exact })
}

fn check_k(py: Python<'_>, k: i64) -> PyResult<usize> {
    if k < 1 || k > edgestore::vector::MAX_K as i64 {
        return Err(invalid(
            py,
            format!("k must be in 1..={}, got {k}", edgestore::vector::MAX_K),
        ));
    }
    Ok(k as usize)
}

impl VectorCollection {
    /// Runs `f` on this collection (and the snapshot, if given) with the GIL released.
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        snapshot: Option<&Snapshot>,
        f: impl FnOnce(&edgestore::Collection<'_>, Option<&edgestore::Snapshot>) -> edgestore::Result<T>
            + Send,
    ) -> PyResult<T> {
        if snapshot.is_some_and(|s| s.db_id != self.db.get().id) {
            return Err(invalid(
                py,
                "the snapshot was taken from another database than the collection's",
            ));
        }
        let (ns, name) = (&self.ns[..], self.name.as_str());
        self.db.get().with_engine(py, |e: &Engine| {
            let c = e.vectors(ns, name)?;
            match snapshot {
                None => f(&c, None),
                Some(s) => {
                    let g: RwLockReadGuard<'_, Option<edgestore::Snapshot>> =
                        s.snap.read().unwrap_or_else(|p| p.into_inner());
                    match g.as_ref() {
                        Some(s) => f(&c, Some(s)),
                        None => Err(edgestore::Error::Closed),
                    }
                }
            }
        })
    }

    fn put_kind(&self, py: Python<'_>, k: Kind, what: &str) -> PyResult<()> {
        let ok = matches!(
            (k, self.config.dtype),
            (Kind::F32, _) | (Kind::F16, DType::F16) | (Kind::I8, DType::I8)
        );
        if !ok {
            return Err(PyTypeError::new_err(format!(
                "{what} has dtype {}, the collection stores {} (float32 input is also accepted)",
                k.name(),
                dtype_name(self.config.dtype)
            )));
        }
        let _ = py;
        Ok(())
    }

    fn check_dim(&self, py: Python<'_>, got: usize, what: &str) -> PyResult<()> {
        if got != self.config.dim {
            return Err(invalid(
                py,
                format!(
                    "{what} has dimension {got}, the collection has {}",
                    self.config.dim
                ),
            ));
        }
        Ok(())
    }
}

#[pymethods]
impl VectorCollection {
    /// The collection's namespace.
    #[getter]
    fn namespace<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.ns)
    }

    /// The collection's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Elements per vector.
    #[getter]
    fn dim(&self) -> usize {
        self.config.dim
    }

    /// "l2" (squared Euclidean), "cosine" (1 - cos) or "ip" (negative inner product).
    #[getter]
    fn metric(&self) -> &'static str {
        metric_name(self.config.metric)
    }

    /// Stored element type: "float32", "float16" or "int8".
    #[getter]
    fn dtype(&self) -> &'static str {
        dtype_name(self.config.dtype)
    }

    /// HNSW links per node (level 0 keeps twice as many).
    #[getter]
    fn m(&self) -> usize {
        self.config.hnsw_m
    }

    /// HNSW candidate list size while inserting.
    #[getter]
    fn ef_construction(&self) -> usize {
        self.config.ef_construction
    }

    /// Default HNSW candidate list size while searching.
    #[getter]
    fn ef_search(&self) -> usize {
        self.config.ef_search
    }

    /// Stores `vector` (1-D array) under `key`, replacing any earlier one.
    #[pyo3(signature = (key, vector, metadata=None, *, ttl=None, scale=None))]
    fn put(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        vector: &Bound<'_, PyAny>,
        metadata: Option<&Bound<'_, PyAny>>,
        ttl: Option<&Bound<'_, PyAny>>,
        scale: Option<f64>,
    ) -> PyResult<()> {
        let key = bytes_like(key, "key")?;
        let arr = ndarray(vector, "vector")?;
        self.put_kind(py, arr.kind, "vector")?;
        if arr.shape.len() != 1 {
            return Err(invalid(
                py,
                format!("vector must be 1-D, got shape {:?}", arr.shape),
            ));
        }
        self.check_dim(py, arr.shape[0], "vector")?;
        let meta = parse_metadata(py, metadata)?;
        let ttl = ttl_secs(py, ttl)?;
        let scale = scale_arg(py, scale)?;
        let (key, e, dim, dtype) = (
            key.as_slice(),
            arr.elems(),
            self.config.dim,
            self.config.dtype,
        );
        self.run(py, None, |c, _| {
            let p = prepare(&e, 0, dim, dtype, scale)?;
            c.put(key, p.input(), meta.as_ref(), ttl)
        })
    }

    /// Stores the rows of `vectors` (2-D array) under `keys`, atomically.
    #[pyo3(signature = (keys, vectors, metadata=None, *, ttl=None, scale=None))]
    fn put_batch(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        vectors: &Bound<'_, PyAny>,
        metadata: Option<&Bound<'_, PyAny>>,
        ttl: Option<&Bound<'_, PyAny>>,
        scale: Option<f64>,
    ) -> PyResult<()> {
        let arr = ndarray(vectors, "vectors")?;
        self.put_kind(py, arr.kind, "vectors")?;
        if arr.shape.len() != 2 {
            return Err(invalid(
                py,
                format!("vectors must be 2-D (n, dim), got shape {:?}", arr.shape),
            ));
        }
        self.check_dim(py, arr.shape[1], "vectors")?;
        let n = arr.shape[0];
        let keys: Vec<Bound<'_, PyAny>> = keys
            .try_iter()
            .map_err(|_| PyTypeError::new_err("keys must be an iterable of bytes"))?
            .collect::<PyResult<_>>()?;
        if keys.len() != n {
            return Err(invalid(py, format!("{} keys for {n} vectors", keys.len())));
        }
        let keys: Vec<Vec<u8>> = keys.iter().map(key_bytes).collect::<PyResult<_>>()?;
        let metas: Vec<Option<Metadata>> = match metadata.filter(|m| !m.is_none()) {
            None => Vec::new(),
            Some(m) => {
                let items: Vec<Bound<'_, PyAny>> = m
                    .try_iter()
                    .map_err(|_| {
                        PyTypeError::new_err("metadata must be a list of dicts (or None)")
                    })?
                    .collect::<PyResult<_>>()?;
                if items.len() != n {
                    return Err(invalid(
                        py,
                        format!("{} metadata entries for {n} vectors", items.len()),
                    ));
                }
                items
                    .iter()
                    .map(|m| parse_metadata(py, Some(m)))
                    .collect::<PyResult<_>>()?
            }
        };
        let ttl = ttl_secs(py, ttl)?;
        let scale = scale_arg(py, scale)?;
        let (e, dim, dtype) = (arr.elems(), self.config.dim, self.config.dtype);
        self.run(py, None, |c, _| {
            let prepared = (0..n)
                .map(|i| prepare(&e, i, dim, dtype, scale))
                .collect::<edgestore::Result<Vec<_>>>()?;
            let puts: Vec<VectorPut<'_>> = prepared
                .iter()
                .enumerate()
                .map(|(i, p)| VectorPut {
                    key: &keys[i],
                    vector: p.input(),
                    metadata: metas.get(i).and_then(|m| m.as_ref()),
                    ttl_secs: ttl,
                })
                .collect();
            c.put_batch(&puts)
        })
    }

    /// The vector under `key` (a `StoredVector`), or `default` when it is
    /// missing, deleted or expired.
    #[pyo3(signature = (key, default=None, *, snapshot=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
        snapshot: Option<PyRef<'py, Snapshot>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let key = bytes_like(key, "key")?;
        let key = key.as_slice();
        let entry: Option<VectorEntry> = self.run(py, snapshot.as_deref(), |c, s| match s {
            None => c.get(key),
            Some(s) => c.at(s).get(key),
        })?;
        match entry {
            None => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
            Some(e) => {
                let (vector, scale) = stored_array(py, &e.vector)?;
                Ok(Bound::new(
                    py,
                    StoredVector {
                        vector: vector.unbind(),
                        metadata: meta_to_py(py, &e.metadata)?.unbind(),
                        scale,
                    },
                )?
                .into_any())
            }
        }
    }

    /// Deletes the vector under `key` (a missing key is not an error).
    fn delete(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let key = bytes_like(key, "key")?;
        let key = key.as_slice();
        self.run(py, None, |c, _| c.delete(key))
    }

    /// The `k` nearest live vectors to `query` (1-D array): `(keys, distances)`,
    /// closest first; `distances` is a float32 array.
    #[pyo3(
        signature = (query, k=Int(10), *, filter=None, ef=None, exact=false, snapshot=None),
        text_signature = "($self, query, k=10, *, filter=None, ef=None, exact=False, snapshot=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        query: &Bound<'py, PyAny>,
        k: Int,
        filter: Option<PyRef<'py, PyFilter>>,
        ef: Option<Int>,
        exact: bool,
        snapshot: Option<PyRef<'py, Snapshot>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let k = k.0;
        let ef = ef.map(|v| v.0);
        let arr = ndarray(query, "query")?;
        if arr.shape.len() != 1 {
            return Err(invalid(
                py,
                format!(
                    "query must be 1-D, got shape {:?}; use search_batch for 2-D",
                    arr.shape
                ),
            ));
        }
        self.check_dim(py, arr.shape[0], "query")?;
        let k = check_k(py, k)?;
        let params = search_params(py, ef, exact)?;
        let f = filter.as_ref().map(|f| f.f.clone());
        let (e, dim) = (arr.elems(), self.config.dim);
        let flat = self.run(py, snapshot.as_deref(), |c, s| {
            let q = [query_input(&e, 0, dim)];
            match s {
                None => c.search_batch_flat(&q, k, f.as_ref(), &params),
                Some(s) => c.at(s).search_batch_flat(&q, k, f.as_ref(), &params),
            }
        })?;
        let mut keys = Vec::with_capacity(flat.distances.len());
        let mut from = 0;
        for &end in &flat.key_ends {
            keys.push(PyBytes::new(py, &flat.keys[from..end]));
            from = end;
        }
        let dist = f32_array(py, &flat.distances, &[flat.distances.len()])?;
        PyTuple::new(py, [PyList::new(py, keys)?.into_any(), dist])
    }

    /// One search per row of `queries` (2-D array, at most 1,048,576 rows),
    /// all at one read point: `(keys, distances)` with `keys` a list of
    /// lists and `distances` a float32 array of shape `(len(queries), k)`,
    /// padded with `inf` where fewer than `k` vectors matched. `MemoryError`
    /// when that array cannot be allocated.
    #[pyo3(
        signature = (queries, k=Int(10), *, filter=None, ef=None, exact=false, snapshot=None),
        text_signature = "($self, queries, k=10, *, filter=None, ef=None, exact=False, snapshot=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn search_batch<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
        k: Int,
        filter: Option<PyRef<'py, PyFilter>>,
        ef: Option<Int>,
        exact: bool,
        snapshot: Option<PyRef<'py, Snapshot>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let k = k.0;
        let ef = ef.map(|v| v.0);
        let arr = ndarray(queries, "queries")?;
        if arr.shape.len() != 2 {
            return Err(invalid(
                py,
                format!("queries must be 2-D (n, dim), got shape {:?}", arr.shape),
            ));
        }
        self.check_dim(py, arr.shape[1], "queries")?;
        let n = arr.shape[0];
        if n > MAX_QUERIES {
            return Err(invalid(
                py,
                format!("at most {MAX_QUERIES} queries a call, got {n}"),
            ));
        }
        let k = check_k(py, k)?;
        // Up to 10^10 cells: allocate the padded result before the search,
        // and fail with MemoryError, not an abort, when it cannot be had.
        let cells = n
            .checked_mul(k)
            .ok_or_else(|| PyMemoryError::new_err("too many result cells"))?;
        let mut d = try_filled(cells, f32::INFINITY)?;
        let params = search_params(py, ef, exact)?;
        let f = filter.as_ref().map(|f| f.f.clone());
        let (e, dim) = (arr.elems(), self.config.dim);
        let flat = self.run(py, snapshot.as_deref(), |c, s| {
            let qs: Vec<VectorInput<'_>> = (0..n).map(|i| query_input(&e, i, dim)).collect();
            match s {
                None => c.search_batch_flat(&qs, k, f.as_ref(), &params),
                Some(s) => c.at(s).search_batch_flat(&qs, k, f.as_ref(), &params),
            }
        })?;
        let mut rows = Vec::with_capacity(n);
        let (mut hit, mut from) = (0usize, 0usize);
        for (i, &count) in flat.counts.iter().enumerate() {
            let mut row = Vec::with_capacity(count);
            for j in 0..count {
                let end = flat.key_ends[hit];
                row.push(PyBytes::new(py, &flat.keys[from..end]));
                d[i * k + j] = flat.distances[hit];
                from = end;
                hit += 1;
            }
            rows.push(PyList::new(py, row)?);
        }
        let keys = PyList::new(py, rows)?;
        let dist = f32_array(py, &d, &[n, k])?;
        PyTuple::new(py, [keys.into_any(), dist])
    }

    /// Index counters.
    fn stats(&self, py: Python<'_>) -> PyResult<VectorStats> {
        let s = self.run(py, None, |c, _| Ok(c.stats()))?;
        Ok(VectorStats {
            live: s.live,
            nodes: s.nodes,
            graph_inserts: s.graph_inserts,
            loaded_from_file: s.loaded_from_file,
            rebuilt_from_records: s.rebuilt_from_records,
            replayed_records: s.replayed_records,
            exact_searches: s.exact_searches,
            hnsw_searches: s.hnsw_searches,
            persists: s.persists,
            vacuums: s.vacuums,
            memory_bytes: s.memory_bytes,
        })
    }

    /// Writes the index file now (also done by flush_to_segments and close).
    fn persist_index(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, None, |c, _| c.persist_index())
    }

    /// Live vectors (expired ones not yet noticed may be counted).
    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.run(py, None, |c, _| Ok(c.len()))
    }

    fn __repr__(&self) -> String {
        format!(
            "<edgestore.VectorCollection {:?}/{:?} dim={} metric={} dtype={}>",
            String::from_utf8_lossy(&self.ns),
            self.name,
            self.config.dim,
            metric_name(self.config.metric),
            dtype_name(self.config.dtype)
        )
    }
}

// ---------------------------------------------------------------------------
// Database.vectors
// ---------------------------------------------------------------------------

/// Options of `Database.vectors`; `None` = not given.
pub(crate) struct Options<'a, 'py> {
    pub dim: Option<i64>,
    pub metric: Option<&'a Bound<'py, PyAny>>,
    pub dtype: Option<&'a Bound<'py, PyAny>>,
    pub m: Option<i64>,
    pub ef_construction: Option<i64>,
    pub ef_search: Option<i64>,
    pub exact_threshold: Option<i64>,
    pub max_graph_bytes: Option<i64>,
}

fn parse_metric(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Metric> {
    let s: String = obj.extract().map_err(|_| {
        PyTypeError::new_err(format!("metric must be a str, not '{}'", type_name(obj)))
    })?;
    match s.to_ascii_lowercase().as_str() {
        "l2" | "euclidean" | "l2sq" => Ok(Metric::L2),
        "cosine" | "cos" => Ok(Metric::Cosine),
        "ip" | "inner_product" | "dot" => Ok(Metric::InnerProduct),
        _ => Err(invalid(
            py,
            format!("metric must be \"l2\", \"cosine\" or \"ip\", got {s:?}"),
        )),
    }
}

fn parse_dtype(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<DType> {
    let name = if let Ok(s) = obj.cast::<PyString>() {
        s.to_str()?.to_ascii_lowercase()
    } else {
        // numpy.float32, numpy.dtype("float16"), ...
        numpy(py)?
            .dtype
            .bind(py)
            .call1((obj,))
            .and_then(|d| d.getattr("name"))
            .and_then(|n| n.extract::<String>())
            .map_err(|_| {
                PyTypeError::new_err(format!(
                    "dtype must be a str or numpy dtype, not '{}'",
                    type_name(obj)
                ))
            })?
    };
    match name.as_str() {
        "float32" | "f32" | "f4" => Ok(DType::F32),
        "float16" | "f16" | "f2" | "half" => Ok(DType::F16),
        "int8" | "i8" | "i1" => Ok(DType::I8),
        _ => Err(invalid(
            py,
            format!("dtype must be \"float32\", \"float16\" or \"int8\", got {name:?}"),
        )),
    }
}

fn usize_opt(py: Python<'_>, name: &str, v: Option<i64>, min: i64) -> PyResult<Option<usize>> {
    match v {
        None => Ok(None),
        Some(x) if x >= min => Ok(Some(x as usize)),
        Some(x) => Err(invalid(py, format!("{name} must be >= {min}, got {x}"))),
    }
}

/// `Database.vectors(ns, name, ...)`: opens the collection, creating it when
/// it does not exist and `dim` is given.
pub(crate) fn open_collection(
    db: &Bound<'_, Database>,
    ns: &Bound<'_, PyAny>,
    name: &str,
    o: Options<'_, '_>,
) -> PyResult<VectorCollection> {
    let py = db.py();
    let ns = super::namespace(ns)?.as_slice().to_vec();
    let dim = usize_opt(py, "dim", o.dim, 1)?;
    let metric = o.metric.map(|m| parse_metric(py, m)).transpose()?;
    let dtype = o.dtype.map(|d| parse_dtype(py, d)).transpose()?;
    let m = usize_opt(py, "m", o.m, 0)?;
    let efc = usize_opt(py, "ef_construction", o.ef_construction, 0)?;
    let efs = usize_opt(py, "ef_search", o.ef_search, 0)?;
    let exact = usize_opt(py, "exact_threshold", o.exact_threshold, 0)?;
    let mgb = usize_opt(py, "max_graph_bytes", o.max_graph_bytes, 0)?;
    let dbr = db.get();
    let config = dbr.with_engine(py, |e| {
        let existing = e
            .list_collections(&ns)?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c);
        let config = match existing {
            Some(c) => {
                let mut mismatch = Vec::new();
                let mut want = |what: &str, given: Option<String>, have: String| {
                    if let Some(g) = given {
                        if g != have {
                            mismatch.push(format!("{what}={g} (it has {have})"));
                        }
                    }
                };
                want("dim", dim.map(|x| x.to_string()), c.dim.to_string());
                want(
                    "metric",
                    metric.map(|x| metric_name(x).into()),
                    metric_name(c.metric).into(),
                );
                want(
                    "dtype",
                    dtype.map(|x| dtype_name(x).into()),
                    dtype_name(c.dtype).into(),
                );
                want("m", m.map(|x| x.to_string()), c.hnsw_m.to_string());
                want(
                    "ef_construction",
                    efc.map(|x| x.to_string()),
                    c.ef_construction.to_string(),
                );
                want("ef_search", efs.map(|x| x.to_string()), c.ef_search.to_string());
                want(
                    "exact_threshold",
                    exact.map(|x| x.to_string()),
                    c.exact_threshold.to_string(),
                );
                want(
                    "max_graph_bytes",
                    mgb.map(|x| x.to_string()),
                    c.max_graph_bytes.to_string(),
                );
                if !mismatch.is_empty() {
                    return Err(edgestore::Error::InvalidArgument(format!(
                        "collection {name:?} exists with a different configuration: {}",
                        mismatch.join(", ")
                    )));
                }
                e.vectors(&ns, name)?;
                c
            }
            None => {
                let Some(dim) = dim else {
                    return Err(edgestore::Error::InvalidArgument(format!(
                        "no vector collection {name:?} in namespace {:?}; pass dim=... to create it",
                        String::from_utf8_lossy(&ns)
                    )));
                };
                let mut c = VectorConfig::new(
                    dim,
                    metric.unwrap_or(Metric::L2),
                    dtype.unwrap_or(DType::F32),
                );
                if let Some(x) = m {
                    c.hnsw_m = x;
                }
                if let Some(x) = efc {
                    c.ef_construction = x;
                }
                if let Some(x) = efs {
                    c.ef_search = x;
                }
                if let Some(x) = exact {
                    c.exact_threshold = x;
                }
                if let Some(x) = mgb {
                    c.max_graph_bytes = x;
                }
                e.create_collection(&ns, name, c)?;
                c
            }
        };
        Ok(config)
    })?;
    Ok(VectorCollection {
        db: db.clone().unbind(),
        ns,
        name: name.to_string(),
        config,
    })
}

/// Names of the vector collections of `ns`.
pub(crate) fn list_collections(
    db: &Database,
    py: Python<'_>,
    ns: &Bound<'_, PyAny>,
) -> PyResult<Vec<String>> {
    let ns = super::namespace(ns)?.as_slice().to_vec();
    let list = db.with_engine(py, |e| e.list_collections(&ns))?;
    Ok(list.into_iter().map(|(n, _)| n).collect())
}

/// Adds the vector classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<VectorCollection>()?;
    m.add_class::<PyFilter>()?;
    m.add_class::<VectorStats>()?;
    m.add_class::<StoredVector>()?;
    m.add("MAX_VECTOR_DIM", edgestore::vector::MAX_DIM)?;
    m.add("MAX_VECTOR_KEY_LEN", edgestore::vector::MAX_VECTOR_KEY_LEN)?;
    m.add("MAX_K", edgestore::vector::MAX_K)?;
    Ok(())
}
