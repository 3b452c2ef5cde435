//! The process-wide start method and the fork server's preload: state of the whole program, so
//! one test in a binary of its own, in order.

mod common;
use std::sync::OnceLock;

use common::{SECS, children_of, eventually, exists, sigkill, state, within};
use multiproc::{Error, Pool, Process, StartMethod};

static TABLE: OnceLock<Vec<u64>> = OnceLock::new();

fn load_table() {
    TABLE.get_or_init(|| (0..50_000).map(|x| x * 3).collect());
}

fn preload_that_panics() {
    panic!("no table today");
}

fn look_up(i: usize) -> u64 {
    TABLE.get().map_or(u64::MAX, |t| t[i])
}

fn my_pid() -> u32 {
    std::process::id()
}

#[test]
fn the_default_is_set_once_and_the_fork_server_preloads_and_comes_back() {
    within(SECS(120), || {
        // A preload that panics: starting a child says so, and nothing is left running.
        multiproc::set_forkserver_preload(preload_that_panics).unwrap();
        let mut p = Process::new(look_up, 1).with_start_method(StartMethod::ForkServer);
        match p.start() {
            Err(Error::Spawn(why)) => assert!(why.contains("no table today"), "{why}"),
            other => panic!("expected the preload's panic, got {other:?}"),
        }
        assert!(
            eventually(SECS(5), || children_of(std::process::id()).is_empty()),
            "left behind: {:?}",
            children_of(std::process::id())
        );

        // The default, set once.
        multiproc::set_forkserver_preload(load_table).unwrap();
        multiproc::set_start_method(StartMethod::ForkServer).unwrap();
        match multiproc::set_start_method(StartMethod::Fork) {
            Err(Error::InvalidArgument(why)) => assert!(why.contains("ForkServer"), "{why}"),
            other => panic!("a second set_start_method: {other:?}"),
        }
        assert_eq!(multiproc::get_start_method(), StartMethod::ForkServer);

        // Pools and processes that say nothing use it; the table was loaded once, in the
        // server, and never in this process.
        let pool = Pool::new(2).unwrap();
        assert_eq!(pool.map(look_up, [1usize, 49_999]).unwrap(), [3, 149_997]);
        assert!(TABLE.get().is_none());
        let mut p = Process::new(look_up, 2);
        p.start().unwrap();
        assert_eq!(*p.join().unwrap(), 6);
        // So does a manager's server, as Python's `Manager()` follows the context.
        let m = multiproc::Manager::new().unwrap();
        let d = m.dict::<u8, u64>().unwrap();
        d.insert(1, 7).unwrap();
        assert_eq!(d.get(&1).unwrap(), Some(7));
        m.shutdown().unwrap();
        match multiproc::set_forkserver_preload(load_table) {
            Err(Error::InvalidArgument(why)) => assert!(why.contains("already running"), "{why}"),
            other => panic!("a preload set while the server runs: {other:?}"),
        }

        // The server killed: the next child comes from a new one, preloaded again.
        let workers: Vec<u32> = pool.map_chunked(|_: u8| my_pid(), [0u8; 8], 1).unwrap();
        let server: Vec<u32> = children_of(std::process::id())
            .into_iter()
            .filter(|pid| !workers.contains(pid))
            .collect();
        assert_eq!(server.len(), 1, "children {server:?}, workers {workers:?}");
        assert!(sigkill(server[0]));
        // Dead; reaped by the next request, which notices.
        assert!(eventually(SECS(5), || state(server[0]) == Some('Z')));
        let mut p = Process::new(look_up, 3);
        p.start().unwrap();
        assert_eq!(*p.join().unwrap(), 9);
        assert!(!exists(server[0]), "the dead server was reaped");
        // The pool's workers, children of this program, never depended on the server.
        assert_eq!(pool.map(look_up, [4usize, 5]).unwrap(), [12, 15]);
    });
}
