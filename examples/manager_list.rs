//! Seed 004, "经理": `worker1` and `worker2` each append to a list kept by a Manager and print
//! it with their process name; the parent prints the final list, which holds both items.

use multiproc::{ListProxy, Manager, Process, current_process};

fn worker(liste: ListProxy<u32>, x: u32) {
    liste.push(x).unwrap();
    println!(
        "list by:  {} {:?}",
        current_process().name(),
        liste.to_vec().unwrap()
    );
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let m = Manager::new()?;
    let liste = m.list::<u32>()?;

    let mut p1 = Process::new(worker, (liste.clone(), 30)).with_name("worker1");
    let mut p2 = Process::new(worker, (liste.clone(), 70)).with_name("worker2");
    p1.start()?;
    p2.start()?;
    p1.join()?;
    p2.join()?;

    let mut last = liste.to_vec()?;
    println!("final list:  {last:?}");
    last.sort();
    assert_eq!(last, [30, 70]);
    Ok(())
}
