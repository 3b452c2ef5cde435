//! Large messages when descriptors run out: a message of 128 KiB or more normally travels in
//! shared memory, which takes a descriptor; with none left, it must still arrive through the
//! socket, not fail. (A file of its own: the descriptor limit is the whole process's.)

mod common;
use common::{SECS, within};
use multiproc::Pipe;
use rustix::process::{Resource, getrlimit, setrlimit};

/// The number a new descriptor would get: the lowest one free.
fn next_fd() -> u64 {
    use std::os::fd::AsRawFd;
    let probe = std::fs::File::open("/dev/null").unwrap();
    probe.as_raw_fd() as u64
}

#[test]
fn a_large_message_goes_through_the_socket_when_no_descriptor_is_left() {
    within(SECS(30), || {
        let (mut a, mut b) = Pipe::<Vec<u8>>::duplex().unwrap();
        let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
        // The reader runs alongside: through the socket, a large message needs one.
        let reader = std::thread::spawn(move || [b.recv(), b.recv()]);
        let saved = getrlimit(Resource::Nofile);
        let mut tight = saved;
        // New descriptors take the lowest free number, which is now over the limit.
        tight.current = Some(next_fd());
        setrlimit(Resource::Nofile, tight).unwrap();
        let no_fd = std::fs::File::open("/dev/null").is_err();
        let sent = a.send(&big);
        setrlimit(Resource::Nofile, saved).unwrap();
        assert!(no_fd, "the limit leaves no descriptor free");
        sent.unwrap();
        // With descriptors again, the next one goes the fast way and arrives just the same.
        a.send(&big).unwrap();
        for got in reader.join().unwrap() {
            assert!(got.unwrap() == big);
        }
    });
}
