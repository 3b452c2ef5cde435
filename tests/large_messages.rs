//! Large messages under pressure: a value too large for one message (the 1 GiB frame limit) is
//! refused as an encoding error of that item alone, quickly and without holding its memory, and
//! the memory kept for large messages goes back once they are done or the pool is idle.
//!
//! The always-on tests use untouched (calloc'd) gigabyte vectors, so that only a copy the
//! library should not make costs time or memory. The tests marked `#[ignore]` move real
//! gigabytes (several GiB of memory, seconds each):
//! `cargo test --release --test large_messages -- --ignored --test-threads 1`.

mod common;
use common::{SECS, eventually, rss, within};
use multiproc::{Error, Pool, Process};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::time::{Duration, Instant};

/// The tests measure this process's resident memory: one at a time.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Just over what one message can carry (1 GiB frames).
const OVER: usize = (1 << 30) + 1;
/// Margin for resident memory "back near its baseline".
const NEAR: u64 = 48 << 20;
/// How long a channel idles before it lets go of what it keeps (`BULK_IDLE`, 1 s), with margin.
const IDLE: Duration = Duration::from_secs(4);

/// Bytes that serde hands to bincode in one piece (as `serde_bytes::ByteBuf` does).
struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<u8>::deserialize(d).map(Bytes)
    }
}

fn len_of(v: Vec<u8>) -> usize {
    v.len()
}

fn len_of_bytes(b: Bytes) -> usize {
    b.0.len()
}

fn len_of_tuple(v: (Vec<u8>,)) -> usize {
    v.0.len()
}

/// `n` zero bytes, untouched until something copies them.
fn zeros(n: usize) -> Vec<u8> {
    vec![0; n]
}

fn zero_bytes(n: usize) -> Bytes {
    Bytes(vec![0; n])
}

fn ones(n: usize) -> Vec<u8> {
    vec![1; n]
}

fn pid(_: ()) -> u32 {
    std::process::id()
}

fn mib(bytes: u64) -> u64 {
    bytes >> 20
}

/// The message of an `Encode` error, or a panic saying what came instead.
fn encode_message<T: std::fmt::Debug>(r: Result<T, Error>) -> String {
    match r {
        Err(Error::Encode(m)) => m,
        other => panic!("expected an encode error, got {other:?}"),
    }
}

#[test]
fn an_argument_over_the_frame_limit_is_refused_at_once_and_leaves_no_memory() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    within(SECS(60), || {
        let pool = Pool::new(1).unwrap();
        let worker = pool.apply(pid, ()).unwrap();
        let me = std::process::id();
        let before = rss(me);
        let t = Instant::now();
        let plain = encode_message(pool.apply(len_of, vec![0u8; OVER]));
        let plain_took = t.elapsed();
        let t = Instant::now();
        let serde = encode_message(pool.apply(len_of_bytes, Bytes(vec![0u8; OVER])));
        let serde_took = t.elapsed();
        let after = rss(me);
        eprintln!(
            "refused in {plain_took:?} (Vec<u8>) and {serde_took:?} (bytes through serde); \
             resident {} MiB before, {} MiB after",
            mib(before),
            mib(after)
        );
        let size = format!("argument of {} bytes exceeds", OVER + 8);
        assert!(plain.starts_with(&size), "{plain}");
        assert!(serde.starts_with(&size), "{serde}");
        assert!(plain_took < SECS(2) && serde_took < SECS(2));
        assert!(
            after <= before + NEAR,
            "{} MiB resident after, {} MiB before",
            mib(after),
            mib(before)
        );
        // The pool serves on, with the same worker.
        assert_eq!(pool.apply(pid, ()).unwrap(), worker);
        assert_eq!(pool.apply(len_of, vec![3u8; 1 << 20]).unwrap(), 1 << 20);
    });
}

#[test]
#[ignore = "moves gigabytes: cargo test --release --test large_messages -- --ignored"]
fn an_argument_of_one_and_a_half_gib_is_refused_and_its_memory_goes() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    within(SECS(120), || {
        let pool = Pool::new(1).unwrap();
        pool.apply(pid, ()).unwrap();
        let me = std::process::id();
        let before = rss(me);
        let arg = vec![1u8; 3 << 29];
        let t = Instant::now();
        let plain = encode_message(pool.apply(len_of, arg));
        let plain_took = t.elapsed();
        let plain_after = rss(me);
        let arg = (vec![1u8; 3 << 29],);
        let t = Instant::now();
        let serde = encode_message(pool.apply(len_of_tuple, arg));
        let serde_took = t.elapsed();
        let serde_after = rss(me);
        eprintln!(
            "1.5 GiB refused: Vec<u8> in {plain_took:?}, (Vec<u8>,) through serde in \
             {serde_took:?}; resident {} MiB before, {} MiB and {} MiB after",
            mib(before),
            mib(plain_after),
            mib(serde_after)
        );
        assert!(
            plain.contains(&format!("of {} bytes", (3 << 29) + 8)),
            "{plain}"
        );
        assert!(
            serde.contains(&format!("of {} bytes", (3 << 29) + 8)),
            "{serde}"
        );
        assert!(plain_took < SECS(2), "{plain_took:?}");
        assert!(plain_after <= before + NEAR && serde_after <= before + NEAR);
    });
}

#[test]
fn a_worker_lets_go_of_a_large_result_once_idle() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    within(SECS(60), || {
        let pool = Pool::new(1).unwrap();
        let worker = pool.apply(pid, ()).unwrap();
        let me = std::process::id();
        let (worker_before, me_before) = (rss(worker), rss(me));
        let t = Instant::now();
        assert_eq!(pool.apply(ones, 200 << 20).unwrap().len(), 200 << 20);
        let worker_right_after = rss(worker);
        let back = eventually(IDLE, || {
            rss(worker) <= worker_before + NEAR && rss(me) <= me_before + NEAR
        });
        eprintln!(
            "worker resident: {} MiB before, {} MiB right after a 200 MiB result, {} MiB \
             {:?} later; this process {} MiB before, {} MiB after",
            mib(worker_before),
            mib(worker_right_after),
            mib(rss(worker)),
            t.elapsed(),
            mib(me_before),
            mib(rss(me))
        );
        assert!(back, "still resident after {IDLE:?} idle");
        // Small work afterwards, by the same worker, keeps it small.
        assert_eq!(pool.map(pid, vec![(); 100]).unwrap(), vec![worker; 100]);
        assert!(rss(worker) <= worker_before + NEAR);
    });
}

#[test]
fn a_result_over_the_frame_limit_fails_its_item_alone_and_the_worker_serves_on() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    within(SECS(60), || {
        let pool = Pool::new(1).unwrap();
        let worker = pool.apply(pid, ()).unwrap();
        let t = Instant::now();
        let plain = encode_message(pool.apply(zeros, 1 << 30));
        let serde = encode_message(pool.apply(zero_bytes, 1 << 30).map(|b| b.0.len()));
        eprintln!(
            "two oversized results refused in {:?}: {plain}",
            t.elapsed()
        );
        let size = format!("result of {} bytes exceeds", (1 << 30) + 8);
        assert!(plain.starts_with(&size), "{plain}");
        assert!(serde.starts_with(&size), "{serde}");
        assert!(t.elapsed() < SECS(2));
        // In a chunk, the items around it succeed.
        let got: Vec<_> = pool
            .imap_chunked(zeros, vec![5, 1 << 30, 7], 3)
            .map(|r| r.map(|v| v.len()))
            .collect();
        assert!(
            matches!(got[..], [Ok(5), Err(Error::Encode(_)), Ok(7)]),
            "{got:?}"
        );
        assert_eq!(pool.apply(pid, ()).unwrap(), worker, "the same worker");
    });
}

#[test]
fn a_process_whose_result_is_over_the_frame_limit_reports_an_encode_error() {
    within(SECS(60), || {
        let mut p = Process::new(zeros, 1 << 30);
        p.start().unwrap();
        let e = encode_message(p.join());
        assert!(
            e.starts_with(&format!("result of {} bytes", (1 << 30) + 8)),
            "{e}"
        );
        assert_eq!(
            p.exitcode(),
            Some(1),
            "a failed function, not a broken protocol"
        );
        // And one whose argument is too large is refused before it starts.
        let mut p = Process::new(len_of, vec![0u8; OVER]);
        let e = encode_message(p.start());
        assert!(
            e.starts_with(&format!("argument of {} bytes", OVER + 8)),
            "{e}"
        );
    });
}

#[test]
#[ignore = "moves gigabytes: cargo test --release --test large_messages -- --ignored"]
fn a_large_result_after_small_ones_of_its_chunk_gets_a_frame_of_its_own() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    within(SECS(120), || {
        let pool = Pool::new(1).unwrap();
        let worker = pool.apply(pid, ()).unwrap();
        // The largest result one message carries, after two small ones it would share a
        // frame with: together they are over the frame limit.
        let largest = (1 << 30) - 64 - 8;
        let got: Vec<_> = pool
            .imap_chunked(zeros, vec![100, 100, largest], 3)
            .map(|r| r.map(|v| v.len()))
            .collect();
        assert!(
            matches!(got[..], [Ok(100), Ok(100), Ok(n)] if n == largest),
            "{got:?}"
        );
        assert_eq!(pool.apply(pid, ()).unwrap(), worker, "the same worker");
    });
}
