//! Gives the Linux shared library a SONAME, so programs linked against it
//! record `libedgestore.so` (not the build path) and find it via rpath or the
//! loader path, wherever it is installed.
fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libedgestore.so");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
