//! Pipes between processes: messages both ways, end of stream when the other end closes or
//! its process dies, timeouts and polling, handles inside messages.

mod common;
use common::{SECS, within};
use multiproc::{Connection, Error, Pipe, Process, Queue};
use std::time::{Duration, Instant};

fn hello_world(mut conn: Connection<Option<String>>) {
    for word in [Some("Hello"), Some("World"), None] {
        conn.send(&word.map(String::from)).unwrap();
    }
}

#[test]
fn a_child_sends_hello_world_none() {
    within(SECS(30), || {
        let (mut parent, child) = Pipe::<Option<String>>::one_way().unwrap();
        let mut p = Process::new(hello_world, child);
        p.start().unwrap();
        let mut got = Vec::new();
        while let Some(word) = parent.recv().unwrap() {
            got.push(word);
        }
        assert_eq!(got, ["Hello", "World"]);
        p.join().unwrap();
        // The child's end is gone with the child: end of stream, at once.
        assert!(matches!(parent.recv(), Err(Error::Disconnected)));
    });
}

fn echo_doubled(mut conn: Connection<u64>) -> u64 {
    let mut n = 0;
    while let Ok(x) = conn.recv() {
        conn.send(&(x * 2)).unwrap();
        n += 1;
    }
    n
}

#[test]
fn duplex_messages_go_both_ways() {
    within(SECS(30), || {
        let (mut mine, theirs) = Pipe::<u64>::duplex().unwrap();
        let mut p = Process::new(echo_doubled, theirs);
        p.start().unwrap();
        for i in 0..1000 {
            mine.send(&i).unwrap();
            assert_eq!(mine.recv().unwrap(), i * 2);
        }
        mine.close();
        assert_eq!(p.join().cloned().unwrap(), 1000);
        assert!(matches!(mine.recv(), Err(Error::Closed)));
    });
}

fn sleep_forever(_conn: Connection<u8>) {
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn recv_fails_at_once_when_the_peer_process_is_killed() {
    within(SECS(30), || {
        let (mut mine, theirs) = Pipe::<u8>::duplex().unwrap();
        let mut p = Process::new(sleep_forever, theirs);
        p.start().unwrap();
        assert!(!mine.poll(Duration::from_millis(50)).unwrap());
        assert_eq!(mine.try_recv().unwrap(), None);
        assert!(matches!(
            mine.recv_timeout(Duration::from_millis(50)),
            Err(Error::Timeout)
        ));
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            p.kill().unwrap();
            p
        });
        let t = Instant::now();
        assert!(matches!(mine.recv(), Err(Error::Disconnected)));
        assert!(t.elapsed() < SECS(5));
        let _ = killer.join().unwrap().join_timeout(SECS(5));
        // Sending to a dead end is an error too, not a SIGPIPE.
        assert!(matches!(mine.send(&1), Err(Error::Disconnected)));
    });
}

fn forward((mut conn, q): (Connection<Queue<String>>, Queue<String>)) {
    conn.send(&q).unwrap();
}

#[test]
fn handles_travel_inside_messages() {
    within(SECS(30), || {
        let (mut mine, theirs) = Pipe::<Queue<String>>::one_way().unwrap();
        let q = Queue::new().unwrap();
        let mut p = Process::new(forward, (theirs, q.clone()));
        p.start().unwrap();
        let received = mine.recv().unwrap();
        p.join().unwrap();
        received.put("through a pipe".into()).unwrap();
        assert_eq!(q.get().unwrap(), "through a pipe");
    });
}

#[test]
fn one_way_ends_refuse_the_wrong_direction() {
    let (mut r, mut w) = Pipe::<u8>::one_way().unwrap();
    assert!(matches!(r.send(&1), Err(Error::InvalidArgument(_))));
    assert!(matches!(w.recv(), Err(Error::InvalidArgument(_))));
    w.send(&7).unwrap();
    assert!(r.poll(Duration::ZERO).unwrap());
    assert_eq!(r.recv().unwrap(), 7);
}
