//! Criterion benchmarks of every distance kernel this CPU can run, side by
//! side per element type, operation and dimension: one query against 256
//! stored vectors (cache-resident, so this measures the kernels, not memory).
//! Run with `cargo bench -p edgestore --bench distance`; the exact scan over
//! memory is measured by `examples/vector_bench.rs`.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use edgestore::vector::distance::{f32_to_f16, kernel_variants, KernelFn};

const POOL: usize = 256;

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

fn kernels(c: &mut Criterion) {
    let variants = kernel_variants();
    for dim in [64usize, 128, 768] {
        let q = data(dim, 1);
        let f32s = data(dim * POOL, 2);
        let f16s: Vec<u16> = f32s.iter().map(|&x| f32_to_f16(x)).collect();
        let i8s: Vec<i8> = f32s.iter().map(|&x| (x * 127.0) as i8).collect();
        for ty in ["f32", "f16", "i8"] {
            for l2 in [true, false] {
                let op = if l2 { "l2" } else { "dot" };
                let mut g = c.benchmark_group(format!("{ty}/{op}/dim{dim}"));
                g.throughput(Throughput::Elements((dim * POOL) as u64));
                g.warm_up_time(Duration::from_millis(300));
                g.measurement_time(Duration::from_millis(1200));
                g.sample_size(20);
                for v in variants.iter().filter(|v| v.l2 == l2) {
                    match v.f {
                        KernelFn::F32(f) if ty == "f32" => g.bench_function(v.isa, |b| {
                            b.iter(|| {
                                let mut s = 0f32;
                                for y in f32s.chunks_exact(dim) {
                                    s += f(black_box(&q), black_box(y), 1.0);
                                }
                                s
                            })
                        }),
                        KernelFn::F16(f) if ty == "f16" => g.bench_function(v.isa, |b| {
                            b.iter(|| {
                                let mut s = 0f32;
                                for y in f16s.chunks_exact(dim) {
                                    s += f(black_box(&q), black_box(y), 1.0);
                                }
                                s
                            })
                        }),
                        KernelFn::I8(f) if ty == "i8" => g.bench_function(v.isa, |b| {
                            b.iter(|| {
                                let mut s = 0f32;
                                for y in i8s.chunks_exact(dim) {
                                    s += f(black_box(&q), black_box(y), 0.01);
                                }
                                s
                            })
                        }),
                        _ => continue,
                    };
                }
                g.finish();
            }
        }
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
