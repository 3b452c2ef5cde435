//! Nothing is left in /dev/shm by queues, locks, values and arrays: after normal use, after a
//! child crash while holding a lock, and after a parent process is SIGKILLed with a child of
//! its own. No descriptor outlives the handles that used it. (Named `SharedMemory` has its
//! own tests in `shared_memory.rs`.)

mod common;
use common::{SECS, eventually, exists, within};
use multiproc::{Array, Event, Lock, Pipe, Pool, Process, Queue, Value};
use std::collections::BTreeSet;
use std::time::Duration;

fn shm_entries() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn hold_lock((lock, ready): (Lock, Event)) {
    let _g = lock.acquire().unwrap();
    ready.set();
    std::thread::sleep(Duration::from_secs(600));
}

/// Makes handles of every kind, starts a child that holds one of them, says where it is and
/// waits to be killed.
fn parent_with_child((ready, pids): (Event, Queue<u32>)) {
    let lock = Lock::new().unwrap();
    let _q: Queue<Vec<u8>> = Queue::new().unwrap();
    let _v = Value::new(1u64).unwrap();
    let _a = Array::<f64>::zeroed(1 << 20).unwrap();
    let child_ready = Event::new().unwrap();
    let mut child = Process::new(hold_lock, (lock.clone(), child_ready.clone()));
    child.start().unwrap();
    child_ready.wait_timeout(SECS(10));
    pids.put(child.pid().unwrap()).unwrap();
    ready.set();
    std::thread::sleep(Duration::from_secs(600));
}

/// The tests here count things the whole process shares: one at a time.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn queues_locks_values_and_arrays_leave_nothing_behind() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    within(SECS(60), || {
        let before = shm_entries();

        // Normal use across processes.
        let q: Queue<Vec<u8>> = Queue::new().unwrap();
        let v = Value::new(0i32).unwrap();
        let mut p = Process::new(
            |(q, v): (Queue<Vec<u8>>, Value<i32>)| {
                q.put(vec![7; 1 << 20]).unwrap(); // big: goes through a memfd
                *v.lock().unwrap() += 1;
            },
            (q.clone(), v.clone()),
        );
        p.start().unwrap();
        p.join().unwrap();
        assert_eq!(q.get().unwrap().len(), 1 << 20);
        assert_eq!(v.get().unwrap(), 1);

        // A child killed while holding a lock.
        let lock = Lock::new().unwrap();
        let ready = Event::new().unwrap();
        let mut holder = Process::new(hold_lock, (lock.clone(), ready.clone()));
        holder.start().unwrap();
        assert!(ready.wait_timeout(SECS(10)));
        holder.kill().unwrap();
        let _ = holder.join_timeout(SECS(5));
        assert!(lock.acquire_timeout(SECS(5)).is_err(), "OwnerDied first");
        drop(lock.acquire_timeout(SECS(5)).unwrap());

        // A parent (with a child of its own holding its lock) killed outright.
        let ready = Event::new().unwrap();
        let pids = Queue::new().unwrap();
        let mut parent = Process::new(parent_with_child, (ready.clone(), pids.clone()));
        parent.start().unwrap();
        assert!(ready.wait_timeout(SECS(10)));
        let grandchild = pids.get_timeout(SECS(5)).unwrap();
        parent.kill().unwrap();
        let _ = parent.join_timeout(SECS(5));
        assert!(
            eventually(SECS(5), || !exists(grandchild)),
            "the grandchild died with its parent"
        );

        assert_eq!(shm_entries(), before, "/dev/shm changed");
    });
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn read_value(v: Value<u64>) -> u64 {
    v.get().unwrap()
}

#[test]
fn handles_sent_and_received_many_times_leak_no_descriptor() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    within(SECS(120), || {
        let pool = Pool::new(2).unwrap();
        let q: Queue<Value<u64>> = Queue::new().unwrap();
        let (mut a, mut b) = Pipe::<Queue<u8>>::duplex().unwrap();
        // Warm up: lazily opened descriptors (the spawner's, say) are not leaks.
        let mut round = |n: u64| {
            for i in 0..n {
                q.put(Value::new(i).unwrap()).unwrap();
                assert_eq!(q.get().unwrap().get().unwrap(), i);
                a.send(&Queue::new().unwrap()).unwrap();
                b.recv().unwrap().put(1).unwrap();
            }
            let values: Vec<_> = (0..n).map(|i| Value::new(i).unwrap()).collect();
            assert_eq!(
                pool.map(read_value, values).unwrap(),
                (0..n).collect::<Vec<_>>()
            );
        };
        round(10);
        let before = open_fds();
        round(2_000);
        let after = open_fds();
        assert!(
            after <= before + 2,
            "descriptors grew from {before} to {after}"
        );
    });
}
