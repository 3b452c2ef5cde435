//! A queue kept by a Manager, fed by pool tasks: Python's `Manager().Queue()` handed to
//! `pool.apply_async(worker, (q, i))` — the usual way to give pool tasks a queue in Python,
//! since a plain `multiprocessing.Queue` cannot be passed to a pool task there. (Here a plain
//! `Queue` can be passed too, and is faster; a managed one also reaches processes that are not
//! this program's children.) The parent drains it while the tasks run and checks every result
//! arrived once.

use multiproc::{Manager, Pool, QueueProxy};

fn worker(q: QueueProxy<(u32, u64)>, i: u32) -> u32 {
    let cube = u64::from(i).pow(3);
    q.put((i, cube)).expect("the manager is there");
    i
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let m = Manager::new()?;
    let q = m.queue::<(u32, u64)>()?;
    let pool = Pool::new(None)?;
    let results: Vec<_> = (0..20)
        .map(|i| pool.apply_async(worker, (q.clone(), i)))
        .collect();
    let mut got: Vec<(u32, u64)> = (0..20)
        .map(|_| q.get_timeout(std::time::Duration::from_secs(30)))
        .collect::<multiproc::Result<_>>()?;
    for r in &results {
        r.get()?;
    }
    got.sort();
    println!("first three: {:?}", &got[..3]);
    assert_eq!(
        got,
        (0..20)
            .map(|i| (i, u64::from(i).pow(3)))
            .collect::<Vec<_>>()
    );
    assert!(q.empty()?);
    println!("20 results through the managed queue, each once");
    Ok(())
}
