//! The same work on a process pool and on a thread pool, timed. Seed 000 introduces
//! `multiprocessing.Pool` by its likeness to the thread pool ("进程池 multiprocessing.Pool 和线程池
//! ThreadPoolExecutor 原理相同": the same principle) and runs `work` through `apply`,
//! `apply_async` and `map`:
//!
//! ```python
//! def work(n):
//!     print('%s run' % os.getpid())
//!     time.sleep(random.random())
//!     return n**2
//!
//! p = Pool(3)
//! res_l = [p.apply_async(work, args=(i,)) for i in range(10)]
//! p.close(); p.join()
//! print([res.get() for res in res_l])
//!
//! pool = multiprocessing.Pool(processes=4)
//! pool_outputs = pool.map(function_square, list(range(100)))
//! ```
//!
//! Here both pools run the same source (a macro instantiates it for each type, so a switch is
//! one `use` line): `work` with a short fixed nap, where the two are alike (the time is
//! waiting); a `map` of squares over a million numbers, where threads win by far (nothing is
//! encoded or copied to another process); and CPU-bound cube sums, where both use every core.
//! Timings are printed, not asserted: they depend on the machine and its load.
//!
//! Run: `cargo run --release --example pool_vs_thread_pool`

use std::hint::black_box;
use std::time::{Duration, Instant};

use multiproc::Error;

/// Seed 000's `work`, with a fixed 50 ms nap instead of up to a second at random.
fn work(n: u64) -> (u64, u32) {
    std::thread::sleep(Duration::from_millis(50));
    (n * n, std::process::id())
}

fn function_square(x: u64) -> u64 {
    x * x
}

/// Sum of i³ over `0..n`, in a loop the optimiser cannot turn into a formula.
fn cube_sum(n: u64) -> u64 {
    (0..n)
        .map(|i| black_box(i).wrapping_pow(3))
        .fold(0, u64::wrapping_add)
}

/// Runs the three workloads on a pool of type `$Pool`, printing each one's time.
macro_rules! workloads {
    ($name:expr, $Pool:ty) => {{
        let t = Instant::now();
        let p = <$Pool>::new(3)?;
        let res_l: Vec<_> = (0..10).map(|i| p.apply_async(work, i)).collect();
        p.close();
        p.join()?;
        let mut pids = Vec::new();
        let squares: Vec<u64> = res_l
            .into_iter()
            .map(|r| {
                r.get().map(|(sq, pid)| {
                    pids.push(pid);
                    sq
                })
            })
            .collect::<Result<_, Error>>()?;
        pids.sort_unstable();
        pids.dedup();
        assert_eq!(squares, (0..10u64).map(|i| i * i).collect::<Vec<_>>());
        let waiting = t.elapsed();

        let pool = <$Pool>::new(4)?;
        let t = Instant::now();
        let outputs = pool.map(function_square, 0..1_000_000u64)?;
        let map = t.elapsed();
        assert_eq!(outputs[999], 999 * 999);

        let t = Instant::now();
        let sums = pool.map(cube_sum, vec![20_000_000u64; 16])?;
        let cpu = t.elapsed();
        assert!(sums.windows(2).all(|w| w[0] == w[1]));
        pool.close();
        pool.join()?;
        println!(
            "{:<28} {:>10.1?} {:>12.1?} {:>14.1?}   (work ran in {} process{})",
            $name,
            waiting,
            map,
            cpu,
            pids.len(),
            if pids.len() == 1 { "" } else { "es" },
        );
    }};
}

fn main() -> Result<(), Error> {
    multiproc::init();
    println!(
        "{:<28} {:>10} {:>12} {:>14}",
        "", "10 x work", "map 1M x*x", "16 cube sums"
    );
    workloads!("multiproc::Pool (processes)", multiproc::Pool);
    workloads!("multiproc::dummy::Pool", multiproc::dummy::Pool);
    Ok(())
}
