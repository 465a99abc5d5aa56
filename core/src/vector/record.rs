//! Encoding of vector-space keys and of the catalog and vector record values.
//!
//! Catalog value (little-endian):
//! `[format=1][dim u32][metric u8][dtype u8][hnsw_m u32][ef_construction u32]
//! [ef_search u32][exact_threshold u32][max_graph_bytes u64][ns: u32 len + bytes]
//! [name: u32 len + bytes]`.
//!
//! Vector value: `[format=1][dtype u8][dim u32][scale f32][dim elements, LE]`
//! followed by the metadata: `[count u16]` then per field
//! `[name: u8 len + bytes][tag u8][payload]` with tag 0 = i64 (8 bytes),
//! 1 = f64 (8 bytes), 2 = string (u16 len + UTF-8), 3 = bool (1 byte).

use crate::codec::{put_bytes, put_u32, put_u64, put_u8, Decoder};
use crate::error::{Error, Result};

use super::{
    DType, MetaValue, Metadata, Metric, OwnedVector, VectorConfig, VectorInput,
    MAX_COLLECTION_NAME_LEN, MAX_META_FIELDS, MAX_META_NAME_LEN, MAX_META_STR_LEN,
    MAX_VECTOR_KEY_LEN,
};

/// First byte of every vector-space key.
pub(crate) const SPACE: u8 = 0xFF;
/// Second byte of catalog keys.
pub(crate) const CATALOG_TAG: u8 = 0x00;
/// Second byte of vector keys.
pub(crate) const VECTOR_TAG: u8 = 0x01;
/// Length of `[SPACE][tag][id]`.
pub(crate) const PREFIX_LEN: usize = 10;
/// Longest internal key in the vector space.
pub(crate) const MAX_SPACE_KEY_LEN: usize = 255;

const _: () = assert!(PREFIX_LEN + MAX_VECTOR_KEY_LEN == MAX_SPACE_KEY_LEN);

/// Id of the collection `name` in namespace `ns`.
pub(crate) fn collection_id(ns: &[u8], name: &[u8]) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&[ns.len() as u8]);
    h.update(ns);
    h.update(name);
    let d = h.finalize();
    u64::from_be_bytes(d.as_bytes()[..8].try_into().expect("8 bytes"))
}

pub(crate) fn catalog_key(id: u64) -> Vec<u8> {
    let mut k = vec![SPACE, CATALOG_TAG];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// `[SPACE][VECTOR_TAG][id]`: the prefix of every vector key of a collection.
pub(crate) fn vector_prefix(id: u64) -> Vec<u8> {
    let mut k = vec![SPACE, VECTOR_TAG];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

pub(crate) fn vector_key(id: u64, key: &[u8]) -> Vec<u8> {
    let mut k = vector_prefix(id);
    k.extend_from_slice(key);
    k
}

/// If `ikey` is a vector key, its collection id and user key.
pub(crate) fn parse_vector_key(ikey: &[u8]) -> Option<(u64, &[u8])> {
    if ikey.len() < PREFIX_LEN
        || ikey.len() > MAX_SPACE_KEY_LEN
        || ikey[0] != SPACE
        || ikey[1] != VECTOR_TAG
    {
        return None;
    }
    let id = u64::from_be_bytes(ikey[2..10].try_into().ok()?);
    Some((id, &ikey[PREFIX_LEN..]))
}

pub(crate) fn check_vector_key(key: &[u8]) -> Result<()> {
    if key.len() > MAX_VECTOR_KEY_LEN {
        return Err(Error::invalid(format!(
            "vector key is {} bytes; the limit is {MAX_VECTOR_KEY_LEN}",
            key.len()
        )));
    }
    Ok(())
}

pub(crate) fn check_names(ns: &[u8], name: &[u8]) -> Result<()> {
    crate::types::check_key(ns, b"")?;
    if name.is_empty() || name.len() > MAX_COLLECTION_NAME_LEN {
        return Err(Error::invalid(format!(
            "collection name must be 1..={MAX_COLLECTION_NAME_LEN} bytes, got {}",
            name.len()
        )));
    }
    Ok(())
}

/// A catalog entry: what a collection was created with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CatalogEntry {
    pub config: VectorConfig,
    pub ns: Vec<u8>,
    pub name: Vec<u8>,
}

pub(crate) fn encode_catalog(e: &CatalogEntry) -> Vec<u8> {
    let c = &e.config;
    let mut out = Vec::new();
    put_u8(&mut out, 1);
    put_u32(&mut out, c.dim as u32);
    put_u8(&mut out, c.metric.to_byte());
    put_u8(&mut out, c.dtype.to_byte());
    put_u32(&mut out, c.hnsw_m as u32);
    put_u32(&mut out, c.ef_construction as u32);
    put_u32(&mut out, c.ef_search as u32);
    put_u32(&mut out, c.exact_threshold as u32);
    put_u64(&mut out, c.max_graph_bytes as u64);
    put_bytes(&mut out, &e.ns);
    put_bytes(&mut out, &e.name);
    out
}

pub(crate) fn decode_catalog(buf: &[u8]) -> std::result::Result<CatalogEntry, String> {
    let mut d = Decoder::new(buf);
    if d.u8()? != 1 {
        return Err("unknown catalog format".into());
    }
    let dim = d.u32()? as usize;
    let metric = Metric::from_byte(d.u8()?).ok_or("bad metric")?;
    let dtype = DType::from_byte(d.u8()?).ok_or("bad dtype")?;
    let config = VectorConfig {
        dim,
        metric,
        dtype,
        hnsw_m: d.u32()? as usize,
        ef_construction: d.u32()? as usize,
        ef_search: d.u32()? as usize,
        exact_threshold: d.u32()? as usize,
        max_graph_bytes: d.u64()? as usize,
    };
    let ns = d.bytes()?.to_vec();
    let name = d.bytes()?.to_vec();
    Ok(CatalogEntry { config, ns, name })
}

/// Checks a vector against a collection's configuration: dimension, element
/// type, finiteness, and a non-zero norm for cosine. Returns its f32 values.
pub(crate) fn check_vector(config: &VectorConfig, v: &VectorInput<'_>) -> Result<Vec<f32>> {
    if v.dtype() != config.dtype {
        return Err(Error::invalid(format!(
            "vector has element type {}, the collection stores {}",
            v.dtype().name(),
            config.dtype.name()
        )));
    }
    check_query(config, v)
}

/// [`check_query`] into a reused buffer.
pub(crate) fn check_query_into(
    config: &VectorConfig,
    v: &VectorInput<'_>,
    out: &mut Vec<f32>,
) -> Result<()> {
    if let VectorInput::F32(x) = v {
        if x.len() == config.dim && x.iter().all(|e| e.is_finite()) {
            if config.metric == Metric::Cosine && x.iter().all(|&e| e == 0.0) {
                return Err(Error::invalid(
                    "a zero vector has no cosine distance".to_string(),
                ));
            }
            out.clear();
            out.extend_from_slice(x);
            return Ok(());
        }
    }
    *out = check_query(config, v)?;
    Ok(())
}

/// Like [`check_vector`] but any element type is accepted (queries).
pub(crate) fn check_query(config: &VectorConfig, v: &VectorInput<'_>) -> Result<Vec<f32>> {
    if v.len() != config.dim {
        return Err(Error::invalid(format!(
            "vector has dimension {}, the collection has {}",
            v.len(),
            config.dim
        )));
    }
    let f = v.checked_values()?;
    if config.metric == Metric::Cosine && f.iter().all(|&x| x == 0.0) {
        return Err(Error::invalid(
            "a zero vector has no cosine distance".to_string(),
        ));
    }
    Ok(f)
}

pub(crate) fn check_metadata(m: &Metadata) -> Result<()> {
    if m.len() > MAX_META_FIELDS {
        return Err(Error::invalid(format!(
            "{} metadata fields; the limit is {MAX_META_FIELDS}",
            m.len()
        )));
    }
    for (k, v) in m {
        if k.len() > MAX_META_NAME_LEN {
            return Err(Error::invalid(format!(
                "metadata field name is {} bytes; the limit is {MAX_META_NAME_LEN}",
                k.len()
            )));
        }
        match v {
            MetaValue::F64(x) if x.is_nan() => {
                return Err(Error::invalid(format!("metadata field {k:?} is NaN")))
            }
            MetaValue::Str(s) if s.len() > MAX_META_STR_LEN => {
                return Err(Error::invalid(format!(
                    "metadata field {k:?} is {} bytes; the limit is {MAX_META_STR_LEN}",
                    s.len()
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

pub(crate) fn encode_metadata(m: &Metadata, out: &mut Vec<u8>) {
    out.extend_from_slice(&(m.len() as u16).to_le_bytes());
    for (k, v) in m {
        put_u8(out, k.len() as u8);
        out.extend_from_slice(k.as_bytes());
        match v {
            MetaValue::I64(x) => {
                put_u8(out, 0);
                out.extend_from_slice(&x.to_le_bytes());
            }
            MetaValue::F64(x) => {
                put_u8(out, 1);
                out.extend_from_slice(&x.to_le_bytes());
            }
            MetaValue::Str(s) => {
                put_u8(out, 2);
                out.extend_from_slice(&(s.len() as u16).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            MetaValue::Bool(b) => {
                put_u8(out, 3);
                put_u8(out, *b as u8);
            }
        }
    }
}

fn u16_of(d: &mut Decoder<'_>) -> std::result::Result<u16, String> {
    let b = d.take(2)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

pub(crate) fn decode_metadata(d: &mut Decoder<'_>) -> std::result::Result<Metadata, String> {
    let n = u16_of(d)?;
    let mut m = Metadata::new();
    for _ in 0..n {
        let len = d.u8()? as usize;
        let name = String::from_utf8(d.take(len)?.to_vec()).map_err(|e| e.to_string())?;
        let v = match d.u8()? {
            0 => MetaValue::I64(d.i64()?),
            1 => MetaValue::F64(f64::from_bits(d.u64()?)),
            2 => {
                let len = u16_of(d)? as usize;
                MetaValue::Str(String::from_utf8(d.take(len)?.to_vec()).map_err(|e| e.to_string())?)
            }
            3 => MetaValue::Bool(d.u8()? != 0),
            t => return Err(format!("bad metadata tag {t}")),
        };
        m.insert(name, v);
    }
    Ok(m)
}

/// Encodes a checked vector and its metadata as a record value.
pub(crate) fn encode_vector(v: &VectorInput<'_>, meta: Option<&Metadata>) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + v.len() * v.dtype().size() + 2);
    put_u8(&mut out, 1);
    put_u8(&mut out, v.dtype().to_byte());
    put_u32(&mut out, v.len() as u32);
    match v {
        VectorInput::F32(x) => {
            out.extend_from_slice(&1f32.to_le_bytes());
            for e in x.iter() {
                out.extend_from_slice(&e.to_le_bytes());
            }
        }
        VectorInput::F16(x) => {
            out.extend_from_slice(&1f32.to_le_bytes());
            for e in x.iter() {
                out.extend_from_slice(&e.to_le_bytes());
            }
        }
        VectorInput::I8 { data, scale } => {
            out.extend_from_slice(&scale.to_le_bytes());
            out.extend(data.iter().map(|&e| e as u8));
        }
    }
    match meta {
        Some(m) => encode_metadata(m, &mut out),
        None => out.extend_from_slice(&0u16.to_le_bytes()),
    }
    out
}

/// A decoded vector record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DecodedVector {
    pub vector: OwnedVector,
    pub metadata: Metadata,
}

pub(crate) fn decode_vector(buf: &[u8]) -> std::result::Result<DecodedVector, String> {
    let mut d = Decoder::new(buf);
    if d.u8()? != 1 {
        return Err("unknown vector record format".into());
    }
    let dtype = DType::from_byte(d.u8()?).ok_or("bad dtype")?;
    let dim = d.u32()? as usize;
    let scale = f32::from_bits(d.u32()?);
    let raw = d.take(dim.checked_mul(dtype.size()).ok_or("dimension overflow")?)?;
    let vector = match dtype {
        DType::F32 => OwnedVector::F32(
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        DType::F16 => OwnedVector::F16(
            raw.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect(),
        ),
        DType::I8 => OwnedVector::I8 {
            data: raw.iter().map(|&b| b as i8).collect(),
            scale,
        },
    };
    let metadata = decode_metadata(&mut d)?;
    Ok(DecodedVector { vector, metadata })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::encode_key;

    #[test]
    fn vector_keys_never_equal_or_fall_inside_user_ranges() {
        let id = collection_id(b"ns", b"docs");
        let k = vector_key(id, &[7u8; MAX_VECTOR_KEY_LEN]);
        assert_eq!(k.len(), MAX_SPACE_KEY_LEN);
        assert_eq!(
            parse_vector_key(&k),
            Some((id, &[7u8; MAX_VECTOR_KEY_LEN][..]))
        );
        // The closest user keys: a 255-byte namespace starting with our prefix.
        let mut ns = k[1..].to_vec();
        ns.resize(255, 0);
        let user = encode_key(&ns, b"");
        assert_eq!(user[0], SPACE);
        assert!(user.len() > MAX_SPACE_KEY_LEN);
        assert_eq!(parse_vector_key(&user), None);
        // The whole user namespace sorts after every vector key that is a prefix of it.
        assert!(k < user || !user.starts_with(&k));
        assert!(!k.starts_with(&user));
    }

    #[test]
    fn values_round_trip() {
        let mut m = Metadata::new();
        m.insert("year".into(), MetaValue::I64(2024));
        m.insert("score".into(), MetaValue::F64(0.5));
        m.insert("lang".into(), MetaValue::Str("en".into()));
        m.insert("ok".into(), MetaValue::Bool(true));
        let data = [1i8, -2, 3];
        let v = VectorInput::I8 {
            data: &data,
            scale: 0.25,
        };
        let d = decode_vector(&encode_vector(&v, Some(&m))).unwrap();
        assert_eq!(d.metadata, m);
        assert_eq!(d.vector.as_input(), v);
        let e = CatalogEntry {
            config: VectorConfig::new(3, Metric::Cosine, DType::F16),
            ns: b"ns".to_vec(),
            name: b"n".to_vec(),
        };
        assert_eq!(decode_catalog(&encode_catalog(&e)).unwrap(), e);
        assert!(decode_vector(&[1, 0, 9, 0, 0, 0]).is_err());
    }
}
