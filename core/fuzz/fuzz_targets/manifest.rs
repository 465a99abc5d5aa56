#![no_main]
//! Fuzz target `manifest`: see `edgestore_fuzz::manifest` (core/fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| edgestore_fuzz::manifest(data));
