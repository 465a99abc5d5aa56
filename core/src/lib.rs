//! edgestore: a local-first, embedded key-value store for edge devices, with
//! TTLs, namespaces, snapshots, merkle roots and deathtime-cohort compaction.
//!
//! ```
//! use edgestore::{EdgestoreConfig, Engine};
//! let dir = tempfile::tempdir().unwrap();
//! let db = Engine::open(EdgestoreConfig::new(dir.path())).unwrap();
//! db.put(b"sensors", b"t1", b"21.5").unwrap();
//! db.put_with_ttl(b"cache", b"session", b"abc", 3600).unwrap();
//! assert_eq!(db.get(b"sensors", b"t1").unwrap(), Some(b"21.5".to_vec()));
//! ```
#![deny(missing_docs)]

pub mod batch;
pub mod cache;
pub mod clock;
mod codec;
pub mod compactor;
pub mod config;
mod engine;
pub mod error;
pub mod fault;
mod iter;
pub mod manifest;
pub mod memtable;
pub mod merkle;
pub mod metrics;
pub mod segment;
pub mod snapshot;
pub mod storage;
pub mod types;
pub mod vector;
mod version;
mod wal;

pub use batch::WriteBatch;
pub use clock::{Clock, ManualClock, SystemClock};
pub use compactor::{CohortInfo, CompactionPolicy, CompactionStats, Compactor};
pub use config::{EdgestoreConfig, SyncMode};
pub use engine::{Engine, VerifyReport, LOCK_FILE};
pub use error::{Error, Result};
pub use iter::RangeIter;
pub use manifest::Manifest;
pub use merkle::{MerkleTree, MERKLE_DEFAULT_DEPTH, MERKLE_FANOUT, MERKLE_MAX_DEPTH};
pub use metrics::Metrics;
pub use snapshot::Snapshot;
pub use vector::{
    Collection, CollectionAt, DType, Filter, MetaValue, Metadata, Metric, SearchHit, SearchParams,
    VectorConfig, VectorInput, VectorPut, VectorStats,
};
