//! Managers that other programs reach over TCP with a key: named objects, a wrong key, a
//! silent or oversized stranger, a manager that is not there. The "other program" is a child
//! process that knows only the address and the key.

mod common;
use common::{SECS, within};
use multiproc::{Error, ListProxy, Manager, Process};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

const KEY: &[u8] = b"the key of this test";

fn tcp_manager() -> Manager {
    Manager::builder()
        .address("127.0.0.1:0")
        .authkey(KEY)
        .serve()
        .unwrap()
}

/// Another program: connects with the address and key only, takes jobs from the named queue
/// and writes results into the named dict.
fn remote_worker(at: SocketAddr, worker: u32) -> u32 {
    let m = Manager::connect(at, KEY).unwrap();
    let jobs = m.queue_named::<Option<u64>>("jobs").unwrap();
    let results = m.dict_named::<u64, (u64, u32)>("results").unwrap();
    let mut done = 0;
    while let Some(job) = jobs.get_timeout(SECS(20)).unwrap() {
        results.insert(job, (job * job, worker)).unwrap();
        done += 1;
    }
    done
}

#[test]
fn programs_meet_on_named_objects_over_tcp() {
    within(SECS(60), || {
        let m = tcp_manager();
        let at = m.address().unwrap();
        assert!(at.ip().is_loopback() && at.port() != 0);
        let jobs = m.queue_named::<Option<u64>>("jobs").unwrap();
        let mut workers: Vec<_> = (0..2)
            .map(|w| Process::new(remote_worker, (at, w)))
            .collect();
        for w in &mut workers {
            w.start().unwrap();
        }
        for job in 0..100 {
            jobs.put(Some(job)).unwrap();
        }
        for _ in &workers {
            jobs.put(None).unwrap();
        }
        let done: u32 = workers.iter().map(|w| *w.join().unwrap()).sum();
        assert_eq!(done, 100);
        let results = m.dict_named::<u64, (u64, u32)>("results").unwrap();
        assert_eq!(results.len().unwrap(), 100);
        for (job, (square, _)) in results.items().unwrap() {
            assert_eq!(square, job * job);
        }
        // The same name is the same object; another kind by that name is refused.
        assert_eq!(
            m.dict_named::<u64, (u64, u32)>("results")
                .unwrap()
                .len()
                .unwrap(),
            100
        );
        let e = m.list_named::<u8>("results").unwrap_err();
        assert!(
            matches!(&e, Error::Manager(why) if why.contains("is a dict, not a list")),
            "{e}"
        );
    });
}

#[test]
fn a_connected_manager_does_not_own_the_server() {
    within(SECS(30), || {
        let m = tcp_manager();
        let other = Manager::connect(m.address().unwrap(), KEY).unwrap();
        assert_eq!(other.pid(), m.pid());
        assert!(matches!(other.shutdown(), Err(Error::InvalidArgument(_))));
        let d = other.dict_named::<u8, u8>("d").unwrap();
        drop(other);
        d.insert(1, 2).unwrap();
        assert_eq!(
            m.dict_named::<u8, u8>("d").unwrap().get(&1).unwrap(),
            Some(2)
        );
        m.shutdown().unwrap();
        assert!(matches!(d.get(&1), Err(Error::ManagerGone)));
    });
}

#[test]
fn a_wrong_key_is_refused_within_a_second_and_others_are_served() {
    within(SECS(30), || {
        let m = tcp_manager();
        let d = m.dict::<u8, u8>().unwrap();
        let t = Instant::now();
        let e = Manager::connect(m.address().unwrap(), b"a guess").unwrap_err();
        assert!(matches!(e, Error::AuthenticationFailed(_)), "{e}");
        assert!(t.elapsed() < SECS(1), "{:?}", t.elapsed());
        d.insert(1, 1).unwrap();
        assert_eq!(d.len().unwrap(), 1);
    });
}

#[test]
fn a_manager_that_is_not_there_is_gone_at_once() {
    within(SECS(30), || {
        // A port that was free a moment ago and has no listener now.
        let at = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let t = Instant::now();
        assert!(matches!(Manager::connect(at, KEY), Err(Error::ManagerGone)));
        assert!(t.elapsed() < SECS(5));
    });
}

#[test]
fn bad_builders_are_refused() {
    let empty = Manager::builder().authkey(Vec::new()).serve();
    assert!(matches!(empty, Err(Error::InvalidArgument(_))));
    let keyless = Manager::builder().address("127.0.0.1:0").serve();
    assert!(matches!(keyless, Err(Error::InvalidArgument(_))));
    let nowhere = Manager::builder()
        .address("no-such-host.invalid:1")
        .authkey(KEY)
        .serve();
    assert!(matches!(nowhere, Err(Error::Io(_))));
    let m = tcp_manager();
    let taken = Manager::builder()
        .address(m.address().unwrap())
        .authkey(KEY)
        .serve();
    assert!(matches!(taken, Err(Error::Io(_))));
}

/// Reads from a raw connection until the server closes it; how long that took.
fn until_closed(mut s: TcpStream, limit: Duration) -> Duration {
    let t = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return t.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return t.elapsed(),
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
}

#[test]
fn a_silent_stranger_is_dropped_and_holds_no_one_up() {
    within(SECS(30), || {
        let m = tcp_manager();
        let silent = TcpStream::connect(m.address().unwrap()).unwrap();
        // Meanwhile the manager serves others.
        let d = m.dict::<u8, u8>().unwrap();
        d.insert(1, 1).unwrap();
        let took = until_closed(silent, SECS(15));
        assert!(took < SECS(10), "{took:?}");
        d.insert(2, 2).unwrap();
        assert_eq!(d.len().unwrap(), 2);
    });
}

#[test]
fn a_stranger_announcing_a_huge_frame_is_dropped_at_its_header() {
    within(SECS(30), || {
        let m = tcp_manager();
        let mut s = TcpStream::connect(m.address().unwrap()).unwrap();
        // A frame header (length, kind, descriptors, flags, reserved) claiming a gigabyte.
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&(1u32 << 30).to_le_bytes());
        header[4] = 0x61;
        s.write_all(&header).unwrap();
        let took = until_closed(s, SECS(15));
        assert!(took < SECS(1), "{took:?}");
        let d = m.dict::<u8, u8>().unwrap();
        d.insert(1, 1).unwrap();
    });
}

#[test]
fn large_values_cross_tcp() {
    within(SECS(30), || {
        let m = tcp_manager();
        let other = Manager::connect(m.address().unwrap(), KEY).unwrap();
        let l = other.list_named::<Vec<u8>>("big").unwrap();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        l.push(big.clone()).unwrap();
        assert!(m.list_named::<Vec<u8>>("big").unwrap().get(0).unwrap() == Some(big));
    });
}

#[test]
fn strangers_beyond_a_bound_wait_and_members_are_served() {
    within(SECS(60), || {
        let m = tcp_manager();
        let at = m.address().unwrap();
        let d = m.dict::<u8, u8>().unwrap();
        d.insert(1, 1).unwrap();
        // The server lets 128 connections at a time be in the handshake; these take them all,
        // and the rest wait in the backlog: not refused, not yet challenged.
        let mut silent: Vec<TcpStream> =
            (0..140).map(|_| TcpStream::connect(at).unwrap()).collect();
        let mut last = silent.pop().unwrap();
        last.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let waited = last.read(&mut [0u8; 64]).unwrap_err();
        assert!(
            matches!(
                waited.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{waited}"
        );
        // A client that is in is served meanwhile.
        d.insert(2, 2).unwrap();
        assert_eq!(d.len().unwrap(), 2);
        // Once the strangers are gone, a newcomer gets in.
        drop(silent);
        drop(last);
        let t = Instant::now();
        let other = loop {
            match Manager::connect(at, KEY) {
                Ok(other) => break other,
                Err(e) => {
                    assert!(
                        matches!(e, Error::ManagerGone) && t.elapsed() < SECS(20),
                        "{e}"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        assert_eq!(other.pid(), m.pid());
    });
}

/// Another executable: the `manager_remote` example, run as a client program. It shares only
/// the address and key with this test (and a build of this crate), not its code.
#[test]
fn a_program_built_from_another_executable_uses_the_containers() {
    within(SECS(120), || {
        let exe = std::env::current_exe().unwrap();
        let example = exe
            .parent()
            .and_then(|deps| deps.parent())
            .map(|dir| dir.join("examples").join("manager_remote"))
            .unwrap();
        if !example.exists() {
            // Only a filtered run (`cargo test --test manager_remote`) builds no examples;
            // `cargo test`, the README's command and CI's, builds them all.
            eprintln!("skipped: {} is not built", example.display());
            return;
        }
        let key = "a key for another executable";
        let m = Manager::builder()
            .address("127.0.0.1:0")
            .authkey(key)
            .serve()
            .unwrap();
        let jobs = m.queue_named::<Option<u64>>("jobs").unwrap();
        for job in 0..10 {
            jobs.put(Some(job)).unwrap();
        }
        jobs.put(None).unwrap();
        let out = std::process::Command::new(&example)
            .args(["client", &m.address().unwrap().to_string()])
            .env("MULTIPROC_KEY", key)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("another release of multiproc") {
            // An example built before this crate's protocol changed (a filtered run rebuilds
            // no examples); `cargo test` rebuilds it.
            eprintln!("skipped: {} is stale: {stderr}", example.display());
            return;
        }
        assert!(out.status.success(), "{stderr}");
        let results = m.dict_named::<u64, (u64, u32)>("results").unwrap();
        let mut got = results.items().unwrap();
        got.sort();
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|(job, (square, _))| *square == job * job));
    });
}

/// Another program: finds a list through a named dict (written by the owner, who listens on
/// every address) and appends to it.
fn append_through_directory(port: u16) -> usize {
    let m = Manager::connect(("127.0.0.1", port), KEY).unwrap();
    let directory = m
        .dict_named::<String, ListProxy<String>>("directory")
        .unwrap();
    let list = directory.get(&"log".into()).unwrap().expect("listed");
    list.push("from another program".into()).unwrap();
    list.len().unwrap()
}

#[test]
fn a_proxy_read_from_a_manager_reaches_it_as_its_reader_does() {
    within(SECS(60), || {
        let m = Manager::builder()
            .address("0.0.0.0:0")
            .authkey(KEY)
            .serve()
            .unwrap();
        let port = m.address().unwrap().port();
        let log = m.list::<String>().unwrap();
        log.push("from the owner".into()).unwrap();
        // Stored without its key, and with the address the owner listens on (0.0.0.0).
        let directory = m
            .dict_named::<String, ListProxy<String>>("directory")
            .unwrap();
        directory.insert("log".into(), log.clone()).unwrap();
        let mut p = Process::new(append_through_directory, port);
        p.start().unwrap();
        assert_eq!(*p.join().unwrap(), 2);
        assert_eq!(
            log.to_vec().unwrap(),
            ["from the owner", "from another program"]
        );
    });
}
