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
