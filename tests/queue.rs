//! Queues across processes: order, no loss or duplication with many producers and consumers,
//! bounded waiting, big items, handles inside items, disconnection, joinable queues.

mod common;
use common::{SECS, within};
use multiproc::{Error, JoinableQueue, Pool, Process, PutError, Queue, SimpleQueue, Value};
use rand::Rng;
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn produce((q, producer, n): (Queue<(u32, u32)>, u32, u32)) -> u32 {
    for i in 0..n {
        q.put((producer, i)).unwrap();
    }
    n
}

fn consume((q, n): (Queue<(u32, u32)>, u32)) -> Vec<(u32, u32)> {
    (0..n).map(|_| q.get_timeout(SECS(30)).unwrap()).collect()
}

#[test]
fn many_producers_and_consumers_lose_and_duplicate_nothing() {
    within(SECS(120), || {
        let mut rng = rand::rng();
        for round in 0..12 {
            let producers = rng.random_range(1..4u32);
            let consumers = rng.random_range(1..4u32);
            let per_producer = rng.random_range(1..3000u32);
            let ring = if round % 2 == 0 { 4096 } else { 1 << 20 };
            let q = Queue::with_ring_bytes(rng.random_range(0..50), ring).unwrap();
            let total = producers * per_producer;
            let mut shares = vec![total / consumers; consumers as usize];
            shares[0] += total % consumers;
            let mut cons: Vec<_> = shares
                .iter()
                .map(|&n| Process::new(consume, (q.clone(), n)))
                .collect();
            let mut prods: Vec<_> = (0..producers)
                .map(|p| Process::new(produce, (q.clone(), p, per_producer)))
                .collect();
            for c in &mut cons {
                c.start().unwrap();
            }
            for p in &mut prods {
                p.start().unwrap();
            }
            for p in &mut prods {
                assert_eq!(p.join().cloned().unwrap(), per_producer);
            }
            let mut seen = HashSet::new();
            for c in &mut cons {
                let got = c.join().cloned().unwrap();
                // FIFO per producer, as seen by each consumer.
                let mut last = vec![None; producers as usize];
                for &(p, i) in &got {
                    assert!(last[p as usize] < Some(i), "order broken for producer {p}");
                    last[p as usize] = Some(i);
                    assert!(seen.insert((p, i)), "duplicate {p}/{i}");
                }
            }
            assert_eq!(seen.len() as u32, total, "round {round}: lost items");
            assert!(q.empty());
        }
    });
}

#[test]
fn a_bounded_queue_blocks_times_out_and_gives_the_item_back() {
    within(SECS(30), || {
        let q = Queue::bounded(2).unwrap();
        q.put(1u32).unwrap();
        q.try_put(2).unwrap();
        assert!(q.full());
        match q.try_put(3) {
            Err(PutError::Full(3)) => {}
            other => panic!("expected Full(3), got {other:?}"),
        }
        let t = Instant::now();
        match q.put_timeout(4, Duration::from_millis(100)) {
            Err(e @ PutError::Full(_)) => assert_eq!(e.into_inner(), 4),
            other => panic!("expected Full, got {other:?}"),
        }
        assert!(t.elapsed() >= Duration::from_millis(90));
        // A consumer in another process makes room; the blocked put goes through.
        let mut p = Process::new(
            |q: Queue<u32>| {
                std::thread::sleep(Duration::from_millis(100));
                q.get().unwrap()
            },
            q.clone(),
        );
        p.start().unwrap();
        q.put(5).unwrap();
        assert_eq!(p.join().cloned().unwrap(), 1);
        assert_eq!(q.get().unwrap(), 2);
        assert_eq!(q.get().unwrap(), 5);
        // Alone with the queue, this process gets a clear answer instead of a wait...
        assert!(matches!(q.get(), Err(Error::Disconnected)));
        // ...and with another handle open, a timeout.
        let _other = q.clone();
        assert!(matches!(
            q.get_timeout(Duration::from_millis(20)),
            Err(Error::Timeout)
        ));
        assert_eq!(q.try_get().unwrap(), None);
    });
}

#[test]
fn big_items_and_items_with_handles_travel() {
    within(SECS(60), || {
        let q: Queue<Vec<u8>> = Queue::with_ring_bytes(0, 64 * 1024).unwrap();
        let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut p = Process::new(
            |q: Queue<Vec<u8>>| {
                let item = q.get().unwrap();
                q.put(item.iter().rev().copied().collect()).unwrap();
                item.len()
            },
            q.clone(),
        );
        p.start().unwrap();
        q.put(big.clone()).unwrap();
        assert_eq!(p.join().cloned().unwrap(), big.len());
        let back = q.get_timeout(SECS(10)).unwrap();
        assert!(back.iter().rev().eq(big.iter()));

        // A Value inside a queue item: the child adds to it.
        let q2: Queue<Value<i64>> = Queue::new().unwrap();
        let v = Value::new(1i64).unwrap();
        q2.put(v.clone()).unwrap();
        let mut p = Process::new(
            |q: Queue<Value<i64>>| {
                let v = q.get().unwrap();
                *v.lock().unwrap() += 41;
            },
            q2.clone(),
        );
        p.start().unwrap();
        p.join().unwrap();
        assert_eq!(v.get().unwrap(), 42);
    });
}

#[test]
fn readers_are_told_when_every_writer_is_gone() {
    within(SECS(30), || {
        let q: Queue<u32> = Queue::new().unwrap();
        let mut p = Process::new(
            |q: Queue<u32>| {
                std::thread::sleep(Duration::from_millis(200));
                for i in 0..3 {
                    q.put(i).unwrap();
                }
            },
            q.clone(),
        );
        p.start().unwrap();
        // The child holds the queue while it lives: these wait, then see its items.
        let got: Vec<u32> = (0..3).map(|_| q.get().unwrap()).collect();
        assert_eq!(got, [0, 1, 2]);
        // Then it exits: nobody else can put, so get answers instead of hanging.
        let t = Instant::now();
        assert!(matches!(q.get(), Err(Error::Disconnected)));
        assert!(t.elapsed() < SECS(5));
        p.join().unwrap();

        // A clone held in this process keeps the queue open; closing it disconnects.
        let other = q.clone();
        assert!(matches!(
            q.get_timeout(Duration::from_millis(60)),
            Err(Error::Timeout)
        ));
        other.close();
        assert!(matches!(q.get(), Err(Error::Disconnected)));
        assert!(matches!(other.get(), Err(Error::Closed)));
        assert!(matches!(other.put(1), Err(PutError::Closed(1))));
    });
}

fn killed_reader(q: Queue<u32>) {
    let _ = q.get();
}

#[test]
fn a_reader_killed_while_waiting_does_not_break_the_queue() {
    within(SECS(30), || {
        let q: Queue<u32> = Queue::new().unwrap();
        let mut p = Process::new(killed_reader, q.clone());
        p.start().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        p.kill().unwrap();
        let _ = p.join_timeout(SECS(5));
        q.put(9).unwrap();
        assert_eq!(q.get_timeout(SECS(5)).unwrap(), 9);
    });
}

fn drain_into((inp, out): (Queue<Option<u32>>, Queue<u32>)) {
    while let Some(x) = inp.get().unwrap() {
        out.put(x * 10).unwrap();
    }
}

#[test]
fn pool_initializer_receives_queues() {
    within(SECS(60), || {
        let inp = Queue::new().unwrap();
        let out = Queue::new().unwrap();
        let pool = Pool::builder()
            .processes(2)
            .initializer(drain_into, (inp.clone(), out.clone()))
            .build()
            .unwrap();
        for i in 0..100 {
            inp.put(Some(i)).unwrap();
        }
        let mut got: Vec<u32> = (0..100)
            .map(|_| out.get_timeout(SECS(20)).unwrap())
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..100).map(|i| i * 10).collect::<Vec<_>>());
        pool.terminate();
    });
}

#[test]
fn joinable_queue_join_waits_for_task_done() {
    within(SECS(30), || {
        let q = JoinableQueue::new().unwrap();
        for i in 0..20u32 {
            q.put(i).unwrap();
        }
        assert!(matches!(
            q.join_timeout(Duration::from_millis(20)),
            Err(Error::Timeout)
        ));
        let mut p = Process::new(
            |q: JoinableQueue<u32>| {
                for _ in 0..20 {
                    q.get().unwrap();
                    std::thread::sleep(Duration::from_millis(2));
                    q.task_done().unwrap();
                }
            },
            q.clone(),
        );
        p.start().unwrap();
        q.join();
        assert!(q.empty());
        p.join().unwrap();
        assert!(matches!(q.task_done(), Err(Error::InvalidArgument(_))));
    });
}

fn put_after((q, ms, item): (SimpleQueue<String>, u64, String)) {
    std::thread::sleep(Duration::from_millis(ms));
    q.put(item).unwrap();
}

#[test]
fn simple_queue_try_get_and_get_timeout_take_what_another_process_put() {
    within(SECS(30), || {
        let q: SimpleQueue<String> = SimpleQueue::new().unwrap();
        let mut p = Process::new(put_after, (q.clone(), 300, "late".to_string()));
        p.start().unwrap();
        assert_eq!(q.try_get().unwrap(), None);
        waits_out_50ms(|d| q.get_timeout(d));
        assert_eq!(q.get_timeout(SECS(20)).unwrap(), "late");
        p.join().unwrap();
        assert_eq!(q.try_get().unwrap(), None);

        // A closed handle refuses, as a Queue's does.
        q.close();
        assert!(matches!(q.try_get(), Err(Error::Closed)));
        assert!(matches!(q.get_timeout(SECS(1)), Err(Error::Closed)));
    });
}

#[test]
fn simple_queue_round_trip() {
    let q = SimpleQueue::new().unwrap();
    q.put("a".to_string()).unwrap();
    q.put("b".to_string()).unwrap();
    assert_eq!(q.get().unwrap(), "a");
    assert_eq!(q.get().unwrap(), "b");
    assert!(q.empty());
    // A put that fails gives the item back, as `Queue::put` does.
    q.close();
    match q.put("c".to_string()) {
        Err(PutError::Closed(item)) => assert_eq!(item, "c"),
        other => panic!("{other:?}"),
    }
}

/// Puts items forever, some of them big enough to go aside (through a memfd).
fn put_forever((q, producer): (Queue<(u32, u32, Vec<u8>)>, u32)) {
    for i in 0.. {
        let payload = if i % 7 == 0 {
            vec![i as u8; 40_000]
        } else {
            vec![i as u8; 3]
        };
        q.put((producer, i, payload)).unwrap();
    }
}

#[test]
fn producers_killed_mid_put_leave_a_consistent_queue() {
    within(SECS(1800), || {
        let mut rng = rand::rng();
        // A small ring, so that producers often wait for room inside `put` when killed.
        let q: Queue<(u32, u32, Vec<u8>)> = Queue::with_ring_bytes(0, 64 * 1024).unwrap();
        let mut taken = 0usize;
        // MULTIPROC_SOAK=n runs n rounds (the README's soak command); 8 by default.
        let rounds: u32 = std::env::var("MULTIPROC_SOAK")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(8);
        let mut last = vec![None::<u32>; rounds as usize];
        for round in 0..rounds {
            let mut p = Process::new(put_forever, (q.clone(), round));
            p.start().unwrap();
            // Drain a little while it runs, then kill it at a random moment.
            let until = Instant::now() + Duration::from_millis(rng.random_range(5..60));
            while Instant::now() < until {
                if let Some((producer, i, payload)) = q.try_get().unwrap() {
                    assert!(last[producer as usize] < Some(i), "order/duplicate");
                    last[producer as usize] = Some(i);
                    assert!(payload.iter().all(|b| *b == i as u8), "torn item");
                    taken += 1;
                }
            }
            p.kill().unwrap();
            let _ = p.join_timeout(SECS(5));
        }
        // Whatever was put completely is there, intact, in order; then the queue works on.
        while let Some((producer, i, payload)) = q.try_get().unwrap() {
            assert!(last[producer as usize] < Some(i), "order/duplicate");
            last[producer as usize] = Some(i);
            assert!(payload.iter().all(|b| *b == i as u8), "torn item");
            taken += 1;
        }
        assert!(taken > 0);
        assert!(q.empty());
        q.put((99, 0, vec![1, 2, 3])).unwrap();
        assert_eq!(q.get().unwrap(), (99, 0, vec![1, 2, 3]));
    });
}

fn get_forever(q: Queue<(u32, Vec<u8>)>) {
    loop {
        let _ = q.get();
    }
}

#[test]
fn consumers_killed_mid_get_leave_a_consistent_queue() {
    within(SECS(1800), || {
        let mut rng = rand::rng();
        let q: Queue<(u32, Vec<u8>)> = Queue::with_ring_bytes(0, 64 * 1024).unwrap();
        let rounds: u32 = std::env::var("MULTIPROC_SOAK")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(8);
        let mut next = 0u32;
        for _ in 0..rounds {
            let mut p = Process::new(get_forever, q.clone());
            p.start().unwrap();
            let until = Instant::now() + Duration::from_millis(rng.random_range(5..40));
            while Instant::now() < until {
                let payload = if next % 5 == 0 {
                    vec![next as u8; 30_000]
                } else {
                    vec![next as u8; 5]
                };
                if q.put_timeout((next, payload), Duration::from_millis(5))
                    .is_ok()
                {
                    next += 1;
                }
            }
            p.kill().unwrap();
            let _ = p.join_timeout(SECS(5));
        }
        // What the consumers did not take is intact, in order, each once.
        let mut last = None;
        while let Some((i, payload)) = q.try_get().unwrap() {
            assert!(last < Some(i), "order/duplicate: {i} after {last:?}");
            last = Some(i);
            assert!(payload.iter().all(|b| *b == i as u8), "torn item {i}");
        }
        q.put((u32::MAX, vec![])).unwrap();
        assert_eq!(q.get().unwrap().0, u32::MAX);
    });
}

fn read_alone(q: Queue<u32>) -> String {
    format!("{:?}", q.get())
}

/// Regression: a process that received the queue at start counted itself twice, so a reader
/// there was never told that every writer was gone.
#[test]
fn a_child_reader_is_told_when_every_writer_is_gone() {
    within(SECS(30), || {
        let q = Queue::<u32>::new().unwrap();
        let mut p = Process::new(read_alone, q); // this process keeps no handle
        p.start().unwrap();
        let t = Instant::now();
        assert_eq!(p.join().unwrap(), "Err(Disconnected)");
        assert!(t.elapsed() < SECS(5));
    });
}

fn reply_through((requests, _ready): (Queue<Queue<String>>, ())) {
    let reply = requests.get_timeout(SECS(10)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    reply.put("pong".into()).unwrap();
}

/// Regression: a handle inside a queue item was not counted while on its way, so the
/// reply-queue pattern told the asker "disconnected" before the answer came.
#[test]
fn a_reply_queue_sent_inside_an_item_counts_as_a_writer() {
    within(SECS(30), || {
        let requests: Queue<Queue<String>> = Queue::new().unwrap();
        let mut p = Process::new(reply_through, (requests.clone(), ()));
        p.start().unwrap();
        let reply: Queue<String> = Queue::new().unwrap();
        requests.put(reply.clone()).unwrap();
        assert_eq!(reply.get().unwrap(), "pong");
        p.join().unwrap();
    });
}

/// Regression: a reader could see the queue empty, then (after a writer put an item and left)
/// decide that every writer was gone, and report `Disconnected` with the item still queued.
#[test]
fn disconnected_is_never_reported_with_an_item_in_the_queue() {
    within(SECS(1800), || {
        // A rare interleaving: MULTIPROC_SOAK=n runs n × 100 rounds instead of 2 000.
        let rounds = std::env::var("MULTIPROC_SOAK")
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .map_or(2_000, |n| n * 100);
        for _ in 0..rounds {
            let q: Queue<u8> = Queue::new().unwrap();
            let writer = q.clone();
            let t = std::thread::spawn(move || {
                writer.put(1).unwrap();
                drop(writer);
            });
            assert_eq!(q.get().unwrap(), 1);
            t.join().unwrap();
        }
    });
}

struct Explodes;

impl serde::Serialize for Explodes {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("no");
    }
}

impl<'de> serde::Deserialize<'de> for Explodes {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Ok(Explodes)
    }
}

/// Regression: a panic inside an item's Serialize left the thread's encoding context set, so
/// the handle inside kept the queue "held" forever.
#[test]
fn a_panic_while_encoding_an_item_leaves_nothing_behind() {
    let outer: Queue<(Queue<u8>, Explodes)> = Queue::new().unwrap();
    let inner: Queue<u8> = Queue::new().unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = outer.put((inner.clone(), Explodes));
    }));
    assert!(r.is_err());
    // The handle that was being encoded is no longer counted anywhere: alone, we are told.
    within(SECS(10), move || {
        assert!(matches!(inner.get(), Err(Error::Disconnected)));
    });
}

/// Checks that a bounded get of an empty queue waits its 50 ms out, then says `Timeout`.
fn waits_out_50ms<T: std::fmt::Debug>(get: impl FnOnce(Duration) -> multiproc::Result<T>) {
    let t = Instant::now();
    let got = get(Duration::from_millis(50));
    assert!(matches!(got, Err(Error::Timeout)), "{got:?}");
    assert!(t.elapsed() >= Duration::from_millis(50));
}

/// Takes every item there is now, the natural way.
fn drain<T: multiproc::Data>(q: &Queue<T>) -> multiproc::Result<Vec<T>> {
    let mut items = Vec::new();
    while let Some(item) = q.try_get()? {
        items.push(item);
    }
    Ok(items)
}

/// Regression (issue 9): `try_get` and `get_timeout` said `Disconnected` on an empty queue
/// whose only handle the caller holds — even a new one, although the caller can still put
/// into it — so the drain loop `while let Some(x) = q.try_get()? {}` failed. Only the
/// blocking `get` answers `Disconnected` there (instead of waiting forever).
#[test]
fn a_lone_handle_is_empty_for_try_get_and_get_timeout_not_disconnected() {
    within(SECS(30), || {
        let q: Queue<u32> = Queue::new().unwrap();
        assert_eq!(q.try_get().unwrap(), None);
        waits_out_50ms(|d| q.get_timeout(d));
        for i in 0..3 {
            q.put(i).unwrap();
        }
        assert_eq!(drain(&q).unwrap(), [0, 1, 2]);
        assert_eq!(drain(&q).unwrap(), []);
        assert!(matches!(q.get(), Err(Error::Disconnected)));

        // The same once another process that held the queue has put and gone.
        let mut p = Process::new(
            |q: Queue<u32>| {
                q.put(7).unwrap();
            },
            q.clone(),
        );
        p.start().unwrap();
        p.join().unwrap();
        assert_eq!(drain(&q).unwrap(), [7]);
        assert!(matches!(
            q.get_timeout(Duration::from_millis(20)),
            Err(Error::Timeout)
        ));
        assert!(matches!(q.get(), Err(Error::Disconnected)));

        // JoinableQueue is a Queue underneath.
        let jq: JoinableQueue<u32> = JoinableQueue::new().unwrap();
        assert_eq!(jq.try_get().unwrap(), None);
        assert!(matches!(
            jq.get_timeout(Duration::from_millis(20)),
            Err(Error::Timeout)
        ));
        assert!(matches!(jq.get(), Err(Error::Disconnected)));
        // SimpleQueue answers the same way through the same code.
        let sq: SimpleQueue<u32> = SimpleQueue::new().unwrap();
        assert_eq!(sq.try_get().unwrap(), None);
        assert!(matches!(
            sq.get_timeout(Duration::from_millis(20)),
            Err(Error::Timeout)
        ));
        assert!(matches!(sq.get(), Err(Error::Disconnected)));
    });
}
