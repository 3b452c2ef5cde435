//! A manager frees an object once no process holds a proxy of it (after its linger), counting
//! holds across processes, and lets go of a dead process's holds, however it died.

mod common;
use common::{SECS, eventually, within};
use multiproc::{DictProxy, Manager, Process, Queue};
use std::time::Duration;

/// Long enough that a hold sent before a process says it is ready has reached the server (on
/// a connection of its own) before the linger after another process's release runs out, on a
/// loaded machine.
const LINGER: Duration = Duration::from_millis(500);

fn manager() -> Manager {
    Manager::builder().linger(LINGER).serve().unwrap()
}

fn freed(m: &Manager, left: usize) -> bool {
    eventually(SECS(5), || m.object_count().unwrap() == left)
}

#[test]
fn an_object_is_freed_with_its_last_proxy_and_not_before() {
    within(SECS(30), || {
        let m = manager();
        let d = m.dict::<u8, u8>().unwrap();
        let l = m.list::<u8>().unwrap();
        assert_eq!(m.object_count().unwrap(), 2);
        let copy = d.clone();
        drop(d);
        drop(l);
        assert!(freed(&m, 1), "the list is freed");
        std::thread::sleep(LINGER * 2);
        assert_eq!(m.object_count().unwrap(), 1, "a copy still holds the dict");
        copy.insert(1, 2).unwrap();
        drop(copy);
        assert!(freed(&m, 0));
    });
}

fn use_later(d: DictProxy<u8, u8>, ready: Queue<()>) -> usize {
    ready.put(()).unwrap();
    std::thread::sleep(LINGER * 3);
    d.insert(7, 7).unwrap();
    d.len().unwrap()
}

#[test]
fn a_child_holds_what_its_parent_let_go_of() {
    within(SECS(30), || {
        let m = manager();
        let d = m.dict::<u8, u8>().unwrap();
        let ready = Queue::new().unwrap();
        let mut p = Process::new(use_later, (d.clone(), ready.clone()));
        p.start().unwrap();
        ready.get_timeout(SECS(20)).unwrap();
        drop(d);
        assert_eq!(
            *p.join().unwrap(),
            1,
            "the dict outlived the parent's proxies"
        );
        assert!(freed(&m, 0), "and was freed when the child ended");
    });
}

fn hold_forever(_d: DictProxy<u8, u8>, ready: Queue<()>) {
    ready.put(()).unwrap();
    std::thread::sleep(SECS(600));
}

#[test]
fn a_killed_process_lets_go_of_what_it_held() {
    within(SECS(30), || {
        let m = manager();
        let d = m.dict::<u8, u8>().unwrap();
        let ready = Queue::new().unwrap();
        let mut p = Process::new(hold_forever, (d.clone(), ready.clone()));
        p.start().unwrap();
        ready.get_timeout(SECS(20)).unwrap();
        drop(d);
        std::thread::sleep(LINGER * 2);
        assert_eq!(m.object_count().unwrap(), 1, "the child holds it");
        p.kill().unwrap();
        assert!(freed(&m, 0));
    });
}

#[test]
fn a_proxy_in_transit_finds_its_object_and_named_objects_stay() {
    within(SECS(30), || {
        let m = Manager::builder().linger(SECS(3)).serve().unwrap();
        let q: Queue<DictProxy<u8, u8>> = Queue::new().unwrap();
        let d = m.dict::<u8, u8>().unwrap();
        d.insert(1, 1).unwrap();
        q.put(d).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let back = q.get_timeout(SECS(10)).unwrap();
        assert_eq!(back.get(&1).unwrap(), Some(1));
        drop(back);
        drop(m.dict_named::<u8, u8>("kept").unwrap());
        assert!(freed(&m, 1), "only the named dict is left");
    });
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn a_thread_that_makes_many_managers_keeps_nothing_of_those_gone() {
    within(SECS(120), || {
        let warm = Manager::new().unwrap();
        warm.dict::<u8, u8>().unwrap().insert(0, 0).unwrap();
        drop(warm);
        let before = open_fds();
        for i in 0..100u8 {
            let m = Manager::new().unwrap();
            let d = m.dict::<u8, u8>().unwrap();
            d.insert(i, i).unwrap();
            drop(d);
            drop(m);
        }
        let after = open_fds();
        // Other tests of this binary open and close descriptors meanwhile: a few, not 100s.
        assert!(
            after < before + 30,
            "{before} descriptors before, {after} after"
        );
    });
}
