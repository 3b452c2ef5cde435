//! Objects of the program's own type hosted by a Manager (`m.host(v)`, Python's
//! `BaseManager.register`): methods run on the server, from real processes and pool tasks.

mod common;
use common::{SECS, eventually, within};
use multiproc::{DictProxy, Error, Manager, Pool, Process, Proxy};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Counter {
    n: u64,
    calls: u64,
}

impl Counter {
    fn add(&mut self, by: u64) -> u64 {
        self.n += by;
        self.calls += 1;
        self.n
    }

    /// Changes the counter, then panics past a limit: the change must not stay.
    fn add_below(&mut self, (by, limit): (u64, u64)) -> u64 {
        self.n += by;
        self.calls += 1;
        assert!(self.n < limit, "{} is not below {limit}", self.n);
        self.n
    }

    fn snapshot(&mut self, (): ()) -> Vec<u8> {
        format!("{}/{}", self.n, self.calls).into_bytes()
    }

    fn spin(&mut self, (): ()) {
        loop {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn add_many(c: Proxy<Counter>, times: u64) {
    for _ in 0..times {
        c.call(Counter::add, 5).unwrap();
    }
}

fn add_in_task(c: Proxy<Counter>, by: u64) -> u64 {
    c.call(Counter::add, by).unwrap()
}

/// Four processes × 250 calls: each read-modify-write runs whole on the server, none is lost.
#[test]
fn calls_from_four_processes_lose_nothing() {
    within(SECS(120), || {
        let m = Manager::new().unwrap();
        let c = m.host(Counter { n: 0, calls: 0 }).unwrap();
        let mut ps: Vec<_> = (0..4)
            .map(|_| Process::new(add_many, (c.clone(), 250)))
            .collect();
        for p in &mut ps {
            p.start().unwrap();
        }
        for p in &ps {
            p.join_timeout(SECS(60)).unwrap();
        }
        assert_eq!(
            c.get().unwrap(),
            Counter {
                n: 5000,
                calls: 1000
            }
        );
    });
}

#[test]
fn a_proxy_travels_to_a_child_and_to_pool_tasks() {
    within(SECS(60), || {
        let m = Manager::new().unwrap();
        let c = m.host(Counter { n: 0, calls: 0 }).unwrap();
        let mut p = Process::new(add_in_task, (c.clone(), 1));
        p.start().unwrap();
        assert_eq!(*p.join_timeout(SECS(30)).unwrap(), 1);
        let pool = Pool::new(2).unwrap();
        let args: Vec<_> = (0..20).map(|_| (c.clone(), 2)).collect();
        let mut seen = pool.starmap(add_in_task, args).unwrap();
        seen.sort();
        assert_eq!(seen, (0..20).map(|i| 3 + 2 * i).collect::<Vec<_>>());
        assert_eq!(c.get().unwrap().n, 41);
    });
}

#[test]
fn a_panicking_call_fails_alone_and_leaves_the_object_intact() {
    within(SECS(30), || {
        let m = Manager::new().unwrap();
        let c = m.host(Counter { n: 0, calls: 0 }).unwrap();
        assert_eq!(c.call(Counter::add_below, (3, 10)).unwrap(), 3);
        match c.call(Counter::add_below, (100, 10)) {
            Err(Error::Manager(why)) => {
                assert!(why.contains("103 is not below 10"), "{why}");
                assert!(why.contains("left as it was"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.get().unwrap(), Counter { n: 3, calls: 1 });
        assert_eq!(c.call(Counter::add, 1).unwrap(), 4, "the server serves on");
        assert_eq!(c.get().unwrap().calls, 2);
    });
}

#[test]
fn methods_return_values_and_get_set_read_and_replace() {
    within(SECS(30), || {
        let m = Manager::new().unwrap();
        let c = m.host(Counter { n: 7, calls: 0 }).unwrap();
        assert_eq!(c.call(Counter::snapshot, ()).unwrap(), b"7/0");
        assert_eq!(c.call(|c: &mut Counter, (): ()| c.n * 2, ()).unwrap(), 14);
        let old = c.set(Counter { n: 100, calls: 100 }).unwrap();
        assert_eq!(old, Counter { n: 7, calls: 0 });
        assert_eq!(c.call(Counter::add, 1).unwrap(), 101);
        assert_eq!(c.call(Counter::snapshot, ()).unwrap(), b"101/101");
        // Any serde type, standard ones included.
        let words = m.host(Vec::<String>::new()).unwrap();
        words.call(Vec::push, "a".to_string()).unwrap();
        assert_eq!(
            words
                .call(|v: &mut Vec<String>, (): ()| v.len(), ())
                .unwrap(),
            1
        );
        assert_eq!(words.get().unwrap(), ["a"]);
    });
}

/// A call that never returns holds its object and its caller, nothing else.
#[test]
fn a_call_that_never_returns_holds_only_its_object() {
    within(SECS(60), || {
        let m = Manager::new().unwrap();
        let stuck = m.host(Counter { n: 0, calls: 0 }).unwrap();
        let other = m.host(Counter { n: 0, calls: 0 }).unwrap();
        let started = m.dict::<u8, u8>().unwrap();
        let mut spinner = Process::new(spin_forever, (stuck.clone(), started.clone()));
        spinner.start().unwrap();
        // The spinner says it is about to call `spin`.
        assert!(eventually(SECS(20), || !started.is_empty().unwrap()));
        std::thread::sleep(Duration::from_millis(200));
        let reader = {
            let stuck = stuck.clone();
            std::thread::spawn(move || stuck.get())
        };
        std::thread::sleep(Duration::from_millis(200));
        assert!(!reader.is_finished(), "the object is held by the call");
        let t = Instant::now();
        assert_eq!(other.call(Counter::add, 1).unwrap(), 1);
        started.insert(2, 2).unwrap();
        let mut p = Process::new(add_in_task, (other.clone(), 1));
        p.start().unwrap();
        assert_eq!(*p.join_timeout(SECS(30)).unwrap(), 2);
        assert!(t.elapsed() < SECS(10), "{:?}", t.elapsed());
        assert!(spinner.is_alive(), "its call is still running");
        spinner.kill().unwrap();
        let _ = spinner.join_timeout(SECS(10));
        // The server thread running the call still holds the object: the manager's shutdown
        // ends it (within the shutdown's grace period, by a kill if need be).
        let t = Instant::now();
        m.shutdown().unwrap();
        assert!(t.elapsed() < SECS(15), "{:?}", t.elapsed());
        assert!(matches!(reader.join().unwrap(), Err(Error::ManagerGone)));
    });
}

fn spin_forever(c: Proxy<Counter>, started: DictProxy<u8, u8>) {
    started.insert(1, 1).unwrap();
    let _ = c.call(Counter::spin, ());
}

/// A hosted object that keeps a proxy of another object of the same manager.
#[derive(Serialize, Deserialize)]
struct Ledger {
    totals: DictProxy<String, u64>,
    entries: u64,
}

impl Ledger {
    /// Runs on the server: uses the proxy it keeps, and one it is given.
    fn record(&mut self, (name, amount, log): (String, u64, DictProxy<u64, String>)) -> u64 {
        self.entries += 1;
        let total = self
            .totals
            .update(name.clone(), |t: Option<u64>| t.unwrap_or(0) + 1)
            .expect("the server reaches its own objects");
        log.insert(self.entries, format!("{name} {amount}"))
            .expect("a proxy given as an argument works on the server");
        total
    }
}

#[test]
fn a_hosted_object_may_keep_and_take_proxies() {
    within(SECS(60), || {
        let m = Manager::new().unwrap();
        let totals = m.dict::<String, u64>().unwrap();
        let log = m.dict::<u64, String>().unwrap();
        let ledger = m
            .host(Ledger {
                totals: totals.clone(),
                entries: 0,
            })
            .unwrap();
        for amount in [5, 7] {
            let args = ("ada".to_string(), amount, log.clone());
            ledger.call(Ledger::record, args).unwrap();
        }
        assert_eq!(totals.get(&"ada".into()).unwrap(), Some(2));
        assert_eq!(log.get(&2).unwrap(), Some("ada 7".into()));
    });
}
