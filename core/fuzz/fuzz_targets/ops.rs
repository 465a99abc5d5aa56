#![no_main]
//! Fuzz target `ops`: see `edgestore_fuzz::ops` (core/fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| edgestore_fuzz::ops(data));
