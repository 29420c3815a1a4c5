//! RFC 6455 §5.3 masking: the block-at-a-time `apply_mask` against the
//! byte-at-a-time definition, at the sizes that matter: a tiny frame, the
//! largest control frame, a page, a large message, and 1 MiB.
//!
//! `cargo bench --bench mask`; throughput is reported in bytes per second.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rfc6455::proto::{apply_mask, apply_mask_naive};

fn masking(c: &mut Criterion) {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut group = c.benchmark_group("mask");
    for size in [16usize, 125, 4096, 65536, 1 << 20] {
        let mut buf = vec![0x5au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("apply_mask", size), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box(key), 0))
        });
        group.bench_with_input(BenchmarkId::new("naive", size), &size, |b, _| {
            b.iter(|| apply_mask_naive(black_box(&mut buf), black_box(key), 0))
        });
    }
    group.finish();
}

criterion_group!(benches, masking);
criterion_main!(benches);
