//! What the benchmarks `compare` and `scheduling` share: the CPU-bound task and the clock.

use std::hint::black_box;
use std::time::Instant;

/// Sum of i³ for i below `n`, in a loop the optimiser cannot turn into a formula.
pub fn cube_sum(n: u64) -> u64 {
    let mut total = 0u64;
    for i in 0..n {
        let i = black_box(i);
        total = total.wrapping_add(i.wrapping_mul(i).wrapping_mul(i));
    }
    total
}

/// How long `f` took, in seconds.
pub fn secs(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
