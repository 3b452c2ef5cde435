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

fn echo_pid(bytes: Vec<u8>) -> (Vec<u8>, u32) {
    (bytes, std::process::id())
}

/// Mappings of the shared memory kept for large messages, in process `pid`.
fn bulk_mappings(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|m| m.lines().filter(|l| l.contains("multiproc-bulk")).count())
        .unwrap_or(0)
}

#[test]
fn memory_kept_for_large_messages_goes_once_the_pool_is_idle() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    within(SECS(60), || {
        let pool = Pool::new(1).unwrap();
        let (back, worker) = pool.apply(echo_pid, vec![9u8; 4 << 20]).unwrap();
        assert_eq!(back.len(), 4 << 20);
        let me = std::process::id();
        assert!(
            bulk_mappings(me) > 0 && bulk_mappings(worker) > 0,
            "kept for the next"
        );
        // Idle for a second or so: both sides let go.
        assert!(
            eventually(SECS(10), || bulk_mappings(me) == 0
                && bulk_mappings(worker) == 0),
            "still mapped: {} here, {} in the worker",
            bulk_mappings(me),
            bulk_mappings(worker)
        );
        // And large messages still work afterwards.
        assert_eq!(
            pool.apply(echo_pid, vec![1u8; 4 << 20]).unwrap().0.len(),
            4 << 20
        );
    });
}
