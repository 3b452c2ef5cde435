//! `Event`: a flag that processes can wait for.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::Duration;

use crate::error::Result;
use crate::mem::parking::{self, Parking};
use crate::mem::segment::{Kind, Segment, SharedCell, segment_handle};

#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct EventCell {
    flag: AtomicU32,
    /// How many times the flag was set: a waiter that sees it move was woken by a `set`, even
    /// if the flag was cleared again before it looked.
    sets: AtomicU32,
    parking: Parking,
}

// SAFETY: repr(C) atomics and a `Parking`; zero is "not set".
unsafe impl SharedCell for EventCell {}

/// A flag shared between processes, like `multiprocessing.Event`: `wait` blocks until some
/// process calls `set`.
///
/// # Examples
/// ```
/// # multiproc::init();
/// use std::time::Duration;
/// let ev = multiproc::Event::new()?;
/// assert!(!ev.wait_timeout(Duration::from_millis(1)));
/// ev.set();
/// ev.wait();
/// assert!(ev.is_set());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Event {
    seg: Segment<EventCell>,
}

segment_handle!(Event, Kind::Event, EventCell);

impl Event {
    /// A new event, not set.
    ///
    /// # Errors
    /// The shared memory could not be created ([`Error::Io`](crate::Error::Io)).
    pub fn new() -> Result<Self> {
        Ok(Self {
            seg: Segment::new(Kind::Event, 0)?,
        })
    }

    fn cell(&self) -> &EventCell {
        self.seg.cell()
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let cell = self.cell();
        cell.flag.store(1, SeqCst);
        cell.sets.fetch_add(1, SeqCst);
        cell.parking.wake_all();
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.cell().flag.store(0, SeqCst);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.cell().flag.load(SeqCst) != 0
    }

    /// Waits until the flag is set (returns also if it was set and cleared again meanwhile).
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits at most `timeout` for the flag; returns whether it was set (now, or at some
    /// moment during the wait), like `threading.Event.wait(t)`.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(parking::deadline(timeout))
    }

    fn wait_until(&self, deadline: Option<std::time::Instant>) -> bool {
        let cell = self.cell();
        let sets = cell.sets.load(SeqCst);
        let was_set = || (self.is_set() || cell.sets.load(SeqCst) != sets).then_some(());
        was_set().is_some() || cell.parking.wait(deadline, |_| was_set()).is_some()
    }
}
