//! A `Pipe` from a child to its parent: the child sends a few messages and a `None` to end;
//! the parent prints them until the `None`. Then seed 004's Pipe program ("管"): a duplex
//! `Pipe()` over which the child sends one list, `["Hello", "World", None]`.
//!
//!
//! ```python
//! def send_words(conn):
//!     for word in ["Hello", "World", None]:
//!         conn.send(word)
//!     conn.close()
//!
//! if __name__ == "__main__":
//!     parent_conn, child_conn = Pipe(duplex=False)
//!     p = Process(target=send_words, args=(child_conn,))
//!     p.start()
//!     while (word := parent_conn.recv()) is not None:
//!         print(word)
//!     p.join()
//!
//! def foo(conn):                                    # seed 004
//!     conn.send(["Hello", "World", None])
//!     conn.close()
//!
//! if __name__ == '__main__':
//!     parent, child = Pipe()
//!     p = Process(target=foo, args=(child,))
//!     p.start()
//!     print(parent.recv())                          # ['Hello', 'World', None]
//!     p.join()
//! ```
//!
//! `Pipe::one_way()` returns the receiving end first, as Python's `Pipe(duplex=False)` does.
//! Passing an end to a `Process` moves it into the child; the parent keeps no copy. The parent
//! waits at most a few seconds per message, so it can never hang.
//!
//! Run: `cargo run --release --example pipe_hello`

use std::time::Duration;

use multiproc::{Connection, Error, Pipe, Process};

/// Seed 004's `foo`: sends one list, then closes its end.
fn foo(mut conn: Connection<Vec<Option<String>>>) {
    let list = vec![Some("Hello".to_string()), Some("World".to_string()), None];
    conn.send(&list).expect("send");
    conn.close();
}

/// Sends two words, then `None`.
fn send_words(mut conn: Connection<Option<String>>) {
    for word in [Some("Hello"), Some("World"), None] {
        conn.send(&word.map(String::from)).expect("send");
    }
}

fn main() -> Result<(), Error> {
    multiproc::init();
    let (mut parent_end, child_end) = Pipe::<Option<String>>::one_way()?;
    let mut p = Process::new(send_words, child_end);
    p.start()?;

    let mut words = Vec::new();
    while let Some(word) = parent_end.recv_timeout(Duration::from_secs(5))? {
        println!("{word}");
        words.push(word);
    }
    p.join()?;
    assert_eq!(words, ["Hello", "World"]);

    // Seed 004: a duplex pipe (either end may send and receive), one message holding a list.
    let (mut parent, child) = Pipe::<Vec<Option<String>>>::duplex()?;
    let mut p = Process::new(foo, child);
    p.start()?;
    let list = parent.recv_timeout(Duration::from_secs(5))?;
    println!("{list:?}");
    p.join()?;
    assert_eq!(
        list,
        [Some("Hello".to_string()), Some("World".to_string()), None]
    );
    Ok(())
}
