//! A hierarchical navigable small world graph (Malkov & Yashunin), built
//! incrementally. Nodes are never removed: superseded and deleted versions
//! stay as waypoints and are kept out of results by the caller's `accept`.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// Level of a node that is not in the graph.
pub(crate) const NOT_IN_GRAPH: u8 = u8::MAX;
const MAX_LEVEL: u8 = 16;

/// Distances between a query and stored nodes.
pub(crate) trait Space {
    /// Distance from query `q` (with Euclidean norm `qn`) to node `id`.
    fn dist(&self, q: &[f32], qn: f32, id: u32) -> f32;
    /// Writes node `id`'s real values into `out`; returns its norm.
    fn decode(&self, id: u32, out: &mut Vec<f32>) -> f32;
    /// Hints that node `id`'s elements will be read soon.
    #[inline]
    fn prefetch(&self, _id: u32) {}
}

/// A candidate: distance and node id, ordered by distance.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cand(pub f32, pub u32);

impl PartialEq for Cand {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0).then(self.1.cmp(&o.1))
    }
}

struct Visited {
    marks: Vec<u32>,
    epoch: u32,
    /// The candidate heap's buffer, kept between searches.
    cands: Vec<Reverse<Cand>>,
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { marks: Vec::new(), epoch: 0, cands: Vec::new() }) };
}

/// The graph. Level-0 links live in one flat array (`m0 + 1` slots per node:
/// count, then ids); upper levels in a small vector per node.
#[derive(Debug, Clone)]
pub(crate) struct Graph {
    pub m: usize,
    pub m0: usize,
    pub ef_construction: usize,
    pub levels: Vec<u8>,
    pub l0: Vec<u32>,
    pub upper: Vec<Vec<u32>>,
    pub entry: Option<u32>,
    pub max_level: u8,
    pub rng: u64,
}

impl Graph {
    pub(crate) fn new(m: usize, ef_construction: usize) -> Self {
        Graph {
            m,
            m0: 2 * m,
            ef_construction,
            levels: Vec::new(),
            l0: Vec::new(),
            upper: Vec::new(),
            entry: None,
            max_level: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// Approximate bytes held by the links.
    pub(crate) fn bytes(&self) -> usize {
        self.l0.len() * 4
            + self.levels.len()
            + self.upper.iter().map(|u| u.len() * 4 + 24).sum::<usize>()
    }

    /// Registers node `id` (ids are dense) without linking it.
    pub(crate) fn reserve_node(&mut self, id: u32) {
        let n = id as usize + 1;
        if self.levels.len() < n {
            self.levels.resize(n, NOT_IN_GRAPH);
            self.upper.resize(n, Vec::new());
            self.l0.resize(n * (self.m0 + 1), 0);
        }
    }

    #[inline]
    fn links(&self, id: u32, level: u8) -> &[u32] {
        if level == 0 {
            let base = id as usize * (self.m0 + 1);
            let n = self.l0[base] as usize;
            &self.l0[base + 1..base + 1 + n]
        } else {
            let u = &self.upper[id as usize];
            let base = (level as usize - 1) * (self.m + 1);
            let n = u[base] as usize;
            &u[base + 1..base + 1 + n]
        }
    }

    #[inline]
    fn prefetch_links(&self, id: u32, level: u8) {
        if level == 0 {
            let base = id as usize * (self.m0 + 1);
            super::distance::prefetch(self.l0.as_ptr().wrapping_add(base) as *const u8);
        }
    }

    fn set_links(&mut self, id: u32, level: u8, ids: &[u32]) {
        let (slot, cap) = if level == 0 {
            (id as usize * (self.m0 + 1), self.m0)
        } else {
            ((level as usize - 1) * (self.m + 1), self.m)
        };
        let n = ids.len().min(cap);
        let buf = if level == 0 {
            &mut self.l0[slot..slot + 1 + cap]
        } else {
            &mut self.upper[id as usize][slot..slot + 1 + cap]
        };
        buf[0] = n as u32;
        buf[1..1 + n].copy_from_slice(&ids[..n]);
    }

    fn random_level(&mut self) -> u8 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let u = ((r >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let ml = 1.0 / (self.m as f64).ln();
        ((-u.ln() * ml).floor() as u64).min(MAX_LEVEL as u64) as u8
    }

    fn greedy<S: Space>(&self, s: &S, q: &[f32], qn: f32, mut ep: Cand, level: u8) -> Cand {
        loop {
            let mut changed = false;
            for &nb in self.links(ep.1, level) {
                let d = s.dist(q, qn, nb);
                if d < ep.0 {
                    ep = Cand(d, nb);
                    changed = true;
                }
            }
            if !changed {
                return ep;
            }
        }
    }

    /// Best-first search of one level from `eps`; returns up to `ef` accepted
    /// nodes, closest first. Rejected nodes are still traversed.
    #[allow(clippy::too_many_arguments)] // the search state is passed flat on purpose (hot path)
    fn search_layer<S: Space, A: Fn(u32) -> bool>(
        &self,
        s: &S,
        q: &[f32],
        qn: f32,
        eps: &[Cand],
        ef: usize,
        level: u8,
        accept: &A,
    ) -> Vec<Cand> {
        VISITED.with(|v| {
            let mut v = v.borrow_mut();
            let n = self.levels.len();
            if v.marks.len() < n {
                v.marks.resize(n, 0);
            }
            v.epoch = v.epoch.wrapping_add(1);
            if v.epoch == 0 {
                v.marks.iter_mut().for_each(|m| *m = 0);
                v.epoch = 1;
            }
            let epoch = v.epoch;
            let mut cands = BinaryHeap::from(std::mem::take(&mut v.cands));
            let mut res: BinaryHeap<Cand> = BinaryHeap::with_capacity(ef + 1);
            for &ep in eps {
                v.marks[ep.1 as usize] = epoch;
                cands.push(Reverse(ep));
                if accept(ep.1) {
                    res.push(ep);
                }
            }
            while res.len() > ef {
                res.pop();
            }
            while let Some(Reverse(c)) = cands.pop() {
                if res.len() >= ef && res.peek().is_some_and(|w| c.0 > w.0) {
                    break;
                }
                let links = self.links(c.1, level);
                // Ask for the next neighbour's elements while this one's
                // distance is computed (the walk is bound by memory latency).
                if let Some(&first) = links.first() {
                    s.prefetch(first);
                }
                for (j, &nb) in links.iter().enumerate() {
                    if let Some(&next) = links.get(j + 1) {
                        s.prefetch(next);
                    }
                    let mark = &mut v.marks[nb as usize];
                    if *mark == epoch {
                        continue;
                    }
                    *mark = epoch;
                    let d = s.dist(q, qn, nb);
                    if res.len() < ef || res.peek().is_some_and(|w| d < w.0) {
                        // Its links are read if it is expanded.
                        self.prefetch_links(nb, level);
                        cands.push(Reverse(Cand(d, nb)));
                        if accept(nb) {
                            res.push(Cand(d, nb));
                            if res.len() > ef {
                                res.pop();
                            }
                        }
                    }
                }
            }
            let mut buf = cands.into_vec();
            buf.clear();
            v.cands = buf;
            res.into_sorted_vec()
        })
    }

    /// The diversity heuristic: keep a candidate only if it is closer to the
    /// new node than to every neighbour already kept.
    fn select<S: Space>(&self, s: &S, cands: &[Cand], m: usize) -> Vec<Cand> {
        if cands.len() <= m {
            return cands.to_vec();
        }
        let mut out: Vec<Cand> = Vec::with_capacity(m);
        let mut buf = Vec::new();
        for &c in cands {
            if out.len() >= m {
                break;
            }
            let cn = s.decode(c.1, &mut buf);
            if out.iter().all(|o| s.dist(&buf, cn, o.1) >= c.0) {
                out.push(c);
            }
        }
        out
    }

    fn add_link<S: Space>(&mut self, s: &S, node: u32, new: u32, d: f32, level: u8) {
        let cap = if level == 0 { self.m0 } else { self.m };
        let cur = self.links(node, level).to_vec();
        if cur.contains(&new) {
            return;
        }
        if cur.len() < cap {
            let mut ids = cur;
            ids.push(new);
            self.set_links(node, level, &ids);
            return;
        }
        let mut buf = Vec::new();
        let nn = s.decode(node, &mut buf);
        let mut cands: Vec<Cand> = cur.iter().map(|&c| Cand(s.dist(&buf, nn, c), c)).collect();
        cands.push(Cand(d, new));
        cands.sort();
        let kept: Vec<u32> = self.select(s, &cands, cap).iter().map(|c| c.1).collect();
        self.set_links(node, level, &kept);
    }

    /// Links node `id`, whose real values are `q` (norm `qn`), into the graph.
    pub(crate) fn insert<S: Space>(&mut self, s: &S, id: u32, q: &[f32], qn: f32) {
        self.reserve_node(id);
        let level = self.random_level();
        self.levels[id as usize] = level;
        self.upper[id as usize] = vec![0; level as usize * (self.m + 1)];
        let Some(entry) = self.entry else {
            self.entry = Some(id);
            self.max_level = level;
            return;
        };
        let mut ep = Cand(s.dist(q, qn, entry), entry);
        let mut l = self.max_level;
        while l > level {
            ep = self.greedy(s, q, qn, ep, l);
            l -= 1;
        }
        let mut eps = vec![ep];
        let top = level.min(self.max_level);
        for l in (0..=top).rev() {
            let w = self.search_layer(s, q, qn, &eps, self.ef_construction, l, &|_| true);
            let nbrs = self.select(s, &w, self.m);
            let ids: Vec<u32> = nbrs.iter().map(|c| c.1).collect();
            self.set_links(id, l, &ids);
            for c in &nbrs {
                self.add_link(s, c.1, id, c.0, l);
            }
            if !w.is_empty() {
                eps = w;
            }
        }
        if level > self.max_level {
            self.max_level = level;
            self.entry = Some(id);
        }
    }

    /// The `k` nearest accepted nodes, searching level 0 with list size `ef`.
    pub(crate) fn search<S: Space, A: Fn(u32) -> bool>(
        &self,
        s: &S,
        q: &[f32],
        qn: f32,
        k: usize,
        ef: usize,
        accept: &A,
    ) -> Vec<Cand> {
        let Some(entry) = self.entry else {
            return Vec::new();
        };
        let mut ep = Cand(s.dist(q, qn, entry), entry);
        for l in (1..=self.max_level).rev() {
            ep = self.greedy(s, q, qn, ep, l);
        }
        let mut w = self.search_layer(s, q, qn, &[ep], ef.max(k), 0, accept);
        w.truncate(k);
        w
    }

    /// Checks the structure read from a file: every link in range, levels
    /// consistent. Returns a message on the first problem.
    pub(crate) fn check(&self, n: usize) -> Result<(), String> {
        if self.levels.len() != n || self.upper.len() != n || self.l0.len() != n * (self.m0 + 1) {
            return Err("graph size differs from the node count".into());
        }
        if let Some(e) = self.entry {
            if e as usize >= n || self.levels[e as usize] != self.max_level {
                return Err("bad entry point".into());
            }
        }
        for id in 0..n as u32 {
            let lv = self.levels[id as usize];
            if lv == NOT_IN_GRAPH {
                continue;
            }
            if lv > MAX_LEVEL || self.upper[id as usize].len() != lv as usize * (self.m + 1) {
                return Err(format!("node {id} has a bad level"));
            }
            for l in 0..=lv {
                let base_n = if l == 0 {
                    self.l0[id as usize * (self.m0 + 1)] as usize
                } else {
                    self.upper[id as usize][(l as usize - 1) * (self.m + 1)] as usize
                };
                if base_n > if l == 0 { self.m0 } else { self.m } {
                    return Err(format!("node {id} has too many links"));
                }
                if self.links(id, l).iter().any(|&x| {
                    x as usize >= n
                        || self.levels[x as usize] == NOT_IN_GRAPH
                        || self.levels[x as usize] < l
                }) {
                    return Err(format!("node {id} links out of range"));
                }
            }
        }
        Ok(())
    }
}
