//! Exact-scan throughput per stored element type and metric, without building
//! a graph (so it runs in seconds): the end-to-end check of the distance
//! kernels over data larger than the caches.
//!
//! `cargo run --release -p edgestore --example vector_scan -- [n] [dim] [queries] [rounds]`
//! (defaults 100000 128 100 5). Prints the best round per collection.
//! `VECTOR_SCAN_ONLY=f32-Cosine` runs one collection (for profiling);
//! `EDGESTORE_NO_AVX512=1` keeps the AVX2 kernels, for comparison.

use std::time::Instant;

use edgestore::vector::distance::{f32_to_f16, kernel_isa};
use edgestore::vector::quantize_i8;
use edgestore::{
    DType, EdgestoreConfig, Engine, Metric, SearchParams, SyncMode, VectorConfig, VectorInput,
    VectorPut,
};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numeric argument"))
        .collect();
    let n = args.first().copied().unwrap_or(100_000);
    let dim = args.get(1).copied().unwrap_or(128);
    let nq = args.get(2).copied().unwrap_or(100);
    let rounds = args.get(3).copied().unwrap_or(5);
    println!(
        "vector_scan: n={n} dim={dim} queries={nq} rounds={rounds} kernels={}",
        kernel_isa()
    );

    let mut s = 0x1234_5678_9abc_def1u64;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let data: Vec<Vec<f32>> = (0..n).map(|_| (0..dim).map(|_| rnd()).collect()).collect();
    let queries: Vec<Vec<f32>> = (0..nq).map(|_| (0..dim).map(|_| rnd()).collect()).collect();
    let keys: Vec<Vec<u8>> = (0..n).map(|i| format!("v{i:08}").into_bytes()).collect();
    let halves: Vec<Vec<u16>> = data
        .iter()
        .map(|v| v.iter().map(|&x| f32_to_f16(x)).collect())
        .collect();
    let quant: Vec<(Vec<i8>, f32)> = data.iter().map(|v| quantize_i8(v)).collect();

    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = EdgestoreConfig::new(dir.path());
    c.sync_mode = SyncMode::Buffered;
    c.memtable_size_bytes = 64 << 20;
    let db = Engine::open(c).expect("open");
    // `VECTOR_SCAN_ONLY=f16-Cosine` (say) runs one collection, for profiling.
    let only = std::env::var("VECTOR_SCAN_ONLY").ok();
    let exact = SearchParams {
        ef: None,
        exact: true,
    };
    println!("| dtype | metric | GB/s of stored elements | ms per query |");
    println!("|---|---|---:|---:|");
    for dtype in [DType::F32, DType::F16, DType::I8] {
        for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
            let mut cfg = VectorConfig::new(dim, metric, dtype);
            cfg.max_graph_bytes = 1;
            let name = format!("{}-{metric:?}", dtype.name());
            if only.as_deref().is_some_and(|o| o != name) {
                continue;
            }
            let coll = db.create_collection(b"scan", &name, cfg).expect("create");
            for start in (0..n).step_by(1000) {
                let puts: Vec<VectorPut<'_>> = (start..(start + 1000).min(n))
                    .map(|i| VectorPut {
                        key: &keys[i],
                        vector: match dtype {
                            DType::F32 => VectorInput::F32(&data[i]),
                            DType::F16 => VectorInput::F16(&halves[i]),
                            _ => VectorInput::I8 {
                                data: &quant[i].0,
                                scale: quant[i].1,
                            },
                        },
                        metadata: None,
                        ttl_secs: 0,
                    })
                    .collect();
                coll.put_batch(&puts).expect("put");
            }
            let mut best = f64::INFINITY;
            for _ in 0..rounds {
                let t = Instant::now();
                for q in &queries {
                    let hits = coll
                        .search_with(VectorInput::F32(q), 10, None, &exact)
                        .expect("search");
                    assert_eq!(hits.len(), 10);
                }
                best = best.min(t.elapsed().as_secs_f64() / nq as f64);
            }
            let bytes = (n * dim * dtype.size()) as f64;
            println!(
                "| {} | {metric:?} | {:.2} | {:.3} |",
                dtype.name(),
                bytes / best / 1e9,
                best * 1e3
            );
            drop(coll);
        }
    }
}
