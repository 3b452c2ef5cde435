//! `Process`: start, join with a value, names, exit codes, signals, daemons, sentinels,
//! `active_children()`, and dying with the parent. (What happens at the program's exit is in
//! `exit.rs`.)

mod common;
use common::{SECS, eventually, exists, sigkill, spawn_plain_sleeper, state, within};
use multiproc::{Death, Error, Process, Queue, StartMethod};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::{Duration, Instant};

for_each_start_method!(
    join_returns_the_value_and_exit_code_is_zero,
    the_child_knows_its_name_and_run_stays_here,
    a_panic_comes_back_with_message_and_location,
    join_is_alive_and_exitcode_can_be_asked_from_several_threads_at_once,
    join_timeout_and_is_alive,
    terminate_and_kill_report_signals,
    the_sentinel_becomes_readable_at_exit,
    a_dropped_daemon_is_killed_and_reaped,
    children_die_with_their_parent_even_on_sigkill,
    active_children_lists_the_live_children_only,
    a_plain_grandchild_outlives_a_killed_process,
    children_print_where_the_parent_prints,
);

fn cube(x: i64) -> i64 {
    x * x * x
}

fn identity() -> (u32, String, bool) {
    let me = multiproc::current_process();
    (me.pid(), me.name().to_string(), me.is_worker())
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn explode(msg: String) -> u8 {
    panic!("{msg}");
}

/// A non-daemon `Process` that is killed and reaped when the guard goes, however the test ends:
/// a failed assertion must not leave a long-running child for the test binary to wait for at
/// exit. (Where the daemon flag does not matter to a test, its children are daemons instead.)
struct KillOnDrop<R: Serialize + DeserializeOwned + Send + 'static>(Process<R>);

impl<R: Serialize + DeserializeOwned + Send + 'static> std::ops::Deref for KillOnDrop<R> {
    type Target = Process<R>;
    fn deref(&self) -> &Process<R> {
        &self.0
    }
}

impl<R: Serialize + DeserializeOwned + Send + 'static> std::ops::DerefMut for KillOnDrop<R> {
    fn deref_mut(&mut self) -> &mut Process<R> {
        &mut self.0
    }
}

impl<R: Serialize + DeserializeOwned + Send + 'static> Drop for KillOnDrop<R> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.join_timeout(SECS(5));
    }
}

fn join_returns_the_value_and_exit_code_is_zero(method: StartMethod) {
    within(SECS(30), move || {
        let mut p = Process::new(cube, 3).with_start_method(method);
        assert_eq!(p.pid(), None);
        assert_eq!(p.exitcode(), None);
        p.start().unwrap();
        assert!(p.pid().is_some());
        assert_eq!(*p.join().unwrap(), 27);
        assert_eq!(p.exitcode(), Some(0));
        assert!(!p.is_alive());
        // Joining again, as Python allows, gives the value again; then it can be taken.
        assert_eq!(*p.join().unwrap(), 27);
        assert_eq!(*p.join_timeout(Duration::ZERO).unwrap(), 27);
        assert_eq!(p.into_value().unwrap(), 27);
        // Misuse says what it was.
        let never = Process::new(cube, 1).with_start_method(method);
        assert!(matches!(never.join(), Err(Error::NotStarted)));
        assert!(matches!(
            never.join_timeout(SECS(1)),
            Err(Error::NotStarted)
        ));
        assert!(matches!(
            Process::new(cube, 1).with_start_method(method).into_value(),
            Err(Error::NotStarted)
        ));
    });
}

fn the_child_knows_its_name_and_run_stays_here(method: StartMethod) {
    within(SECS(30), move || {
        let mut p = Process::new(identity, ())
            .with_start_method(method)
            .with_name("worker-x");
        assert_eq!(p.name(), "worker-x");
        // run(): in this very process.
        let (pid, name, worker) = p.run().unwrap();
        assert_eq!(pid, std::process::id());
        assert_eq!(name, "MainProcess");
        assert!(!worker);
        p.start().unwrap();
        let (pid, name, worker) = p.join().cloned().unwrap();
        assert_eq!(Some(pid), p.pid());
        assert_ne!(pid, std::process::id());
        assert_eq!(name, "worker-x");
        assert!(worker);
        assert!(matches!(p.start(), Err(Error::AlreadyStarted)));
    });
}

fn a_panic_comes_back_with_message_and_location(method: StartMethod) {
    within(SECS(30), move || {
        let mut p = Process::new(explode, "kaboom".to_string()).with_start_method(method);
        p.start().unwrap();
        match p.join() {
            Err(Error::TaskPanicked {
                message, location, ..
            }) => {
                assert_eq!(message, "kaboom");
                assert!(location.unwrap().contains("process.rs"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.exitcode(), Some(1));
        // Every join reports the same failure.
        for _ in 0..2 {
            assert!(
                matches!(p.join(), Err(Error::TaskPanicked { message, .. }) if message == "kaboom")
            );
        }
        assert!(matches!(p.into_value(), Err(Error::TaskPanicked { .. })));
    });
}

fn join_is_alive_and_exitcode_can_be_asked_from_several_threads_at_once(method: StartMethod) {
    within(SECS(30), move || {
        let mut p = Process::new(sleep_ms, 300).with_start_method(method);
        p.start().unwrap();
        let p = &p;
        std::thread::scope(|s| {
            let joiners: Vec<_> = (0..3)
                .map(|_| s.spawn(move || *p.join().unwrap()))
                .collect();
            // Asking never waits for a joiner that holds the child's channel.
            let asker = s.spawn(move || {
                let mut alive_seen = false;
                while p.is_alive() {
                    alive_seen = true;
                    assert_eq!(p.exitcode(), None);
                    std::thread::sleep(Duration::from_millis(5));
                }
                alive_seen
            });
            for j in joiners {
                assert_eq!(j.join().unwrap(), 300);
            }
            assert!(asker.join().unwrap(), "the child was seen running");
        });
        assert_eq!(p.exitcode(), Some(0));
    });
}

fn join_timeout_and_is_alive(method: StartMethod) {
    within(SECS(30), move || {
        let mut p = Process::new(sleep_ms, 400).with_start_method(method);
        p.start().unwrap();
        assert!(p.is_alive());
        assert!(matches!(
            p.join_timeout(Duration::from_millis(50)),
            Err(Error::Timeout)
        ));
        assert!(p.is_alive());
        assert_eq!(p.join_timeout(SECS(10)).cloned().unwrap(), 400);
        assert!(!p.is_alive());
    });
}

fn terminate_and_kill_report_signals(method: StartMethod) {
    within(SECS(30), move || {
        // Daemons, here and below where the flag does not matter: a failed assertion kills
        // them with their handle instead of leaving them for the exit to wait for.
        let mut p = Process::new(sleep_ms, 30_000)
            .with_start_method(method)
            .with_daemon(true);
        p.start().unwrap();
        p.terminate().unwrap();
        match p.join() {
            Err(Error::WorkerDied { cause, .. }) => assert_eq!(cause.to_string(), "SIGTERM"),
            other => panic!("{other:?}"),
        }
        assert_eq!(p.exitcode(), Some(-15));

        let mut p = Process::new(sleep_ms, 30_000)
            .with_start_method(method)
            .with_daemon(true);
        p.start().unwrap();
        p.kill().unwrap();
        match p.join() {
            Err(Error::WorkerDied {
                cause: Death::Signal { number, .. },
                ..
            }) => assert_eq!(number, 9),
            other => panic!("{other:?}"),
        }
        assert_eq!(p.exitcode(), Some(-9));
    });
}

fn the_sentinel_becomes_readable_at_exit(method: StartMethod) {
    within(SECS(30), move || {
        let mut p = Process::new(sleep_ms, 200).with_start_method(method);
        p.start().unwrap();
        let fd = p.sentinel().unwrap();
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        let t = Instant::now();
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        assert_eq!(rustix::event::poll(&mut fds, Some(&zero)).unwrap(), 0);
        let ten = rustix::event::Timespec {
            tv_sec: 10,
            tv_nsec: 0,
        };
        assert_eq!(rustix::event::poll(&mut fds, Some(&ten)).unwrap(), 1);
        assert!(t.elapsed() >= Duration::from_millis(150));
        assert_eq!(p.join().cloned().unwrap(), 200);
    });
}

fn a_dropped_daemon_is_killed_and_reaped(method: StartMethod) {
    within(SECS(30), move || {
        let mut p = Process::new(sleep_ms, 30_000)
            .with_start_method(method)
            .with_daemon(true);
        assert!(p.is_daemon());
        p.start().unwrap();
        let pid = p.pid().unwrap();
        drop(p);
        assert!(
            eventually(SECS(5), || !exists(pid)),
            "daemon {pid}: {:?}",
            state(pid)
        );
    });
}

/// Starts a grandchild that sleeps, reports its pid, then sleeps itself.
fn parent_of_sleeper(method: StartMethod) -> u32 {
    let mut g = Process::new(sleep_ms, 60_000).with_start_method(method);
    g.start().unwrap();
    let pid = g.pid().unwrap();
    let file = std::env::temp_dir().join(format!("multiproc-grandchild-{}", std::process::id()));
    // Written aside, then renamed: the reader never sees half a file.
    std::fs::write(file.with_extension("tmp"), pid.to_string()).unwrap();
    std::fs::rename(file.with_extension("tmp"), file).unwrap();
    std::thread::sleep(SECS(60));
    pid
}

fn children_die_with_their_parent_even_on_sigkill(method: StartMethod) {
    within(SECS(30), move || {
        let mut p = Process::new(parent_of_sleeper, method)
            .with_start_method(method)
            .with_daemon(true);
        p.start().unwrap();
        let middle = p.pid().unwrap();
        let file = std::env::temp_dir().join(format!("multiproc-grandchild-{middle}"));
        assert!(eventually(SECS(10), || file.exists()));
        let grandchild: u32 = std::fs::read_to_string(&file).unwrap().parse().unwrap();
        let _ = std::fs::remove_file(&file);
        assert!(exists(grandchild));
        p.kill().unwrap();
        assert!(matches!(p.join(), Err(Error::WorkerDied { .. })));
        // PR_SET_PDEATHSIG: the grandchild is killed too (it may linger as a zombie of init).
        assert!(
            eventually(SECS(5), || !exists(grandchild)
                || state(grandchild) == Some('Z')),
            "grandchild {grandchild} survived its parent: {:?}",
            state(grandchild)
        );
    });
}

/// Whether `pid` is listed by `active_children()`, and if so with which name and daemon flag.
fn listed(pid: Option<u32>) -> Option<(String, bool)> {
    multiproc::active_children()
        .into_iter()
        .find(|c| Some(c.pid()) == pid)
        .map(|c| (c.name().to_string(), c.is_daemon()))
}

fn active_children_lists_the_live_children_only(method: StartMethod) {
    within(SECS(30), move || {
        let mut sleeper = KillOnDrop(
            Process::new(sleep_ms, 30_000)
                .with_start_method(method)
                .with_name("sleeper"),
        );
        let mut daemon = Process::new(sleep_ms, 30_000)
            .with_start_method(method)
            .with_name("lurker")
            .with_daemon(true);
        let mut quick = Process::new(sleep_ms, 0).with_start_method(method);
        sleeper.start().unwrap();
        daemon.start().unwrap();
        quick.start().unwrap();
        quick.join().unwrap();
        assert_eq!(listed(sleeper.pid()), Some(("sleeper".into(), false)));
        assert_eq!(listed(daemon.pid()), Some(("lurker".into(), true)));
        assert_eq!(listed(quick.pid()), None, "a joined child is not listed");

        // A child that ends is reaped by active_children(); its handle still learns how.
        sleeper.kill().unwrap();
        assert!(eventually(SECS(5), || listed(sleeper.pid()).is_none()));
        assert!(!exists(sleeper.pid().unwrap()), "reaped, not a zombie");
        assert!(matches!(
            sleeper.join(),
            Err(Error::WorkerDied {
                cause: Death::Signal { number: 9, .. },
                ..
            })
        ));
        assert_eq!(sleeper.exitcode(), Some(-9));

        // A child whose handle was dropped is listed while it runs, and reaped when it ends.
        let mut dropped = Process::new(sleep_ms, 300)
            .with_start_method(method)
            .with_name("dropped");
        dropped.start().unwrap();
        let pid = dropped.pid();
        drop(dropped);
        assert_eq!(listed(pid), Some(("dropped".into(), false)));
        assert!(eventually(SECS(10), || listed(pid).is_none()));
        assert!(eventually(SECS(5), || !exists(pid.unwrap())), "no zombie");

        // A dropped daemon is killed.
        let pid = daemon.pid();
        drop(daemon);
        assert!(eventually(SECS(5), || listed(pid).is_none()));
    });
}

/// Starts a plain grandchild with `Command::spawn`, says its pid, and sleeps.
fn parent_of_plain_grandchild(pids: Queue<u32>) {
    pids.put(spawn_plain_sleeper()).unwrap();
    std::thread::sleep(SECS(60));
}

/// What the README says under "What differs from Python": a process that a task starts by
/// other means than `multiproc` (a plain `fork()`, `Command::spawn`) is the task's own. Killing
/// the `Process` does not reach it, as in Python.
fn a_plain_grandchild_outlives_a_killed_process(method: StartMethod) {
    within(SECS(30), move || {
        let pids = Queue::new().unwrap();
        let mut p = Process::new(parent_of_plain_grandchild, pids.clone())
            .with_start_method(method)
            .with_daemon(true);
        p.start().unwrap();
        let grandchild = pids.get_timeout(SECS(10)).unwrap();
        p.kill().unwrap();
        assert!(matches!(p.join(), Err(Error::WorkerDied { .. })));
        std::thread::sleep(Duration::from_millis(200));
        let alive = exists(grandchild) && state(grandchild) != Some('Z');
        sigkill(grandchild);
        assert!(alive, "the grandchild died with its parent after all");
    });
}

fn shout(word: String) -> usize {
    println!("child says {word}");
    eprintln!("child warns {word}");
    word.len()
}

/// Not run on its own: `children_print_where_the_parent_prints` runs it in a separate copy of
/// this test binary whose stdout and stderr are captured.
#[test]
#[ignore]
fn inner_child_prints() {
    let method = match std::env::var("INNER_START_METHOD").as_deref() {
        Ok("Fork") => StartMethod::Fork,
        Ok("ForkServer") => StartMethod::ForkServer,
        _ => StartMethod::Spawn,
    };
    let mut p = Process::new(shout, "hello".to_string()).with_start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().cloned().unwrap(), 5);
}

fn children_print_where_the_parent_prints(method: StartMethod) {
    within(SECS(60), move || {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "inner_child_prints", "--ignored", "--nocapture"])
            .env("INNER_START_METHOD", format!("{method:?}"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("child says hello"), "stdout: {stdout}");
        assert!(stderr.contains("child warns hello"), "stderr: {stderr}");
    });
}
