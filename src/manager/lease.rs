//! What keeps a manager's objects alive: each process that has a proxy of an object holds it
//! once on the server, however many copies of the proxy it has, and lets go when its last copy
//! is dropped — or when it ends, however it ends, since its holds are made on a connection of
//! their own (the lease) that closes with the process. The server frees an object a little
//! while (its linger) after the last hold on it is let go, so that a proxy in transit (in a
//! queue, a pipe, a task's arguments) whose sender dropped its own copy still finds it.
//!
//! Holds and releases are one-way messages (no reply to wait for): a proxy arriving in a process
//! costs one write, and so does the drop of its last copy.
//!
//! A lease connection that fails (or could not be made) takes the server's record of this
//! process's holds with it. Every hold is then told again on a new connection: by the next
//! hold made there, or by the next call of any proxy ([`repair`]). A release is sent only on the
//! connection its hold was told on (each has a generation), so a late release can never take
//! back a hold told again since.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::client::{self, Address};
use super::protocol::{Request, kind};
use crate::launch::inherited::PerProcess;
use crate::pool::lock;
use crate::wire::{Channel, codec};

/// A process's hold on one object: shared by every copy of its proxies in the process.
pub(crate) struct Hold {
    pub(crate) addr: Arc<Address>,
    pub(crate) id: u64,
    /// The generation of the connection the hold was told on; 0: none yet.
    told_on: Arc<AtomicU64>,
}

/// A hold of this process, found by its manager and object without upgrading the others
/// (whose last copy could otherwise be dropped here, under the lock, and deadlock on it).
struct Entry {
    addr: Arc<Address>,
    id: u64,
    hold: Weak<Hold>,
    told_on: Arc<AtomicU64>,
}

/// A lease connection, the process it was made in (one inherited through a fork is not this
/// process's), and its generation (never 0, never reused).
struct Conn {
    addr: Arc<Address>,
    pid: u32,
    generation: u64,
    chan: Channel,
}

/// The holds of this process, and its lease connections (one per manager).
struct Leases {
    held: Vec<Entry>,
    conns: Vec<Conn>,
}

static LEASES: PerProcess<Mutex<Leases>> = PerProcess::new(Mutex::new(Leases {
    held: Vec::new(),
    conns: Vec::new(),
}));

/// Set when a lease connection failed or could not be made: some holds may be untold.
static UNTOLD: AtomicBool = AtomicBool::new(false);

static GENERATIONS: AtomicU64 = AtomicU64::new(1);

/// When [`repair`] last tried, and how soon it may try again: a manager that cannot be reached
/// costs each proxy call no new attempt to reach it (its call says it is gone).
static LAST_REPAIR: PerProcess<Mutex<Option<Instant>>> = PerProcess::new(Mutex::new(None));
const RETRY: Duration = Duration::from_millis(500);

/// This process's hold on object `id` of the manager at `addr`: the one it has, or a new one
/// made now.
pub(crate) fn hold(addr: Arc<Address>, id: u64) -> Arc<Hold> {
    let mut leases = lock(&LEASES);
    leases.prune();
    let found = leases
        .held
        .iter()
        .find(|e| e.id == id && same(&e.addr, &addr));
    if let Some(hold) = found.and_then(|e| e.hold.upgrade()) {
        return hold;
    }
    let told_on = Arc::new(AtomicU64::new(0));
    let hold = Arc::new(Hold {
        addr: addr.clone(),
        id,
        told_on: told_on.clone(),
    });
    leases.held.push(Entry {
        addr: addr.clone(),
        id,
        hold: Arc::downgrade(&hold),
        told_on: told_on.clone(),
    });
    if let Some(generation) = leases.send(&addr, &Request::Hold { id }) {
        told_on.store(generation, Ordering::SeqCst);
        return hold;
    }
    drop(leases);
    connect(&addr);
    hold
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut leases = lock(&LEASES);
        leases.prune();
        // Only where it was told: without that connection the manager holds nothing for it
        // (and no connection is made for a release).
        let told_on = self.told_on.load(Ordering::SeqCst);
        let here = leases
            .conns
            .iter()
            .any(|c| c.generation == told_on && same(&c.addr, &self.addr));
        if here {
            leases.send(&self.addr, &Request::Release { id: self.id });
        }
    }
}

/// Tells every untold hold again, on new lease connections, if a lease connection failed since
/// the last time (trying at most every [`RETRY`]). Cheap when none did (one atomic load):
/// called before each proxy call.
pub(crate) fn repair() {
    if !UNTOLD.load(Ordering::SeqCst) {
        return;
    }
    {
        let mut last = lock(&LAST_REPAIR);
        if last.is_some_and(|at| at.elapsed() < RETRY) {
            return;
        }
        *last = Some(Instant::now());
    }
    UNTOLD.store(false, Ordering::SeqCst);
    let addrs: Vec<Arc<Address>> = {
        let mut leases = lock(&LEASES);
        leases.prune();
        let mut addrs: Vec<Arc<Address>> = Vec::new();
        for e in &leases.held {
            let connected = leases.conns.iter().any(|c| same(&c.addr, &e.addr));
            if !connected && !addrs.iter().any(|a| same(a, &e.addr)) {
                addrs.push(e.addr.clone());
            }
        }
        addrs
    };
    for addr in addrs {
        connect(&addr);
    }
}

/// Makes a lease connection to the manager at `addr` (outside the lock: reaching a far
/// manager may take seconds) and tells it every hold this process has there. Whoever makes the
/// connection tells them all; one that cannot be made leaves them for [`repair`].
fn connect(addr: &Arc<Address>) {
    let Ok(chan) = client::connect(addr) else {
        UNTOLD.store(true, Ordering::SeqCst);
        return;
    };
    let mut leases = lock(&LEASES);
    leases.prune();
    if leases.conns.iter().any(|c| same(&c.addr, addr)) {
        // Another thread made one meanwhile, and told them.
        return;
    }
    leases.conns.push(Conn {
        addr: addr.clone(),
        pid: std::process::id(),
        generation: GENERATIONS.fetch_add(1, Ordering::SeqCst),
        chan,
    });
    leases.replay(addr);
}

/// Closes this process's lease connection to the manager at `addr` if no proxy of it is left
/// here (a manager handle is being dropped): a program that makes many managers keeps no
/// socket per manager gone.
pub(crate) fn forget(addr: &Address) {
    let mut leases = lock(&LEASES);
    leases.prune();
    if !leases.held.iter().any(|e| same(&e.addr, addr)) {
        leases.conns.retain(|c| !same(&c.addr, addr));
    }
}

/// In a forked copy: forgets the parent's holds and lease connections (see
/// `launch::inherited`). The parent's holds stay the parent's; the copy's proxies hold anew
/// when it makes or receives them.
pub(crate) fn forget_inherited() {
    crate::launch::inherited::reclaim(
        &LEASES,
        Leases {
            held: Vec::new(),
            conns: Vec::new(),
        },
    );
    crate::launch::inherited::reclaim(&LAST_REPAIR, None);
    UNTOLD.store(false, Ordering::SeqCst);
}

/// The same manager, reached with the same key (an `Arc` of it or not).
fn same(a: &Address, b: &Address) -> bool {
    a == b
}

impl Leases {
    /// Forgets holds whose last copy is gone, and connections another process made.
    fn prune(&mut self) {
        let pid = std::process::id();
        self.held.retain(|e| e.hold.strong_count() > 0);
        self.conns.retain(|c| c.pid == pid);
    }

    /// Sends `request` on this process's lease connection to the manager at `addr`; its
    /// generation, or `None` if there is no connection or it failed. A connection that fails
    /// is dropped: the manager then lets go of what this process held there, and [`repair`]
    /// tells it all again on a new one.
    fn send(&mut self, addr: &Address, request: &Request) -> Option<u64> {
        let at = self.conns.iter().position(|c| same(&c.addr, addr))?;
        let sent = match codec::encode(request) {
            Ok(r) => self.conns[at].chan.send(kind::REQUEST, &r),
            Err(e) => Err(e.into()),
        };
        match sent {
            Ok(()) => Some(self.conns[at].generation),
            Err(_) => {
                self.conns.remove(at);
                UNTOLD.store(true, Ordering::SeqCst);
                None
            }
        }
    }

    /// Tells a new lease connection every hold this process has on its manager.
    fn replay(&mut self, addr: &Address) {
        let told: Vec<(u64, Arc<AtomicU64>)> = self
            .held
            .iter()
            .filter(|e| same(&e.addr, addr) && e.hold.strong_count() > 0)
            .map(|e| (e.id, e.told_on.clone()))
            .collect();
        for (id, told_on) in told {
            match self.send(addr, &Request::Hold { id }) {
                Some(generation) => told_on.store(generation, Ordering::SeqCst),
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_are_told_again_after_their_connection_is_lost() {
        let linger = Duration::from_millis(200);
        let m = crate::Manager::builder().linger(linger).serve().unwrap();
        let d = m.dict::<u8, u8>().unwrap();
        d.insert(1, 1).unwrap();
        // The lease connection breaks: the server lets go of this process's holds.
        {
            let mut leases = lock(&LEASES);
            leases.conns.retain(|c| !same(&c.addr, &m.addr));
            UNTOLD.store(true, Ordering::SeqCst);
        }
        *lock(&LAST_REPAIR) = None;
        // The next call tells them again, before the linger frees the dict.
        assert_eq!(d.len().unwrap(), 1);
        std::thread::sleep(linger * 4);
        assert_eq!(m.object_count().unwrap(), 1);
        assert_eq!(d.get(&1).unwrap(), Some(1));
    }
}
