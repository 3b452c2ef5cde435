//! The tracker, the creator's side: a helper process that removes this process's
//! shared-memory names once this process is gone, however it went. (The helper's own loop is
//! `child::tracker`.)
//!
//! A process that creates a named segment starts one tracker (lazily, on its first `create`)
//! and tells it each name before the name exists, and again when the name is removed or handed
//! over ([`track`], [`untrack`]). The tracker holds nothing but its socket to the creator. When
//! that socket reaches end of file — the creator exited, crashed, or was `SIGKILL`ed; the kernel
//! closes its end in every case — the tracker removes every name still on its list that still
//! refers to the object the creator made, and exits. Python's `resource_tracker` plays the same
//! role, but one tracker serves a whole process tree there and it warns about "leaks"; here each
//! creating process has its own, and removing the name at the creator's end is the documented
//! behaviour, not a leak.
//!
//! The tracker is the creator's child, started like any other (`Role::Tracker`), but it must
//! survive the creator for a moment: it turns off the parent-death signal and leaves the
//! creator's session before it says it is ready, and the creator sends no name before that, so
//! there is no window in which a dying creator takes its tracker along. If the creator exits
//! first the tracker is reparented and reaped by init; if the tracker dies first (someone
//! killed it), the next message notices, reaps it, and starts a replacement that is told every
//! name again.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::bootstrap::{self, ChildLink};
use crate::error::{Error, Result};
use crate::launch::inherited::PerProcess;
use crate::sys;
use crate::sys::fd::ObjectId;
use crate::wire::message::{Role, TrackerMessage, kind};
use crate::wire::{Io, codec};

/// How long a new tracker may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// This process's side.
struct State {
    /// The tracker and the pid of the process it works for. After a `fork` the child inherits
    /// this value, but the tracker is its parent's: the child must neither use nor kill it.
    link: Option<(u32, ChildLink)>,
    /// Names (with their objects) this process owns and wants removed when it dies; a
    /// replacement tracker is told all of them.
    names: BTreeSet<(String, ObjectId)>,
}

static STATE: PerProcess<Mutex<State>> = PerProcess::new(Mutex::new(State {
    link: None,
    names: BTreeSet::new(),
}));

/// In a forked copy: forgets the parent's tracker and names (see `launch::inherited`); the
/// copy starts a tracker of its own for names it creates.
pub(crate) fn forget_inherited() {
    crate::launch::inherited::reclaim(
        &STATE,
        State {
            link: None,
            names: BTreeSet::new(),
        },
    );
}

fn state() -> MutexGuard<'static, State> {
    // The state is consistent between statements; a panic elsewhere cannot have broken it.
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Has the tracker remove `name` when this process is gone, if the name still refers to `id`.
/// Starts the tracker on first use. Call it before the name exists.
pub(crate) fn track(name: &str, id: ObjectId) -> Result<()> {
    let mut st = state();
    let entry = (name.to_owned(), id);
    st.names.insert(entry.clone());
    let msg = TrackerMessage::Track {
        name: name.to_owned(),
        dev: id.dev,
        ino: id.ino,
    };
    st.send(&msg).inspect_err(|_| {
        st.names.remove(&entry);
    })
}

/// Takes `name` (for object `id`) off the tracker's list.
pub(crate) fn untrack(name: &str, id: ObjectId) -> Result<()> {
    let mut st = state();
    if !st.names.remove(&(name.to_owned(), id)) {
        return Ok(());
    }
    st.send(&TrackerMessage::Untrack {
        name: name.to_owned(),
        dev: id.dev,
        ino: id.ino,
    })
}

impl State {
    /// Sends `msg` to this process's tracker. If there is none yet, or it died, a new one is
    /// started and told the whole list instead (which `msg` has already been applied to).
    fn send(&mut self, msg: &TrackerMessage) -> Result<()> {
        let payload = codec::encode(msg)?;
        let me = sys::proc::getpid();
        match self.link.take() {
            Some((owner, link)) if owner != me => {
                // Inherited through `fork`: dropping the link would kill the parent's tracker.
                std::mem::forget(link);
            }
            Some((owner, mut link)) => {
                if link.channel.send(kind::TRACKER, &payload).is_ok() {
                    self.link = Some((owner, link));
                    return Ok(());
                }
                // The tracker is gone: dropping the link reaps it (no zombie is left).
                drop(link);
            }
            None => {}
        }
        if self.names.is_empty() {
            // Nothing to protect: start a tracker only when there is.
            return Ok(());
        }
        let mut link = start()?;
        for (name, id) in &self.names {
            let track = TrackerMessage::Track {
                name: name.clone(),
                dev: id.dev,
                ino: id.ino,
            };
            link.channel.send(kind::TRACKER, &codec::encode(&track)?)?;
        }
        self.link = Some((me, link));
        Ok(())
    }
}

/// Starts a tracker and waits until it no longer dies with this process.
fn start() -> Result<ChildLink> {
    let mut link = bootstrap::spawn_child("SharedMemoryTracker", Role::Tracker, Io::Blocking)?;
    let deadline = Instant::now() + START_TIMEOUT;
    bootstrap::await_ready(&mut link, deadline)?;
    let frame = link.channel.recv(Some(deadline))?;
    match codec::decode::<TrackerMessage>(frame.payload()) {
        Ok(TrackerMessage::Detached) if frame.kind == kind::TRACKER => Ok(link),
        _ => Err(Error::Protocol(format!(
            "the shared-memory tracker sent kind {} instead of its detached notice",
            frame.kind
        ))),
    }
}
