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
