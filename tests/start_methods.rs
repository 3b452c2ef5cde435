//! What each start method gives a child: fork's copy of the parent's memory, the fork server's
//! own, spawn's clean start; and that every method's children are this program's children.

mod common;
use std::sync::OnceLock;

use common::{SECS, within};
use multiproc::{Pool, Process, StartMethod};

static TABLE: OnceLock<Vec<u64>> = OnceLock::new();

fn table_len(_: ()) -> usize {
    TABLE.get().map_or(0, Vec::len)
}

fn whoami() -> (u32, u32, String) {
    let me = multiproc::current_process();
    (
        me.pid(),
        rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32),
        me.name().to_string(),
    )
}

#[test]
fn forked_workers_see_the_parents_memory_and_others_do_not() {
    within(SECS(60), || {
        TABLE.get_or_init(|| (0..100_000).collect());
        for (method, expect) in [
            (StartMethod::Fork, 100_000),
            (StartMethod::ForkServer, 0),
            (StartMethod::Spawn, 0),
        ] {
            let pool = Pool::builder()
                .processes(2)
                .start_method(method)
                .build()
                .unwrap();
            assert_eq!(
                pool.map(table_len, [(), ()]).unwrap(),
                [expect, expect],
                "{method:?}"
            );
            let mut p = Process::new(table_len, ()).with_start_method(method);
            p.start().unwrap();
            assert_eq!(*p.join().unwrap(), expect, "{method:?}");
        }
    });
}

#[test]
fn every_child_is_this_programs_child_and_knows_its_name() {
    within(SECS(60), || {
        for method in [
            StartMethod::Fork,
            StartMethod::ForkServer,
            StartMethod::Spawn,
        ] {
            let mut p = Process::new(whoami, ())
                .with_name(format!("child-{method:?}"))
                .with_start_method(method);
            p.start().unwrap();
            let pid = p.pid().unwrap();
            let (child, parent, name) = p.join().unwrap().clone();
            assert_eq!((child, parent), (pid, std::process::id()), "{method:?}");
            assert_eq!(name, format!("child-{method:?}"));
            assert_eq!(p.exitcode(), Some(0));
        }
    });
}

static BIG: OnceLock<Vec<u8>> = OnceLock::new();
const BIG_LEN: usize = 256 << 20;

/// Private memory of this process (pages no other process maps), in KiB.
fn private_kib() -> u64 {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap();
    rollup
        .lines()
        .filter(|l| l.starts_with("Private_Clean:") || l.starts_with("Private_Dirty:"))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Reads (or writes, if `write`) every page of the table; returns a checksum and this worker's
/// private memory afterwards.
fn touch_table(write: bool) -> (u64, u64) {
    let table = BIG.get().expect("the table is the parent's");
    let mut sum = 0u64;
    if write {
        // SAFETY: test only: the table is this copy's own memory (copy-on-write); nothing else
        // in this worker reads it meanwhile.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(table.as_ptr().cast_mut(), table.len()) };
        for page in bytes.chunks_mut(4096) {
            page[0] = page[0].wrapping_add(1);
            sum += u64::from(page[0]);
        }
    } else {
        for page in table.chunks(4096) {
            sum += u64::from(page[0]);
        }
    }
    (sum, private_kib())
}

/// The reason to fork: a worker reads a large table built before the pool started without it
/// being sent or copied. Reading costs it no memory of its own; writing copies the pages.
#[test]
fn a_forked_worker_shares_a_large_table_until_it_writes() {
    within(SECS(120), || {
        let table = BIG.get_or_init(|| (0..BIG_LEN).map(|i| (i / 4096) as u8).collect());
        let expect: u64 = table.chunks(4096).map(|p| u64::from(p[0])).sum();
        let pool = Pool::builder()
            .processes(1)
            .start_method(StartMethod::Fork)
            .build()
            .unwrap();
        let (sum, private) = pool.apply(touch_table, false).unwrap();
        assert_eq!(sum, expect);
        assert!(
            private < 16 << 10,
            "a reader holds {private} KiB of its own (table {} MiB)",
            BIG_LEN >> 20
        );
        let (_, private) = pool.apply(touch_table, true).unwrap();
        assert!(
            private > (BIG_LEN as u64 >> 10) * 9 / 10,
            "a writer holds only {private} KiB of its own: is the measure right?"
        );
    });
}

fn one() -> u32 {
    1
}

/// A lock another thread held at the fork is held for ever in the copy. A child that never
/// takes it must still exit: its own exit flushes std's `stdout`, and must not wait on that
/// lock for ever (review: 2–4 of 40 children hung at exit without the bound).
#[test]
fn a_forked_child_exits_though_another_thread_held_stdout_at_the_fork() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    within(SECS(60), || {
        let stop = Arc::new(AtomicBool::new(false));
        let holding = stop.clone();
        let holder = std::thread::spawn(move || {
            while !holding.load(Ordering::Relaxed) {
                let held = std::io::stdout().lock();
                std::thread::sleep(std::time::Duration::from_millis(5));
                drop(held);
            }
        });
        for _ in 0..10 {
            let mut p = Process::new(one, ()).with_start_method(StartMethod::Fork);
            p.start().unwrap();
            assert_eq!(p.join_timeout(SECS(10)).cloned().unwrap(), 1);
        }
        stop.store(true, Ordering::Relaxed);
        holder.join().unwrap();
    });
}

/// Starts from several threads at once take turns at the fork server; each gets its own child.
#[test]
fn concurrent_starts_through_the_fork_server_each_get_a_child() {
    within(SECS(60), || {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..5)
                        .map(|_| {
                            let mut p =
                                Process::new(whoami, ()).with_start_method(StartMethod::ForkServer);
                            p.start().unwrap();
                            let pid = p.pid().unwrap();
                            assert_eq!(p.join().unwrap().0, pid);
                            pid
                        })
                        .collect::<Vec<u32>>()
                })
            })
            .collect();
        let mut pids: Vec<u32> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        pids.sort_unstable();
        pids.dedup();
        assert_eq!(pids.len(), 20);
    });
}

for_each_start_method!(a_writer_child_holds_a_queue_as_itself);

/// A child that received a queue counts as its writer while it lives, whatever started it: once
/// it has exited, a reader is told that every writer is gone instead of waiting for ever.
fn a_writer_child_holds_a_queue_as_itself(method: StartMethod) {
    fn put_three(q: multiproc::Queue<u32>) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        for i in 0..3 {
            q.put(i).unwrap();
        }
    }
    within(SECS(30), move || {
        let q = multiproc::Queue::new().unwrap();
        let mut p = Process::new(put_three, q.clone()).with_start_method(method);
        p.start().unwrap();
        let got: Vec<u32> = (0..3).map(|_| q.get().unwrap()).collect();
        assert_eq!(got, [0, 1, 2]);
        p.join().unwrap();
        assert!(matches!(q.get(), Err(multiproc::Error::Disconnected)));
    });
}

/// Where [`mark_exit`] appends the pid of the process running it, while the file exists.
static EXIT_FILE: OnceLock<std::path::PathBuf> = OnceLock::new();

extern "C" fn mark_exit() {
    use std::io::Write;
    if let Some(path) = EXIT_FILE.get() {
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(path) {
            let _ = writeln!(f, "{}", std::process::id());
        }
    }
}

fn pid_of_me() -> u32 {
    std::process::id()
}

/// A forked child leaves with `_exit`: an exit hook its parent registered never runs there.
#[test]
fn a_forked_child_runs_none_of_its_parents_exit_hooks() {
    within(SECS(30), || {
        let path = std::env::temp_dir().join(format!("multiproc-exit-{}", std::process::id()));
        std::fs::write(&path, "").unwrap();
        EXIT_FILE.set(path.clone()).unwrap();
        // SAFETY: `mark_exit` is a plain function that lives as long as the program.
        assert_eq!(unsafe { libc::atexit(mark_exit) }, 0);
        let mut p = Process::new(pid_of_me, ()).with_start_method(StartMethod::Fork);
        p.start().unwrap();
        let child = *p.join().unwrap();
        let marks = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(
            !marks.lines().any(|l| l == child.to_string()),
            "the child ran its parent's exit hook: {marks:?}"
        );
    });
}
