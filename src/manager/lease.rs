//! What keeps a manager's objects alive: each process that has a proxy of an object holds it
//! once on the server, however many copies of the proxy it has, and lets go when its last copy
//! is dropped — or when it ends, however it ends, since its holds are made on a connection of
//! their own (the lease) that closes with the process. The server frees an object a little
//! while (its linger) after the last hold on it is let go, so that a proxy in transit (in a
//! queue, a pipe, a task's arguments) whose sender dropped its own copy still finds it.
//!
//! Holds and releases are one-way messages (no reply to wait for): a proxy arriving in a process
//! costs one write, and so does the drop of its last copy.

use std::sync::{Arc, Mutex, Weak};

use super::client::{self, Address};
use super::protocol::{Request, kind};
use crate::pool::lock;
use crate::wire::{Channel, codec};

/// A process's hold on one object: shared by every copy of its proxies in the process.
pub(crate) struct Hold {
    pub(crate) addr: Arc<Address>,
    pub(crate) id: u64,
}

/// A hold of this process, found by its manager and object without upgrading the others
/// (whose last copy could otherwise be dropped here, under the lock, and deadlock on it).
struct Entry {
    addr: Arc<Address>,
    id: u64,
    hold: Weak<Hold>,
}

/// A lease connection, and the process it was made in (one inherited through a fork is not
/// this process's).
struct Conn {
    addr: Arc<Address>,
    pid: u32,
    chan: Channel,
}

/// The holds of this process, and its lease connections (one per manager).
struct Leases {
    held: Vec<Entry>,
    conns: Vec<Conn>,
}

static LEASES: Mutex<Leases> = Mutex::new(Leases {
    held: Vec::new(),
    conns: Vec::new(),
});

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
    let hold = Arc::new(Hold {
        addr: addr.clone(),
        id,
    });
    leases.held.push(Entry {
        addr: addr.clone(),
        id,
        hold: Arc::downgrade(&hold),
    });
    if leases.send(&addr, &Request::Hold { id }) {
        return hold;
    }
    // No lease connection yet (or no more): made outside the lock, since reaching a far
    // manager may take seconds. Whoever makes it tells every hold this process has there,
    // this one included, which is already listed.
    drop(leases);
    if let Ok(chan) = client::connect(&addr) {
        let mut leases = lock(&LEASES);
        if !leases.conns.iter().any(|c| same(&c.addr, &addr)) {
            let pid = std::process::id();
            leases.conns.push(Conn {
                addr: addr.clone(),
                pid,
                chan,
            });
            leases.replay(&addr);
        }
    }
    // A manager that cannot be reached is not told: it is gone (the proxy's calls say so), or
    // the next hold made there tells it of this one too.
    hold
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut leases = lock(&LEASES);
        leases.prune();
        // Without a lease connection the manager holds nothing for this process: nothing to
        // let go of (and no connection is made for it).
        leases.send(&self.addr, &Request::Release { id: self.id });
    }
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

fn same(a: &Address, b: &Address) -> bool {
    a.endpoint == b.endpoint && a.key == b.key
}

impl Leases {
    /// Forgets holds whose last copy is gone, and connections another process made.
    fn prune(&mut self) {
        let pid = std::process::id();
        self.held.retain(|e| e.hold.strong_count() > 0);
        self.conns.retain(|c| c.pid == pid);
    }

    /// Sends `request` on this process's lease connection to the manager at `addr`; `false`
    /// if there is none. A connection that fails is dropped (the manager then lets go of what
    /// this process held there; a new connection tells it again, see [`replay`](Self::replay)).
    fn send(&mut self, addr: &Address, request: &Request) -> bool {
        let Some(at) = self.conns.iter().position(|c| same(&c.addr, addr)) else {
            return false;
        };
        let sent = match codec::encode(request) {
            Ok(r) => self.conns[at].chan.send(kind::REQUEST, &r),
            Err(e) => Err(e.into()),
        };
        if sent.is_err() {
            self.conns.remove(at);
        }
        sent.is_ok()
    }

    /// Tells a new lease connection every hold this process has on its manager.
    fn replay(&mut self, addr: &Address) {
        let ids: Vec<u64> = self
            .held
            .iter()
            .filter(|e| same(&e.addr, addr) && e.hold.strong_count() > 0)
            .map(|e| e.id)
            .collect();
        for id in ids {
            if !self.send(addr, &Request::Hold { id }) {
                return;
            }
        }
    }
}
