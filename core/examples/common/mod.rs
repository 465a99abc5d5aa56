//! Helpers the engine examples share (`#[path]`-included, not an example itself).
#![allow(dead_code)] // each example uses a part

use edgestore::EdgestoreConfig;

/// xorshift64: the same sequence on every run.
pub fn next(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// db_bench's key `i`: the number 2i, zero-padded to 16 digits (so 2i+1
/// falls between present keys).
pub fn db_bench_key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k.copy_from_slice(format!("{:016}", 2 * i).as_bytes());
    k
}

/// CPU time of the calling thread in nanoseconds (Linux: the first field of
/// `/proc/thread-self/schedstat`; time a hypervisor stole is not in it where
/// the kernel accounts steal), or 0 where unavailable. On the VM this was
/// written on it advances in 4 ms ticks: good for large effects only.
pub fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `CACHE_MB` from the environment, when set, as the block cache size.
pub fn block_cache_from_env(c: &mut EdgestoreConfig) {
    if let Some(mb) = std::env::var("CACHE_MB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        c.block_cache_bytes = mb << 20;
    }
}
