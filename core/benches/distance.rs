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
                #[cfg(feature = "simsimd")]
                simsimd_side(&mut g, ty, l2, dim, &q, &f32s);
                g.finish();
            }
        }
    }
}

#[cfg(feature = "simsimd")]
fn simsimd_side(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    ty: &str,
    l2: bool,
    dim: usize,
    q: &[f32],
    f32s: &[f32],
) {
    use simsimd::SpatialSimilarity;
    let run = |a: f64| a as f32;
    match ty {
        "f32" => g.bench_function("simsimd", |b| {
            b.iter(|| {
                let mut s = 0f32;
                for y in f32s.chunks_exact(dim) {
                    let (q, y) = (black_box(q), black_box(y));
                    s += run(if l2 { f32::l2sq(q, y) } else { f32::dot(q, y) }.unwrap());
                }
                s
            })
        }),
        "f16" => {
            let qh: Vec<simsimd::f16> = q.iter().map(|&x| simsimd::f16(f32_to_f16(x))).collect();
            let yh: Vec<simsimd::f16> = f32s.iter().map(|&x| simsimd::f16(f32_to_f16(x))).collect();
            g.bench_function("simsimd-f16q", |b| {
                b.iter(|| {
                    let mut s = 0f32;
                    for y in yh.chunks_exact(dim) {
                        let (q, y) = (black_box(&qh[..]), black_box(y));
                        s += run(if l2 {
                            simsimd::f16::l2sq(q, y)
                        } else {
                            simsimd::f16::dot(q, y)
                        }
                        .unwrap());
                    }
                    s
                })
            })
        }
        _ => {
            let qi: Vec<i8> = q.iter().map(|&x| (x * 127.0) as i8).collect();
            let yi: Vec<i8> = f32s.iter().map(|&x| (x * 127.0) as i8).collect();
            g.bench_function("simsimd-i8q", |b| {
                b.iter(|| {
                    let mut s = 0f32;
                    for y in yi.chunks_exact(dim) {
                        let (q, y) = (black_box(&qi[..]), black_box(y));
                        s += run(if l2 { i8::l2sq(q, y) } else { i8::dot(q, y) }.unwrap());
                    }
                    s
                })
            })
        }
    };
}

criterion_group!(benches, kernels);
criterion_main!(benches);
