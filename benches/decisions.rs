//! Criterion micro-benchmarks of the per-request decisions: a rate-limit decision in the
//! memory store (uncontended, two threads on one key, and all of a request's limits at
//! once), the cache key per KiB of body, and a cache hit through the layer in-process.
//!
//! `cargo bench --bench decisions`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tower_ai_cache::bench_request_key;
use tower_ai_ratelimit::{Ask, Kind, MemoryStore, Spec};

fn body_of(kib: usize) -> Vec<u8> {
    let text = "lorem ipsum dolor sit amet ".repeat(kib * 1024 / 27 + 1);
    format!(
        r#"{{"model":"gpt-4o-mini","temperature":0,"messages":[{{"role":"system","content":"be brief"}},{{"role":"user","content":"{}"}}]}}"#,
        &text[..kib * 1024]
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let spec = Spec {
        kind: Kind::Gcra,
        amount: u64::MAX / 4,
        period: Duration::from_secs(60),
    };

    let mut g = c.benchmark_group("ratelimit_decision");
    g.throughput(Throughput::Elements(1));
    g.bench_function("memory store, uncontended", |b| {
        let store = MemoryStore::new();
        b.iter(|| {
            black_box(store.acquire_now(black_box("per-key:gcra|key_0123456789abcdef"), spec, 1))
        })
    });
    for n in [1usize, 3] {
        g.bench_function(format!("memory store, {n} limits all or none"), |b| {
            let store = MemoryStore::new();
            let asks: Vec<Ask> = (0..n)
                .map(|i| Ask {
                    key: format!("limit-{i}:gcra|key_0123456789abcdef"),
                    spec,
                    cost: 1,
                })
                .collect();
            b.iter(|| black_box(store.acquire_all_now(black_box(&asks))))
        });
    }
    g.bench_function("memory store, 2 threads on one key", |b| {
        let store = MemoryStore::new();
        b.iter_custom(|iters| {
            let stop = Arc::new(AtomicBool::new(false));
            let other = {
                let (store, stop) = (store.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        black_box(store.acquire_now("hot", spec, 1));
                    }
                })
            };
            let start = Instant::now();
            for _ in 0..iters {
                black_box(store.acquire_now("hot", spec, 1));
            }
            let took = start.elapsed();
            stop.store(true, Ordering::Relaxed);
            other.join().unwrap();
            took
        })
    });
    g.finish();

    let mut g = c.benchmark_group("cache_key");
    for kib in [1usize, 16, 128] {
        let body = Bytes::from(body_of(kib));
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("canonical JSON + SHA-256, {kib} KiB"), |b| {
            b.iter(|| black_box(bench_request_key(black_box(&body)).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
