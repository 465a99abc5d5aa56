//! The in-memory index of one collection: every version of every vector seen
//! since the collection was loaded, with the LSN that wrote it, the LSN that
//! superseded it and its death time, plus the HNSW graph over them, and the
//! planner that picks exact scan or HNSW per query.

use std::collections::{BinaryHeap, HashMap};

use xxhash_rust::xxh3::xxh3_64;

use super::distance::{self, kernels};
use super::filter::{Columns, Filter};
use super::hnsw::{Cand, Graph, Space};
use super::record::{decode_vector, DecodedVector};
use super::{DType, Metadata, Metric, OwnedVector, SearchHit, VectorConfig};

/// Nodes sampled to estimate a filter's selectivity.
const SAMPLE: usize = 1024;
/// Fewer sampled matches than this and the planner scans exactly.
const MIN_SAMPLE_HITS: usize = 8;

/// Dead nodes tolerated before a vacuum regardless of the live count.
pub(crate) const VACUUM_MIN_DEAD: usize = 1024;

/// `dead_lsn` of a version nothing has superseded.
pub(crate) const ALIVE: u64 = u64::MAX;

/// Where a read stands: the newest LSN it may see and the instant TTLs are judged at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadPoint {
    pub lsn: u64,
    pub time: i64,
}

/// One version of one vector.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub key: Box<[u8]>,
    pub lsn: u64,
    /// xxh3 of the record value: tells a reused LSN (after a crash lost the
    /// tail of the WAL) from the record the node was made from.
    pub vhash: u64,
    pub death: i64,
    pub dead_lsn: u64,
    pub meta: Option<Box<Metadata>>,
}

impl Node {
    #[inline]
    pub(crate) fn visible(&self, p: ReadPoint) -> bool {
        self.lsn <= p.lsn && self.dead_lsn > p.lsn && self.death > p.time
    }
}

/// Elements of all nodes, contiguous, in the stored type.
#[derive(Debug, Clone)]
pub(crate) enum Store {
    F32(Vec<f32>),
    F16(Vec<u16>),
    I8(Vec<i8>),
}

/// The newest write the index knows for a key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyState {
    pub node: Option<u32>,
    pub lsn: u64,
}

/// Which path answered a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    Exact,
    Hnsw,
}

/// The index.
#[derive(Debug, Clone)]
pub(crate) struct CollIndex {
    pub config: VectorConfig,
    pub nodes: Vec<Node>,
    pub store: Store,
    pub scales: Vec<f32>,
    pub norms: Vec<f32>,
    pub keys: HashMap<Box<[u8]>, KeyState>,
    /// Every node's key again, contiguous (node `i`'s is
    /// `key_bytes[key_ends[i - 1]..key_ends[i]]`), so turning results into
    /// keys reads one array instead of chasing a box per node.
    pub key_bytes: Vec<u8>,
    pub key_ends: Vec<usize>,
    pub graph: Graph,
    /// Metadata by field, for filters.
    pub cols: Columns,
    /// Nodes kept out of the graph because it reached `max_graph_bytes`.
    pub overflow: Vec<u32>,
    pub live: usize,
    /// Earliest death time of any node (`i64::MAX` when none expires).
    pub min_death: i64,
    /// Newest LSN applied (puts and deletes).
    pub max_lsn: u64,
    pub graph_inserts: u64,
    pub vacuums: u64,
    pub changes_since_persist: u64,
}

/// An element type the distance kernels read.
trait Elem: Copy {
    fn real(self) -> f32;
}
impl Elem for f32 {
    #[inline(always)]
    fn real(self) -> f32 {
        self
    }
}
impl Elem for u16 {
    #[inline(always)]
    fn real(self) -> f32 {
        distance::f16_to_f32(self)
    }
}
impl Elem for i8 {
    #[inline(always)]
    fn real(self) -> f32 {
        self as f32
    }
}

/// The elements of one store under one metric, with the kernel resolved
/// once (per query or per insert) rather than per distance: the generic
/// per-distance dispatch on store and metric made the AVX-512 f32 dot scan
/// run at half the speed of this (measured with `examples/vector_scan.rs`).
struct Flat<'a, T> {
    data: &'a [T],
    dim: usize,
    kern: fn(&[f32], &[T], f32) -> f32,
    norms: &'a [f32],
    /// Per-vector scales (i8 only).
    scales: Option<&'a [f32]>,
    metric: Metric,
}

impl<T: Elem> Space for Flat<'_, T> {
    #[inline]
    fn dist(&self, q: &[f32], qn: f32, id: u32) -> f32 {
        let i = id as usize;
        let x = &self.data[i * self.dim..(i + 1) * self.dim];
        // Reads the scale only for i8 (a load per distance otherwise).
        let scale = match self.scales {
            Some(s) => s[i],
            None => 1.0,
        };
        match self.metric {
            Metric::L2 => (self.kern)(q, x, scale),
            Metric::InnerProduct => -((self.kern)(q, x, 1.0) * scale),
            Metric::Cosine => {
                let dot = (self.kern)(q, x, 1.0) * scale;
                let den = qn * self.norms[i];
                if den > 0.0 {
                    1.0 - dot / den
                } else {
                    1.0
                }
            }
        }
    }

    fn decode(&self, id: u32, out: &mut Vec<f32>) -> f32 {
        let i = id as usize;
        let scale = self.scales.map_or(1.0, |s| s[i]);
        out.clear();
        out.extend(
            self.data[i * self.dim..(i + 1) * self.dim]
                .iter()
                .map(|&x| x.real() * scale),
        );
        self.norms[i]
    }

    #[inline]
    fn prefetch(&self, id: u32) {
        // The first line of the vector; the hardware prefetcher follows.
        let p = self.data.as_ptr().wrapping_add(id as usize * self.dim);
        distance::prefetch(p as *const u8);
    }
}

/// Evaluates `$body` with `$s` bound to the [`Flat`] space of `$ix`'s store
/// and metric (one monomorphised copy per element type).
macro_rules! with_space {
    ($ix:expr, |$s:ident| $body:expr) => {{
        let ix = $ix;
        let k = kernels();
        let (dim, metric, norms) = (ix.config.dim, ix.config.metric, &ix.norms[..]);
        let l2 = metric == Metric::L2;
        match &ix.store {
            Store::F32(v) => {
                let $s = Flat {
                    data: v,
                    dim,
                    kern: if l2 { k.l2_f32 } else { k.dot_f32 },
                    norms,
                    scales: None,
                    metric,
                };
                $body
            }
            Store::F16(v) => {
                let $s = Flat {
                    data: v,
                    dim,
                    kern: if l2 { k.l2_f16 } else { k.dot_f16 },
                    norms,
                    scales: None,
                    metric,
                };
                $body
            }
            Store::I8(v) => {
                let $s = Flat {
                    data: v,
                    dim,
                    kern: if l2 { k.l2_i8 } else { k.dot_i8 },
                    norms,
                    scales: Some(&ix.scales[..]),
                    metric,
                };
                $body
            }
        }
    }};
}

impl CollIndex {
    pub(crate) fn new(config: VectorConfig) -> Self {
        let store = match config.dtype {
            DType::F32 => Store::F32(Vec::new()),
            DType::F16 => Store::F16(Vec::new()),
            DType::I8 => Store::I8(Vec::new()),
        };
        CollIndex {
            graph: Graph::new(config.hnsw_m, config.ef_construction),
            cols: Columns::default(),
            config,
            nodes: Vec::new(),
            store,
            scales: Vec::new(),
            norms: Vec::new(),
            keys: HashMap::new(),
            key_bytes: Vec::new(),
            key_ends: Vec::new(),
            overflow: Vec::new(),
            live: 0,
            min_death: i64::MAX,
            max_lsn: 0,
            graph_inserts: 0,
            vacuums: 0,
            changes_since_persist: 0,
        }
    }

    /// Approximate bytes held.
    pub(crate) fn memory_bytes(&self) -> usize {
        let store = self.nodes.len() * self.config.dim * self.config.dtype.size();
        let nodes: usize = self
            .nodes
            .iter()
            .map(|n| {
                std::mem::size_of::<Node>() + 2 * n.key.len() + n.meta.as_ref().map_or(0, |_| 64)
            })
            .sum();
        store
            + nodes
            + self.cols.bytes()
            + self.graph.bytes()
            + self.keys.len() * 24
            + self.key_bytes.len()
            + self.key_ends.len() * 8
            + self.nodes.len() * 8
    }

    /// Applies a put of `value` for `key` written at `lsn`/`ts` with `ttl`.
    /// Older writes than the newest known for the key are ignored unless
    /// `force` (used when reconciling with the records after a crash).
    pub(crate) fn apply_put(
        &mut self,
        key: &[u8],
        lsn: u64,
        death: i64,
        value: &[u8],
        force: bool,
    ) {
        if !force && self.keys.get(key).is_some_and(|ks| ks.lsn >= lsn) {
            return;
        }
        let decoded = match decode_vector(value) {
            Ok(d) if self.fits(&d) => d,
            // Not a vector of this collection (cannot come through the API):
            // the key has no vector from here on.
            _ => return self.apply_delete(key, lsn, force),
        };
        self.supersede(key, lsn);
        self.max_lsn = self.max_lsn.max(lsn);
        let node = Node {
            key: key.into(),
            lsn,
            vhash: xxh3_64(value),
            death,
            dead_lsn: ALIVE,
            meta: (!decoded.metadata.is_empty()).then(|| Box::new(decoded.metadata)),
        };
        self.insert_node(node, decoded.vector);
    }

    /// Appends a live node and links it into the graph.
    fn insert_node(&mut self, node: Node, vector: OwnedVector) {
        let id = self.nodes.len() as u32;
        let real = vector.to_f32();
        let norm = distance::norm(&real);
        let scale = match (&mut self.store, vector) {
            (Store::F32(s), OwnedVector::F32(v)) => {
                s.extend_from_slice(&v);
                1.0
            }
            (Store::F16(s), OwnedVector::F16(v)) => {
                s.extend_from_slice(&v);
                1.0
            }
            (Store::I8(s), OwnedVector::I8 { data, scale }) => {
                s.extend_from_slice(&data);
                scale
            }
            _ => unreachable!("element type checked by fits()"),
        };
        self.scales.push(scale);
        self.norms.push(norm);
        self.cols.push(id, node.meta.as_deref());
        self.keys.insert(
            node.key.clone(),
            KeyState {
                node: Some(id),
                lsn: node.lsn,
            },
        );
        self.min_death = self.min_death.min(node.death);
        self.push_key(&node.key);
        self.nodes.push(node);
        self.live += 1;
        self.changes_since_persist += 1;
        self.link(id, &real, norm);
    }

    /// Node `i`'s stored vector.
    fn owned(&self, i: usize) -> OwnedVector {
        let r = i * self.config.dim..(i + 1) * self.config.dim;
        match &self.store {
            Store::F32(v) => OwnedVector::F32(v[r].to_vec()),
            Store::F16(v) => OwnedVector::F16(v[r].to_vec()),
            Store::I8(v) => OwnedVector::I8 {
                data: v[r].to_vec(),
                scale: self.scales[i],
            },
        }
    }

    /// Whether superseded, deleted and lost versions outnumber the live ones
    /// (and there are more than [`VACUUM_MIN_DEAD`] of them).
    pub(crate) fn should_vacuum(&self) -> bool {
        let dead = self.nodes.len() - self.live;
        dead > VACUUM_MIN_DEAD && dead > self.live
    }

    /// A new index of only the nodes alive now and not expired at `now`,
    /// with a new graph. Reads at an LSN below `max_lsn` or a time before
    /// `now` may need versions it dropped.
    pub(crate) fn vacuum(&self, now: i64) -> CollIndex {
        let mut fresh = CollIndex::new(self.config);
        fresh.graph.rng = self.graph.rng;
        for (i, n) in self.nodes.iter().enumerate() {
            if n.dead_lsn == ALIVE && n.death > now {
                fresh.insert_node(n.clone(), self.owned(i));
            }
        }
        fresh.graph_inserts += self.graph_inserts;
        fresh.max_lsn = self.max_lsn;
        fresh.vacuums = self.vacuums + 1;
        fresh.changes_since_persist = fresh.changes_since_persist.max(1);
        fresh
    }

    fn link(&mut self, id: u32, real: &[f32], norm: f32) {
        if self.graph.bytes() >= self.config.max_graph_bytes {
            self.graph.reserve_node(id);
            self.overflow.push(id);
            return;
        }
        let mut g = std::mem::replace(&mut self.graph, Graph::new(1, 1));
        with_space!(&*self, |s| g.insert(&s, id, real, norm));
        self.graph = g;
        self.graph_inserts += 1;
    }

    fn fits(&self, d: &DecodedVector) -> bool {
        let (dtype, len) = match &d.vector {
            OwnedVector::F32(v) => (DType::F32, v.len()),
            OwnedVector::F16(v) => (DType::F16, v.len()),
            OwnedVector::I8 { data, .. } => (DType::I8, data.len()),
        };
        dtype == self.config.dtype && len == self.config.dim
    }

    fn supersede(&mut self, key: &[u8], lsn: u64) {
        if let Some(KeyState {
            node: Some(old), ..
        }) = self.keys.get(key).copied()
        {
            let n = &mut self.nodes[old as usize];
            if n.dead_lsn == ALIVE {
                n.dead_lsn = lsn;
                self.live -= 1;
            }
        }
    }

    /// Applies a delete of `key` at `lsn`.
    pub(crate) fn apply_delete(&mut self, key: &[u8], lsn: u64, force: bool) {
        if !force && self.keys.get(key).is_some_and(|ks| ks.lsn >= lsn) {
            return;
        }
        self.max_lsn = self.max_lsn.max(lsn);
        self.supersede(key, lsn);
        self.keys.insert(key.into(), KeyState { node: None, lsn });
        self.changes_since_persist += 1;
    }

    /// Whether every node is visible at `p` (no version superseded or
    /// deleted, none expired at `p.time`, none written after `p.lsn`).
    #[inline]
    fn all_visible(&self, p: ReadPoint) -> bool {
        self.live == self.nodes.len() && self.max_lsn <= p.lsn && self.min_death > p.time
    }

    /// The `k` nearest vectors visible at `p` that pass `filter`.
    pub(crate) fn search(
        &self,
        q: &[f32],
        k: usize,
        filter: Option<&Filter>,
        p: ReadPoint,
        ef: usize,
        force_exact: bool,
    ) -> (Vec<SearchHit>, Plan) {
        let (c, plan) = self.search_ids(q, k, filter, p, ef, force_exact);
        (self.hits(c), plan)
    }

    /// The key of node `id`.
    #[inline]
    pub(crate) fn key(&self, id: u32) -> &[u8] {
        let i = id as usize;
        let start = if i == 0 { 0 } else { self.key_ends[i - 1] };
        &self.key_bytes[start..self.key_ends[i]]
    }

    /// Appends node `id`'s key to the contiguous key array (nodes are
    /// pushed in id order).
    pub(crate) fn push_key(&mut self, key: &[u8]) {
        self.key_bytes.extend_from_slice(key);
        self.key_ends.push(self.key_bytes.len());
    }

    /// [`CollIndex::search`] as node ids and distances.
    pub(crate) fn search_ids(
        &self,
        q: &[f32],
        k: usize,
        filter: Option<&Filter>,
        p: ReadPoint,
        ef: usize,
        force_exact: bool,
    ) -> (Vec<Cand>, Plan) {
        let qn = distance::norm(q);
        let n = self.nodes.len();
        let graph_nodes = n - self.overflow.len();
        let use_graph = !force_exact && self.live > self.config.exact_threshold && graph_nodes > 0;
        let hits = match filter {
            None if !use_graph && self.all_visible(p) => {
                return (self.exact(q, qn, k, 0..n as u32), Plan::Exact);
            }
            None if !use_graph => {
                let ids = (0..n as u32).filter(|&i| self.nodes[i as usize].visible(p));
                return (self.exact(q, qn, k, ids), Plan::Exact);
            }
            None if self.all_visible(p) => {
                // Nothing superseded, deleted, expired or newer than the read
                // point: no node needs checking.
                let accept = |_: u32| true;
                let mut c = self.graph_search(q, qn, k, ef, &accept);
                self.merge_overflow(&mut c, q, qn, k, &accept);
                c
            }
            None => {
                let accept = |i: u32| self.nodes[i as usize].visible(p);
                let mut c = self.graph_search(q, qn, k, ef, &accept);
                self.merge_overflow(&mut c, q, qn, k, &accept);
                c
            }
            Some(f) => {
                let cf = self.cols.compile(f);
                let pass = |i: u32| {
                    let nd = &self.nodes[i as usize];
                    nd.visible(p) && self.cols.matches(&cf, &nd.key, i)
                };
                // Estimate the selectivity from an evenly spaced sample.
                let step = (n / SAMPLE).max(1);
                let (mut seen, mut hit) = (0usize, 0usize);
                for i in (0..n).step_by(step) {
                    let nd = &self.nodes[i];
                    if nd.visible(p) {
                        seen += 1;
                        hit += self.cols.matches(&cf, &nd.key, i as u32) as usize;
                    }
                }
                let sel = hit as f64 / seen.max(1) as f64;
                let est_pass = sel * self.live as f64;
                // Costs in random-access distance computations (measured on
                // 100k x 128, one core): the scan evaluates the filter on
                // every node (~1/25 of a distance each) and computes one
                // distance per match; the graph walk keeps `ef` accepted
                // candidates while crossing rejected nodes, about
                // ef * m0 / 2 distances unfiltered, growing roughly with
                // 1/sqrt(selectivity) (x2.1 at 50%, x4.6 at 10% measured).
                // Too few sampled matches to trust the estimate means exact.
                let exact_cost = n as f64 / 25.0 + est_pass;
                let hnsw_cost = (ef.max(k) * self.graph.m0) as f64 / 2.0 / sel.max(1e-9).sqrt();
                if !use_graph
                    || hit < MIN_SAMPLE_HITS
                    || exact_cost <= hnsw_cost
                    || est_pass <= self.config.exact_threshold as f64
                {
                    let ids = (0..n as u32).filter(|&i| pass(i));
                    return (self.exact(q, qn, k, ids), Plan::Exact);
                }
                // HNSW over the whole graph: rejected nodes are crossed but
                // only matches count towards `ef`.
                let mut c = self.graph_search(q, qn, k, ef.max(k), &pass);
                self.merge_overflow(&mut c, q, qn, k, &pass);
                c
            }
        };
        (hits, Plan::Hnsw)
    }

    /// The graph search, with the kernel resolved once per query.
    fn graph_search<A: Fn(u32) -> bool>(
        &self,
        q: &[f32],
        qn: f32,
        k: usize,
        ef: usize,
        accept: &A,
    ) -> Vec<Cand> {
        with_space!(self, |s| self.graph.search(&s, q, qn, k, ef, accept))
    }

    fn merge_overflow(
        &self,
        c: &mut Vec<Cand>,
        q: &[f32],
        qn: f32,
        k: usize,
        accept: &dyn Fn(u32) -> bool,
    ) {
        if self.overflow.is_empty() {
            return;
        }
        // The k best of the overflow (a bounded heap, not a sort of all of it).
        let ids = self.overflow.iter().copied().filter(|&i| accept(i));
        c.extend(self.exact(q, qn, k, ids));
        c.sort();
        c.truncate(k);
    }

    fn exact(&self, q: &[f32], qn: f32, k: usize, ids: impl Iterator<Item = u32>) -> Vec<Cand> {
        with_space!(self, |s| top_k(&s, q, qn, k, ids))
    }

    fn hits(&self, c: Vec<Cand>) -> Vec<SearchHit> {
        c.into_iter()
            .map(|c| SearchHit {
                key: self.key(c.1).to_vec(),
                distance: c.0,
            })
            .collect()
    }
}

/// The `k` nearest of `ids`, closest first.
fn top_k<S: Space>(
    s: &S,
    q: &[f32],
    qn: f32,
    k: usize,
    ids: impl Iterator<Item = u32>,
) -> Vec<Cand> {
    let mut heap: BinaryHeap<Cand> = BinaryHeap::with_capacity(k + 1);
    let mut worst = f32::INFINITY;
    for i in ids {
        // Scans run over ascending ids: ask for a vector a few ahead.
        s.prefetch(i.wrapping_add(8));
        let d = s.dist(q, qn, i);
        if d < worst || heap.len() < k {
            heap.push(Cand(d, i));
            if heap.len() > k {
                heap.pop();
            }
            if heap.len() == k {
                worst = heap.peek().map_or(f32::INFINITY, |w| w.0);
            }
        }
    }
    heap.into_sorted_vec()
}

/// Exact k-NN over decoded records (used for snapshots older than the index).
pub(crate) fn exact_over_records(
    config: &VectorConfig,
    q: &[f32],
    k: usize,
    filter: Option<&Filter>,
    records: impl Iterator<Item = (Vec<u8>, Vec<u8>)>,
) -> Vec<SearchHit> {
    let mut idx = CollIndex::new(VectorConfig {
        exact_threshold: usize::MAX,
        max_graph_bytes: 0,
        ..*config
    });
    idx.graph = Graph::new(config.hnsw_m, 1);
    for (i, (key, value)) in records.enumerate() {
        // max_graph_bytes = 0 keeps every node out of the graph.
        idx.apply_put(&key, i as u64 + 1, i64::MAX, &value, true);
    }
    let p = ReadPoint {
        lsn: u64::MAX - 1,
        time: i64::MIN,
    };
    idx.search(q, k, filter, p, 1, true).0
}
