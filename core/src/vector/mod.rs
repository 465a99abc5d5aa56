//! Vector collections: embeddings stored as ordinary records next to the
//! key-value data, searched by exact scan or an HNSW graph.
//!
//! # Records
//!
//! Vectors are records of the engine: they travel through the same WAL,
//! write batches, memtable, segments, TTLs, snapshots and compaction as
//! everything else. They live in a key space that no user namespace can
//! reach. A user record's internal key is `[ns_len][ns][key]` with
//! `ns_len <= 255`, so it always has at least `ns_len` bytes after its first
//! byte. Vector-space keys start with `0xFF` and are at most 255 bytes long
//! in total, i.e. at most 254 bytes follow the `0xFF`: they can never equal a
//! user key (those need 255 bytes after `0xFF`), and no user range or prefix
//! scan can include them (every key inside a user scan of a 255-byte
//! namespace is at least 256 bytes long). Scans of the vector space skip the
//! longer user keys they may meet.
//!
//! * Catalog: `[0xFF][0x00][collection id: u64 BE]`; the value holds the
//!   collection's configuration, namespace and name (see `vector/record.rs`).
//! * Vector: `[0xFF][0x01][collection id: u64 BE][user key]`, so a vector key
//!   is at most [`MAX_VECTOR_KEY_LEN`] (245) bytes. The value holds the element
//!   type, dimension, scale, the elements and the metadata.
//!
//! The collection id is the first 8 bytes of BLAKE3 over the namespace length,
//! namespace and name; creating a collection whose id is taken by another
//! name fails instead of sharing records.
//!
//! # Index
//!
//! Each opened collection keeps an in-memory index (`vector/index.rs`) of every
//! version of every vector it has seen since it was loaded, with the LSN that
//! wrote it, the LSN that superseded it and its death time, so a search at
//! any read point (now, or a snapshot) sees exactly the vectors the records
//! show at that point. The engine tells the index about every batch it logs
//! (a hook in the write path), so vectors written with a plain
//! [`crate::WriteBatch`] are indexed too.
//!
//! The index is saved to `vec-<id>.idx` in the database directory on
//! [`crate::Engine::flush_to_segments`], [`crate::Engine::close`] and drop
//! (`vector/persist.rs` documents the file); loading reconciles it against the records, which stay the
//! source of truth: missing, stale or corrupt files only cost time.

mod collection;
pub mod distance;
mod engine_api;
mod filter;
mod hnsw;
mod index;
mod persist;
pub(crate) mod record;
mod registry;

use std::collections::BTreeMap;

pub use collection::{Collection, CollectionAt, VectorPut};
pub use filter::Filter;
pub(crate) use registry::Registry;

/// Longest user key of a vector, in bytes (see the module docs for why).
pub const MAX_VECTOR_KEY_LEN: usize = 245;
/// Largest dimension of a collection.
pub const MAX_DIM: usize = 16_384;
/// Largest `k` a search accepts.
pub const MAX_K: usize = 10_000;
/// Most metadata fields on one vector.
pub const MAX_META_FIELDS: usize = 64;
/// Longest metadata field name, in bytes.
pub const MAX_META_NAME_LEN: usize = 255;
/// Longest metadata string value, in bytes.
pub const MAX_META_STR_LEN: usize = 4096;
/// Longest collection name, in bytes.
pub const MAX_COLLECTION_NAME_LEN: usize = 255;

/// How distances are measured. Smaller is always closer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Squared Euclidean distance `sum((q - x)^2)` (as hnswlib and faiss report it).
    L2,
    /// Cosine distance `1 - q.x / (|q| |x|)`, in `[0, 2]`. Zero vectors are refused.
    Cosine,
    /// Negative inner product `-q.x`.
    InnerProduct,
}

impl Metric {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Metric::L2 => 0,
            Metric::Cosine => 1,
            Metric::InnerProduct => 2,
        }
    }
    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => Metric::L2,
            1 => Metric::Cosine,
            2 => Metric::InnerProduct,
            _ => return None,
        })
    }
}

/// Element type vectors are stored as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16 (half the memory; about 3 significant digits).
    F16,
    /// Signed 8-bit integers times a per-vector scale: element `i` is `data[i] * scale`.
    I8,
}

impl DType {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::I8 => 2,
        }
    }
    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => DType::F32,
            1 => DType::F16,
            2 => DType::I8,
            _ => return None,
        })
    }
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
            DType::I8 => 1,
        }
    }
    /// Lower-case name ("f32", "f16", "i8").
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I8 => "i8",
        }
    }
}

/// Configuration of a collection, fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VectorConfig {
    /// Number of elements per vector (1 ..= [`MAX_DIM`]).
    pub dim: usize,
    /// Distance used by every search of the collection.
    pub metric: Metric,
    /// Element type vectors are stored as; puts must supply this type.
    pub dtype: DType,
    /// HNSW links per node on upper layers (default 16; level 0 keeps twice as many).
    pub hnsw_m: usize,
    /// HNSW candidate list size while inserting (default 200).
    pub ef_construction: usize,
    /// Default HNSW candidate list size while searching (default 64).
    pub ef_search: usize,
    /// Collections with at most this many live vectors are searched exactly
    /// (default 1024: about the distance computations one HNSW search makes
    /// at the default `ef_search` with `hnsw_m` = 16, so above it the graph
    /// is cheaper; filtered searches expected to pass at most this many
    /// vectors are exact too).
    pub exact_threshold: usize,
    /// Memory the HNSW graph's links may take, in bytes (default 1 GiB).
    /// Vectors that arrive once it is reached are kept out of the graph and
    /// searched exactly alongside it.
    pub max_graph_bytes: usize,
}

impl VectorConfig {
    /// A configuration with the default index parameters.
    pub fn new(dim: usize, metric: Metric, dtype: DType) -> Self {
        VectorConfig {
            dim,
            metric,
            dtype,
            hnsw_m: 16,
            ef_construction: 200,
            ef_search: 64,
            exact_threshold: 1024,
            max_graph_bytes: 1 << 30,
        }
    }

    pub(crate) fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::InvalidArgument(m));
        if self.dim == 0 || self.dim > MAX_DIM {
            return bad(format!(
                "dimension must be in 1..={MAX_DIM}, got {}",
                self.dim
            ));
        }
        if !(2..=128).contains(&self.hnsw_m) {
            return bad(format!("hnsw_m must be in 2..=128, got {}", self.hnsw_m));
        }
        if !(1..=10_000).contains(&self.ef_construction) {
            return bad(format!(
                "ef_construction must be in 1..=10000, got {}",
                self.ef_construction
            ));
        }
        if !(1..=10_000).contains(&self.ef_search) {
            return bad(format!(
                "ef_search must be in 1..=10000, got {}",
                self.ef_search
            ));
        }
        if self.exact_threshold > u32::MAX as usize || self.max_graph_bytes == 0 {
            return bad("exact_threshold must fit in u32 and max_graph_bytes be > 0".into());
        }
        Ok(())
    }
}

/// A vector handed to a put or a search, in one of the element types.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum VectorInput<'a> {
    /// 32-bit floats.
    F32(&'a [f32]),
    /// IEEE binary16 values given as their bit patterns (e.g. numpy `float16.view(uint16)`).
    F16(&'a [u16]),
    /// 8-bit integers with the scale that maps them back to reals (`x = data * scale`).
    I8 {
        /// The quantised elements.
        data: &'a [i8],
        /// Positive, finite scale.
        scale: f32,
    },
}

impl VectorInput<'_> {
    /// The element type of this input.
    pub fn dtype(&self) -> DType {
        match self {
            VectorInput::F32(_) => DType::F32,
            VectorInput::F16(_) => DType::F16,
            VectorInput::I8 { .. } => DType::I8,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            VectorInput::F32(v) => v.len(),
            VectorInput::F16(v) => v.len(),
            VectorInput::I8 { data, .. } => data.len(),
        }
    }

    /// Whether the vector has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The vector as 32-bit floats, checking every element is finite.
    pub(crate) fn checked_values(&self) -> crate::Result<Vec<f32>> {
        let out: Vec<f32> = match self {
            VectorInput::F32(v) => v.to_vec(),
            VectorInput::F16(v) => {
                if let Some(i) = v.iter().position(|&h| h & 0x7c00 == 0x7c00) {
                    return Err(crate::Error::InvalidArgument(format!(
                        "element {i} is NaN or infinite"
                    )));
                }
                v.iter().map(|&h| distance::f16_to_f32(h)).collect()
            }
            VectorInput::I8 { data, scale } => {
                if !(scale.is_finite() && *scale > 0.0) {
                    return Err(crate::Error::InvalidArgument(format!(
                        "i8 scale must be positive and finite, got {scale}"
                    )));
                }
                data.iter().map(|&x| x as f32 * scale).collect()
            }
        };
        if let Some(i) = out.iter().position(|x| !x.is_finite()) {
            return Err(crate::Error::InvalidArgument(format!(
                "element {i} is NaN or infinite"
            )));
        }
        Ok(out)
    }
}

/// A stored vector as read back, in its stored element type.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedVector {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// IEEE binary16 bit patterns.
    F16(Vec<u16>),
    /// Quantised elements and their scale.
    I8 {
        /// The elements.
        data: Vec<i8>,
        /// Scale: element `i` is `data[i] * scale`.
        scale: f32,
    },
}

impl OwnedVector {
    /// Borrows it as an input (e.g. to search with a stored vector).
    pub fn as_input(&self) -> VectorInput<'_> {
        match self {
            OwnedVector::F32(v) => VectorInput::F32(v),
            OwnedVector::F16(v) => VectorInput::F16(v),
            OwnedVector::I8 { data, scale } => VectorInput::I8 {
                data,
                scale: *scale,
            },
        }
    }

    /// The real values as 32-bit floats.
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            OwnedVector::F32(v) => v.clone(),
            OwnedVector::F16(v) => v.iter().map(|&h| distance::f16_to_f32(h)).collect(),
            OwnedVector::I8 { data, scale } => data.iter().map(|&x| x as f32 * scale).collect(),
        }
    }
}

/// Quantises floats to `i8` with a symmetric per-vector scale
/// (`max |x| / 127`); returns the elements and the scale.
pub fn quantize_i8(v: &[f32]) -> (Vec<i8>, f32) {
    let max = v
        .iter()
        .filter(|x| x.is_finite())
        .fold(0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let data = v
        .iter()
        .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (data, scale)
}

/// A typed metadata value, usable in filters.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// A signed integer.
    I64(i64),
    /// A float (NaN is refused).
    F64(f64),
    /// A UTF-8 string of at most [`MAX_META_STR_LEN`] bytes.
    Str(String),
    /// A boolean.
    Bool(bool),
}

impl From<i64> for MetaValue {
    fn from(v: i64) -> Self {
        MetaValue::I64(v)
    }
}
impl From<f64> for MetaValue {
    fn from(v: f64) -> Self {
        MetaValue::F64(v)
    }
}
impl From<bool> for MetaValue {
    fn from(v: bool) -> Self {
        MetaValue::Bool(v)
    }
}
impl From<&str> for MetaValue {
    fn from(v: &str) -> Self {
        MetaValue::Str(v.to_string())
    }
}
impl From<String> for MetaValue {
    fn from(v: String) -> Self {
        MetaValue::Str(v)
    }
}

/// Metadata of one vector: field name to value.
pub type Metadata = BTreeMap<String, MetaValue>;

/// A vector and its metadata as read back by [`Collection::get`].
#[derive(Debug, Clone, PartialEq)]
pub struct VectorEntry {
    /// The stored vector.
    pub vector: OwnedVector,
    /// Its metadata (empty when none was given).
    pub metadata: Metadata,
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    /// The vector's key.
    pub key: Vec<u8>,
    /// Its distance to the query under the collection's metric.
    pub distance: f32,
}

/// Results of a batch search in flat arrays, query after query
/// ([`Collection::search_batch_flat`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchHits {
    /// Number of hits of each query (at most `k`).
    pub counts: Vec<usize>,
    /// Distance of each hit, closest first within a query.
    pub distances: Vec<f32>,
    /// End offset in `keys` of each hit's key (a hit's key starts where the
    /// previous one ended).
    pub key_ends: Vec<usize>,
    /// Keys of all hits, concatenated.
    pub keys: Vec<u8>,
}

impl BatchHits {
    pub(crate) fn with_capacity(queries: usize, k: usize) -> Self {
        let hits = queries.saturating_mul(k).min(1 << 20);
        BatchHits {
            counts: Vec::with_capacity(queries),
            distances: Vec::with_capacity(hits),
            key_ends: Vec::with_capacity(hits),
            keys: Vec::new(),
        }
    }

    /// The hits of query `i` as `(key, distance)` pairs.
    pub fn query(&self, i: usize) -> impl Iterator<Item = (&[u8], f32)> + '_ {
        let start: usize = self.counts[..i].iter().sum();
        (start..start + self.counts[i]).map(move |h| {
            let from = if h == 0 { 0 } else { self.key_ends[h - 1] };
            (&self.keys[from..self.key_ends[h]], self.distances[h])
        })
    }
}

/// Counters of one collection's index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VectorStats {
    /// Vectors alive now.
    pub live: usize,
    /// Nodes in the index, superseded and deleted versions included.
    pub nodes: usize,
    /// Nodes linked into the HNSW graph by this process (0 after a reopen that
    /// loaded the index file and found nothing new).
    pub graph_inserts: u64,
    /// Whether the index was loaded from its file when the collection was opened.
    pub loaded_from_file: bool,
    /// Whether the index had to be built from the records (file missing, stale or corrupt).
    pub rebuilt_from_records: bool,
    /// Records applied on top of the loaded file when the collection was opened.
    pub replayed_records: u64,
    /// Searches answered by exact scan.
    pub exact_searches: u64,
    /// Searches answered through the HNSW graph.
    pub hnsw_searches: u64,
    /// Times the index file was written.
    pub persists: u64,
    /// Times the index dropped dead versions and rebuilt its graph (when
    /// dead versions outnumber live ones and exceed 1024).
    pub vacuums: u64,
    /// Approximate memory held by the index, in bytes.
    pub memory_bytes: usize,
}

/// Per-search knobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchParams {
    /// HNSW candidate list size (default: the collection's `ef_search`).
    /// Larger is slower and more accurate.
    pub ef: Option<usize>,
    /// Scan every candidate exactly instead of using the graph.
    pub exact: bool,
}
