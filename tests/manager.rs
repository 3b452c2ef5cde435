//! The Manager: a server process of shared objects, and proxies that travel to processes and
//! pools. Real processes throughout; the server is killed with SIGKILL where it matters.

mod common;
use common::{SECS, exists, sigkill, within};
use multiproc::{
    Connection, DictProxy, Error, ListProxy, Manager, NamespaceProxy, Pipe, Pool, Process,
    PutError, Queue, QueueProxy, ValueProxy,
};
use std::time::{Duration, Instant};

/// Starts every process, then joins every one, as the seeds do.
fn run_all(ps: &mut [Process<()>]) {
    for p in ps.iter_mut() {
        p.start().unwrap();
    }
    for p in ps.iter() {
        p.join().unwrap();
    }
}

fn record(d: DictProxy<u32, String>, i: u32) {
    d.insert(i, format!("written by {}", std::process::id()))
        .unwrap();
}

fn count_up(d: DictProxy<String, u64>, times: u32) {
    for _ in 0..times {
        d.update("hits".into(), |v: Option<u64>| v.unwrap_or(0) + 1)
            .unwrap();
    }
}

fn lookup(d: DictProxy<u32, String>, key: u32) -> Option<String> {
    d.get(&key).unwrap()
}

fn from_queue(q: Queue<DictProxy<String, u64>>) -> u64 {
    let d = q.get().unwrap();
    d.insert("via queue".into(), 7).unwrap();
    d.len().unwrap() as u64
}

fn shaky(v: Option<u64>) -> u64 {
    if v == Some(2) {
        panic!("two is not allowed");
    }
    v.unwrap_or(0) + 1
}

/// Seed 001: ten processes each write `dic[i]` into a shared dict.
#[test]
fn ten_processes_fill_one_dict() {
    within(SECS(60), || {
        let m = Manager::new().unwrap();
        let d = m.dict::<u32, String>().unwrap();
        let mut ps: Vec<_> = (0..10)
            .map(|i| Process::new(record, (d.clone(), i)))
            .collect();
        run_all(&mut ps);
        assert_eq!(d.len().unwrap(), 10);
        let mut keys = d.keys().unwrap();
        keys.sort();
        assert_eq!(keys, (0..10).collect::<Vec<_>>());
        let writers: std::collections::HashSet<String> = d.values().unwrap().into_iter().collect();
        assert_eq!(writers.len(), 10, "each process wrote its own entry");
        assert!(d.contains_key(&3).unwrap());
        assert_eq!(
            d.remove(&3).unwrap().map(|v| v.starts_with("written")),
            Some(true)
        );
        assert_eq!(d.items().unwrap().len(), 9);
        d.clear().unwrap();
        assert!(d.is_empty().unwrap());
    });
}

/// Python's `d[k] = d.get(k, 0) + 1` from 4 processes × 500 loses updates (1,222 of 2,000
/// measured here); an update runs whole on the server and loses none.
#[test]
fn concurrent_updates_lose_nothing() {
    within(SECS(120), || {
        let m = Manager::new().unwrap();
        let d = m.dict::<String, u64>().unwrap();
        let mut ps: Vec<_> = (0..4)
            .map(|_| Process::new(count_up, (d.clone(), 500)))
            .collect();
        run_all(&mut ps);
        assert_eq!(d.get(&"hits".to_string()).unwrap(), Some(2000));
    });
}

#[test]
fn a_panicking_update_fails_alone_and_leaves_the_value() {
    within(SECS(30), || {
        let m = Manager::new().unwrap();
        let d = m.dict::<String, u64>().unwrap();
        assert_eq!(d.update("k".into(), shaky).unwrap(), 1);
        assert_eq!(d.update("k".into(), shaky).unwrap(), 2);
        match d.update("k".into(), shaky) {
            Err(Error::Manager(why)) => assert!(why.contains("two is not allowed"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(d.get(&"k".into()).unwrap(), Some(2));
        d.insert("other".into(), 5).unwrap();
        assert_eq!(d.len().unwrap(), 2, "the server serves on");
    });
}

#[test]
fn proxies_travel_to_pool_tasks_and_through_queues() {
    within(SECS(60), || {
        let m = Manager::new().unwrap();
        let d = m.dict::<u32, String>().unwrap();
        d.insert(1, "one".into()).unwrap();
        let pool = Pool::new(2).unwrap();
        assert_eq!(
            pool.apply(lookup, (d.clone(), 1)).unwrap(),
            Some("one".into())
        );
        assert_eq!(pool.apply(lookup, (d.clone(), 2)).unwrap(), None);

        let counts = m.dict::<String, u64>().unwrap();
        let q = Queue::new().unwrap();
        q.put(counts.clone()).unwrap();
        assert_eq!(pool.apply(from_queue, q).unwrap(), 1);
        assert_eq!(counts.get(&"via queue".into()).unwrap(), Some(7));
    });
}

fn from_pipe(mut end: Connection<ListProxy<String>>) -> usize {
    let l = end.recv().unwrap();
    l.push("via pipe".into()).unwrap();
    l.len().unwrap()
}

fn note_start(l: ListProxy<String>) {
    l.push(format!("worker {} started", std::process::id()))
        .unwrap();
}

fn nothing() {}

#[test]
fn proxies_travel_in_pipe_messages_and_initializer_arguments() {
    within(SECS(60), || {
        let m = Manager::new().unwrap();
        let l = m.list::<String>().unwrap();
        let (mut ours, theirs) = Pipe::<ListProxy<String>>::duplex().unwrap();
        let mut p = Process::new(from_pipe, theirs);
        p.start().unwrap();
        ours.send(&l).unwrap();
        assert_eq!(*p.join().unwrap(), 1);
        assert_eq!(l.to_vec().unwrap(), ["via pipe"]);

        let started = m.list::<String>().unwrap();
        let pool = Pool::builder()
            .processes(2)
            .initializer(note_start, started.clone())
            .build()
            .unwrap();
        // Both workers are up once each has run a task.
        pool.map(|_: u8| nothing(), vec![0; 8]).unwrap();
        let deadline = Instant::now() + SECS(20);
        while started.len().unwrap() < 2 {
            assert!(Instant::now() < deadline, "{:?}", started.to_vec());
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            started
                .to_vec()
                .unwrap()
                .iter()
                .all(|s| s.ends_with("started"))
        );
    });
}

/// A server killed with SIGKILL: every call, here and in a child, says so at once.
#[test]
fn a_killed_server_is_reported_promptly_everywhere() {
    within(SECS(60), || {
        let m = Manager::new().unwrap();
        let d = m.dict::<u32, String>().unwrap();
        d.insert(1, "x".into()).unwrap();
        sigkill(m.pid());
        std::thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        assert!(matches!(d.get(&1), Err(Error::ManagerGone)));
        assert!(matches!(d.insert(2, "y".into()), Err(Error::ManagerGone)));
        assert!(matches!(m.dict::<u8, u8>(), Err(Error::ManagerGone)));
        let mut p = Process::new(lookup_or_gone, d.clone());
        p.start().unwrap();
        assert!(*p.join().unwrap());
        assert!(t.elapsed() < SECS(10), "{:?}", t.elapsed());
        m.shutdown().unwrap();
    });
}

fn lookup_or_gone(d: DictProxy<u32, String>) -> bool {
    matches!(d.get(&1), Err(Error::ManagerGone))
}

#[test]
fn shutdown_ends_the_server_and_proxies_say_so() {
    within(SECS(30), || {
        let m = Manager::new().unwrap();
        let pid = m.pid();
        let d = m.dict::<u8, u8>().unwrap();
        d.insert(1, 1).unwrap();
        m.shutdown().unwrap();
        m.shutdown().unwrap();
        assert!(!exists(pid), "the server exited and was reaped");
        assert!(matches!(d.get(&1), Err(Error::ManagerGone)));
    });
}

fn append_named(l: ListProxy<String>, times: u32) {
    let me = multiproc::current_process().name().to_string();
    for i in 0..times {
        l.push(format!("{me}:{i}")).unwrap();
    }
}

/// Seed 004: `worker1` and `worker2` append to one shared list.
#[test]
fn two_workers_append_to_one_list() {
    within(SECS(60), || {
        let m = Manager::new().unwrap();
        let l = m.list::<String>().unwrap();
        let mut ps: Vec<_> = ["worker1", "worker2"]
            .into_iter()
            .map(|name| Process::new(append_named, (l.clone(), 50)).with_name(name))
            .collect();
        run_all(&mut ps);
        let all = l.to_vec().unwrap();
        assert_eq!(all.len(), 100);
        for name in ["worker1", "worker2"] {
            // Each worker's items, in the order it appended them.
            let mine: Vec<&String> = all.iter().filter(|s| s.starts_with(name)).collect();
            let want: Vec<String> = (0..50).map(|i| format!("{name}:{i}")).collect();
            assert!(
                mine.iter()
                    .map(|s| s.as_str())
                    .eq(want.iter().map(|s| s.as_str()))
            );
        }
    });
}

#[test]
fn list_operations_follow_python() {
    within(SECS(30), || {
        let m = Manager::new().unwrap();
        let l = m.list::<u32>().unwrap();
        assert!(l.is_empty().unwrap());
        l.extend([1, 2, 3]).unwrap();
        l.insert(0, 0).unwrap();
        l.insert(99, 4).unwrap(); // past the end: appended, as in Python
        assert_eq!(l.to_vec().unwrap(), [0, 1, 2, 3, 4]);
        assert_eq!(l.get(2).unwrap(), Some(2));
        assert_eq!(l.get(9).unwrap(), None);
        assert_eq!(l.set(2, 20).unwrap(), 2);
        assert!(matches!(l.set(9, 0), Err(Error::Manager(_))));
        assert_eq!(l.remove(0).unwrap(), 0);
        assert!(matches!(l.remove(9), Err(Error::Manager(_))));
        assert_eq!(l.pop().unwrap(), Some(4));
        assert_eq!(l.update(1, |x: u32| x * 10).unwrap(), 200);
        assert_eq!(l.to_vec().unwrap(), [1, 200, 3]);
        assert_eq!(l.len().unwrap(), 3);
        l.clear().unwrap();
        assert_eq!(l.pop().unwrap(), None);
    });
}

fn add_cents(v: ValueProxy<(String, u64)>, times: u32) {
    for _ in 0..times {
        v.update(|(owner, cents): (String, u64)| (owner, cents + 1))
            .unwrap();
    }
}

#[test]
fn a_value_of_any_type_is_shared_and_updated_atomically() {
    within(SECS(60), || {
        let m = Manager::new().unwrap();
        let v = m.value(("ada".to_string(), 0u64)).unwrap();
        let mut ps: Vec<_> = (0..3)
            .map(|_| Process::new(add_cents, (v.clone(), 200)))
            .collect();
        run_all(&mut ps);
        assert_eq!(v.get().unwrap(), ("ada".to_string(), 600));
        assert_eq!(v.set(("bob".into(), 1)).unwrap().1, 600);
        assert_eq!(v.get().unwrap().0, "bob");
    });
}

fn produce(q: QueueProxy<u64>, x: u64) -> u64 {
    q.put(x * x).unwrap();
    x
}

/// A managed queue fed by pool tasks, drained by the parent.
#[test]
fn pool_tasks_feed_a_managed_queue() {
    within(SECS(60), || {
        let m = Manager::new().unwrap();
        let q = m.queue::<u64>().unwrap();
        let pool = Pool::new(2).unwrap();
        let args: Vec<_> = (0..50u64).map(|x| (q.clone(), x)).collect();
        assert_eq!(pool.starmap(produce, args).unwrap().len(), 50);
        let mut got: Vec<u64> = (0..50).map(|_| q.get().unwrap()).collect();
        got.sort();
        assert_eq!(got, (0..50u64).map(|x| x * x).collect::<Vec<_>>());
        assert!(q.empty().unwrap());
        assert!(matches!(
            q.get_timeout(Duration::from_millis(30)),
            Err(Error::Timeout)
        ));
    });
}

/// A `get` that waits in one thread holds up neither another thread of the same process nor
/// another process.
#[test]
fn a_waiting_get_holds_up_no_one_else() {
    within(SECS(60), || {
        let m = Manager::new().unwrap();
        let q = m.queue_bounded::<String>(1).unwrap();
        let d = m.dict::<u8, u8>().unwrap();
        let waiter = {
            let q = q.clone();
            std::thread::spawn(move || q.get_timeout(SECS(20)).unwrap())
        };
        std::thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        d.insert(1, 1).unwrap();
        let mut p = Process::new(record, (m.dict::<u32, String>().unwrap(), 7));
        p.start().unwrap();
        p.join().unwrap();
        assert!(t.elapsed() < SECS(5), "{:?}", t.elapsed());
        q.put("wake".into()).unwrap();
        assert_eq!(waiter.join().unwrap(), "wake");
        // Bounded: a second item waits for room.
        q.put("one".into()).unwrap();
        assert!(q.full().unwrap());
        assert!(matches!(q.try_put("two".into()), Err(PutError::Full(item)) if item == "two"));
        assert!(matches!(
            q.put_timeout("two".into(), Duration::from_millis(30)),
            Err(PutError::Full(_))
        ));
        assert_eq!(q.qsize().unwrap(), 1);
        assert!(matches!(
            m.queue_bounded::<u8>(0),
            Err(Error::InvalidArgument(_))
        ));
    });
}

fn fill_namespace(ns: NamespaceProxy) {
    ns.set("x", 42i64).unwrap();
    ns.set("who", multiproc::current_process().name().to_string())
        .unwrap();
}

#[test]
fn a_namespace_holds_fields_of_any_type() {
    within(SECS(30), || {
        let m = Manager::new().unwrap();
        let ns = m.namespace().unwrap();
        let mut p = Process::new(fill_namespace, ns.clone()).with_name("filler");
        p.start().unwrap();
        p.join().unwrap();
        assert_eq!(ns.get::<i64>("x").unwrap(), Some(42));
        assert_eq!(ns.get::<String>("who").unwrap().as_deref(), Some("filler"));
        assert_eq!(ns.get::<i64>("nothing").unwrap(), None);
        assert!(
            matches!(ns.get::<String>("x"), Err(Error::Decode(_))),
            "read as another type"
        );
        assert!(ns.remove("x").unwrap());
        assert!(!ns.remove("x").unwrap());
        assert_eq!(ns.fields().unwrap(), ["who"]);
    });
}

fn count_forever(d: DictProxy<String, u64>) {
    loop {
        d.update("n".into(), |v: Option<u64>| v.unwrap_or(0) + 1)
            .unwrap();
    }
}

fn get_forever(q: QueueProxy<u32>) {
    let _ = q.get();
}

/// A client SIGKILLed mid-call leaves every object consistent, and the server serves on; a
/// client killed while its `get` waits takes no item.
#[test]
fn a_client_killed_mid_call_leaves_the_objects_whole() {
    within(SECS(60), || {
        let m = Manager::new().unwrap();
        let d = m.dict::<String, u64>().unwrap();
        let mut counter = Process::new(count_forever, d.clone());
        counter.start().unwrap();
        let key = "n".to_string();
        while d.get(&key).unwrap().unwrap_or(0) < 200 {
            std::thread::sleep(Duration::from_millis(5));
        }
        counter.kill().unwrap();
        assert!(counter.join().is_err(), "killed");
        let n = d.get(&key).unwrap().unwrap();
        assert_eq!(
            d.update(key.clone(), |v: Option<u64>| v.unwrap_or(0) + 1)
                .unwrap(),
            n + 1
        );

        let q = m.queue::<u32>().unwrap();
        let mut getter = Process::new(get_forever, q.clone());
        getter.start().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        getter.kill().unwrap();
        let _ = getter.join();
        std::thread::sleep(Duration::from_millis(150)); // the server notices within 50 ms
        q.put(5).unwrap();
        assert_eq!(
            q.get_timeout(SECS(5)).unwrap(),
            5,
            "the dead client took nothing"
        );
    });
}

/// 16 threads of one process, each a client of its own: says it is there, adds up, and stays
/// connected until all 64 clients have said so.
fn sixteen_clients(d: DictProxy<String, u64>, process: u32) {
    std::thread::scope(|s| {
        for t in 0..16 {
            let d = d.clone();
            s.spawn(move || {
                d.insert(format!("p{process}t{t}"), 1).unwrap();
                for _ in 0..50 {
                    d.update("all".into(), |v: Option<u64>| v.unwrap_or(0) + 1)
                        .unwrap();
                }
                let deadline = Instant::now() + SECS(60);
                while d.len().unwrap() < 65 {
                    assert!(Instant::now() < deadline, "not every client came");
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
        }
    });
}

#[test]
fn sixty_four_clients_at_once_and_a_waiting_get() {
    within(SECS(120), || {
        let m = Manager::new().unwrap();
        let d = m.dict::<String, u64>().unwrap();
        let q = m.queue::<u8>().unwrap();
        let waiting = {
            let q = q.clone();
            std::thread::spawn(move || q.get_timeout(SECS(90)))
        };
        let mut ps: Vec<_> = (0..4)
            .map(|p| Process::new(sixteen_clients, (d.clone(), p)))
            .collect();
        run_all(&mut ps);
        assert_eq!(d.get(&"all".into()).unwrap(), Some(64 * 50));
        assert_eq!(d.len().unwrap(), 65);
        q.put(9).unwrap();
        assert_eq!(waiting.join().unwrap().unwrap(), 9);
    });
}

#[test]
fn large_values_cross_a_local_manager() {
    within(SECS(60), || {
        let m = Manager::new().unwrap();
        let v = m.value(Vec::<u8>::new()).unwrap();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        v.set(big.clone()).unwrap();
        assert!(v.get().unwrap() == big);
        let bigger = v.update(|mut b: Vec<u8>| {
            b.extend_from_slice(&[7; 1000]);
            b
        });
        assert_eq!(bigger.unwrap().len(), 3_001_000);
    });
}
