//! Handles returned from tasks: a pool task (or a `Process`) creates a `Queue`, a `Value`, an
//! `Array`, a `Pipe` end or a `SharedMemory` and returns it; its descriptors come back with the
//! result, and the parent uses it — also after the worker that made it is gone.

mod common;
use common::{SECS, within};
use multiproc::{Array, Connection, Pipe, Pool, Process, Queue, SharedMemory, Value};

/// A queue holding `0..n`.
fn filled_queue(n: u64) -> Queue<u64> {
    let q = Queue::new().unwrap();
    for i in 0..n {
        q.put(i).unwrap();
    }
    q
}

fn counter(start: u64) -> Value<u64> {
    Value::new(start).unwrap()
}

fn bump(v: Value<u64>) -> u64 {
    let mut g = v.lock().unwrap();
    let next = g.get() + 1;
    g.set(next);
    next
}

/// A pipe end with a message waiting in it, and nobody left at the other end but the task.
fn pipe_with_message(word: String) -> Connection<String> {
    let (mut ours, theirs) = Pipe::<String>::duplex().unwrap();
    ours.send(&word).unwrap();
    theirs
}

fn memory(tag: u8) -> SharedMemory {
    let m = SharedMemory::new(4096).unwrap();
    m.write(0, &[tag; 16]).unwrap();
    m
}

fn squares(n: u64) -> Array<u64> {
    Array::new(&(0..n).map(|i| i * i).collect::<Vec<_>>()).unwrap()
}

/// Several handles in one result.
fn pair(n: u64) -> (Value<u64>, Queue<u64>) {
    (counter(n), filled_queue(n))
}

#[test]
fn each_kind_of_handle_comes_back_from_a_pool_task() {
    within(SECS(60), || {
        let pool = Pool::new(2).unwrap();
        let q = pool.apply(filled_queue, 3).unwrap();
        assert_eq!(
            (q.get().unwrap(), q.get().unwrap(), q.get().unwrap()),
            (0, 1, 2)
        );
        let v = pool.apply(counter, 41).unwrap();
        // The parent's copy and a worker's see the same memory.
        assert_eq!(pool.apply(bump, v.clone()).unwrap(), 42);
        assert_eq!(v.lock().unwrap().get(), 42);
        let mut end = pool.apply(pipe_with_message, "hello".to_string()).unwrap();
        assert_eq!(end.recv().unwrap(), "hello");
        let m = pool.apply(memory, 7).unwrap();
        let mut buf = [0u8; 16];
        m.read(0, &mut buf).unwrap();
        assert_eq!(buf, [7; 16]);
        let a = pool.apply(squares, 5).unwrap();
        assert_eq!(a.to_vec().unwrap(), [0, 1, 4, 9, 16]);
        let (v, q) = pool.apply(pair, 2).unwrap();
        assert_eq!((v.lock().unwrap().get(), q.get().unwrap()), (2, 0));
    });
}

#[test]
fn many_handles_come_back_from_one_map_and_outlive_their_workers() {
    within(SECS(120), || {
        let pool = Pool::builder()
            .processes(2)
            .max_tasks_per_child(50)
            .build()
            .unwrap();
        // More handles than one reply may carry: in one chunk, and in batches of quick tasks.
        let one_chunk = pool.map_chunked(counter, 0..600u64, 600).unwrap();
        let values = pool.map(counter, 0..600u64).unwrap();
        let memories = pool
            .map_chunked(memory, (0..300).map(|i| i as u8), 30)
            .unwrap();
        let queues: Vec<Queue<u64>> = pool
            .imap_unordered(filled_queue, 1..=40u64)
            .map(Result::unwrap)
            .collect();
        pool.close();
        pool.join().unwrap(); // every worker that made them is gone
        for (i, (v, w)) in values.iter().zip(&one_chunk).enumerate() {
            assert_eq!(v.lock().unwrap().get(), i as u64);
            assert_eq!(w.lock().unwrap().get(), i as u64);
        }
        for (i, m) in memories.iter().enumerate() {
            let mut buf = [0u8; 16];
            m.read(0, &mut buf).unwrap();
            assert_eq!(buf, [i as u8; 16]);
        }
        let mut lens: Vec<u64> = queues
            .iter()
            .map(|q| std::iter::from_fn(|| q.get_timeout(SECS(0)).ok()).count() as u64)
            .collect();
        lens.sort();
        assert_eq!(lens, (1..=40).collect::<Vec<u64>>());
    });
}

#[test]
fn a_process_returns_a_handle_too() {
    within(SECS(60), || {
        let mut p = Process::new(filled_queue, 4);
        p.start().unwrap();
        let q = p.join().unwrap();
        assert_eq!(
            std::iter::from_fn(|| q.get_timeout(SECS(0)).ok()).count(),
            4
        );
    });
}
