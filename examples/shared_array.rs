//! Shared memory with `Array`: every process sees the same elements, so what one child writes,
//! the others and the parent read. Ports seed 001's "通过Array实现进程数据共享" program (there
//! processes 1 to 3 of the five elements, not joined; here all five, joined).
//!
//! ```python
//! def set_element(arr, i):
//!     arr[i] = 100 + i
//!     for item in arr:
//!         print(f"process {i} ---------> {item}")
//!
//! if __name__ == "__main__":
//!     arr = Array('i', [11, 22, 33, 44, 55])
//!     procs = [Process(target=set_element, args=(arr, i)) for i in range(5)]
//!     for p in procs: p.start()
//!     for p in procs: p.join()
//!     print(f"parent: {arr[:]}")   # [100, 101, 102, 103, 104]
//! ```
//!
//! Cloning an `Array` (or passing it to a `Process`) gives another handle to the same memory,
//! not a copy. Which updates a child sees in its print depends on how the children interleave.
//! `arr.iter()` iterates over a snapshot taken under the array's lock (`for x in &guard` over
//! a held `arr.lock()?` iterates the elements themselves); an `Array` has no `arr[i]`: use
//! `get`/`set`, or index the guard.
//!
//! Run: `cargo run --release --example shared_array`

use multiproc::{Array, Error, Process};

/// Sets element `i` to `100 + i`, then prints the whole array as this process sees it.
fn set_element(arr: Array<i32>, i: usize) {
    arr.set(i, 100 + i as i32).expect("set");
    let seen: Vec<String> = arr.iter().expect("iter").map(|x| x.to_string()).collect();
    println!("process {i} ---------> {}", seen.join(" "));
}

fn main() -> Result<(), Error> {
    multiproc::init();
    let arr = Array::new(&[11, 22, 33, 44, 55])?;
    println!("parent before: {:?}", arr.to_vec()?);

    let mut procs: Vec<Process<()>> = (0..arr.len())
        .map(|i| Process::new(set_element, (arr.clone(), i)))
        .collect();
    for p in &mut procs {
        p.start()?;
    }
    for p in &mut procs {
        p.join()?;
    }

    let last = arr.to_vec()?;
    println!("parent after:  {last:?}");
    assert_eq!(last, vec![100, 101, 102, 103, 104]);
    Ok(())
}
