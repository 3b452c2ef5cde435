//! Progress bars for map-like calls (feature `progress`, [`PoolBuilder::progress`]).
//!
//! A call's sink (`Gather` for `map` and the `*_async` calls, `imap::Stream` for `imap`)
//! advances its call's [`Progress`] as outcomes arrive: once per delivered run of results, not
//! per item, so a bar costs a few atomic additions per frame. The bar is indicatif's, drawn on
//! stderr at most 20 times a second, only when stderr is a terminal (indicatif hides it
//! otherwise), and only once the call has run 50 ms (`SHOW_AFTER`, `tqdm`'s `delay`): a quicker
//! call shows nothing. It knows its length once the call's input is all handed in (at once for a sized
//! `map`; when an `imap`'s input ends) and finishes when that many items have an outcome.
//!
//! Without the feature, [`Progress`] is a type with no values: the sinks' `Option<Arc<Progress>>`
//! is always `None`, and every call to it compiles to nothing.
//!
//! [`PoolBuilder::progress`]: super::PoolBuilder

#[cfg(feature = "progress")]
pub(crate) use with_bar::{Bars, Progress};

#[cfg(not(feature = "progress"))]
pub(crate) use without::{Bars, Progress};

#[cfg(feature = "progress")]
mod with_bar {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

    use crate::pool::lock;

    /// How long a call runs before its bar is shown (`tqdm`'s `delay`): a call done sooner
    /// draws nothing — there is nothing to watch, and drawing would cost it more than 1 %.
    const SHOW_AFTER: Duration = Duration::from_millis(50);

    /// A pool's bars: one line each on stderr, so that calls in flight at once do not draw over
    /// each other.
    pub(crate) struct Bars(MultiProgress);

    impl Bars {
        /// The bars of a pool, if it draws them.
        pub(crate) fn new(wanted: bool) -> Option<Self> {
            wanted.then(|| Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr())))
        }

        /// The bar of a call named `call` (`map`, `imap`, …) of about `len` items, if known:
        /// shown among the pool's once the call has run [`SHOW_AFTER`].
        pub(crate) fn bar(&self, call: &'static str, len: Option<usize>) -> Progress {
            let progress = Progress::new(call, len);
            *lock(&progress.shown_in) = Some(self.0.clone());
            progress
        }
    }

    /// The bar of one call.
    pub(crate) struct Progress {
        bar: ProgressBar,
        born: Instant,
        /// Where it is to be shown, until it is (see [`SHOW_AFTER`]).
        shown_in: Mutex<Option<MultiProgress>>,
        /// Whether it is shown, or nowhere to be (a copy of `shown_in` being empty).
        shown: AtomicBool,
        /// Items with an outcome.
        done: AtomicUsize,
        failed: AtomicUsize,
        /// How many items the call has; `usize::MAX` until its input is all handed in.
        total: AtomicUsize,
    }

    /// A bar whose length is known: items done, of how many, rate, time left, failures.
    const KNOWN: &str = "{prefix:>10} {wide_bar} {pos}/{len} {percent:>3}% {rate} ETA {eta} {msg}";
    /// A bar whose length is not known yet (an `imap` over an input still being read).
    const UNKNOWN: &str = "{prefix:>10} {spinner} {pos} done {rate} {elapsed} {msg}";

    /// `template` with its `{rate}`: items a second, to three figures or so.
    fn style(template: &str) -> Option<ProgressStyle> {
        let style = ProgressStyle::with_template(template).ok()?;
        Some(
            style.with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = match s.per_sec() {
                    r if r < 10.0 => write!(w, "{r:.1}/s"),
                    r => write!(w, "{r:.0}/s"),
                };
            }),
        )
    }

    impl Progress {
        /// The bar of a call named `call` (`map`, `imap`, …) of about `len` items, if known: the
        /// length it shows until [`set_total`](Self::set_total) tells the true one, which alone
        /// decides when it is finished (an input's size hint may be wrong).
        pub(crate) fn new(call: &'static str, len: Option<usize>) -> Self {
            // Hidden until a pool's `Bars` takes it in (and draws it in its place): a bar drawn
            // on its own first would leave a stray line.
            let bar =
                ProgressBar::with_draw_target(len.map(|n| n as u64), ProgressDrawTarget::hidden());
            if let Some(style) = style(if len.is_some() { KNOWN } else { UNKNOWN }) {
                bar.set_style(style);
            }
            bar.set_prefix(call);
            Self {
                bar,
                born: Instant::now(),
                shown_in: Mutex::new(None),
                shown: AtomicBool::new(false),
                done: AtomicUsize::new(0),
                failed: AtomicUsize::new(0),
                total: AtomicUsize::new(usize::MAX),
            }
        }

        /// Shows the bar once the call has run [`SHOW_AFTER`].
        fn show_when_due(&self) {
            if self.shown.load(Ordering::Relaxed) || self.born.elapsed() < SHOW_AFTER {
                return;
            }
            if let Some(bars) = lock(&self.shown_in).take() {
                bars.add(self.bar.clone());
                self.bar.tick();
            }
            self.shown.store(true, Ordering::Relaxed);
        }

        /// `done` more items have an outcome, `failed` of them an error.
        pub(crate) fn advance(&self, done: usize, failed: usize) {
            self.show_when_due();
            if failed > 0 {
                let failed = self.failed.fetch_add(failed, Ordering::Relaxed) + failed;
                self.bar.set_message(format!("· {failed} failed"));
            }
            self.bar.inc(done as u64);
            let done = self.done.fetch_add(done, Ordering::SeqCst) + done;
            if done >= self.total.load(Ordering::SeqCst) {
                self.bar.finish();
            }
        }

        /// The call has `total` items: its input is all handed in.
        pub(crate) fn set_total(&self, total: usize) {
            self.show_when_due();
            if self.bar.length().is_none() {
                if let Some(style) = style(KNOWN) {
                    self.bar.set_style(style);
                }
            }
            self.bar.set_length(total as u64);
            self.total.store(total, Ordering::SeqCst);
            if self.done.load(Ordering::SeqCst) >= total {
                self.bar.finish();
            }
        }

        #[cfg(test)]
        pub(super) fn bar(&self) -> &ProgressBar {
            &self.bar
        }

        /// Nobody waits for the rest (an `imap` dropped, a call cancelled): the bar stays
        /// where it is.
        pub(crate) fn abandon(&self) {
            if !self.bar.is_finished() {
                self.bar.abandon();
            }
        }
    }
}

#[cfg(not(feature = "progress"))]
mod without {
    /// No bars: never made (see the module docs).
    pub(crate) enum Bars {}

    impl Bars {
        pub(crate) fn new(_wanted: bool) -> Option<Self> {
            None
        }

        pub(crate) fn bar(&self, _call: &'static str, _len: Option<usize>) -> Progress {
            match *self {}
        }
    }

    /// No bar: never made (see the module docs).
    pub(crate) enum Progress {}

    impl Progress {
        pub(crate) fn advance(&self, _done: usize, _failed: usize) {
            match *self {}
        }

        pub(crate) fn set_total(&self, _total: usize) {
            match *self {}
        }

        pub(crate) fn abandon(&self) {
            match *self {}
        }
    }
}

#[cfg(all(test, feature = "progress"))]
mod tests {
    use super::Progress;

    #[test]
    fn a_bar_counts_outcomes_and_failures_and_ends_at_its_length() {
        let p = Progress::new("map", Some(10));
        p.set_total(10);
        p.advance(4, 0);
        p.advance(3, 1);
        assert_eq!(p.bar().position(), 7);
        assert!(!p.bar().is_finished());
        assert_eq!(p.bar().message(), "· 1 failed");
        p.advance(3, 0);
        assert!(p.bar().is_finished());
        assert_eq!(p.bar().position(), 10);
        // A size hint that said too few: the bar goes on until the true total.
        let q = Progress::new("map", Some(2));
        q.advance(2, 0);
        assert!(!q.bar().is_finished());
        q.set_total(5);
        assert_eq!(q.bar().length(), Some(5));
        q.advance(3, 0);
        assert!(q.bar().is_finished());
    }

    #[test]
    fn an_imap_bar_learns_its_length_when_its_input_ends() {
        let p = Progress::new("imap", None);
        p.advance(5, 0);
        assert_eq!(p.bar().length(), None);
        p.set_total(8);
        assert_eq!(p.bar().length(), Some(8));
        assert!(!p.bar().is_finished());
        p.advance(3, 0);
        assert!(p.bar().is_finished());
        // Every item in before the input was known to end.
        let q = Progress::new("imap", None);
        q.advance(4, 0);
        q.set_total(4);
        assert!(q.bar().is_finished());
        // Dropped part way: left where it was.
        let r = Progress::new("imap", None);
        r.advance(2, 0);
        r.abandon();
        assert_eq!(r.bar().position(), 2);
    }
}
