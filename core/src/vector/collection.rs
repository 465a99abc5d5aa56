//! Collection handles: writes go through the engine's normal write path,
//! reads through a consistent view of it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::filter::Filter;
use super::hnsw::Cand;
use super::index::{exact_over_records, CollIndex, Plan, ReadPoint};
use super::persist::scan_versions;
use super::record::{
    self, check_metadata, check_query, check_query_into, check_vector, check_vector_key,
};
use super::registry::CollState;
use super::{
    BatchHits, Metadata, SearchHit, SearchParams, VectorConfig, VectorEntry, VectorInput,
    VectorStats, MAX_K,
};
use crate::batch::WriteBatch;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::snapshot::{ReadView, Snapshot};
use crate::types::{check_value, Operation, MAX_BATCH_BYTES};
use crate::wal::WalOp;

/// One put of a [`Collection::put_batch`].
#[derive(Debug, Clone, Copy)]
pub struct VectorPut<'a> {
    /// The key (at most [`super::MAX_VECTOR_KEY_LEN`] bytes).
    pub key: &'a [u8],
    /// The vector, in the collection's element type.
    pub vector: VectorInput<'a>,
    /// Optional metadata for filters.
    pub metadata: Option<&'a Metadata>,
    /// Time to live in seconds (0 = never expires).
    pub ttl_secs: u32,
}

/// Appends a raw vector-space operation to a batch, with the batch's limits.
pub(crate) fn push_raw(
    b: &mut WriteBatch,
    op: Operation,
    ikey: Vec<u8>,
    value: Vec<u8>,
    ttl: u32,
) -> Result<()> {
    check_value(&value)?;
    let size = ikey.len() + value.len() + 13;
    if b.bytes + size > MAX_BATCH_BYTES {
        return Err(Error::invalid(format!(
            "batch would exceed {MAX_BATCH_BYTES} bytes"
        )));
    }
    b.bytes += size;
    b.user_bytes += (ikey.len() - record::PREFIX_LEN + value.len()) as u64;
    b.ops.push(WalOp {
        op,
        ttl,
        key: ikey,
        value,
    });
    Ok(())
}

fn check_k(k: usize) -> Result<()> {
    if k == 0 || k > MAX_K {
        return Err(Error::invalid(format!("k must be in 1..={MAX_K}, got {k}")));
    }
    Ok(())
}

/// A vector collection of an [`Engine`], from [`Engine::vectors`] or
/// [`Engine::create_collection`]. Cheap to get; `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Collection<'e> {
    pub(crate) engine: &'e Engine,
    pub(crate) state: Arc<CollState>,
}

impl<'e> Collection<'e> {
    /// The configuration the collection was created with.
    pub fn config(&self) -> &VectorConfig {
        &self.state.entry.config
    }

    /// The collection's namespace.
    pub fn namespace(&self) -> &[u8] {
        &self.state.entry.ns
    }

    /// The collection's name.
    pub fn name(&self) -> &[u8] {
        &self.state.entry.name
    }

    /// Adds a put to `batch`, to be applied atomically with the batch's other
    /// operations (key-value writes and other collections included) by
    /// [`Engine::write`]. The vector is checked now.
    pub fn stage_put(
        &self,
        batch: &mut WriteBatch,
        key: &[u8],
        vector: VectorInput<'_>,
        metadata: Option<&Metadata>,
        ttl_secs: u32,
    ) -> Result<()> {
        check_vector_key(key)?;
        check_vector(self.config(), &vector)?;
        if let Some(m) = metadata {
            check_metadata(m)?;
        }
        let value = record::encode_vector(&vector, metadata);
        push_raw(
            batch,
            Operation::Put,
            record::vector_key(self.state.id, key),
            value,
            ttl_secs,
        )
    }

    /// Adds a delete of `key` to `batch`.
    pub fn stage_delete(&self, batch: &mut WriteBatch, key: &[u8]) -> Result<()> {
        check_vector_key(key)?;
        push_raw(
            batch,
            Operation::Delete,
            record::vector_key(self.state.id, key),
            Vec::new(),
            0,
        )
    }

    /// Stores `vector` (and `metadata`) under `key`, replacing any earlier
    /// vector; it expires `ttl_secs` seconds from now (0 = never).
    pub fn put(
        &self,
        key: &[u8],
        vector: VectorInput<'_>,
        metadata: Option<&Metadata>,
        ttl_secs: u32,
    ) -> Result<()> {
        let mut b = WriteBatch::new();
        self.stage_put(&mut b, key, vector, metadata, ttl_secs)?;
        self.commit(b)
    }

    /// Stores several vectors atomically (one WAL record).
    pub fn put_batch(&self, items: &[VectorPut<'_>]) -> Result<()> {
        let mut b = WriteBatch::new();
        for it in items {
            self.stage_put(&mut b, it.key, it.vector, it.metadata, it.ttl_secs)?;
        }
        self.commit(b)
    }

    /// Deletes the vector under `key` (a no-op for a missing key, still logged).
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        let mut b = WriteBatch::new();
        self.stage_delete(&mut b, key)?;
        self.commit(b)
    }

    fn commit(&self, b: WriteBatch) -> Result<()> {
        self.engine.write(b)?;
        // Link the new vectors into the graph now, on the writer's thread.
        drop(self.state.write());
        Ok(())
    }

    /// The vector and metadata under `key`, if alive.
    pub fn get(&self, key: &[u8]) -> Result<Option<VectorEntry>> {
        get_at(&self.state, &self.engine.read_view()?, key)
    }

    /// The `k` nearest live vectors to `query` that pass `filter`, closest
    /// first. The query may be in any element type.
    pub fn search(
        &self,
        query: VectorInput<'_>,
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<SearchHit>> {
        self.search_with(query, k, filter, &SearchParams::default())
    }

    /// [`Collection::search`] with explicit parameters.
    pub fn search_with(
        &self,
        query: VectorInput<'_>,
        k: usize,
        filter: Option<&Filter>,
        params: &SearchParams,
    ) -> Result<Vec<SearchHit>> {
        search_at(
            &self.state,
            &self.engine.read_view()?,
            false,
            query,
            k,
            filter,
            params,
        )
    }

    /// One search per query, all at the same read point.
    pub fn search_batch(
        &self,
        queries: &[VectorInput<'_>],
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<Vec<SearchHit>>> {
        self.search_batch_with(queries, k, filter, &SearchParams::default())
    }

    /// [`Collection::search_batch`] with explicit parameters.
    pub fn search_batch_with(
        &self,
        queries: &[VectorInput<'_>],
        k: usize,
        filter: Option<&Filter>,
        params: &SearchParams,
    ) -> Result<Vec<Vec<SearchHit>>> {
        let view = self.engine.read_view()?;
        let mut out = Vec::with_capacity(queries.len());
        search_many(
            &self.state,
            &view,
            false,
            queries,
            k,
            filter,
            params,
            &mut out,
        )?;
        Ok(out)
    }

    /// [`Collection::search_batch_with`] into flat arrays (one allocation
    /// per array instead of one per hit).
    pub fn search_batch_flat(
        &self,
        queries: &[VectorInput<'_>],
        k: usize,
        filter: Option<&Filter>,
        params: &SearchParams,
    ) -> Result<BatchHits> {
        let view = self.engine.read_view()?;
        let mut out = BatchHits::with_capacity(queries.len(), k);
        search_many(
            &self.state,
            &view,
            false,
            queries,
            k,
            filter,
            params,
            &mut out,
        )?;
        Ok(out)
    }

    /// The collection as of `snapshot` (taken from the same engine).
    pub fn at<'s>(&self, snapshot: &'s Snapshot) -> CollectionAt<'s> {
        CollectionAt {
            state: Arc::clone(&self.state),
            snapshot,
        }
    }

    /// Live vectors (expired ones not yet noticed may be counted).
    pub fn len(&self) -> usize {
        self.state.read().live
    }

    /// Whether the collection holds no live vectors.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Index counters.
    pub fn stats(&self) -> VectorStats {
        let s = &self.state;
        let idx = s.read();
        VectorStats {
            live: idx.live,
            nodes: idx.nodes.len(),
            graph_inserts: idx.graph_inserts,
            loaded_from_file: s.loaded_from_file.load(Ordering::Relaxed),
            rebuilt_from_records: s.rebuilt.load(Ordering::Relaxed),
            replayed_records: s.replayed.load(Ordering::Relaxed),
            exact_searches: s.exact_searches.load(Ordering::Relaxed),
            hnsw_searches: s.hnsw_searches.load(Ordering::Relaxed),
            persists: s.persists.load(Ordering::Relaxed),
            vacuums: idx.vacuums,
            memory_bytes: idx.memory_bytes(),
        }
    }

    /// Writes the index file now (it is also written by
    /// [`Engine::flush_to_segments`] and [`Engine::close`]).
    pub fn persist_index(&self) -> Result<()> {
        self.engine.vector_registry().persist_one(&self.state)
    }
}

/// A collection as of a [`Snapshot`], from [`Collection::at`].
#[derive(Debug)]
pub struct CollectionAt<'s> {
    state: Arc<CollState>,
    snapshot: &'s Snapshot,
}

impl CollectionAt<'_> {
    /// The vector under `key` as of the snapshot.
    pub fn get(&self, key: &[u8]) -> Result<Option<VectorEntry>> {
        get_at(&self.state, self.snapshot.read_view(), key)
    }

    /// [`Collection::search`] as of the snapshot.
    pub fn search(
        &self,
        query: VectorInput<'_>,
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<SearchHit>> {
        self.search_with(query, k, filter, &SearchParams::default())
    }

    /// [`Collection::search_batch_flat`] as of the snapshot.
    pub fn search_batch_flat(
        &self,
        queries: &[VectorInput<'_>],
        k: usize,
        filter: Option<&Filter>,
        params: &SearchParams,
    ) -> Result<BatchHits> {
        let mut out = BatchHits::with_capacity(queries.len(), k);
        search_many(
            &self.state,
            self.snapshot.read_view(),
            true,
            queries,
            k,
            filter,
            params,
            &mut out,
        )?;
        Ok(out)
    }

    /// [`Collection::search_with`] as of the snapshot.
    pub fn search_with(
        &self,
        query: VectorInput<'_>,
        k: usize,
        filter: Option<&Filter>,
        params: &SearchParams,
    ) -> Result<Vec<SearchHit>> {
        search_at(
            &self.state,
            self.snapshot.read_view(),
            true,
            query,
            k,
            filter,
            params,
        )
    }
}

fn get_at(state: &CollState, view: &ReadView, key: &[u8]) -> Result<Option<VectorEntry>> {
    check_vector_key(key)?;
    let ikey = record::vector_key(state.id, key);
    let Some(e) = view
        .version
        .get(&ikey, view.read_lsn)?
        .filter(|e| e.is_live_at(view.read_time))
    else {
        return Ok(None);
    };
    let d = record::decode_vector(e.value.as_deref().unwrap_or_default())
        .map_err(|m| Error::corruption("vector record", 0, m))?;
    Ok(Some(VectorEntry {
        vector: d.vector,
        metadata: d.metadata,
    }))
}

fn search_at(
    state: &CollState,
    view: &ReadView,
    snapshot: bool,
    query: VectorInput<'_>,
    k: usize,
    filter: Option<&Filter>,
    params: &SearchParams,
) -> Result<Vec<SearchHit>> {
    let mut all: Vec<Vec<SearchHit>> = Vec::with_capacity(1);
    search_many(state, view, snapshot, &[query], k, filter, params, &mut all)?;
    Ok(all.pop().unwrap_or_default())
}

/// Where [`search_many`] puts each query's results.
trait Sink {
    fn push_ids(&mut self, idx: &CollIndex, hits: &[Cand]);
    fn push_hits(&mut self, hits: Vec<SearchHit>);
}

impl Sink for Vec<Vec<SearchHit>> {
    fn push_ids(&mut self, idx: &CollIndex, hits: &[Cand]) {
        self.push(
            hits.iter()
                .map(|c| SearchHit {
                    key: idx.key(c.1).to_vec(),
                    distance: c.0,
                })
                .collect(),
        );
    }
    fn push_hits(&mut self, hits: Vec<SearchHit>) {
        self.push(hits);
    }
}

impl Sink for BatchHits {
    fn push_ids(&mut self, idx: &CollIndex, hits: &[Cand]) {
        self.counts.push(hits.len());
        for c in hits {
            self.keys.extend_from_slice(idx.key(c.1));
            self.key_ends.push(self.keys.len());
            self.distances.push(c.0);
        }
    }
    fn push_hits(&mut self, hits: Vec<SearchHit>) {
        self.counts.push(hits.len());
        for h in hits {
            self.keys.extend_from_slice(&h.key);
            self.key_ends.push(self.keys.len());
            self.distances.push(h.distance);
        }
    }
}

/// Searches for every query at one read point, taking the index lock once.
#[allow(clippy::too_many_arguments)]
fn search_many(
    state: &CollState,
    view: &ReadView,
    snapshot: bool,
    queries: &[VectorInput<'_>],
    k: usize,
    filter: Option<&Filter>,
    params: &SearchParams,
    out: &mut dyn Sink,
) -> Result<()> {
    check_k(k)?;
    let config = &state.entry.config;
    if let Some(f) = filter {
        f.validate()?;
    }
    let ef = params.ef.unwrap_or(config.ef_search);
    if ef == 0 || ef > 100_000 {
        return Err(Error::invalid(format!(
            "ef must be in 1..=100000, got {ef}"
        )));
    }
    let p = ReadPoint {
        lsn: view.read_lsn,
        time: view.read_time,
    };
    // The index first: applying pending writes may vacuum, which raises the floor.
    let idx = state.read();
    let (floor_lsn, floor_time) = *state.snap_floor.lock().unwrap_or_else(|e| e.into_inner());
    if snapshot && (view.read_lsn < floor_lsn || view.read_time < floor_time) {
        drop(idx);
        for query in queries {
            let q = check_query(config, query)?;
            out.push_hits(search_records(state, view, &q, k, filter)?);
        }
        return Ok(());
    }
    let (mut exact, mut hnsw) = (0, 0);
    let mut q = Vec::with_capacity(config.dim);
    for query in queries {
        check_query_into(config, query, &mut q)?;
        let (hits, plan) = idx.search_ids(&q, k, filter, p, ef, params.exact);
        match plan {
            Plan::Exact => exact += 1,
            Plan::Hnsw => hnsw += 1,
        }
        out.push_ids(&idx, &hits);
    }
    state.exact_searches.fetch_add(exact, Ordering::Relaxed);
    state.hnsw_searches.fetch_add(hnsw, Ordering::Relaxed);
    Ok(())
}

/// Exact search over the records a view sees (snapshots the index cannot serve).
fn search_records(
    state: &CollState,
    view: &ReadView,
    q: &[f32],
    k: usize,
    filter: Option<&Filter>,
) -> Result<Vec<SearchHit>> {
    let config = &state.entry.config;
    // The view predates the index: answer from the records it sees.
    let prefix = record::vector_prefix(state.id);
    let versions = scan_versions(&view.version, &prefix, view.read_lsn)?;
    let mut last: Option<Vec<u8>> = None;
    let live = versions.into_iter().filter_map(|e| {
        if last.as_ref() == Some(&e.key) {
            return None; // an older version
        }
        last = Some(e.key.clone());
        if !e.is_live_at(view.read_time) {
            return None;
        }
        Some((
            e.key[record::PREFIX_LEN..].to_vec(),
            e.value.unwrap_or_default(),
        ))
    });
    state.exact_searches.fetch_add(1, Ordering::Relaxed);
    Ok(exact_over_records(config, q, k, filter, live))
}
