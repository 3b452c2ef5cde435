//! `apply_async` with two arguments: pass them as a tuple. The result can be any serde type,
//! here a tuple of two strings and a list.
//!
//! Mirrors the Python tutorial:
//!
//! ```python
//! def greet(first, last):
//!     return first.upper(), last.upper(), [len(first), len(last), len(first) + len(last)]
//!
//! with Pool(2) as pool:
//!     print(pool.apply_async(greet, ("ada", "lovelace")).get())
//! ```
//!
//! Run: `cargo run --release --example two_strings`

use multiproc::{Error, Pool};

/// Upper-cases both strings and reports their lengths.
fn shout((first, last): (String, String)) -> (String, String, Vec<i32>) {
    let lengths = vec![
        first.len() as i32,
        last.len() as i32,
        (first.len() + last.len()) as i32,
    ];
    (first.to_uppercase(), last.to_uppercase(), lengths)
}

fn main() -> Result<(), Error> {
    multiproc::init();
    let pool = Pool::new(2)?;

    let pending = pool.apply_async(shout, ("ada".to_string(), "lovelace".to_string()));
    let (first, last, lengths) = pending.get()?;
    println!("first = {first:?}, last = {last:?}, lengths = {lengths:?}");
    assert_eq!((first.as_str(), last.as_str()), ("ADA", "LOVELACE"));
    assert_eq!(lengths, vec![3, 8, 11]);

    pool.close();
    pool.join()
}
