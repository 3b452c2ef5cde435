//! Regression guard for the hot paths, with criterion: `cargo bench --bench hot_paths`.
//!
//! Each benchmark is one thing a user does many times: a pool round trip, a batch of tiny
//! tasks, a queue put and get, a lock taken and released. Criterion keeps the history in
//! `target/criterion` and reports changes against the last run.

// criterion's macros generate undocumented items.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use multiproc::{Lock, Pool, Queue, Value};

fn sq(x: u64) -> u64 {
    x * x
}

fn echo(bytes: Vec<u8>) -> Vec<u8> {
    bytes
}

fn pool(c: &mut Criterion) {
    let pool = Pool::new(2).expect("pool");
    let mut g = c.benchmark_group("pool");
    g.bench_function("apply round trip", |b| {
        b.iter(|| pool.apply(sq, black_box(7)).unwrap())
    });
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("map 10 000 tiny tasks, auto chunks", |b| {
        b.iter(|| pool.map(sq, 0..10_000u64).unwrap())
    });
    g.throughput(Throughput::Elements(1_000));
    g.bench_function("map 1 000 tiny tasks, chunksize 1", |b| {
        b.iter(|| pool.map_chunked(sq, 0..1_000u64, 1).unwrap())
    });
    // A large payload there and back: bulk frames in reused shared memory.
    let big = vec![3u8; 16 << 20];
    g.throughput(Throughput::Bytes(2 * (16 << 20)));
    g.sample_size(20);
    g.bench_function("apply echo of a 16 MiB Vec<u8>", |b| {
        b.iter_batched(
            || big.clone(),
            |payload| pool.apply(echo, payload).unwrap(),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn shared(c: &mut Criterion) {
    let mut g = c.benchmark_group("shared");
    let q: Queue<u64> = Queue::new().expect("queue");
    let _keep = q.clone(); // a second holder, as with a real peer
    g.bench_function("queue put + get, u64", |b| {
        b.iter(|| {
            q.put(black_box(42)).unwrap();
            q.get().unwrap()
        })
    });
    let big = vec![1u8; 1 << 20];
    g.throughput(Throughput::Bytes(1 << 20));
    g.bench_function("queue put + get, 1 MiB Vec<u8> (goes aside)", |b| {
        let q: Queue<Vec<u8>> = Queue::new().unwrap();
        let _keep = q.clone();
        b.iter_batched(
            || big.clone(),
            |item| {
                q.put(item).unwrap();
                q.get().unwrap()
            },
            BatchSize::LargeInput,
        )
    });
    g.throughput(Throughput::Elements(1));
    let lock = Lock::new().expect("lock");
    g.bench_function("lock acquire + release, uncontended", |b| {
        b.iter(|| drop(lock.acquire().unwrap()))
    });
    let v = Value::new(0u64).expect("value");
    g.bench_function("value += 1 under its lock", |b| {
        b.iter(|| *v.lock().unwrap() += 1)
    });
    g.finish();
}

criterion_group!(benches, pool, shared);
criterion_main!(benches);

// Children are this benchmark binary started again; criterion's generated `main` does not call
// `multiproc::init()`, so the start-up hook (which runs before any `main`) is what serves them.
