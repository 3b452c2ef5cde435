//! SharedMemory across real processes: anonymous and named segments, bounds, and who removes a
//! name from /dev/shm and when — the creator's last handle or its death (SIGKILL included),
//! never a child that merely opened or received it.

mod common;
use common::{SECS, children_of, eventually, exists, state, within};
use multiproc::{Error, Pool, Process, Semaphore, SharedMemory};
use std::io::ErrorKind;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A name no other test (or run) uses: this process's pid and a counter.
fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "mp-test-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn on_disk(name: &str) -> bool {
    std::path::Path::new(&format!("/dev/shm/{name}")).exists()
}

fn read_all(shm: &SharedMemory) -> Vec<u8> {
    let mut buf = vec![0; shm.size()];
    shm.read(0, &mut buf).unwrap();
    buf
}

fn fill((shm, byte): (SharedMemory, u8)) -> usize {
    shm.write(0, &vec![byte; shm.size()]).unwrap();
    shm.size()
}

#[test]
fn an_anonymous_segment_written_by_a_child_is_seen_by_the_parent() {
    within(SECS(30), || {
        let shm = SharedMemory::new(1000).unwrap();
        assert_eq!(shm.name(), None);
        let mut p = Process::new(fill, (shm.clone(), 7));
        p.start().unwrap();
        assert_eq!(
            p.join().cloned().unwrap(),
            1000,
            "the child sees the exact size"
        );
        assert!(read_all(&shm).iter().all(|&b| b == 7));
    });
}

fn put_square((shm, i): (SharedMemory, u64)) -> u64 {
    shm.write(i as usize * 8, &(i * i).to_le_bytes()).unwrap();
    i
}

#[test]
fn pool_tasks_write_into_an_anonymous_segment() {
    within(SECS(60), || {
        let pool = Pool::new(2).unwrap();
        let shm = SharedMemory::new(8 * 50).unwrap();
        let done = pool
            .map(put_square, (0..50u64).map(|i| (shm.clone(), i)))
            .unwrap();
        assert_eq!(done.len(), 50);
        let bytes = read_all(&shm);
        for (i, chunk) in bytes.chunks_exact(8).enumerate() {
            let i = i as u64;
            assert_eq!(u64::from_le_bytes(chunk.try_into().unwrap()), i * i);
        }
    });
}

/// Opens `name`, reports its size and first five bytes, and answers at offset 8.
fn open_and_answer(name: String) -> Result<(usize, Vec<u8>), String> {
    let shm = SharedMemory::open(&name).map_err(|e| e.to_string())?;
    let mut first = vec![0; 5];
    shm.read(0, &mut first).map_err(|e| e.to_string())?;
    shm.write(8, b"pong").map_err(|e| e.to_string())?;
    Ok((shm.size(), first))
}

#[test]
fn a_named_segment_is_opened_by_name_in_another_process() {
    within(SECS(30), || {
        let name = unique("open");
        let shm = SharedMemory::create(&name, 13).unwrap();
        assert_eq!(shm.name(), Some(name.as_str()));
        assert_eq!(shm.size(), 13, "exactly the size asked for");
        shm.write(0, b"ping!").unwrap();
        let mut p = Process::new(open_and_answer, name.clone());
        p.start().unwrap();
        assert_eq!(p.join().cloned().unwrap(), Ok((13, b"ping!".to_vec())));
        let mut answer = [0; 4];
        shm.read(8, &mut answer).unwrap();
        assert_eq!(&answer, b"pong");
        assert!(
            on_disk(&name),
            "the child that opened it exited: the name stays"
        );
        drop(shm);
        assert!(!on_disk(&name));
    });
}

#[test]
fn creating_an_existing_name_fails_and_leaves_the_existing_segment_alone() {
    within(SECS(30), || {
        let name = unique("exists");
        let first = SharedMemory::create(&name, 8).unwrap();
        first.write(0, b"original").unwrap();
        match SharedMemory::create(&name, 8) {
            Err(Error::Io(e)) => {
                assert_eq!(e.kind(), ErrorKind::AlreadyExists);
                assert!(e.to_string().contains(&name), "{e}");
            }
            other => panic!("expected AlreadyExists, got {other:?}"),
        }
        assert!(on_disk(&name));
        let again = SharedMemory::open(&name).unwrap();
        assert_eq!(read_all(&again), b"original");
        drop((first, again));
        assert!(!on_disk(&name));
    });
}

#[test]
fn opening_a_missing_name_is_not_found() {
    match SharedMemory::open(&unique("missing")) {
        Err(Error::Io(e)) => assert_eq!(e.kind(), ErrorKind::NotFound),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[test]
fn bad_sizes_names_and_ranges_are_invalid_arguments() {
    assert!(matches!(
        SharedMemory::new(0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        SharedMemory::create(&unique("zero"), 0),
        Err(Error::InvalidArgument(_))
    ));
    for bad in ["", "/", "a/b", "..", "nul\0"] {
        assert!(
            matches!(SharedMemory::create(bad, 8), Err(Error::InvalidArgument(_))),
            "{bad:?}"
        );
        assert!(matches!(
            SharedMemory::open(bad),
            Err(Error::InvalidArgument(_))
        ));
    }
    let shm = SharedMemory::new(10).unwrap();
    let mut buf = [0u8; 4];
    assert!(matches!(
        shm.read(7, &mut buf),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(shm.write(9, &buf), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        shm.read(usize::MAX, &mut buf),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        shm.write(usize::MAX - 1, &buf),
        Err(Error::InvalidArgument(_))
    ));
    shm.write(6, &buf).unwrap();
    shm.read(6, &mut buf).unwrap();
}

#[test]
fn unlink_removes_the_name_now_and_the_memory_stays() {
    within(SECS(30), || {
        let name = unique("unlink");
        let shm = SharedMemory::create(&name, 64).unwrap();
        let other = shm.clone();
        assert!(on_disk(&name));
        shm.unlink().unwrap();
        assert!(!on_disk(&name));
        assert!(SharedMemory::open(&name).is_err());
        other.write(0, b"still mapped").unwrap();
        assert_eq!(&read_all(&shm)[..12], b"still mapped");
        match shm.unlink() {
            Err(Error::Io(e)) => assert_eq!(e.kind(), ErrorKind::NotFound),
            other => panic!("expected NotFound, got {other:?}"),
        }
        drop((shm, other));
        assert!(!on_disk(&name));
        SharedMemory::new(8).unwrap().unlink().unwrap(); // anonymous: nothing to do
    });
}

fn unlink_by_name(name: String) -> bool {
    SharedMemory::open(&name).and_then(|s| s.unlink()).is_ok()
}

#[test]
fn a_late_release_never_removes_a_newer_segment_with_the_same_name() {
    within(SECS(30), || {
        let name = unique("reuse");
        let old = SharedMemory::create(&name, 8).unwrap();
        // Any process may unlink; here a child does.
        let mut p = Process::new(unlink_by_name, name.clone());
        p.start().unwrap();
        assert!(p.join().unwrap());
        assert!(!on_disk(&name));
        // The name is free again and is taken by a new segment.
        let new = SharedMemory::create(&name, 8).unwrap();
        new.write(0, b"newcomer").unwrap();
        drop(old); // the old creator's last handle: must not touch the newcomer
        assert!(on_disk(&name));
        assert_eq!(read_all(&SharedMemory::open(&name).unwrap()), b"newcomer");
        drop(new);
        assert!(!on_disk(&name));
    });
}

fn received_name_and_write(shm: SharedMemory) -> Option<String> {
    shm.write(0, b"via fd").unwrap();
    shm.name().map(str::to_string)
}

#[test]
fn children_that_opened_or_received_the_name_do_not_remove_it() {
    within(SECS(60), || {
        let name = unique("children");
        let shm = SharedMemory::create(&name, 16).unwrap();
        // Opened by name.
        let mut p = Process::new(open_and_answer, name.clone());
        p.start().unwrap();
        assert!(p.join().unwrap().is_ok());
        assert!(on_disk(&name));
        // Received by descriptor: it keeps the name, and its exit keeps the name too.
        let mut p = Process::new(received_name_and_write, shm.clone());
        p.start().unwrap();
        assert_eq!(p.join().unwrap().as_deref(), Some(name.as_str()));
        assert_eq!(&read_all(&shm)[..6], b"via fd");
        assert!(on_disk(&name));
        // Pool workers, which are replaced and torn down as well.
        let pool = Pool::new(2).unwrap();
        let names = pool
            .map(received_name_and_write, (0..4).map(|_| shm.clone()))
            .unwrap();
        assert!(names.iter().all(|n| n.as_deref() == Some(name.as_str())));
        pool.close();
        pool.join().unwrap();
        drop(pool);
        assert!(on_disk(&name));
        drop(shm);
        assert!(!on_disk(&name));
    });
}

#[test]
fn dropping_the_creators_last_handle_removes_the_name() {
    within(SECS(30), || {
        let name = unique("last");
        let a = SharedMemory::create(&name, 8).unwrap();
        let b = a.clone();
        let opened = SharedMemory::open(&name).unwrap();
        drop(a);
        assert!(on_disk(&name), "a clone is still alive");
        drop(opened);
        assert!(on_disk(&name), "a handle from open() does not own the name");
        drop(b);
        assert!(!on_disk(&name));
    });
}

fn create_and_wait((name, ready): (String, Semaphore)) {
    let shm = SharedMemory::create(&name, 4096).unwrap();
    shm.write(0, b"alive").unwrap();
    ready.release().unwrap();
    std::thread::sleep(Duration::from_secs(600));
    drop(shm);
}

#[test]
fn no_name_is_left_after_the_creator_is_sigkilled() {
    within(SECS(60), || {
        let name = unique("killed");
        let ready = Semaphore::new(0).unwrap();
        let mut p = Process::new(create_and_wait, (name.clone(), ready.clone()));
        p.start().unwrap();
        ready.acquire_timeout(SECS(20)).unwrap().forget();
        assert!(on_disk(&name));
        assert_eq!(
            read_all(&SharedMemory::open(&name).unwrap())[..5],
            *b"alive"
        );
        let trackers = children_of(p.pid().unwrap());
        assert_eq!(trackers.len(), 1, "one tracker: {trackers:?}");
        // It holds nothing of its creator's but its socket (and stdin, stdout, stderr).
        let held = std::fs::read_dir(format!("/proc/{}/fd", trackers[0]))
            .unwrap()
            .count();
        assert!(held <= 4, "the tracker holds {held} descriptors");

        p.kill().unwrap();
        let _ = p.join_timeout(SECS(10));
        assert!(
            eventually(SECS(5), || !on_disk(&name)),
            "/dev/shm/{name} outlived its killed creator"
        );
        // Its job done, the tracker is gone too (a zombie only if init does not reap).
        let tracker = trackers[0];
        assert!(
            eventually(SECS(5), || !exists(tracker) || state(tracker) == Some('Z')),
            "the tracker {tracker} outlived its purpose"
        );
    });
}

/// Creates a segment and leaks the handle, so that only the process's exit can remove it.
fn create_and_leak(name: String) -> bool {
    let shm = SharedMemory::create(&name, 8).unwrap();
    std::mem::forget(shm);
    on_disk(&name)
}

#[test]
fn a_leaked_name_is_removed_when_its_creator_exits() {
    within(SECS(30), || {
        let name = unique("leaked");
        let mut p = Process::new(create_and_leak, name.clone());
        p.start().unwrap();
        assert!(p.join().unwrap(), "it existed while the creator lived");
        assert!(
            eventually(SECS(5), || !on_disk(&name)),
            "/dev/shm/{name} outlived its creator"
        );
    });
}

fn create_and_persist(name: String) {
    let shm = SharedMemory::create(&name, 8).unwrap();
    shm.write(0, b"persists").unwrap();
    shm.persist().unwrap();
}

#[test]
fn a_persisted_name_outlives_its_creator_until_unlinked() {
    within(SECS(30), || {
        let name = unique("persist");
        let mut p = Process::new(create_and_persist, name.clone());
        p.start().unwrap();
        p.join().unwrap();
        // Give a (wrongly) running tracker the time it would need.
        std::thread::sleep(Duration::from_millis(200));
        assert!(on_disk(&name));
        let shm = SharedMemory::open(&name).unwrap();
        assert_eq!(read_all(&shm), b"persists");
        shm.unlink().unwrap();
        assert!(!on_disk(&name));
    });
}

fn hammer((shm, byte): (SharedMemory, u8)) {
    // Writes of every alignment and length, over and over, racing the other writer.
    let size = shm.size();
    for round in 0..2000 {
        let offset = (round * 7) % size;
        let len = ((round * 13) % (size - offset)).max(1);
        shm.write(offset, &vec![byte; len]).unwrap();
    }
}

#[test]
fn racing_writers_and_readers_only_ever_see_bytes_someone_wrote() {
    within(SECS(60), || {
        let shm = SharedMemory::new(101).unwrap();
        shm.write(0, &[1; 101]).unwrap();
        let mut writers: Vec<_> = [1u8, 2]
            .into_iter()
            .map(|b| Process::new(hammer, (shm.clone(), b)))
            .collect();
        for w in &mut writers {
            w.start().unwrap();
        }
        for _ in 0..2000 {
            assert!(read_all(&shm).iter().all(|&b| b == 1 || b == 2));
        }
        for w in &mut writers {
            w.join().unwrap();
        }
    });
}
