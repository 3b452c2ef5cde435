//! Iterating shared arrays while other processes write: `Array::iter` is a snapshot taken under
//! the lock, `RawArray::iter` reads each element as it gets there, `&guard` iterates under the
//! lock.

mod common;
use common::{SECS, within};
use multiproc::{Array, Error, Process, RawArray, Semaphore};
use std::time::Duration;

fn fill_array((arr, value): (Array<u64>, u64)) {
    for i in 0..arr.len() {
        arr.set(i, value).unwrap();
    }
}

fn fill_raw((arr, value): (RawArray<u64>, u64)) {
    for i in 0..arr.len() {
        arr.set(i, value);
    }
}

#[test]
fn an_array_snapshot_does_not_see_later_writes_by_another_process() {
    within(SECS(30), || {
        let arr = Array::new(&[1u64, 2, 3, 4]).unwrap();
        let snapshot = arr.iter().unwrap();
        let mut p = Process::new(fill_array, (arr.clone(), 7));
        p.start().unwrap();
        p.join().unwrap();
        assert_eq!(snapshot.collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(arr.iter().unwrap().collect::<Vec<_>>(), [7; 4]);
        // The snapshot took the lock and gave it back.
        assert!(arr.try_lock().unwrap().is_some());
    });
}

#[test]
fn a_raw_array_iterator_sees_what_another_process_wrote_ahead_of_it() {
    within(SECS(30), || {
        let arr = RawArray::new(&[1u64, 2, 3, 4]).unwrap();
        let mut elements = arr.iter();
        assert_eq!(elements.len(), 4);
        assert_eq!(elements.next(), Some(1));
        let mut p = Process::new(fill_raw, (arr.clone(), 9));
        p.start().unwrap();
        p.join().unwrap();
        assert_eq!(elements.len(), 3);
        assert_eq!(elements.collect::<Vec<_>>(), [9, 9, 9]);
        assert_eq!(arr.iter().rev().collect::<Vec<_>>(), [9; 4]);
    });
}

/// Tries to write while the parent iterates under the lock; whether it had to give up.
fn write_while_locked((arr, locked): (Array<bool>, Semaphore)) -> bool {
    locked.acquire().unwrap().forget();
    let refused = matches!(
        arr.lock_timeout(Duration::from_millis(100)),
        Err(Error::Timeout)
    );
    arr.set(1, true).unwrap();
    refused
}

#[test]
fn iterating_a_guard_keeps_other_processes_out_for_every_element_type() {
    within(SECS(30), || {
        let arr = Array::new(&[true, false, true]).unwrap();
        let locked = Semaphore::new(0).unwrap();
        let mut p = Process::new(write_while_locked, (arr.clone(), locked.clone()));
        p.start().unwrap();
        let guard = arr.lock().unwrap();
        locked.release().unwrap();
        let mut seen = Vec::new();
        for flag in &guard {
            std::thread::sleep(Duration::from_millis(60));
            seen.push(flag);
        }
        assert_eq!(seen, [true, false, true], "nobody wrote under our lock");
        drop(guard);
        assert!(
            p.join().unwrap(),
            "the child could not take the lock meanwhile"
        );
        assert_eq!(arr.to_vec().unwrap(), [true, true, true]);
    });
}
