//! A thread whose end can be waited for with a deadline, which std's `JoinHandle::join`
//! cannot: what `Pool::join_timeout` needs of the supervisor and callback threads.
//!
//! The thread sets a flag when its function returns or unwinds (a guard's `drop`), and
//! `join_until` waits on that flag under a condition variable before it joins the handle,
//! which by then returns at once.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::{JoinHandle, ThreadId};
use std::time::Instant;

use super::result::{lock, wait_while_until};

/// A running (or ended) thread.
#[derive(Debug)]
pub(crate) struct Joinable {
    handle: Option<JoinHandle<()>>,
    ended: Arc<Ended>,
}

#[derive(Debug, Default)]
struct Ended {
    done: Mutex<bool>,
    cond: Condvar,
}

/// Marks its thread's end when dropped, however the thread's function left.
struct MarkEnd(Arc<Ended>);

impl Drop for MarkEnd {
    fn drop(&mut self) {
        *lock(&self.0.done) = true;
        self.0.cond.notify_all();
    }
}

impl Joinable {
    /// Starts `f` on a thread named `name`.
    pub(crate) fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<Self> {
        let ended = Arc::new(Ended::default());
        let mark = MarkEnd(ended.clone());
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _mark = mark;
                f()
            })?;
        Ok(Self {
            handle: Some(handle),
            ended,
        })
    }

    /// The thread's id.
    pub(crate) fn id(&self) -> Option<ThreadId> {
        self.handle.as_ref().map(|h| h.thread().id())
    }

    /// A handle on the thread's end that can be waited on without holding `self`.
    pub(crate) fn end(&self) -> ThreadEnd {
        ThreadEnd(self.ended.clone())
    }

    /// Joins the thread if it has ended; returns whether it has.
    pub(crate) fn join_if_ended(&mut self) -> bool {
        if !*lock(&self.ended.done) {
            return false;
        }
        if let Some(handle) = self.handle.take() {
            // The thread's function has returned: this only collects the thread.
            let _ = handle.join();
        }
        true
    }
}

/// The end of a [`Joinable`] thread, to wait for.
#[derive(Clone, Debug)]
pub(crate) struct ThreadEnd(Arc<Ended>);

impl ThreadEnd {
    /// Waits until the thread has ended, or until `deadline` (`None`: no limit); returns
    /// whether it has ended.
    pub(crate) fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let done = lock(&self.0.done);
        wait_while_until(&self.0.cond, done, deadline, |&done| !done).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_thread_is_waited_for_until_it_ends_or_the_deadline_passes() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let mut t = Joinable::spawn("test-joinable", move || {
            let _ = rx.recv();
        })
        .unwrap();
        let end = t.end();
        let soon = Instant::now() + Duration::from_millis(30);
        assert!(!end.wait_until(Some(soon)));
        assert!(Instant::now() >= soon);
        assert!(!t.join_if_ended());
        drop(tx);
        assert!(end.wait_until(None));
        assert!(t.join_if_ended());
        assert!(t.join_if_ended(), "joining again is harmless");
        // A thread that panics ends too.
        let t = Joinable::spawn("test-joinable-panic", || panic!("on purpose")).unwrap();
        assert!(
            t.end()
                .wait_until(Some(Instant::now() + Duration::from_secs(10)))
        );
    }
}
