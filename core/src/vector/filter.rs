//! Search filters over keys and metadata.

use std::cmp::Ordering;
use std::collections::HashMap;

use super::{MetaValue, Metadata};
use crate::error::{Error, Result};

/// Which vectors a search may return.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Keys starting with these bytes.
    KeyPrefix(Vec<u8>),
    /// The field exists and equals the value (integers and floats compare by value).
    Eq(String, MetaValue),
    /// The field exists and lies in the range; a bound of `None` is open.
    /// Numbers compare with numbers, strings with strings, bools with bools.
    Range {
        /// Field name.
        field: String,
        /// Lower bound.
        min: Option<MetaValue>,
        /// Upper bound.
        max: Option<MetaValue>,
        /// Whether the bounds themselves match (default for [`Filter::range`]).
        inclusive: bool,
    },
    /// The field exists.
    Exists(String),
    /// Every filter matches.
    And(Vec<Filter>),
    /// At least one filter matches.
    Or(Vec<Filter>),
    /// The filter does not match.
    Not(Box<Filter>),
}

impl Filter {
    /// `field == value`.
    pub fn eq(field: impl Into<String>, value: impl Into<MetaValue>) -> Self {
        Filter::Eq(field.into(), value.into())
    }

    /// `min <= field <= max`, either bound optional.
    pub fn range(field: impl Into<String>, min: Option<MetaValue>, max: Option<MetaValue>) -> Self {
        Filter::Range {
            field: field.into(),
            min,
            max,
            inclusive: true,
        }
    }

    /// Keys starting with `prefix`.
    pub fn key_prefix(prefix: impl Into<Vec<u8>>) -> Self {
        Filter::KeyPrefix(prefix.into())
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let nan = |v: &MetaValue| matches!(v, MetaValue::F64(x) if x.is_nan());
        match self {
            Filter::Eq(_, v) if nan(v) => Err(Error::invalid("filter compares with NaN")),
            Filter::Range { min, max, .. }
                if min.as_ref().is_some_and(nan) || max.as_ref().is_some_and(nan) =>
            {
                Err(Error::invalid("filter compares with NaN"))
            }
            Filter::And(fs) | Filter::Or(fs) => fs.iter().try_for_each(Filter::validate),
            Filter::Not(f) => f.validate(),
            _ => Ok(()),
        }
    }

    /// Whether a vector with `key` and `meta` matches.
    pub fn matches(&self, key: &[u8], meta: Option<&Metadata>) -> bool {
        let field = |name: &str| meta.and_then(|m| m.get(name));
        match self {
            Filter::KeyPrefix(p) => key.starts_with(p),
            Filter::Eq(name, want) => {
                field(name).is_some_and(|v| compare(v, want) == Some(Ordering::Equal))
            }
            Filter::Range {
                field: name,
                min,
                max,
                inclusive,
            } => field(name).is_some_and(|v| {
                in_range(|b| compare(v, b), min.as_ref(), max.as_ref(), *inclusive)
            }),
            Filter::Exists(name) => field(name).is_some(),
            Filter::And(fs) => fs.iter().all(|f| f.matches(key, meta)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(key, meta)),
            Filter::Not(f) => !f.matches(key, meta),
        }
    }
}

/// Orders two values of comparable types; `None` across types.
fn compare(a: &MetaValue, b: &MetaValue) -> Option<Ordering> {
    use MetaValue::*;
    match (a, b) {
        (I64(x), I64(y)) => Some(x.cmp(y)),
        (F64(x), F64(y)) => x.partial_cmp(y),
        (I64(x), F64(y)) => (*x as f64).partial_cmp(y),
        (F64(x), I64(y)) => x.partial_cmp(&(*y as f64)),
        (Str(x), Str(y)) => Some(x.cmp(y)),
        (Bool(x), Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Metadata of every node of an index, by field, so that evaluating a
/// filter over all nodes is a pass over flat arrays instead of a map lookup
/// per node. A column covers the nodes up to the last one that has the field.
#[derive(Debug, Clone, Default)]
pub(crate) struct Columns {
    by_name: HashMap<String, usize>,
    cols: Vec<Column>,
}

#[derive(Debug, Clone, Default)]
struct Column {
    /// 0 = absent, 1 = i64, 2 = f64, 3 = string, 4 = bool.
    tags: Vec<u8>,
    bits: Vec<u64>,
    strs: Vec<Option<Box<str>>>,
}

#[derive(Debug, Clone, Copy)]
enum ValRef<'a> {
    I(i64),
    F(f64),
    S(&'a str),
    B(bool),
}

/// A filter with its field names resolved to columns.
#[derive(Debug)]
pub(crate) enum Compiled<'a> {
    KeyPrefix(&'a [u8]),
    Never,
    Eq(usize, &'a MetaValue),
    Range {
        col: usize,
        min: Option<&'a MetaValue>,
        max: Option<&'a MetaValue>,
        inclusive: bool,
    },
    Exists(usize),
    And(Vec<Compiled<'a>>),
    Or(Vec<Compiled<'a>>),
    Not(Box<Compiled<'a>>),
}

impl Columns {
    /// Records the metadata of node `id` (ids arrive in increasing order).
    pub(crate) fn push(&mut self, id: u32, meta: Option<&Metadata>) {
        let Some(m) = meta else { return };
        let i = id as usize;
        for (name, v) in m {
            let c = match self.by_name.get(name) {
                Some(&c) => c,
                None => {
                    self.cols.push(Column::default());
                    self.by_name.insert(name.clone(), self.cols.len() - 1);
                    self.cols.len() - 1
                }
            };
            let col = &mut self.cols[c];
            if col.tags.len() <= i {
                col.tags.resize(i + 1, 0);
                col.bits.resize(i + 1, 0);
            }
            let (tag, bits) = match v {
                MetaValue::I64(x) => (1, *x as u64),
                MetaValue::F64(x) => (2, x.to_bits()),
                MetaValue::Str(s) => {
                    if col.strs.len() <= i {
                        col.strs.resize(i + 1, None);
                    }
                    col.strs[i] = Some(s.as_str().into());
                    (3, 0)
                }
                MetaValue::Bool(b) => (4, *b as u64),
            };
            col.tags[i] = tag;
            col.bits[i] = bits;
        }
    }

    /// Approximate bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.cols
            .iter()
            .map(|c| {
                c.tags.len() * 9
                    + c.strs.len() * 16
                    + c.strs.iter().flatten().map(|s| s.len()).sum::<usize>()
            })
            .sum()
    }

    fn get(&self, col: usize, id: u32) -> Option<ValRef<'_>> {
        let c = &self.cols[col];
        let i = id as usize;
        Some(match *c.tags.get(i)? {
            1 => ValRef::I(c.bits[i] as i64),
            2 => ValRef::F(f64::from_bits(c.bits[i])),
            3 => ValRef::S(c.strs.get(i)?.as_deref()?),
            4 => ValRef::B(c.bits[i] != 0),
            _ => return None,
        })
    }

    pub(crate) fn compile<'a>(&self, f: &'a Filter) -> Compiled<'a> {
        let col = |name: &str| self.by_name.get(name).copied();
        match f {
            Filter::KeyPrefix(p) => Compiled::KeyPrefix(p),
            Filter::Eq(name, v) => col(name).map_or(Compiled::Never, |c| Compiled::Eq(c, v)),
            Filter::Range {
                field,
                min,
                max,
                inclusive,
            } => col(field).map_or(Compiled::Never, |c| Compiled::Range {
                col: c,
                min: min.as_ref(),
                max: max.as_ref(),
                inclusive: *inclusive,
            }),
            Filter::Exists(name) => col(name).map_or(Compiled::Never, Compiled::Exists),
            Filter::And(fs) => Compiled::And(fs.iter().map(|f| self.compile(f)).collect()),
            Filter::Or(fs) => Compiled::Or(fs.iter().map(|f| self.compile(f)).collect()),
            Filter::Not(f) => Compiled::Not(Box::new(self.compile(f))),
        }
    }

    /// Whether node `id` with `key` passes `c`.
    pub(crate) fn matches(&self, c: &Compiled<'_>, key: &[u8], id: u32) -> bool {
        match c {
            Compiled::KeyPrefix(p) => key.starts_with(p),
            Compiled::Never => false,
            Compiled::Eq(col, want) => self
                .get(*col, id)
                .is_some_and(|v| compare_ref(v, want) == Some(Ordering::Equal)),
            Compiled::Range {
                col,
                min,
                max,
                inclusive,
            } => self
                .get(*col, id)
                .is_some_and(|v| in_range(|b| compare_ref(v, b), *min, *max, *inclusive)),
            Compiled::Exists(col) => self.get(*col, id).is_some(),
            Compiled::And(cs) => cs.iter().all(|c| self.matches(c, key, id)),
            Compiled::Or(cs) => cs.iter().any(|c| self.matches(c, key, id)),
            Compiled::Not(c) => !self.matches(c, key, id),
        }
    }
}

fn in_range(
    cmp: impl Fn(&MetaValue) -> Option<Ordering>,
    min: Option<&MetaValue>,
    max: Option<&MetaValue>,
    inclusive: bool,
) -> bool {
    let ok_lo = min.is_none_or(|lo| match cmp(lo) {
        Some(Ordering::Greater) => true,
        Some(Ordering::Equal) => inclusive,
        _ => false,
    });
    let ok_hi = max.is_none_or(|hi| match cmp(hi) {
        Some(Ordering::Less) => true,
        Some(Ordering::Equal) => inclusive,
        _ => false,
    });
    ok_lo && ok_hi
}

fn compare_ref(a: ValRef<'_>, b: &MetaValue) -> Option<Ordering> {
    match a {
        ValRef::I(x) => compare(&MetaValue::I64(x), b),
        ValRef::F(x) => compare(&MetaValue::F64(x), b),
        ValRef::B(x) => compare(&MetaValue::Bool(x), b),
        ValRef::S(x) => match b {
            MetaValue::Str(y) => Some(x.cmp(y.as_str())),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates() {
        let mut m = Metadata::new();
        m.insert("year".into(), MetaValue::I64(2020));
        m.insert("lang".into(), MetaValue::Str("en".into()));
        let m = Some(&m);
        assert!(Filter::eq("year", 2020i64).matches(b"k", m));
        assert!(Filter::eq("year", 2020.0f64).matches(b"k", m));
        assert!(!Filter::eq("year", "2020").matches(b"k", m));
        assert!(!Filter::eq("missing", 1i64).matches(b"k", m));
        assert!(Filter::range("year", Some(2019i64.into()), Some(2020i64.into())).matches(b"k", m));
        let excl = Filter::Range {
            field: "year".into(),
            min: None,
            max: Some(2020i64.into()),
            inclusive: false,
        };
        assert!(!excl.matches(b"k", m));
        assert!(Filter::key_prefix("doc/").matches(b"doc/1", None));
        assert!(!Filter::key_prefix("doc/").matches(b"img/1", None));
        let f = Filter::And(vec![
            Filter::eq("lang", "en"),
            Filter::Not(Box::new(Filter::Exists("deleted".into()))),
        ]);
        assert!(f.matches(b"k", m));
        assert!(Filter::eq("x", f64::NAN).validate().is_err());
    }

    #[test]
    fn columns_agree_with_the_maps() {
        let metas: Vec<Option<Metadata>> = (0..50i64)
            .map(|i| {
                (i % 4 != 0).then(|| {
                    let mut m = Metadata::new();
                    m.insert("n".into(), MetaValue::I64(i));
                    if i % 3 == 0 {
                        m.insert("s".into(), MetaValue::Str(format!("s{}", i % 5)));
                    }
                    if i % 5 == 0 {
                        m.insert("f".into(), MetaValue::F64(i as f64 / 2.0));
                    }
                    m
                })
            })
            .collect();
        let mut cols = Columns::default();
        for (i, m) in metas.iter().enumerate() {
            cols.push(i as u32, m.as_ref());
        }
        let filters = [
            Filter::eq("n", 7i64),
            Filter::eq("s", "s3"),
            Filter::range("f", Some(2i64.into()), Some(MetaValue::F64(12.5))),
            Filter::range("s", Some("s1".into()), None),
            Filter::Exists("f".into()),
            Filter::eq("missing", 1i64),
            Filter::Or(vec![
                Filter::eq("n", 1i64),
                Filter::Not(Box::new(Filter::Exists("s".into()))),
            ]),
            Filter::key_prefix("k1"),
        ];
        for f in &filters {
            let c = cols.compile(f);
            for (i, m) in metas.iter().enumerate() {
                let key = format!("k{i}");
                assert_eq!(
                    cols.matches(&c, key.as_bytes(), i as u32),
                    f.matches(key.as_bytes(), m.as_ref()),
                    "{f:?} on {i}"
                );
            }
        }
    }
}
