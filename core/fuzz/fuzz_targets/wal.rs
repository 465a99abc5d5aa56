#![no_main]
//! Fuzz target `wal`: see `edgestore_fuzz::wal` (core/fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| edgestore_fuzz::wal(data));
