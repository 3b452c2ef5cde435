//! The shared-memory tracker's process (`Role::Tracker`): it holds nothing but its socket to
//! the process that created named shared memory, and once that socket reaches end of file —
//! the creator is gone, however it went — removes every name still listed that still refers
//! to the object the creator made. The creator's side, and why the tracker exists, is
//! `shared::memory::tracker`.
//!
//! It must survive the creator for a moment: it turns off the parent-death signal and leaves
//! the creator's session before it says it is ready (`Detached`), and the creator sends no
//! name before that.

use std::collections::HashSet;

use super::protocol::EXIT_PROTOCOL;
use crate::sys;
use crate::sys::fd::ObjectId;
use crate::wire::message::{TrackerMessage, kind};
use crate::wire::{Channel, codec};

/// The tracker process: serves its creator until the creator is gone, removes what is left,
/// and returns the exit status.
pub(crate) fn serve(mut ch: Channel) -> i32 {
    if let Err(e) = sys::proc::detach_from_parent() {
        eprintln!("multiproc: the shared-memory tracker could not detach: {e}");
        return EXIT_PROTOCOL;
    }
    // SAFETY: this is a freshly started, single-threaded child; the start-up code dropped
    // everything it held except `ch`, which is kept.
    if let Err(e) = unsafe { sys::fd::close_all_except(ch.as_fd()) } {
        eprintln!("multiproc: the shared-memory tracker could not close inherited files: {e}");
    }
    let detached = match codec::encode(&TrackerMessage::Detached) {
        Ok(bytes) => bytes,
        Err(_) => return EXIT_PROTOCOL,
    };
    if ch.send(kind::TRACKER, &detached).is_err() {
        return EXIT_PROTOCOL;
    }
    let mut names: HashSet<(String, ObjectId)> = HashSet::new();
    // Any error ends the loop: end of file is the creator's death or exit, and a broken channel
    // means no more messages can come either. What is listed then is what it left behind.
    while let Ok(frame) = ch.recv(None) {
        if frame.kind != kind::TRACKER {
            continue;
        }
        match codec::decode::<TrackerMessage>(frame.payload()) {
            Ok(TrackerMessage::Track { name, dev, ino }) => {
                names.insert((name, ObjectId { dev, ino }));
            }
            Ok(TrackerMessage::Untrack { name, dev, ino }) => {
                names.remove(&(name, ObjectId { dev, ino }));
            }
            Ok(TrackerMessage::Detached) | Err(_) => {}
        }
    }
    for (name, id) in names {
        if let Err(e) = sys::shm_name::unlink_if(&name, id) {
            eprintln!("multiproc: could not remove shared memory {name:?}: {e}");
        }
    }
    0
}
