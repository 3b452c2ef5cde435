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

/// The holds of this process, and its lease connections (one per manager).
struct Leases {
    /// Each hold's manager and object, beside it: found without upgrading the others (whose
    /// last copy could otherwise be dropped here, under this lock, and deadlock on it).
    held: Vec<(Arc<Address>, u64, Weak<Hold>)>,
    /// A connection per manager, and the process it was made in (one inherited through a
    /// fork is not this process's).
    conns: Vec<(Arc<Address>, u32, Channel)>,
}

static LEASES: Mutex<Leases> = Mutex::new(Leases {
    held: Vec::new(),
    conns: Vec::new(),
});

/// This process's hold on object `id` of the manager at `addr`: the one it has, or a new one
/// made now.
pub(crate) fn hold(addr: Arc<Address>, id: u64) -> Arc<Hold> {
    let mut leases = lock(&LEASES);
    leases.held.retain(|(_, _, w)| w.strong_count() > 0);
    let found = leases
        .held
        .iter()
        .find(|(a, held_id, _)| *held_id == id && a.endpoint == addr.endpoint && a.key == addr.key);
    if let Some(held) = found.and_then(|(_, _, w)| w.upgrade()) {
        return held;
    }
    let held = Arc::new(Hold {
        addr: addr.clone(),
        id,
    });
    leases.held.push((addr, id, Arc::downgrade(&held)));
    leases.tell(&held.addr, &Request::Hold { id });
    held
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut leases = lock(&LEASES);
        leases.held.retain(|(_, _, w)| w.strong_count() > 0);
        leases.tell(&self.addr, &Request::Release { id: self.id });
    }
}

impl Leases {
    /// Sends `request` on this process's lease connection to the manager at `addr`, made now if
    /// there is none. A manager that cannot be reached is not told: it is gone, or its proxies'
    /// next calls say so.
    fn tell(&mut self, addr: &Arc<Address>, request: &Request) {
        let pid = std::process::id();
        self.conns.retain(|(_, made_in, _)| *made_in == pid);
        let at = match self
            .conns
            .iter()
            .position(|(a, _, _)| a.endpoint == addr.endpoint && a.key == addr.key)
        {
            Some(at) => at,
            None => match client::connect(addr) {
                Ok(chan) => {
                    self.conns.push((addr.clone(), pid, chan));
                    self.conns.len() - 1
                }
                Err(_) => return,
            },
        };
        let sent = match codec::encode(request) {
            Ok(r) => self.conns[at].2.send(kind::REQUEST, &r),
            Err(e) => Err(e.into()),
        };
        if sent.is_err() {
            // The next hold tries a new connection.
            self.conns.remove(at);
        }
    }
}
