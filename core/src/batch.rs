//! Atomic write batches.

use crate::error::{Error, Result};
use crate::types::{check_key, check_value, encode_key, Operation, MAX_BATCH_BYTES};
use crate::wal::WalOp;

/// A set of puts and deletes applied all or nothing, also across a crash
/// (the batch is one WAL record). Later operations on the same key win.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    pub(crate) ops: Vec<WalOp>,
    pub(crate) bytes: usize,
    pub(crate) user_bytes: u64,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, op: Operation, ns: &[u8], key: &[u8], value: &[u8], ttl: u32) -> Result<()> {
        check_key(ns, key)?;
        check_value(value)?;
        let ikey = encode_key(ns, key);
        let size = ikey.len() + value.len() + 13;
        if self.bytes + size > MAX_BATCH_BYTES {
            return Err(Error::invalid(format!(
                "batch would exceed {MAX_BATCH_BYTES} bytes"
            )));
        }
        self.bytes += size;
        self.user_bytes += (key.len() + value.len()) as u64;
        self.ops.push(WalOp {
            op,
            ttl,
            key: ikey,
            value: value.to_vec(),
        });
        Ok(())
    }

    /// Adds a put that never expires.
    pub fn put(&mut self, ns: &[u8], key: &[u8], value: &[u8]) -> Result<()> {
        self.push(Operation::Put, ns, key, value, 0)
    }

    /// Adds a put that expires `ttl_secs` seconds after the batch is written (0 = never).
    pub fn put_with_ttl(
        &mut self,
        ns: &[u8],
        key: &[u8],
        value: &[u8],
        ttl_secs: u32,
    ) -> Result<()> {
        self.push(Operation::Put, ns, key, value, ttl_secs)
    }

    /// Adds a delete.
    pub fn delete(&mut self, ns: &[u8], key: &[u8]) -> Result<()> {
        self.push(Operation::Delete, ns, key, b"", 0)
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch holds no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Removes every operation.
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}
