//! A task that overflows its stack: the child serves tasks from a start-up hook, before std's
//! runtime could install its guard-page handler, so without ours the death reads as a bare
//! `SIGSEGV`. It must say "stack overflow", for pool tasks and for `Process::join`, while any
//! other segfault stays a plain `SIGSEGV`.

mod common;
use common::{SECS, within};
use multiproc::{Death, Error, Process, StartMethod};

for_each_start_method!(
    a_stack_overflow_in_a_pool_task_says_so_and_the_worker_is_replaced,
    another_segfault_is_still_a_plain_sigsegv,
    a_stack_overflow_in_a_process_is_reported_by_join,
    an_overflow_in_a_thread_the_task_started_is_a_plain_sigsegv,
);

/// Recurses until the stack runs out. Each frame holds a page-sized array that stays alive
/// across the call (`black_box` before and after), so no optimisation level can turn the
/// recursion into a loop or shrink the frames; the end the compiler cannot rule out is never
/// reached.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == std::hint::black_box(u64::MAX) {
        return 0;
    }
    let mut frame = [0u8; 4096];
    frame[(depth % 4096) as usize] = depth as u8;
    std::hint::black_box(&mut frame);
    let below = recurse(std::hint::black_box(depth + 1));
    std::hint::black_box(&frame);
    below.wrapping_add(u64::from(frame[(depth % 4096) as usize]))
}

fn overflow(x: u64) -> u64 {
    recurse(x)
}

fn null_read(_: u64) -> u64 {
    // SAFETY: not safe at all, deliberately: address 8 is never mapped, so this read faults
    // with SIGSEGV far from any stack. The test checks how that death is reported.
    u64::from(unsafe { std::ptr::read_volatile(8 as *const u8) })
}

fn overflow_in_a_thread(x: u64) -> u64 {
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || recurse(x))
        .unwrap()
        .join()
        .unwrap()
}

fn double(x: u64) -> u64 {
    x * 2
}

fn assert_stack_overflow(r: Result<u64, Error>) {
    match r {
        Err(
            e @ Error::WorkerDied {
                cause: Death::StackOverflow { number: 11 },
                ..
            },
        ) => {
            assert!(e.to_string().contains("stack overflow (SIGSEGV)"), "{e}");
        }
        other => panic!("expected WorkerDied(stack overflow), got {other:?}"),
    }
}

fn a_stack_overflow_in_a_pool_task_says_so_and_the_worker_is_replaced(method: StartMethod) {
    within(SECS(60), move || {
        let pool = common::pool(1, method);
        assert_stack_overflow(pool.apply(overflow, 0));
        // The replacement serves, and a second overflow is recognised in it too.
        assert_eq!(pool.apply(double, 21).unwrap(), 42);
        let results: Vec<_> = pool
            .imap_chunked(
                |x: u64| if x == 3 { overflow(x) } else { x * 2 },
                0..6u64,
                2,
            )
            .collect();
        for (i, r) in results.into_iter().enumerate() {
            if i == 3 {
                assert_stack_overflow(r);
            } else {
                assert_eq!(r.unwrap(), i as u64 * 2);
            }
        }
    });
}

fn another_segfault_is_still_a_plain_sigsegv(method: StartMethod) {
    within(SECS(60), move || {
        let pool = common::pool(1, method);
        match pool.apply(null_read, 0) {
            Err(Error::WorkerDied { cause, .. }) => {
                assert_eq!(
                    cause,
                    Death::Signal {
                        number: 11,
                        name: "SIGSEGV".into()
                    }
                );
                assert_eq!(cause.to_string(), "SIGSEGV");
            }
            other => panic!("expected WorkerDied(SIGSEGV), got {other:?}"),
        }
        // A stack overflow after it is still told apart (the handler is back in the new worker).
        assert_stack_overflow(pool.apply(overflow, 0));
        assert_eq!(pool.apply(double, 4).unwrap(), 8);
    });
}

fn a_stack_overflow_in_a_process_is_reported_by_join(method: StartMethod) {
    within(SECS(60), move || {
        let mut p = Process::new(overflow, 0).with_start_method(method);
        p.start().unwrap();
        assert_stack_overflow(p.join().cloned());
        // The exit code is unchanged: the process still died by SIGSEGV.
        assert_eq!(p.exitcode(), Some(-11));

        let mut p = Process::new(null_read, 0).with_start_method(method);
        p.start().unwrap();
        match p.join() {
            Err(Error::WorkerDied { cause, .. }) => assert_eq!(cause.to_string(), "SIGSEGV"),
            other => panic!("expected WorkerDied(SIGSEGV), got {other:?}"),
        }
    });
}

/// What the docs of `Death::StackOverflow` promise for threads a task starts: such a thread has
/// no alternate signal stack, so no handler can run when it overflows, and the child dies by a
/// plain SIGSEGV as before — reported, never hung, never mistaken for something else.
fn an_overflow_in_a_thread_the_task_started_is_a_plain_sigsegv(method: StartMethod) {
    within(SECS(60), move || {
        let pool = common::pool(1, method);
        match pool.apply(overflow_in_a_thread, 0) {
            Err(Error::WorkerDied { cause, .. }) => assert_eq!(cause.to_string(), "SIGSEGV"),
            other => panic!("expected WorkerDied(SIGSEGV), got {other:?}"),
        }
        assert_eq!(pool.apply(double, 5).unwrap(), 10);
    });
}
