//! `edgestore_vector_*`: vector collections (embeddings stored as records next
//! to the key-value data, searched exactly or through an HNSW graph).
//!
//! A collection handle holds the token of the database handle it came from
//! plus the collection's namespace and name; every call looks the database up
//! (so closing the database makes the collection's calls return
//! `EDGESTORE_CLOSED`) and gets the core's collection with `Engine::vectors`,
//! a registry lookup once the collection is loaded.

use std::ffi::c_void;

use edgestore_core::vector::{
    DType, Filter, MetaValue, Metadata, Metric, OwnedVector, SearchHit, SearchParams, VectorConfig,
    VectorEntry, VectorInput, VectorPut, MAX_COLLECTION_NAME_LEN, MAX_DIM, MAX_K, MAX_META_FIELDS,
    MAX_META_NAME_LEN, MAX_META_STR_LEN, MAX_VECTOR_KEY_LEN,
};
use edgestore_core::{Collection, Engine};

use crate::args;
use crate::db::DBS;
use crate::handles::{Kind, Registry};
use crate::snapshot::SNAPSHOTS;
use crate::status::{boundary, edgestore_status, Fail};
use crate::{edgestore_db, edgestore_snapshot};

/// Longest key of a vector, in bytes. A `key_stride` of this size always
/// holds every result key of a search.
pub const EDGESTORE_VECTOR_MAX_KEY_LEN: usize = 245;
/// Largest dimension of a collection (and of any vector passed in).
pub const EDGESTORE_VECTOR_MAX_DIM: usize = 16384;
/// Largest `k` of a search.
pub const EDGESTORE_VECTOR_MAX_K: usize = 10000;
/// Most metadata fields on one vector.
pub const EDGESTORE_VECTOR_MAX_META_FIELDS: usize = 64;
/// Longest metadata field name, in bytes.
pub const EDGESTORE_VECTOR_MAX_META_NAME_LEN: usize = 255;
/// Longest metadata string value, in bytes.
pub const EDGESTORE_VECTOR_MAX_META_STR_LEN: usize = 4096;
/// Longest collection name, in bytes.
pub const EDGESTORE_VECTOR_MAX_NAME_LEN: usize = 255;
/// Most conditions in one `edgestore_vector_search_options`.
pub const EDGESTORE_VECTOR_MAX_CONDITIONS: usize = 64;
/// Most items of one `edgestore_vector_put_batch()` and most queries of one
/// `edgestore_vector_search_batch()`.
pub const EDGESTORE_VECTOR_MAX_BATCH: usize = 1048576;

const _: () = assert!(EDGESTORE_VECTOR_MAX_KEY_LEN == MAX_VECTOR_KEY_LEN);
const _: () = assert!(EDGESTORE_VECTOR_MAX_DIM == MAX_DIM);
const _: () = assert!(EDGESTORE_VECTOR_MAX_K == MAX_K);
const _: () = assert!(EDGESTORE_VECTOR_MAX_META_FIELDS == MAX_META_FIELDS);
const _: () = assert!(EDGESTORE_VECTOR_MAX_META_NAME_LEN == MAX_META_NAME_LEN);
const _: () = assert!(EDGESTORE_VECTOR_MAX_META_STR_LEN == MAX_META_STR_LEN);
const _: () = assert!(EDGESTORE_VECTOR_MAX_NAME_LEN == MAX_COLLECTION_NAME_LEN);

/// A vector collection of an open database: vectors of one dimension, metric
/// and element type, each under a key, with optional metadata and TTL.
///
/// Create with `edgestore_vector_create()` or `edgestore_vector_open()`,
/// release with `edgestore_vector_free()`. Lifetime: bound to the database
/// handle it came from; after `edgestore_close()` of that database every call
/// on the collection returns `EDGESTORE_CLOSED` (free it all the same). The
/// data outlives the handle: reopening the database and the collection finds
/// the vectors and the persisted index. Thread safety: one handle may be used
/// from any number of threads at once (searches run in parallel).
/// A handle is an opaque token: a freed handle is reported as
/// `EDGESTORE_CLOSED`, a foreign value as `EDGESTORE_INVALID_ARGUMENT`.
pub struct edgestore_vector_collection {
    _opaque: [u8; 0],
}

/// How a collection measures distance. Smaller is always closer, and the
/// collection's metric is the one every search uses.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum edgestore_vector_metric {
    /// Squared Euclidean distance `sum((q - x)^2)`.
    EDGESTORE_VECTOR_L2 = 0,
    /// Cosine distance `1 - q.x / (|q| |x|)`, in [0, 2]. Zero vectors are refused.
    EDGESTORE_VECTOR_COSINE = 1,
    /// Negative inner product `-q.x`.
    EDGESTORE_VECTOR_INNER_PRODUCT = 2,
}

/// Element type of a vector buffer (and the type a collection stores).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum edgestore_vector_dtype {
    /// `float` (IEEE binary32); the buffer must be 4-byte aligned.
    EDGESTORE_VECTOR_F32 = 0,
    /// IEEE binary16 given as `uint16_t` bit patterns; 2-byte aligned.
    EDGESTORE_VECTOR_F16 = 1,
    /// `int8_t` elements with a positive, finite per-vector scale: element `i`
    /// is `data[i] * scale`.
    EDGESTORE_VECTOR_I8 = 2,
}

/// Type of an `edgestore_meta_value`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum edgestore_meta_type {
    /// A signed 64-bit integer in `int_value`.
    EDGESTORE_META_I64 = 0,
    /// A double in `float_value` (NaN is refused).
    EDGESTORE_META_F64 = 1,
    /// A UTF-8 string in `str` / `str_len` (at most 4096 bytes).
    EDGESTORE_META_STR = 2,
    /// A boolean in `int_value`: 0 or 1 (other values are refused).
    EDGESTORE_META_BOOL = 3,
}

/// Comparison of an `edgestore_vector_condition`. Numbers (I64 and F64)
/// compare with numbers by value, strings with strings (bytewise), booleans
/// with booleans (false < true); a field of another type never matches
/// (except under `EDGESTORE_VECTOR_OP_NE`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum edgestore_vector_op {
    /// The field exists and equals the value.
    EDGESTORE_VECTOR_OP_EQ = 0,
    /// Not `EDGESTORE_VECTOR_OP_EQ`: the field is missing, of another type,
    /// or different.
    EDGESTORE_VECTOR_OP_NE = 1,
    /// The field exists and is less than the value.
    EDGESTORE_VECTOR_OP_LT = 2,
    /// The field exists and is less than or equal to the value.
    EDGESTORE_VECTOR_OP_LE = 3,
    /// The field exists and is greater than the value.
    EDGESTORE_VECTOR_OP_GT = 4,
    /// The field exists and is greater than or equal to the value.
    EDGESTORE_VECTOR_OP_GE = 5,
    /// The field exists (the value is ignored).
    EDGESTORE_VECTOR_OP_EXISTS = 6,
}

/// How the conditions of an `edgestore_vector_search_options` combine.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum edgestore_vector_match {
    /// Every condition must hold.
    EDGESTORE_VECTOR_MATCH_ALL = 0,
    /// At least one condition must hold.
    EDGESTORE_VECTOR_MATCH_ANY = 1,
}

/// A typed metadata value. Only the member `kind` selects is read (or, from
/// `edgestore_vector_get_meta()`, written); zero-initialise the rest.
///
/// Plain data owned by the caller: read only during the call it is passed to
/// (the library keeps no pointer into it), or written by
/// `edgestore_vector_get_meta()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct edgestore_meta_value {
    /// An `edgestore_meta_type`.
    pub kind: u32,
    /// The value of an `EDGESTORE_META_I64`, or 0/1 for `EDGESTORE_META_BOOL`.
    pub int_value: i64,
    /// The value of an `EDGESTORE_META_F64`.
    pub float_value: f64,
    /// The bytes of an `EDGESTORE_META_STR` (UTF-8; may be NULL when `str_len` is 0).
    pub str: *const u8,
    /// Length of `str` in bytes.
    pub str_len: usize,
}

/// One metadata field of a vector: a UTF-8 name (at most 255 bytes; unique
/// within one vector) and its value.
///
/// Plain data owned by the caller: read only during the call it is passed to
/// (the library keeps no pointer into it); no thread-safety concerns of its own.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct edgestore_vector_meta {
    /// Field name bytes (UTF-8).
    pub name: *const u8,
    /// Length of `name`.
    pub name_len: usize,
    /// The value.
    pub value: edgestore_meta_value,
}

/// One condition of a search filter: `field <op> value`.
///
/// Plain data owned by the caller: read only during the call it is passed to
/// (the library keeps no pointer into it); no thread-safety concerns of its own.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct edgestore_vector_condition {
    /// Field name bytes (UTF-8).
    pub field: *const u8,
    /// Length of `field`.
    pub field_len: usize,
    /// An `edgestore_vector_op`.
    pub op: u32,
    /// The value compared with (ignored by `EDGESTORE_VECTOR_OP_EXISTS`).
    pub value: edgestore_meta_value,
}

/// Optional knobs of a search: a key-prefix filter and metadata conditions
/// (both must hold when both are given), the HNSW candidate list size and a
/// request for an exact scan. Zero-initialise it (`= {0}`) for "no filter,
/// collection defaults".
///
/// Plain data owned by the caller: read only during the call it is passed to
/// (the library keeps no pointer into it); no thread-safety concerns of its own.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct edgestore_vector_search_options {
    /// Only keys starting with these bytes match (`key_prefix_len` 0: any key).
    pub key_prefix: *const u8,
    /// Length of `key_prefix` (at most `EDGESTORE_VECTOR_MAX_KEY_LEN`).
    pub key_prefix_len: usize,
    /// `condition_count` conditions on metadata (NULL when the count is 0).
    pub conditions: *const edgestore_vector_condition,
    /// Number of conditions (at most `EDGESTORE_VECTOR_MAX_CONDITIONS`).
    pub condition_count: usize,
    /// An `edgestore_vector_match`: how the conditions combine.
    pub match_mode: u32,
    /// 1: scan every candidate exactly instead of using the graph; 0: let the
    /// planner choose (exact for small collections and selective filters).
    pub exact: u32,
    /// HNSW candidate list size, 1..=100000 (larger: slower and more
    /// accurate); 0: the collection's `ef_search`.
    pub ef: usize,
}

/// One vector of `edgestore_vector_put_batch()`. Dimension and element type
/// are given once for the whole batch.
///
/// Plain data owned by the caller: read only during the call it is passed to
/// (the library keeps no pointer into it); no thread-safety concerns of its own.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct edgestore_vector_item {
    /// Key bytes (at most `EDGESTORE_VECTOR_MAX_KEY_LEN`; NULL when `key_len` is 0).
    pub key: *const u8,
    /// Length of `key`.
    pub key_len: usize,
    /// `dim` elements of the batch's element type, aligned for it.
    pub data: *const c_void,
    /// Scale of an `EDGESTORE_VECTOR_I8` vector (positive, finite); ignored otherwise.
    pub scale: f32,
    /// Seconds until the vector expires; 0 = never.
    pub ttl_seconds: u32,
    /// `metadata_count` fields (NULL when the count is 0).
    pub metadata: *const edgestore_vector_meta,
    /// Number of metadata fields (at most `EDGESTORE_VECTOR_MAX_META_FIELDS`).
    pub metadata_count: usize,
}

/// Index parameters of a collection, fixed at creation. Get the defaults with
/// `edgestore_vector_index_params_default()` and change what you need.
///
/// Plain data owned by the caller, read by `edgestore_vector_create()` and
/// written by `edgestore_vector_index_params_default()`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct edgestore_vector_index_params {
    /// HNSW links per node on upper layers, 2..=128 (level 0 keeps twice as many).
    pub hnsw_m: usize,
    /// HNSW candidate list size while inserting, 1..=10000.
    pub ef_construction: usize,
    /// Default HNSW candidate list size while searching, 1..=10000.
    pub ef_search: usize,
    /// Collections with at most this many live vectors are searched exactly
    /// (at most 4294967295).
    pub exact_threshold: usize,
    /// Memory the HNSW links may take, in bytes (> 0); vectors
    /// arriving beyond it are searched exactly alongside the graph.
    pub max_graph_bytes: usize,
}

/// What a collection was created with (`edgestore_vector_get_info()`).
///
/// Plain data owned by the caller, written by the call it is passed to; no
/// thread-safety concerns of its own.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct edgestore_vector_info {
    /// Elements per vector.
    pub dim: usize,
    /// An `edgestore_vector_metric`.
    pub metric: u32,
    /// An `edgestore_vector_dtype`: the stored element type.
    pub dtype: u32,
    /// Index parameters.
    pub params: edgestore_vector_index_params,
}

/// Counters of a collection's index (`edgestore_vector_get_stats()`).
///
/// Plain data owned by the caller, written by the call it is passed to; no
/// thread-safety concerns of its own.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct edgestore_vector_stats {
    /// Vectors alive now (expired ones not yet noticed may be counted).
    pub live: u64,
    /// Nodes in the index, superseded and deleted versions included.
    pub nodes: u64,
    /// Nodes linked into the HNSW graph by this process.
    pub graph_inserts: u64,
    /// 1 if the index was loaded from its file when the collection was opened.
    pub loaded_from_file: u32,
    /// 1 if the index had to be rebuilt from the records (file missing, stale or corrupt).
    pub rebuilt_from_records: u32,
    /// Records applied on top of the loaded file when the collection was opened.
    pub replayed_records: u64,
    /// Searches answered by exact scan.
    pub exact_searches: u64,
    /// Searches answered through the HNSW graph.
    pub hnsw_searches: u64,
    /// Times the index file was written.
    pub persists: u64,
    /// Times the index dropped dead versions and rebuilt its graph.
    pub vacuums: u64,
    /// Approximate memory held by the index, in bytes.
    pub memory_bytes: u64,
}

/// What a collection handle holds.
pub(crate) struct Coll {
    /// Token of the database handle the collection came from.
    db: usize,
    ns: Vec<u8>,
    name: String,
}

pub(crate) static COLLECTIONS: Registry<Coll> = Registry::new(Kind::Collection);

const OK: Result<edgestore_status, Fail> = Ok(edgestore_status::EDGESTORE_OK);

/// Runs `f` on the core collection behind a handle.
fn with_coll<R>(
    handle: *const edgestore_vector_collection,
    f: impl FnOnce(&Collection<'_>, &Coll, &Engine) -> Result<R, Fail>,
) -> Result<R, Fail> {
    let c = COLLECTIONS.get(handle, "collection")?;
    let d = DBS
        .get(std::ptr::without_provenance::<edgestore_db>(c.db), "db")
        .map_err(|_| {
            Fail::new(
                edgestore_status::EDGESTORE_CLOSED,
                "the database of this collection was closed",
            )
        })?;
    let coll = d.engine.vectors(&c.ns, &c.name)?;
    f(&coll, &c, &d.engine)
}

fn parse_metric(m: u32) -> Result<Metric, Fail> {
    use edgestore_vector_metric::*;
    Ok(match m {
        x if x == EDGESTORE_VECTOR_L2 as u32 => Metric::L2,
        x if x == EDGESTORE_VECTOR_COSINE as u32 => Metric::Cosine,
        x if x == EDGESTORE_VECTOR_INNER_PRODUCT as u32 => Metric::InnerProduct,
        _ => return Err(Fail::invalid(format!("unknown metric {m}"))),
    })
}

fn metric_code(m: Metric) -> u32 {
    use edgestore_vector_metric::*;
    (match m {
        Metric::L2 => EDGESTORE_VECTOR_L2,
        Metric::Cosine => EDGESTORE_VECTOR_COSINE,
        Metric::InnerProduct => EDGESTORE_VECTOR_INNER_PRODUCT,
    }) as u32
}

fn parse_dtype(d: u32) -> Result<DType, Fail> {
    use edgestore_vector_dtype::*;
    Ok(match d {
        x if x == EDGESTORE_VECTOR_F32 as u32 => DType::F32,
        x if x == EDGESTORE_VECTOR_F16 as u32 => DType::F16,
        x if x == EDGESTORE_VECTOR_I8 as u32 => DType::I8,
        _ => return Err(Fail::invalid(format!("unknown element type {d}"))),
    })
}

fn dtype_code(d: DType) -> u32 {
    use edgestore_vector_dtype::*;
    (match d {
        DType::F32 => EDGESTORE_VECTOR_F32,
        DType::F16 => EDGESTORE_VECTOR_F16,
        DType::I8 => EDGESTORE_VECTOR_I8,
    }) as u32
}

/// Checks an output array of `count` `T`s: non-NULL (when `count > 0`) and aligned.
fn out_array<T>(ptr: *mut T, count: usize, what: &str) -> Result<(), Fail> {
    if count > 0 && ptr.is_null() {
        return Err(Fail::invalid(format!("out-parameter {what} is NULL")));
    }
    if !ptr.is_null() && !ptr.is_aligned() {
        return Err(Fail::invalid(format!(
            "{what} is not aligned to {} bytes",
            std::mem::align_of::<T>()
        )));
    }
    Ok(())
}

/// A UTF-8 string argument of at most `max` bytes.
///
/// # Safety
/// As for `args::bytes`.
unsafe fn text<'a>(ptr: *const u8, len: usize, max: usize, what: &str) -> Result<&'a str, Fail> {
    // SAFETY: forwarded contract.
    let b = unsafe { args::bytes(ptr, len, max, what)? };
    std::str::from_utf8(b).map_err(|_| Fail::invalid(format!("{what} is not valid UTF-8")))
}

/// A vector key argument.
///
/// # Safety
/// As for `args::bytes`.
unsafe fn vkey<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a [u8], Fail> {
    // SAFETY: forwarded contract.
    unsafe { args::bytes(ptr, len, MAX_VECTOR_KEY_LEN, what) }
}

/// A typed vector argument: `dim` elements of `dtype` at `data`.
///
/// # Safety
/// When non-NULL and `dim <= EDGESTORE_VECTOR_MAX_DIM`, `data` must point to
/// `dim` elements of `dtype`, valid for `'a`.
unsafe fn vector_in<'a>(
    data: *const c_void,
    dtype: u32,
    dim: usize,
    scale: f32,
    what: &str,
) -> Result<VectorInput<'a>, Fail> {
    let dtype = parse_dtype(dtype)?;
    if dim > MAX_DIM {
        return Err(Fail::invalid(format!(
            "{what} has dimension {dim}; the limit is {MAX_DIM}"
        )));
    }
    Ok(match dtype {
        DType::F32 => {
            // SAFETY: forwarded contract; `array` checks NULL, alignment and
            // the dimension limit before reading.
            VectorInput::F32(unsafe { args::array(data.cast::<f32>(), dim, MAX_DIM, what)? })
        }
        DType::F16 => {
            // SAFETY: as above.
            VectorInput::F16(unsafe { args::array(data.cast::<u16>(), dim, MAX_DIM, what)? })
        }
        DType::I8 => {
            // SAFETY: as above.
            let data = unsafe { args::array(data.cast::<i8>(), dim, MAX_DIM, what)? };
            VectorInput::I8 { data, scale }
        }
    })
}

/// A metadata value.
///
/// # Safety
/// `v.str` must cover `v.str_len` bytes when non-NULL and the kind is STR.
unsafe fn meta_value(v: &edgestore_meta_value, what: &str) -> Result<MetaValue, Fail> {
    use edgestore_meta_type::*;
    Ok(match v.kind {
        x if x == EDGESTORE_META_I64 as u32 => MetaValue::I64(v.int_value),
        x if x == EDGESTORE_META_F64 as u32 => MetaValue::F64(v.float_value),
        x if x == EDGESTORE_META_STR as u32 => {
            // SAFETY: forwarded contract.
            let s = unsafe { text(v.str, v.str_len, MAX_META_STR_LEN, what)? };
            MetaValue::Str(s.to_string())
        }
        x if x == EDGESTORE_META_BOOL as u32 => match v.int_value {
            0 => MetaValue::Bool(false),
            1 => MetaValue::Bool(true),
            other => {
                return Err(Fail::invalid(format!(
                    "{what} is a boolean but int_value is {other} (expected 0 or 1)"
                )))
            }
        },
        other => {
            return Err(Fail::invalid(format!(
                "{what} has unknown metadata type {other}"
            )))
        }
    })
}

/// Metadata fields; `None` when `count` is 0.
///
/// # Safety
/// `ptr` must point to `count` fields whose pointers cover their lengths.
unsafe fn metadata_in(
    ptr: *const edgestore_vector_meta,
    count: usize,
) -> Result<Option<Metadata>, Fail> {
    // SAFETY: forwarded contract.
    let fields = unsafe { args::array(ptr, count, MAX_META_FIELDS, "metadata")? };
    if fields.is_empty() {
        return Ok(None);
    }
    let mut m = Metadata::new();
    for (i, f) in fields.iter().enumerate() {
        // SAFETY: forwarded contract.
        let name = unsafe {
            text(
                f.name,
                f.name_len,
                MAX_META_NAME_LEN,
                &format!("metadata[{i}].name"),
            )?
        };
        // SAFETY: forwarded contract.
        let value = unsafe { meta_value(&f.value, &format!("metadata[{i}].value"))? };
        if m.insert(name.to_string(), value).is_some() {
            return Err(Fail::invalid(format!(
                "metadata field {name:?} is given twice"
            )));
        }
    }
    Ok(Some(m))
}

/// The filter and parameters of a search; NULL options are the defaults.
///
/// # Safety
/// `options`, when non-NULL, must point to an options struct whose pointers
/// cover their lengths.
unsafe fn search_options(
    options: *const edgestore_vector_search_options,
) -> Result<(Option<Filter>, SearchParams), Fail> {
    use edgestore_vector_op::*;
    if options.is_null() {
        return Ok((None, SearchParams::default()));
    }
    if !options.is_aligned() {
        return Err(Fail::invalid("options is not aligned"));
    }
    // SAFETY: non-NULL and aligned; the caller guarantees it is readable.
    let o = unsafe { &*options };
    let exact = match o.exact {
        0 => false,
        1 => true,
        other => {
            return Err(Fail::invalid(format!(
                "options.exact is {other} (expected 0 or 1)"
            )))
        }
    };
    let params = SearchParams {
        ef: (o.ef != 0).then_some(o.ef),
        exact,
    };
    let any = match o.match_mode {
        x if x == edgestore_vector_match::EDGESTORE_VECTOR_MATCH_ALL as u32 => false,
        x if x == edgestore_vector_match::EDGESTORE_VECTOR_MATCH_ANY as u32 => true,
        other => {
            return Err(Fail::invalid(format!(
                "options.match_mode is {other} (expected EDGESTORE_VECTOR_MATCH_ALL or _ANY)"
            )))
        }
    };
    // SAFETY: forwarded contract.
    let prefix = unsafe { vkey(o.key_prefix, o.key_prefix_len, "options.key_prefix")? };
    // SAFETY: forwarded contract.
    let conds = unsafe {
        args::array(
            o.conditions,
            o.condition_count,
            EDGESTORE_VECTOR_MAX_CONDITIONS,
            "options.conditions",
        )?
    };
    let mut parts = Vec::new();
    for (i, c) in conds.iter().enumerate() {
        let what = format!("options.conditions[{i}]");
        // SAFETY: forwarded contract.
        let field = unsafe {
            text(
                c.field,
                c.field_len,
                MAX_META_NAME_LEN,
                &format!("{what}.field"),
            )?
        }
        .to_string();
        let op = c.op;
        if op == EDGESTORE_VECTOR_OP_EXISTS as u32 {
            parts.push(Filter::Exists(field));
            continue;
        }
        // SAFETY: forwarded contract.
        let v = unsafe { meta_value(&c.value, &format!("{what}.value"))? };
        let range =
            |min: Option<MetaValue>, max: Option<MetaValue>, inclusive: bool| Filter::Range {
                field: field.clone(),
                min,
                max,
                inclusive,
            };
        parts.push(match op {
            x if x == EDGESTORE_VECTOR_OP_EQ as u32 => Filter::Eq(field.clone(), v),
            x if x == EDGESTORE_VECTOR_OP_NE as u32 => {
                Filter::Not(Box::new(Filter::Eq(field.clone(), v)))
            }
            x if x == EDGESTORE_VECTOR_OP_LT as u32 => range(None, Some(v), false),
            x if x == EDGESTORE_VECTOR_OP_LE as u32 => range(None, Some(v), true),
            x if x == EDGESTORE_VECTOR_OP_GT as u32 => range(Some(v), None, false),
            x if x == EDGESTORE_VECTOR_OP_GE as u32 => range(Some(v), None, true),
            other => {
                return Err(Fail::invalid(format!(
                    "{what}.op is {other}, not an edgestore_vector_op"
                )))
            }
        });
    }
    let meta = match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ if any => Some(Filter::Or(parts)),
        _ => Some(Filter::And(parts)),
    };
    let key = (!prefix.is_empty()).then(|| Filter::KeyPrefix(prefix.to_vec()));
    let filter = match (key, meta) {
        (Some(k), Some(m)) => Some(Filter::And(vec![k, m])),
        (k, m) => k.or(m),
    };
    Ok((filter, params))
}

/// Where search results go: `slots` result slots (`n` queries times `k`).
struct Results {
    keys: *mut u8,
    stride: usize,
    lens: *mut usize,
    dists: *mut f32,
    counts: *mut usize,
    k: usize,
}

impl Results {
    /// Checks `k`, the number of queries and every output pointer before the
    /// search runs.
    fn check(
        n: usize,
        k: usize,
        keys: *mut u8,
        stride: usize,
        lens: *mut usize,
        dists: *mut f32,
        counts: *mut usize,
    ) -> Result<Results, Fail> {
        if k == 0 || k > MAX_K {
            return Err(Fail::invalid(format!("k must be in 1..={MAX_K}, got {k}")));
        }
        let slots = n
            .checked_mul(k)
            .ok_or_else(|| Fail::invalid("queries times k overflows"))?;
        let key_bytes = slots
            .checked_mul(stride)
            .filter(|&b| b <= isize::MAX as usize)
            .ok_or_else(|| {
                Fail::invalid(format!(
                    "key_stride {stride} times {slots} result slots overflows"
                ))
            })?;
        if keys.is_null() && key_bytes > 0 {
            return Err(Fail::invalid(format!(
                "out-parameter keys_out is NULL but key_stride is {stride}"
            )));
        }
        out_array(lens, slots, "key_lens_out")?;
        out_array(dists, slots, "distances_out")?;
        out_array(counts, n.max(1), "count_out")?;
        Ok(Results {
            keys,
            stride,
            lens,
            dists,
            counts,
            k,
        })
    }

    /// Writes the hits of every query. If a key does not fit `stride`, only
    /// the counts and key lengths are written and the result is
    /// `EDGESTORE_BUFFER_TOO_SMALL`.
    ///
    /// # Safety
    /// The arrays checked by [`Results::check`] must be writable for
    /// `hits.len() * k` slots (`counts` for `hits.len()` entries).
    unsafe fn emit(&self, hits: &[Vec<SearchHit>]) -> Result<edgestore_status, Fail> {
        let mut longest = 0;
        for (q, hs) in hits.iter().enumerate() {
            debug_assert!(hs.len() <= self.k);
            for (i, h) in hs.iter().enumerate() {
                longest = longest.max(h.key.len());
                // SAFETY: slot q*k+i < n*k, which the caller guarantees is writable.
                unsafe { self.lens.add(q * self.k + i).write(h.key.len()) };
            }
            // SAFETY: q < n entries of counts are writable.
            unsafe { self.counts.add(q).write(hs.len()) };
        }
        if longest > self.stride {
            return Err(Fail::new(
                edgestore_status::EDGESTORE_BUFFER_TOO_SMALL,
                format!(
                    "a result key is {longest} bytes but key_stride is {}; the counts and key \
                     lengths were written, keys and distances were not (a key_stride of \
                     EDGESTORE_VECTOR_MAX_KEY_LEN always fits)",
                    self.stride
                ),
            ));
        }
        for (q, hs) in hits.iter().enumerate() {
            for (i, h) in hs.iter().enumerate() {
                let slot = q * self.k + i;
                // SAFETY: slot < n*k; the distance array and slot*stride +
                // key.len() <= n*k*stride key bytes are writable per the
                // contract; the key is a fresh Rust allocation, so no overlap.
                unsafe {
                    self.dists.add(slot).write(h.distance);
                    if !h.key.is_empty() {
                        std::ptr::copy_nonoverlapping(
                            h.key.as_ptr(),
                            self.keys.add(slot * self.stride),
                            h.key.len(),
                        );
                    }
                }
            }
        }
        OK
    }
}

/// The snapshot of a search or get through a snapshot, checked to come from
/// the collection's database.
fn snapshot_for(
    snapshot: *mut edgestore_snapshot,
    c: &Coll,
) -> Result<std::sync::Arc<crate::snapshot::Snap>, Fail> {
    let s = SNAPSHOTS.get(snapshot, "snapshot")?;
    if s.db != c.db {
        return Err(Fail::invalid(
            "the snapshot was taken from another database handle than the collection's",
        ));
    }
    Ok(s)
}

/// Fills `*params_out` with the default index parameters (those of a
/// collection created with NULL params; in this version M 16, ef_construction
/// 200, ef_search 64, 1 GiB of links; the exact-search threshold is tuned by
/// the engine and may change between versions).
///
/// # Safety
/// `params_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgestore_vector_index_params_default(
    params_out: *mut edgestore_vector_index_params,
) -> edgestore_status {
    boundary("edgestore_vector_index_params_default", || {
        args::out(params_out, "params_out")?;
        let c = VectorConfig::new(1, Metric::L2, DType::F32);
        let p = edgestore_vector_index_params {
            hnsw_m: c.hnsw_m,
            ef_construction: c.ef_construction,
            ef_search: c.ef_search,
            exact_threshold: c.exact_threshold,
            max_graph_bytes: c.max_graph_bytes,
        };
        // SAFETY: params_out was checked non-NULL; the caller guarantees it is writable.
        unsafe { args::write(params_out, p) };
        OK
    })
}

/// Creates the collection `name` in namespace `ns` of `db` (or opens it when
/// it exists with exactly this configuration) and returns a handle.
///
/// `name` is UTF-8, 1..=255 bytes. `dim` is 1..=`EDGESTORE_VECTOR_MAX_DIM`;
/// `metric` an `edgestore_vector_metric`; `dtype` the `edgestore_vector_dtype`
/// vectors are stored as (puts must supply it; queries may use any type).
/// `params` may be NULL for the defaults. The catalog record goes through the
/// WAL like any write. Ownership: the caller frees `*coll_out` with
/// `edgestore_vector_free()`. Errors: `EDGESTORE_INVALID_ARGUMENT` (NULL or
/// bad argument, unknown enum value, parameter out of range, or the collection
/// exists with another configuration), `EDGESTORE_CLOSED`, `EDGESTORE_IO`,
/// `EDGESTORE_POISONED`. Thread safety: any thread.
///
/// # Safety
/// Each non-NULL input pointer must point to at least its length in readable
/// bytes; `params` NULL or readable; `coll_out` NULL or writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn edgestore_vector_create(
    db: *mut edgestore_db,
    ns: *const u8,
    ns_len: usize,
    name: *const u8,
    name_len: usize,
    dim: usize,
    metric: u32,
    dtype: u32,
    params: *const edgestore_vector_index_params,
    coll_out: *mut *mut edgestore_vector_collection,
) -> edgestore_status {
    boundary("edgestore_vector_create", || {
        args::out(coll_out, "coll_out")?;
        // SAFETY: the caller guarantees each non-NULL pointer covers its length.
        let (ns, name) = unsafe {
            (
                args::namespace(ns, ns_len)?,
                text(name, name_len, MAX_COLLECTION_NAME_LEN, "name")?,
            )
        };
        let mut config = VectorConfig::new(dim, parse_metric(metric)?, parse_dtype(dtype)?);
        if !params.is_null() {
            if !params.is_aligned() {
                return Err(Fail::invalid("params is not aligned"));
            }
            // SAFETY: non-NULL and aligned; the caller guarantees it is readable.
            let p = unsafe { params.read() };
            config.hnsw_m = p.hnsw_m;
            config.ef_construction = p.ef_construction;
            config.ef_search = p.ef_search;
            config.exact_threshold = p.exact_threshold;
            config.max_graph_bytes = p.max_graph_bytes;
        }
        let d = DBS.get(db, "db")?;
        d.engine.create_collection(ns, name, config)?;
        let handle = COLLECTIONS.insert(Coll {
            db: db.addr(),
            ns: ns.to_vec(),
            name: name.to_string(),
        })?;
        // SAFETY: coll_out was checked non-NULL; the caller guarantees it is writable.
        unsafe { args::write(coll_out, handle) };
        OK
    })
}

/// Opens the existing collection `name` in namespace `ns` of `db`. Its
/// configuration is the one it was created with (`edgestore_vector_get_info()`).
/// The first open in a process loads the persisted index (rebuilding it from
/// the records only if the file is missing, stale or damaged).
///
/// Ownership: the caller frees `*coll_out` with `edgestore_vector_free()`.
/// Errors: `EDGESTORE_NOT_FOUND` (no such collection),
/// `EDGESTORE_INVALID_ARGUMENT`, `EDGESTORE_CLOSED`, `EDGESTORE_IO`,
/// `EDGESTORE_CORRUPTION`. Thread safety: any thread.
///
/// # Safety
/// Each non-NULL input pointer must point to at least its length in readable
/// bytes; `coll_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgestore_vector_open(
    db: *mut edgestore_db,
    ns: *const u8,
    ns_len: usize,
    name: *const u8,
    name_len: usize,
    coll_out: *mut *mut edgestore_vector_collection,
) -> edgestore_status {
    boundary("edgestore_vector_open", || {
        args::out(coll_out, "coll_out")?;
        // SAFETY: the caller guarantees each non-NULL pointer covers its length.
        let (ns, name) = unsafe {
            (
                args::namespace(ns, ns_len)?,
                text(name, name_len, MAX_COLLECTION_NAME_LEN, "name")?,
            )
        };
        let d = DBS.get(db, "db")?;
        if let Err(e) = d.engine.vectors(ns, name) {
            if matches!(e, edgestore_core::Error::InvalidArgument(_))
                && !name.is_empty()
                && !d
                    .engine
                    .list_collections(ns)?
                    .iter()
                    .any(|(n, _)| n == name)
            {
                return Err(Fail::new(
                    edgestore_status::EDGESTORE_NOT_FOUND,
                    e.to_string(),
                ));
            }
            return Err(e.into());
        }
        let handle = COLLECTIONS.insert(Coll {
            db: db.addr(),
            ns: ns.to_vec(),
            name: name.to_string(),
        })?;
        // SAFETY: coll_out was checked non-NULL; the caller guarantees it is writable.
        unsafe { args::write(coll_out, handle) };
        OK
    })
}

/// Frees a collection handle (the collection and its vectors stay in the
/// database). NULL is accepted; freeing twice returns `EDGESTORE_CLOSED`.
#[no_mangle]
pub extern "C" fn edgestore_vector_free(
    coll: *mut edgestore_vector_collection,
) -> edgestore_status {
    boundary("edgestore_vector_free", || {
        COLLECTIONS.remove(coll, "collection")?;
        OK
    })
}

/// Writes the collection's configuration to `*info_out`.
/// Errors: `EDGESTORE_INVALID_ARGUMENT`, `EDGESTORE_CLOSED`.
///
/// # Safety
/// `info_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgestore_vector_get_info(
    coll: *mut edgestore_vector_collection,
    info_out: *mut edgestore_vector_info,
) -> edgestore_status {
    boundary("edgestore_vector_get_info", || {
        args::out(info_out, "info_out")?;
        let c = with_coll(coll, |c, _, _| Ok(*c.config()))?;
        let info = edgestore_vector_info {
            dim: c.dim,
            metric: metric_code(c.metric),
            dtype: dtype_code(c.dtype),
            params: edgestore_vector_index_params {
                hnsw_m: c.hnsw_m,
                ef_construction: c.ef_construction,
                ef_search: c.ef_search,
                exact_threshold: c.exact_threshold,
                max_graph_bytes: c.max_graph_bytes,
            },
        };
        // SAFETY: info_out was checked non-NULL; the caller guarantees it is writable.
        unsafe { args::write(info_out, info) };
        OK
    })
}

/// Stores a vector under `key` (replacing any earlier one: last writer wins),
/// with optional metadata, expiring `ttl_seconds` from now (0 = never).
///
/// `vector` holds `dim` elements of `dtype` (aligned for it), which must be
/// the collection's element type and dimension; `scale` is the positive,
/// finite scale of an `EDGESTORE_VECTOR_I8` vector and is ignored otherwise.
/// `metadata` holds `metadata_count` fields (NULL when 0). Keys are at most
/// `EDGESTORE_VECTOR_MAX_KEY_LEN` bytes (NULL with length 0 is the empty key).
/// Returns once durable per the sync mode; the vector is searchable when the
/// call returns. Errors: `EDGESTORE_INVALID_ARGUMENT` (NULL pointer with a
/// non-zero count, wrong dimension or element type, NaN or infinite element,
/// a zero vector in a cosine collection, bad scale, misaligned buffer, key or
/// metadata over a limit, duplicate or non-UTF-8 field name, NaN metadata),
/// `EDGESTORE_CLOSED`, `EDGESTORE_IO`, `EDGESTORE_POISONED`. Nothing is
/// written on error. Thread safety: any thread.
///
/// # Safety
/// Each non-NULL pointer must point to at least its length (or count) of
/// readable elements; the pointers inside `metadata` likewise.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn edgestore_vector_put(
    coll: *mut edgestore_vector_collection,
    key: *const u8,
    key_len: usize,
    vector: *const c_void,
    dtype: u32,
    dim: usize,
    scale: f32,
    metadata: *const edgestore_vector_meta,
    metadata_count: usize,
    ttl_seconds: u32,
) -> edgestore_status {
    boundary("edgestore_vector_put", || {
        // SAFETY: the caller guarantees each non-NULL pointer covers its length.
        let (key, v, meta) = unsafe {
            (
                vkey(key, key_len, "key")?,
                vector_in(vector, dtype, dim, scale, "vector")?,
                metadata_in(metadata, metadata_count)?,
            )
        };
        with_coll(coll, |c, _, _| {
            Ok(c.put(key, v, meta.as_ref(), ttl_seconds)?)
        })?;
        OK
    })
}

/// Stores `count` vectors atomically (one WAL record: all or none, also across
/// a crash). Every item holds `dim` elements of `dtype`. Later items win over
/// earlier ones with the same key. `count` may be 0 (nothing happens) and is
/// at most `EDGESTORE_VECTOR_MAX_BATCH`; the encoded batch at most 256 MiB.
/// Errors as for `edgestore_vector_put()` (the message names the bad item);
/// nothing is written on error.
///
/// # Safety
/// `items` must point to `count` readable items whose pointers cover their
/// lengths (and `dim` elements of `dtype`).
#[no_mangle]
pub unsafe extern "C" fn edgestore_vector_put_batch(
    coll: *mut edgestore_vector_collection,
    items: *const edgestore_vector_item,
    count: usize,
    dtype: u32,
    dim: usize,
) -> edgestore_status {
    boundary("edgestore_vector_put_batch", || {
        // SAFETY: forwarded contract.
        let items = unsafe { args::array(items, count, EDGESTORE_VECTOR_MAX_BATCH, "items")? };
        let mut metas = Vec::with_capacity(items.len());
        let mut parsed = Vec::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            let at = |f: Fail| Fail::new(f.status, format!("items[{i}]: {}", f.message));
            // SAFETY: forwarded contract (each item's pointers cover their lengths).
            let (key, v, meta) = unsafe {
                (
                    vkey(it.key, it.key_len, "key").map_err(at)?,
                    vector_in(it.data, dtype, dim, it.scale, "vector").map_err(at)?,
                    metadata_in(it.metadata, it.metadata_count).map_err(at)?,
                )
            };
            metas.push(meta);
            parsed.push((key, v, it.ttl_seconds));
        }
        let puts: Vec<VectorPut<'_>> = parsed
            .iter()
            .zip(&metas)
            .map(|(&(key, vector, ttl_secs), meta)| VectorPut {
                key,
                vector,
                metadata: meta.as_ref(),
                ttl_secs,
            })
            .collect();
        if puts.is_empty() {
            // Still check the handle.
            with_coll(coll, |_, _, _| Ok(()))?;
            return OK;
        }
        with_coll(coll, |c, _, _| match c.put_batch(&puts) {
            Ok(()) => Ok(()),
            Err(e) => {
                // Name the item the core refused: stage the items one by one
                // into a scratch batch (only on this error path).
                let mut scratch = edgestore_core::WriteBatch::new();
                for (i, p) in puts.iter().enumerate() {
                    if let Err(item_err) =
                        c.stage_put(&mut scratch, p.key, p.vector, p.metadata, p.ttl_secs)
                    {
                        let f = Fail::from(item_err);
                        return Err(Fail::new(f.status, format!("items[{i}]: {}", f.message)));
                    }
                    scratch.clear();
                }
                Err(e.into())
            }
        })?;
        OK
    })
}

/// Deletes the vector under `key`. Deleting a missing key is not an error.
/// From the moment this returns no search or get sees the vector.
/// Errors: `EDGESTORE_INVALID_ARGUMENT`, `EDGESTORE_CLOSED`, `EDGESTORE_IO`,
/// `EDGESTORE_POISONED`.
///
/// # Safety
/// `key` must point to `key_len` readable bytes when non-NULL.
#[no_mangle]
pub unsafe extern "C" fn edgestore_vector_delete(
    coll: *mut edgestore_vector_collection,
    key: *const u8,
    key_len: usize,
) -> edgestore_status {
    boundary("edgestore_vector_delete", || {
        // SAFETY: the caller guarantees key covers key_len bytes.
        let key = unsafe { vkey(key, key_len, "key")? };
        with_coll(coll, |c, _, _| Ok(c.delete(key)?))?;
        OK
    })
}

/// Copies a vector read back into the caller's buffer.
///
/// # Safety
/// `buf` (checked non-NULL when `cap > 0`, and aligned) must have `cap`
/// writable elements of `want`; `dim_out` checked non-NULL; `scale_out` NULL
/// or writable.
unsafe fn emit_vector(
    entry: Option<VectorEntry>,
    want: DType,
    buf: *mut c_void,
    cap: usize,
    dim_out: *mut usize,
    scale_out: *mut f32,
) -> Result<edgestore_status, Fail> {
    let Some(e) = entry else {
        return Err(Fail::new(
            edgestore_status::EDGESTORE_NOT_FOUND,
            "no live vector under this key",
        ));
    };
    let converted;
    let (src, dim, scale): (*const u8, usize, f32) = match (&e.vector, want) {
        (OwnedVector::F32(v), DType::F32) => (v.as_ptr().cast(), v.len(), 1.0),
        (OwnedVector::F16(v), DType::F16) => (v.as_ptr().cast(), v.len(), 1.0),
        (OwnedVector::I8 { data, scale }, DType::I8) => (data.as_ptr().cast(), data.len(), *scale),
        (other, DType::F32) => {
            converted = other.to_f32();
            (converted.as_ptr().cast(), converted.len(), 1.0)
        }
        (other, want) => {
            let stored = match other {
                OwnedVector::F32(_) => "f32",
                OwnedVector::F16(_) => "f16",
                OwnedVector::I8 { .. } => "i8",
            };
            return Err(Fail::invalid(format!(
                "the vector is stored as {stored}; read it as {stored} or f32, not {}",
                want.name()
            )));
        }
    };
    if dim > cap {
        // SAFETY: dim_out was checked non-NULL by the caller.
        unsafe { args::write(dim_out, dim) };
        return Err(Fail::new(
            edgestore_status::EDGESTORE_BUFFER_TOO_SMALL,
            format!("the vector has {dim} elements but buf holds {cap}; the needed count was written to dim_out"),
        ));
    }
    // SAFETY: buf holds cap >= dim writable, aligned elements of `want` (whose
    // size the source elements share); src is a fresh Rust allocation.
    unsafe {
        std::ptr::copy_nonoverlapping(src, buf.cast::<u8>(), dim * want.size());
        args::write(dim_out, dim);
        if !scale_out.is_null() {
            args::write(scale_out, scale);
        }
    }
    OK
}

/// Shared body of `edgestore_vector_get` and `edgestore_vector_snapshot_get`.
///
/// # Safety
/// As for those functions.
#[allow(clippy::too_many_arguments)]
unsafe fn get(
    coll: *mut edgestore_vector_collection,
    snapshot: Option<*mut edgestore_snapshot>,
    key: *const u8,
    key_len: usize,
    dtype: u32,
    buf: *mut c_void,
    cap: usize,
    dim_out: *mut usize,
    scale_out: *mut f32,
) -> Result<edgestore_status, Fail> {
    // SAFETY: the caller guarantees key covers key_len bytes.
    let key = unsafe { vkey(key, key_len, "key")? };
    let want = parse_dtype(dtype)?;
    if buf.is_null() && cap > 0 {
        return Err(Fail::invalid(format!("buf is NULL but cap is {cap}")));
    }
    let align = match want {
        DType::F32 => 4,
        DType::F16 => 2,
        DType::I8 => 1,
    };
    if !buf.is_null() && !buf.addr().is_multiple_of(align) {
        return Err(Fail::invalid(format!(
            "buf is not aligned to {align} bytes"
        )));
    }
    args::out(dim_out, "dim_out")?;
    if !scale_out.is_null() && !scale_out.is_aligned() {
        return Err(Fail::invalid("scale_out is not aligned"));
    }
    let entry = with_coll(coll, |c, cc, _| match snapshot {
        None => Ok(c.get(key)?),
        Some(s) => {
            let s = snapshot_for(s, cc)?;
            Ok(c.at(&s.snap).get(key)?)
        }
    })?;
    // SAFETY: buf/cap, dim_out and scale_out were checked above and are
    // covered by the contract.
    unsafe { emit_vector(entry, want, buf, cap, dim_out, scale_out) }
}

/// Reads the vector under `key` into the caller's buffer `buf` of `cap`
/// elements of `dtype`: the stored type as stored, or `EDGESTORE_VECTOR_F32`
/// for any stored type (converted; i8 elements times their scale).
///
/// On `EDGESTORE_OK`, `*dim_out` is the number of elements written and, if
/// `scale_out` is not NULL, `*scale_out` the scale of an i8 vector read as i8
/// (1.0 otherwise). If `cap` is too small, returns `EDGESTORE_BUFFER_TOO_SMALL`,
/// writes the needed count to `*dim_out` and leaves `buf` untouched; `buf` may
/// be NULL when `cap` is 0 (a size query). Metadata: `edgestore_vector_get_meta()`.
/// Errors: `EDGESTORE_NOT_FOUND` (missing, deleted or expired),
/// `EDGESTORE_INVALID_ARGUMENT` (also: another `dtype`, misaligned `buf`),
/// `EDGESTORE_CLOSED`, `EDGESTORE_IO`, `EDGESTORE_CORRUPTION`.
///
/// # Safety
/// `key` must cover `key_len` bytes when non-NULL; `buf` must have `cap`
/// writable elements of `dtype`; `dim_out` NULL or writable; `scale_out` NULL
/// or writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn edgestore_vector_get(
    coll: *mut edgestore_vector_collection,
    key: *const u8,
    key_len: usize,
    dtype: u32,
    buf: *mut c_void,
    cap: usize,
    dim_out: *mut usize,
    scale_out: *mut f32,
) -> edgestore_status {
    boundary("edgestore_vector_get", || {
        // SAFETY: same contract as this function.
        unsafe {
            get(
                coll, None, key, key_len, dtype, buf, cap, dim_out, scale_out,
            )
        }
    })
}

/// Like `edgestore_vector_get()`, reading the collection as of `snapshot`
/// (which must come from the collection's database handle, else
/// `EDGESTORE_INVALID_ARGUMENT`). Needs that database to be open
/// (`EDGESTORE_CLOSED` otherwise).
///
/// # Safety
/// As for `edgestore_vector_get()`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn edgestore_vector_snapshot_get(
    coll: *mut edgestore_vector_collection,
    snapshot: *mut edgestore_snapshot,
    key: *const u8,
    key_len: usize,
    dtype: u32,
    buf: *mut c_void,
    cap: usize,
    dim_out: *mut usize,
    scale_out: *mut f32,
) -> edgestore_status {
    boundary("edgestore_vector_snapshot_get", || {
        // SAFETY: same contract as this function.
        unsafe {
            get(
                coll,
                Some(snapshot),
                key,
                key_len,
                dtype,
                buf,
                cap,
                dim_out,
                scale_out,
            )
        }
    })
}

/// Reads the metadata field `field` of the vector under `key`.
///
/// On `EDGESTORE_OK`, `*value_out` holds the value; for a string, its bytes
/// were copied to `str_buf` (`value_out->str` is `str_buf`, or NULL for an
/// empty string, and `value_out->str_len` the length). If a string does not
/// fit `str_cap`, returns `EDGESTORE_BUFFER_TOO_SMALL` with `value_out->kind`
/// `EDGESTORE_META_STR`, `value_out->str` NULL and `value_out->str_len` the
/// needed length, `str_buf` untouched (`str_buf` may be NULL when `str_cap` is
/// 0). Errors: `EDGESTORE_NOT_FOUND` (no live vector under `key`, or it has no
/// such field; the message says which), `EDGESTORE_INVALID_ARGUMENT`,
/// `EDGESTORE_CLOSED`, `EDGESTORE_IO`, `EDGESTORE_CORRUPTION`.
///
/// # Safety
/// Input pointers must cover their lengths when non-NULL; `str_buf` must have
/// `str_cap` writable bytes; `value_out` NULL or writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn edgestore_vector_get_meta(
    coll: *mut edgestore_vector_collection,
    key: *const u8,
    key_len: usize,
    field: *const u8,
    field_len: usize,
    str_buf: *mut u8,
    str_cap: usize,
    value_out: *mut edgestore_meta_value,
) -> edgestore_status {
    boundary("edgestore_vector_get_meta", || {
        // SAFETY: the caller guarantees each non-NULL pointer covers its length.
        let (key, field) = unsafe {
            (
                vkey(key, key_len, "key")?,
                text(field, field_len, MAX_META_NAME_LEN, "field")?,
            )
        };
        if str_buf.is_null() && str_cap > 0 {
            return Err(Fail::invalid(format!(
                "str_buf is NULL but str_cap is {str_cap}"
            )));
        }
        args::out(value_out, "value_out")?;
        let Some(entry) = with_coll(coll, |c, _, _| Ok(c.get(key)?))? else {
            return Err(Fail::new(
                edgestore_status::EDGESTORE_NOT_FOUND,
                "no live vector under this key",
            ));
        };
        let Some(v) = entry.metadata.get(field) else {
            return Err(Fail::new(
                edgestore_status::EDGESTORE_NOT_FOUND,
                format!("the vector has no metadata field {field:?}"),
            ));
        };
        use edgestore_meta_type::*;
        let mut out = edgestore_meta_value {
            kind: 0,
            int_value: 0,
            float_value: 0.0,
            str: std::ptr::null(),
            str_len: 0,
        };
        match v {
            MetaValue::I64(x) => {
                out.kind = EDGESTORE_META_I64 as u32;
                out.int_value = *x;
            }
            MetaValue::F64(x) => {
                out.kind = EDGESTORE_META_F64 as u32;
                out.float_value = *x;
            }
            MetaValue::Bool(b) => {
                out.kind = EDGESTORE_META_BOOL as u32;
                out.int_value = i64::from(*b);
            }
            MetaValue::Str(s) => {
                out.kind = EDGESTORE_META_STR as u32;
                out.str_len = s.len();
                if s.len() > str_cap {
                    // SAFETY: value_out was checked non-NULL above.
                    unsafe { args::write(value_out, out) };
                    return Err(Fail::new(
                        edgestore_status::EDGESTORE_BUFFER_TOO_SMALL,
                        format!(
                            "the string is {} bytes but str_buf holds {str_cap}; the needed length was written to value_out->str_len",
                            s.len()
                        ),
                    ));
                }
                if !s.is_empty() {
                    // SAFETY: str_buf is non-NULL (str_cap >= len > 0 and the
                    // NULL check above) with str_cap writable bytes; s is a
                    // fresh Rust allocation.
                    unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), str_buf, s.len()) };
                    out.str = str_buf;
                }
            }
        }
        // SAFETY: value_out was checked non-NULL above.
        unsafe { args::write(value_out, out) };
        OK
    })
}

/// Shared body of the three searches.
///
/// # Safety
/// As for `edgestore_vector_search_batch()`.
#[allow(clippy::too_many_arguments)]
unsafe fn search(
    coll: *mut edgestore_vector_collection,
    snapshot: Option<*mut edgestore_snapshot>,
    queries: *const c_void,
    n: usize,
    dtype: u32,
    dim: usize,
    scales: &dyn Fn(usize) -> Result<f32, Fail>,
    k: usize,
    options: *const edgestore_vector_search_options,
    out: Results,
) -> Result<edgestore_status, Fail> {
    let dt = parse_dtype(dtype)?;
    if dim > MAX_DIM {
        return Err(Fail::invalid(format!(
            "query has dimension {dim}; the limit is {MAX_DIM}"
        )));
    }
    let total = n
        .checked_mul(dim)
        .filter(|t| {
            t.checked_mul(dt.size())
                .is_some_and(|b| b <= isize::MAX as usize)
        })
        .ok_or_else(|| Fail::invalid("queries times dim overflows"))?;
    if queries.is_null() && total > 0 {
        return Err(Fail::invalid("queries is NULL"));
    }
    // SAFETY: forwarded contract.
    let (filter, params) = unsafe { search_options(options)? };
    let mut inputs = Vec::with_capacity(n);
    for q in 0..n {
        let what = if n == 1 {
            "query".to_string()
        } else {
            format!("query {q}")
        };
        let ptr = if total == 0 {
            queries
        } else {
            // SAFETY: q*dim elements of dt.size() bytes lie inside the
            // n*dim-element buffer the caller provides (total checked above).
            unsafe {
                queries
                    .cast::<u8>()
                    .add(q * dim * dt.size())
                    .cast::<c_void>()
            }
        };
        // SAFETY: ptr points to dim elements of dtype inside the caller's buffer.
        inputs.push(unsafe { vector_in(ptr, dtype, dim, scales(q)?, &what)? });
    }
    let hits = with_coll(coll, |c, cc, engine| {
        let fresh;
        let snap = match snapshot {
            Some(s) => snapshot_for(s, cc)?,
            None if n == 1 => {
                return Ok(vec![c.search_with(
                    inputs[0],
                    k,
                    filter.as_ref(),
                    &params,
                )?]);
            }
            None => {
                // One read point for every query of the batch.
                fresh = crate::snapshot::Snap {
                    snap: engine.snapshot()?,
                    db: cc.db,
                };
                std::sync::Arc::new(fresh)
            }
        };
        let at = c.at(&snap.snap);
        inputs
            .iter()
            .enumerate()
            .map(|(i, q)| {
                at.search_with(*q, k, filter.as_ref(), &params)
                    .map_err(|e| {
                        let f = Fail::from(e);
                        if n == 1 {
                            f
                        } else {
                            Fail::new(f.status, format!("query {i}: {}", f.message))
                        }
                    })
            })
            .collect::<Result<Vec<_>, Fail>>()
    })?;
    // SAFETY: the output arrays were checked by Results::check for n*k slots
    // and the caller guarantees they are writable.
    unsafe { out.emit(&hits) }
}

/// Finds the `k` nearest live vectors to a query, closest first, under the
/// collection's metric, and writes them into caller-provided arrays.
///
/// The query is `dim` elements of `dtype` at `query` (any element type; `scale`
/// is used for `EDGESTORE_VECTOR_I8` only). `options` may be NULL (no filter,
/// default parameters). `k` is 1..=`EDGESTORE_VECTOR_MAX_K` and is also the
/// capacity of every result array: `distances_out` and `key_lens_out` have `k`
/// slots, `keys_out` has `k * key_stride` bytes, result `i`'s key at
/// `keys_out + i * key_stride` with length `key_lens_out[i]` (keys are not
/// NUL-terminated). `*count_out` is the number of results (fewer than `k` when
/// fewer vectors match); slots past it are untouched. Deleted, overwritten and
/// expired vectors never appear.
///
/// A `key_stride` of `EDGESTORE_VECTOR_MAX_KEY_LEN` always fits. With a smaller
/// one, a longer result key makes the call return `EDGESTORE_BUFFER_TOO_SMALL`
/// after writing only `*count_out` and `key_lens_out` (so the needed stride is
/// their maximum); keys and distances are then untouched. `keys_out` may be
/// NULL when `key_stride` is 0.
/// Errors: `EDGESTORE_INVALID_ARGUMENT` (k = 0 or above the limit, wrong
/// dimension, NaN or infinite element, bad scale, zero query in a cosine
/// collection, unknown enum value, NULL or misaligned array, `key_stride * k`
/// overflowing, bad options or NaN in a condition), `EDGESTORE_CLOSED`,
/// `EDGESTORE_IO`, `EDGESTORE_CORRUPTION`. Thread safety: any thread;
/// searches run in parallel.
///
/// # Safety
/// `query` must hold `dim` elements of `dtype`; `options` NULL or readable
/// (its pointers covering their lengths); the output arrays writable for the
/// sizes above.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn edgestore_vector_search(
    coll: *mut edgestore_vector_collection,
    query: *const c_void,
    dtype: u32,
    dim: usize,
    scale: f32,
    k: usize,
    options: *const edgestore_vector_search_options,
    keys_out: *mut u8,
    key_stride: usize,
    key_lens_out: *mut usize,
    distances_out: *mut f32,
    count_out: *mut usize,
) -> edgestore_status {
    boundary("edgestore_vector_search", || {
        let out = Results::check(
            1,
            k,
            keys_out,
            key_stride,
            key_lens_out,
            distances_out,
            count_out,
        )?;
        // SAFETY: same contract as this function.
        unsafe {
            search(
                coll,
                None,
                query,
                1,
                dtype,
                dim,
                &|_| Ok(scale),
                k,
                options,
                out,
            )
        }
    })
}

/// Like `edgestore_vector_search()`, reading the collection as of `snapshot`:
/// exactly the vectors alive when the snapshot was taken, whatever was written,
/// deleted or expired since. The snapshot must come from the collection's
/// database handle (else `EDGESTORE_INVALID_ARGUMENT`), and that database must
/// still be open (else `EDGESTORE_CLOSED`).
///
/// # Safety
/// As for `edgestore_vector_search()`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn edgestore_vector_snapshot_search(
    coll: *mut edgestore_vector_collection,
    snapshot: *mut edgestore_snapshot,
    query: *const c_void,
    dtype: u32,
    dim: usize,
    scale: f32,
    k: usize,
    options: *const edgestore_vector_search_options,
    keys_out: *mut u8,
    key_stride: usize,
    key_lens_out: *mut usize,
    distances_out: *mut f32,
    count_out: *mut usize,
) -> edgestore_status {
    boundary("edgestore_vector_snapshot_search", || {
        let out = Results::check(
            1,
            k,
            keys_out,
            key_stride,
            key_lens_out,
            distances_out,
            count_out,
        )?;
        // SAFETY: same contract as this function.
        unsafe {
            search(
                coll,
                Some(snapshot),
                query,
                1,
                dtype,
                dim,
                &|_| Ok(scale),
                k,
                options,
                out,
            )
        }
    })
}

/// Runs `n` searches, all at the same read point, with the same `k` and
/// options. `queries` holds `n` contiguous queries of `dim` elements of
/// `dtype` (row-major, aligned for the type); `scales` holds `n` scales for
/// `EDGESTORE_VECTOR_I8` queries and may be NULL otherwise (it is not read).
///
/// Results of query `q` use slots `q * k ..< q * k + counts_out[q]` of
/// `distances_out` and `key_lens_out` (each `n * k` slots), and
/// `keys_out + slot * key_stride` for keys (`n * k * key_stride` bytes).
/// `n` is 1..=`EDGESTORE_VECTOR_MAX_BATCH`. `EDGESTORE_BUFFER_TOO_SMALL` as for
/// `edgestore_vector_search()` (counts and key lengths written). Errors as for
/// `edgestore_vector_search()` (the message names the bad query); nothing but
/// the last error is written on error.
///
/// # Safety
/// `queries` must hold `n * dim` elements of `dtype`; `scales` NULL or `n`
/// floats; `options` NULL or readable; the output arrays writable for the
/// sizes above.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn edgestore_vector_search_batch(
    coll: *mut edgestore_vector_collection,
    queries: *const c_void,
    n: usize,
    dtype: u32,
    dim: usize,
    scales: *const f32,
    k: usize,
    options: *const edgestore_vector_search_options,
    keys_out: *mut u8,
    key_stride: usize,
    key_lens_out: *mut usize,
    distances_out: *mut f32,
    counts_out: *mut usize,
) -> edgestore_status {
    boundary("edgestore_vector_search_batch", || {
        if n == 0 || n > EDGESTORE_VECTOR_MAX_BATCH {
            return Err(Fail::invalid(format!(
                "n must be in 1..={EDGESTORE_VECTOR_MAX_BATCH}, got {n}"
            )));
        }
        let out = Results::check(
            n,
            k,
            keys_out,
            key_stride,
            key_lens_out,
            distances_out,
            counts_out,
        )?;
        let scales: &[f32] = if parse_dtype(dtype)? == DType::I8 {
            // SAFETY: the caller guarantees n floats at scales when non-NULL.
            unsafe { args::array(scales, n, EDGESTORE_VECTOR_MAX_BATCH, "scales")? }
        } else {
            &[]
        };
        let scale_of = |q: usize| Ok(scales.get(q).copied().unwrap_or(1.0));
        // SAFETY: same contract as this function.
        unsafe {
            search(
                coll, None, queries, n, dtype, dim, &scale_of, k, options, out,
            )
        }
    })
}

/// Copies the collection's index counters into `*stats_out`.
/// Errors: `EDGESTORE_INVALID_ARGUMENT`, `EDGESTORE_CLOSED`.
///
/// # Safety
/// `stats_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgestore_vector_get_stats(
    coll: *mut edgestore_vector_collection,
    stats_out: *mut edgestore_vector_stats,
) -> edgestore_status {
    boundary("edgestore_vector_get_stats", || {
        args::out(stats_out, "stats_out")?;
        let s = with_coll(coll, |c, _, _| Ok(c.stats()))?;
        let out = edgestore_vector_stats {
            live: s.live as u64,
            nodes: s.nodes as u64,
            graph_inserts: s.graph_inserts,
            loaded_from_file: u32::from(s.loaded_from_file),
            rebuilt_from_records: u32::from(s.rebuilt_from_records),
            replayed_records: s.replayed_records,
            exact_searches: s.exact_searches,
            hnsw_searches: s.hnsw_searches,
            persists: s.persists,
            vacuums: s.vacuums,
            memory_bytes: s.memory_bytes as u64,
        };
        // SAFETY: stats_out was checked non-NULL; the caller guarantees it is writable.
        unsafe { args::write(stats_out, out) };
        OK
    })
}

/// Writes the collection's index file now, so a reopen loads it instead of
/// rebuilding. (It is also written by `edgestore_flush_to_segments()` and
/// `edgestore_close()`.) Errors: `EDGESTORE_INVALID_ARGUMENT`,
/// `EDGESTORE_CLOSED`, `EDGESTORE_IO`.
#[no_mangle]
pub extern "C" fn edgestore_vector_persist_index(
    coll: *mut edgestore_vector_collection,
) -> edgestore_status {
    boundary("edgestore_vector_persist_index", || {
        with_coll(coll, |c, _, _| Ok(c.persist_index()?))?;
        OK
    })
}

/// Quantises `dim` floats to `int8_t` with a symmetric scale (`max |x| / 127`,
/// 1.0 for a zero vector), for `EDGESTORE_VECTOR_I8` collections: writes `dim`
/// elements to `out` and the scale to `*scale_out`.
/// Errors: `EDGESTORE_INVALID_ARGUMENT` (NULL, misaligned, `dim` above
/// `EDGESTORE_VECTOR_MAX_DIM`, a NaN or infinite element). Never touches a database.
///
/// # Safety
/// `src` must hold `dim` floats; `out` must have `dim` writable bytes;
/// `scale_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgestore_vector_quantize_i8(
    src: *const f32,
    dim: usize,
    out: *mut i8,
    scale_out: *mut f32,
) -> edgestore_status {
    boundary("edgestore_vector_quantize_i8", || {
        // SAFETY: the caller guarantees dim floats at src when non-NULL.
        let v = unsafe { args::array(src, dim, MAX_DIM, "src")? };
        out_array(out, dim, "out")?;
        args::out(scale_out, "scale_out")?;
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(Fail::invalid(format!("element {i} is NaN or infinite")));
        }
        let (data, scale) = edgestore_core::vector::quantize_i8(v);
        // SAFETY: out has dim writable bytes (checked non-NULL when dim > 0);
        // data is a fresh allocation of dim elements; scale_out checked non-NULL.
        unsafe {
            if !data.is_empty() {
                std::ptr::copy_nonoverlapping(data.as_ptr(), out, data.len());
            }
            args::write(scale_out, scale);
        }
        OK
    })
}
