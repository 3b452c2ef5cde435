//! Returned handles and a queue's "every writer is gone": whatever becomes of a reply that
//! carries a queue — its item fails to encode after the queue was attached, its worker dies
//! before writing it, it is never read, or it is decoded twice — a reader is told
//! `Disconnected` exactly when no writer is left, never while a handle is still on its way, and
//! is never left waiting for one that cannot come. (Found by review; each case beside its
//! control, which returns no handle.) Also: replies that carry many handles.

mod common;
use common::{SECS, within};
use multiproc::{Error, Pool, Process, Queue, Value};
use std::sync::Mutex;
use std::time::Duration;

/// Whether a waiting `get()` on `q` ends in `Disconnected` within `limit` (false: it still
/// waits).
fn disconnected_within(q: Queue<u32>, limit: Duration) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = q.get();
        let _ = tx.send(matches!(r, Err(Error::Disconnected)));
    });
    rx.recv_timeout(limit).unwrap_or(false)
}

/// Encodes to nothing: its `Serialize` fails.
#[derive(Debug)]
struct Refuses;

impl serde::Serialize for Refuses {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("not today"))
    }
}

impl<'de> serde::Deserialize<'de> for Refuses {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d)?;
        Ok(Refuses)
    }
}

/// Decodes to nothing: its `Deserialize` fails.
#[derive(serde::Serialize, Debug)]
struct Picky;

impl<'de> serde::Deserialize<'de> for Picky {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d)?;
        Err(serde::de::Error::custom("picky"))
    }
}

fn keep(_q: Queue<u32>) {}

fn give_back(q: Queue<u32>) -> Queue<u32> {
    q
}

/// Returns the queue, or nothing (for the control).
fn give_back_or_not((q, give): (Queue<u32>, bool)) -> Option<Queue<u32>> {
    give.then_some(q)
}

fn give_back_unencodable(q: Queue<u32>) -> (Queue<u32>, Refuses) {
    (q, Refuses)
}

fn give_back_undecodable(q: Queue<u32>) -> (Queue<u32>, Picky) {
    (q, Picky)
}

/// Item 0 returns the queue (or nothing, for the control), item 1 aborts its worker.
fn give_back_then_die((q, k, give): (Queue<u32>, u32, bool)) -> Option<Queue<u32>> {
    match k {
        0 => give.then_some(q),
        _ => std::process::abort(),
    }
}

#[test]
fn a_result_that_fails_to_encode_after_its_queue_leaves_no_writer_behind() {
    within(SECS(60), || {
        for give in [false, true] {
            let q = Queue::<u32>::new().unwrap();
            let pool = Pool::new(1).unwrap();
            if give {
                let r = pool.apply(give_back_unencodable, q.clone());
                assert!(matches!(r, Err(Error::Encode(_))), "{r:?}");
            } else {
                pool.apply(keep, q.clone()).unwrap();
            }
            pool.close();
            pool.join().unwrap();
            assert!(disconnected_within(q, SECS(5)), "give back: {give}");
        }
    });
}

#[test]
fn a_worker_that_dies_before_writing_its_reply_leaves_no_writer_behind() {
    within(SECS(60), || {
        for give in [false, true] {
            let q = Queue::<u32>::new().unwrap();
            let pool = Pool::new(1).unwrap();
            let items = vec![(q.clone(), 0, give), (q.clone(), 1, give)];
            assert!(pool.map_chunked(give_back_then_die, items, 2).is_err());
            pool.close();
            let _ = pool.join();
            drop(pool);
            assert!(disconnected_within(q, SECS(5)), "give back: {give}");
        }
    });
}

#[test]
fn a_process_whose_answer_is_never_read_leaves_no_writer_behind() {
    within(SECS(60), || {
        for give in [false, true] {
            let q = Queue::<u32>::new().unwrap();
            let mut p = Process::new(give_back_or_not, (q.clone(), give));
            p.start().unwrap();
            std::thread::sleep(Duration::from_millis(500));
            drop(p);
            std::thread::sleep(Duration::from_millis(500));
            assert!(disconnected_within(q, SECS(5)), "give back: {give}");
        }
    });
}

#[test]
fn a_result_that_fails_to_decode_never_hides_a_handle_on_its_way() {
    within(SECS(60), || {
        for undecodable in [false, true] {
            let q = Queue::<u32>::new().unwrap();
            let carrier: Queue<Queue<u32>> = Queue::new().unwrap();
            carrier.put(q.clone()).unwrap(); // a handle on its way, inside an item
            let pool = Pool::new(1).unwrap();
            if undecodable {
                assert!(pool.apply(give_back_undecodable, q.clone()).is_err());
            } else {
                drop(pool.apply(give_back, q.clone()).unwrap());
            }
            pool.close();
            pool.join().unwrap();
            let told = disconnected_within(q, SECS(3));
            let inside = carrier.get_timeout(SECS(1)).unwrap();
            inside.put(7).unwrap();
            assert!(
                !told,
                "Disconnected while a handle was on its way (undecodable: {undecodable})"
            );
        }
    });
}

static VALUES: Mutex<Vec<Value<u64>>> = Mutex::new(Vec::new());

/// Values made beforehand, so that items that return them are quick (runs of many items).
fn made_value(_: u64) -> Value<u64> {
    let mut made = VALUES.lock().unwrap();
    if made.is_empty() {
        made.extend((0..1000).map(|i| Value::new(i).unwrap()));
    }
    made.pop().unwrap()
}

/// 31 or 34 values, for items 0, 2, … and 1, 3, …: two items together carry more descriptors
/// than one reply may (64).
fn many_values(i: u64) -> Vec<Value<u64>> {
    let n = if i % 2 == 0 { 31 } else { 34 };
    (0..n).map(made_value).collect()
}

#[test]
fn replies_carry_many_handles_from_quick_items() {
    within(SECS(120), || {
        let pool = Pool::new(1).unwrap();
        let quick: Vec<_> = pool.imap_chunked(made_value, 0..500u64, 500).collect();
        assert!(
            quick.iter().all(Result::is_ok),
            "{:?}",
            quick.iter().find(|r| r.is_err())
        );
        let many: Vec<_> = pool.imap_chunked(many_values, 0..20u64, 20).collect();
        for (i, r) in many.iter().enumerate() {
            assert_eq!(r.as_ref().unwrap().len(), if i % 2 == 0 { 31 } else { 34 });
        }
    });
}
