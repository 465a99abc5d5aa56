#![no_main]
//! Fuzz target `segment`: see `edgestore_fuzz::segment` (core/fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| edgestore_fuzz::segment(data));
