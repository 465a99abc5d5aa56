//! The index file, and the scan of a collection's records that loading
//! reconciles it with.
//!
//! File `vec-<collection id as 16 hex digits>.idx` in the database directory,
//! written to `<name>.tmp`, synced and renamed over the old one (a leftover
//! `.tmp` is removed by [`crate::Engine::open`]). Layout, little-endian:
//!
//! ```text
//! magic "ESVECIX1" | format u32 = 1 | collection id u64 | catalog hash u64
//! covered_lsn u64 | node count u32
//! graph: m u32 | m0 u32 | ef_construction u32 | entry u32 (u32::MAX = none)
//!        | max_level u8 | rng u64
//! per node: key (u32 len + bytes) | lsn u64 | value hash u64 | death i64
//!           | dead_lsn u64 | scale f32 | norm f32 | metadata (u32 len + bytes,
//!           record encoding; len 0 = none) | level u8 (255 = not in graph)
//!           | for each level 0..=level: link count u32 + ids u32
//! elements: node count * dim * element size bytes
//! xxh3-64 of everything above, u64
//! ```
//!
//! The catalog hash (xxh3 of the catalog record value) ties the file to the
//! collection's configuration. `covered_lsn` is the newest LSN the file
//! reflects. Any mismatch, short read or checksum failure makes the loader
//! ignore the file and rebuild from the records.

use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::xxh3_64;

use super::hnsw::{Graph, NOT_IN_GRAPH};
use super::index::{CollIndex, KeyState, Node, Store, ALIVE};
use super::record::{decode_metadata, encode_metadata, MAX_SPACE_KEY_LEN};
use crate::codec::{put_bytes, put_i64, put_u32, put_u64, put_u8, Decoder};
use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::types::{prefix_successor, MemEntry};
use crate::version::Version;

const MAGIC: &[u8; 8] = b"ESVECIX1";
const FORMAT: u32 = 1;

pub(crate) fn file_name(id: u64) -> String {
    format!("vec-{id:016x}.idx")
}

pub(crate) fn encode(idx: &CollIndex, id: u64, catalog_hash: u64) -> Vec<u8> {
    let g = &idx.graph;
    let elems = idx.nodes.len() * idx.config.dim * idx.config.dtype.size();
    let mut out = Vec::with_capacity(elems + idx.nodes.len() * 200 + 64);
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, FORMAT);
    put_u64(&mut out, id);
    put_u64(&mut out, catalog_hash);
    put_u64(&mut out, idx.nodes.iter().map(|n| n.lsn).max().unwrap_or(0));
    put_u32(&mut out, idx.nodes.len() as u32);
    put_u32(&mut out, g.m as u32);
    put_u32(&mut out, g.m0 as u32);
    put_u32(&mut out, g.ef_construction as u32);
    put_u32(&mut out, g.entry.unwrap_or(u32::MAX));
    put_u8(&mut out, g.max_level);
    put_u64(&mut out, g.rng);
    let mut meta = Vec::new();
    for (i, n) in idx.nodes.iter().enumerate() {
        put_bytes(&mut out, &n.key);
        put_u64(&mut out, n.lsn);
        put_u64(&mut out, n.vhash);
        put_i64(&mut out, n.death);
        put_u64(&mut out, n.dead_lsn);
        put_u32(&mut out, idx.scales[i].to_bits());
        put_u32(&mut out, idx.norms[i].to_bits());
        meta.clear();
        if let Some(m) = &n.meta {
            encode_metadata(m, &mut meta);
        }
        put_bytes(&mut out, &meta);
        let level = g.levels[i];
        put_u8(&mut out, level);
        if level != NOT_IN_GRAPH {
            let base = i * (g.m0 + 1);
            let cnt = g.l0[base] as usize;
            for &x in &g.l0[base..base + 1 + cnt] {
                put_u32(&mut out, x);
            }
            for l in 1..=level as usize {
                let b = (l - 1) * (g.m + 1);
                let u = &g.upper[i];
                let cnt = u[b] as usize;
                for &x in &u[b..b + 1 + cnt] {
                    put_u32(&mut out, x);
                }
            }
        }
    }
    match &idx.store {
        Store::F32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Store::F16(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Store::I8(v) => out.extend(v.iter().map(|&x| x as u8)),
    }
    let sum = xxh3_64(&out);
    put_u64(&mut out, sum);
    out
}

/// Decodes an index file; `Err` describes why it cannot be used.
pub(crate) fn decode(
    buf: &[u8],
    id: u64,
    catalog_hash: u64,
    fresh: CollIndex,
) -> std::result::Result<CollIndex, String> {
    if buf.len() < MAGIC.len() + 8 {
        return Err("file too short".into());
    }
    let (body, sum) = buf.split_at(buf.len() - 8);
    if xxh3_64(body) != u64::from_le_bytes(sum.try_into().map_err(|_| "short")?) {
        return Err("checksum mismatch".into());
    }
    let mut d = Decoder::new(body);
    if d.take(8)? != MAGIC || d.u32()? != FORMAT {
        return Err("not an index file of this format".into());
    }
    if d.u64()? != id || d.u64()? != catalog_hash {
        return Err("file belongs to another collection or configuration".into());
    }
    let _covered = d.u64()?;
    let n = d.u32()? as usize;
    let mut idx = fresh;
    let (m, m0, efc) = (d.u32()? as usize, d.u32()? as usize, d.u32()? as usize);
    if m != idx.config.hnsw_m || m0 != 2 * m || efc != idx.config.ef_construction {
        return Err("graph parameters differ".into());
    }
    let mut g = Graph::new(m, efc);
    let entry = d.u32()?;
    g.entry = (entry != u32::MAX).then_some(entry);
    g.max_level = d.u8()?;
    g.rng = d.u64()?;
    // Every node takes at least 50 bytes: bound the allocations by the input.
    if n > body.len() / 50 + 1 {
        return Err("node count exceeds the file".into());
    }
    g.levels = Vec::with_capacity(n);
    g.l0 = vec![0; n * (m0 + 1)];
    g.upper = Vec::with_capacity(n);
    idx.nodes.reserve(n);
    let mut links = Vec::new();
    for i in 0..n {
        let key = d.bytes()?;
        if key.len() > MAX_SPACE_KEY_LEN {
            return Err("key too long".into());
        }
        let lsn = d.u64()?;
        let vhash = d.u64()?;
        let death = d.i64()?;
        let dead_lsn = d.u64()?;
        let scale = f32::from_bits(d.u32()?);
        let norm = f32::from_bits(d.u32()?);
        let mb = d.bytes()?;
        let meta = if mb.is_empty() {
            None
        } else {
            Some(Box::new(decode_metadata(&mut Decoder::new(mb))?))
        };
        let level = d.u8()?;
        g.levels.push(level);
        let mut up = Vec::new();
        if level != NOT_IN_GRAPH {
            for l in 0..=level as usize {
                let cap = if l == 0 { m0 } else { m };
                let cnt = d.u32()? as usize;
                if cnt > cap {
                    return Err("too many links".into());
                }
                links.clear();
                links.push(cnt as u32);
                for _ in 0..cnt {
                    links.push(d.u32()?);
                }
                links.resize(cap + 1, 0);
                if l == 0 {
                    g.l0[i * (m0 + 1)..(i + 1) * (m0 + 1)].copy_from_slice(&links);
                } else {
                    up.extend_from_slice(&links);
                }
            }
        } else {
            idx.overflow.push(i as u32);
        }
        g.upper.push(up);
        idx.scales.push(scale);
        idx.norms.push(norm);
        if dead_lsn == ALIVE {
            idx.live += 1;
            idx.keys.insert(
                key.into(),
                KeyState {
                    node: Some(i as u32),
                    lsn,
                },
            );
        }
        idx.cols.push(i as u32, meta.as_deref());
        idx.max_lsn = idx.max_lsn.max(lsn);
        if dead_lsn != ALIVE {
            idx.max_lsn = idx.max_lsn.max(dead_lsn);
        }
        idx.min_death = idx.min_death.min(death);
        idx.push_key(key);
        idx.nodes.push(Node {
            key: key.into(),
            lsn,
            vhash,
            death,
            dead_lsn,
            meta,
        });
    }
    let dim = idx.config.dim;
    let raw = d.take(n * dim * idx.config.dtype.size())?;
    match &mut idx.store {
        Store::F32(v) => v.extend(
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        Store::F16(v) => v.extend(
            raw.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]])),
        ),
        Store::I8(v) => v.extend(raw.iter().map(|&b| b as i8)),
    }
    if !d.is_empty() {
        return Err("trailing bytes".into());
    }
    g.check(n)?;
    idx.graph = g;
    Ok(idx)
}

/// Writes the file atomically (temp file, sync, rename, sync directory).
pub(crate) fn write_file(storage: &dyn Storage, dir: &Path, id: u64, bytes: &[u8]) -> Result<()> {
    let path = dir.join(file_name(id));
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let f = storage
        .create(&tmp)
        .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
    f.append(bytes)
        .and_then(|_| f.sync_data())
        .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    storage
        .rename(&tmp, &path)
        .map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))?;
    storage
        .sync_dir(dir)
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}

/// Every version of every key in `[prefix, successor(prefix))` of the
/// vector space, tombstones included, newest first per key, with
/// LSN <= `read_lsn`. User keys that share the byte prefix (from 255-byte
/// namespaces) are skipped by their length.
pub(crate) fn scan_versions(
    version: &Version,
    prefix: &[u8],
    read_lsn: u64,
) -> Result<Vec<MemEntry>> {
    let end = prefix_successor(prefix);
    let mut all: Vec<MemEntry> = Vec::new();
    let keep = |e: &MemEntry| e.key.len() <= MAX_SPACE_KEY_LEN && e.lsn <= read_lsn;
    for m in &version.mems {
        all.extend(m.versions(prefix, end.as_deref(), read_lsn).filter(keep));
    }
    for s in &version.segments {
        if !s.meta.overlaps(prefix, end.as_deref()) {
            continue;
        }
        let mut it = s.iter_from(prefix);
        while let Some(r) = it.next_record()? {
            if end.as_ref().is_some_and(|e| r.entry.key >= *e) {
                break;
            }
            if keep(&r.entry) {
                all.push(r.entry);
            }
        }
    }
    all.sort_by(|a, b| a.key.cmp(&b.key).then(b.lsn.cmp(&a.lsn)));
    all.dedup_by(|a, b| a.key == b.key && a.lsn == b.lsn);
    Ok(all)
}
