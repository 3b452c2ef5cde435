//! Data is not shared by default: each child gets its own copy of the argument. Appending to it
//! in a child changes that child's copy only; the parent's list stays as it was. Ports seed
//! 001's "进程数据共享(默认不共享)" program (there the list is a global; here it is passed in,
//! which is what a child gets either way: a copy).
//!
//! ```python
//! def append_and_print(items, x):
//!     items.append(x)
//!     print(f"child {x}: {items}")
//!
//! if __name__ == "__main__":
//!     items = [1, 2, 3]
//!     procs = [Process(target=append_and_print, args=(items, x)) for x in (10, 20, 30)]
//!     for p in procs: p.start()
//!     for p in procs: p.join()
//!     print(f"parent: {items}")   # still [1, 2, 3]
//! ```
//!
//! To share data, use shared memory (`Value`, `Array`: see the `shared_array` example) or a
//! `Queue` (`producer_consumer`).
//!
//! Run: `cargo run --release --example not_shared`

use multiproc::{Error, Process};

/// Appends `x` to this process's copy of the list, prints it and hands it back.
fn append_and_print(mut items: Vec<i32>, x: i32) -> Vec<i32> {
    items.push(x);
    println!(
        "child {x} (pid {}): {items:?}",
        multiproc::current_process().pid()
    );
    items
}

fn main() -> Result<(), Error> {
    multiproc::init();
    let items = vec![1, 2, 3];
    println!("parent before: {items:?}");

    let mut procs: Vec<Process<Vec<i32>>> = [10, 20, 30]
        .into_iter()
        .map(|x| Process::new(append_and_print, (items.clone(), x)))
        .collect();
    for p in &mut procs {
        p.start()?;
    }
    let copies = procs
        .into_iter()
        .map(Process::into_value)
        .collect::<Result<Vec<_>, _>>()?;

    println!("parent after:  {items:?}");
    // Each child saw the original list plus its own item only; the parent's is untouched.
    assert_eq!(
        copies,
        vec![vec![1, 2, 3, 10], vec![1, 2, 3, 20], vec![1, 2, 3, 30]]
    );
    assert_eq!(items, vec![1, 2, 3]);
    Ok(())
}
