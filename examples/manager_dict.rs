//! Seed 001, "通过manage.dict()实现进程间数据共享": ten processes each write `dic[i] = 101`
//! into a dict kept by a Manager, and each prints the values it sees; then the parent checks
//! that every write arrived. Beyond the seed: four processes count into one entry with
//! `update`, which runs whole on the server, so no increment is lost (Python's
//! `d[k] = d.get(k, 0) + 1` from 4 processes × 500 lost 1,222 of 2,000 here).

use std::time::Duration;

use multiproc::{DictProxy, Manager, Process};

fn foo(dic: DictProxy<u32, u32>, i: u32) {
    std::thread::sleep(Duration::from_millis(20));
    dic.insert(i, 100 + 1).unwrap();
    println!("{:?}", dic.values().unwrap());
}

fn bump(dic: DictProxy<String, u32>, times: u32) {
    for _ in 0..times {
        dic.update("count".into(), |v: Option<u32>| v.unwrap_or(0) + 1)
            .unwrap();
    }
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let managers = Manager::new()?;
    let dic = managers.dict::<u32, u32>()?;
    for i in 0..10 {
        // As in the seed: each process is joined before the next starts.
        let mut p = Process::new(foo, (dic.clone(), i));
        p.start()?;
        p.join()?;
    }
    println!("main process stop");
    assert_eq!(dic.len()?, 10);
    assert_eq!(dic.keys()?, (0..10).collect::<Vec<_>>());
    assert!(dic.values()?.iter().all(|&v| v == 101));

    let counts = managers.dict::<String, u32>()?;
    let mut ps: Vec<_> = (0..4)
        .map(|_| Process::new(bump, (counts.clone(), 500)))
        .collect();
    for p in &mut ps {
        p.start()?;
    }
    for p in &ps {
        p.join()?;
    }
    let count = counts.get(&"count".into())?;
    println!("4 processes x 500 updates: {count:?}");
    assert_eq!(count, Some(2000));
    managers.shutdown()
}
