//! `apply_async` with a function of two arguments, passed as a tuple, returning several
//! values. Ports seed 002's program ("每个进程传入多个参数，并且完整获取到进程的多个返回值").
//!
//! ```python
//! def test(arg1, arg2):
//!     return "hello," + arg1, arg2 + ' test', [2222, 5, 356]
//!
//! if __name__ == '__main__':
//!     p = Pool(2)
//!     results = []
//!     rslt1 = p.apply_async(test, ('world1', 'tea',))   # two arguments
//!     results.append(rslt1)
//!     rslt2 = p.apply_async(test, ('world2', 'cat',))
//!     results.append(rslt2)
//!     for r in results:
//!         a, b, c = r.get()                            # three return values
//!         print(a, b, c)
//! ```
//!
//! The arguments are owned `String`s: a task's arguments travel to another process, so a
//! borrowed `&str` cannot be one (the compiler says "implementation of `Deserialize` is not
//! general enough"). The seed notes that `map_async` cannot take several arguments per call;
//! `starmap_async` can, and is shown last.
//!
//! Run: `cargo run --release --example two_strings`

use multiproc::{Error, Pool};

fn test(arg1: String, arg2: String) -> (String, String, Vec<i32>) {
    (
        "hello,".to_string() + &arg1,
        arg2 + " test",
        vec![2222, 5, 356],
    )
}

fn main() -> Result<(), Error> {
    multiproc::init();
    let p = Pool::new(2)?;

    let mut results = Vec::new();
    let rslt1 = p.apply_async(test, ("world1".to_string(), "tea".to_string()));
    results.push(rslt1);
    let rslt2 = p.apply_async(test, ("world2".to_string(), "cat".to_string()));
    results.push(rslt2);
    let mut got = Vec::new();
    for r in &results {
        let (a, b, c) = r.get()?;
        println!("{a} {b} {c:?}");
        got.push((a, b, c));
    }
    assert_eq!(
        got,
        [
            ("hello,world1".into(), "tea test".into(), vec![2222, 5, 356]),
            ("hello,world2".into(), "cat test".into(), vec![2222, 5, 356]),
        ]
    );

    // Several calls of a function of two arguments: starmap_async, one tuple per call.
    let pairs = vec![
        ("world3".to_string(), "dog".to_string()),
        ("world4".to_string(), "owl".to_string()),
    ];
    let all = p.starmap_async(test, pairs).get()?;
    for (a, b, c) in &all {
        println!("{a} {b} {c:?}");
    }
    assert_eq!(all[1].0, "hello,world4");
    assert_eq!(all[1].1, "owl test");

    p.close();
    p.join()
}
