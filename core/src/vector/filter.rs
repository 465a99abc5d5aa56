//! Search filters over keys and metadata.

use std::cmp::Ordering;

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
                let ok_lo = min.as_ref().is_none_or(|lo| match compare(v, lo) {
                    Some(Ordering::Greater) => true,
                    Some(Ordering::Equal) => *inclusive,
                    _ => false,
                });
                let ok_hi = max.as_ref().is_none_or(|hi| match compare(v, hi) {
                    Some(Ordering::Less) => true,
                    Some(Ordering::Equal) => *inclusive,
                    _ => false,
                });
                ok_lo && ok_hi
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
}
