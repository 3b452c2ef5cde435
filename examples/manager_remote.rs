//! Two programs sharing a manager over TCP, as Python's `BaseManager(address, authkey)`: a
//! server with a job queue and a result dict, and clients that connect with the address and
//! the key — separate programs, not children of the server.
//!
//! Run alone, it plays both parts on this machine: it serves on a free port of 127.0.0.1 and
//! starts two client programs (itself again, with `client <address>`), then checks every job's
//! result arrived once. Across machines, run one part on each:
//!
//! ```text
//! MULTIPROC_KEY=secret cargo run --release --example manager_remote -- serve 0.0.0.0:50000
//! MULTIPROC_KEY=secret cargo run --release --example manager_remote -- client server-host:50000
//! ```
//! The connection is authenticated, not encrypted: between machines, tunnel it (SSH,
//! WireGuard) or keep it on a private network.

use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::time::Duration;

use multiproc::{Manager, Result};

const JOBS: u64 = 40;
/// Client programs started when run alone.
const CLIENTS: usize = 2;
/// Stops put at the end: one for each client that may be taking jobs.
const STOPS: usize = 16;

fn key() -> Vec<u8> {
    std::env::var("MULTIPROC_KEY")
        .unwrap_or_else(|_| "the example's key: set MULTIPROC_KEY".into())
        .into_bytes()
}

/// A client program: takes jobs until a `None`, writes each square into the result dict.
fn client(address: &str) -> Result<()> {
    let m = Manager::connect(address, key())?;
    let jobs = m.queue_named::<Option<u64>>("jobs")?;
    let results = m.dict_named::<u64, (u64, u32)>("results")?;
    let mut done = 0;
    while let Some(job) = jobs.get_timeout(Duration::from_secs(300))? {
        results.insert(job, (job * job, std::process::id()))?;
        done += 1;
    }
    println!("client {}: {done} jobs", std::process::id());
    Ok(())
}

/// The server program: puts the jobs, starts the clients (if it is to), waits for every
/// result, stops the clients and checks the results.
fn serve(address: &str, start_clients: impl FnOnce(&str) -> Result<Vec<Child>>) -> Result<()> {
    let m = Manager::builder().address(address).authkey(key()).serve()?;
    let at = m.address().expect("it listens on TCP").to_string();
    println!("serving on {at} (server process {})", m.pid());
    let jobs = m.queue_named::<Option<u64>>("jobs")?;
    let results = m.dict_named::<u64, (u64, u32)>("results")?;
    for job in 0..JOBS {
        jobs.put(Some(job))?;
    }
    let clients = start_clients(&at)?;
    while results.len()? < JOBS as usize {
        std::thread::sleep(Duration::from_millis(20));
    }
    // One stop for each client that may be taking jobs.
    for _ in 0..STOPS {
        jobs.put(None)?;
    }
    for mut c in clients {
        let status = c.wait()?;
        assert!(status.success(), "a client program failed: {status}");
    }
    let got: BTreeMap<u64, (u64, u32)> = results.items()?.into_iter().collect();
    let by: BTreeMap<u32, usize> = got.values().fold(BTreeMap::new(), |mut by, (_, pid)| {
        *by.entry(*pid).or_default() += 1;
        by
    });
    println!("{} results, by client: {by:?}", got.len());
    assert_eq!(got.len() as u64, JOBS);
    assert!(got.iter().all(|(job, (square, _))| *square == job * job));
    Ok(())
}

fn main() -> Result<()> {
    multiproc::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["client", address] => client(address),
        ["serve", address] => serve(address, |_| Ok(Vec::new())),
        [] => serve("127.0.0.1:0", |at| {
            // The client programs: this executable again, knowing only the address and key.
            let exe = std::env::current_exe()?;
            let clients = (0..CLIENTS)
                .map(|_| Command::new(&exe).args(["client", at]).spawn())
                .collect::<std::io::Result<_>>()?;
            Ok(clients)
        }),
        _ => {
            eprintln!("usage: manager_remote [serve ADDRESS | client ADDRESS]");
            std::process::exit(2);
        }
    }
}
