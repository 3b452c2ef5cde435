//! The list a `map` returns, built while its results arrive.
//!
//! Results come in runs of consecutive items, from several workers, in no particular order.
//! Gathering the runs and copying them into one list at the end puts a copy of the whole list
//! (and, on a fresh pool, the page faults of a second list as large) after the last result,
//! where nothing else runs. A [`Placed`] list has room for every item from the start (on huge
//! pages where the system allows) and each run is moved to its place as it arrives.

use std::mem::MaybeUninit;
use std::ops::Range;

/// A list of `len` items whose runs are moved in as they arrive, in any order. A call whose
/// input had more or fewer items than it said (a wrong `size_hint`) still gets them all:
/// items past `len` are refused (and kept apart by the caller), and the list ends where the
/// items placed end.
pub(crate) struct Placed<R> {
    /// Capacity for every item; its length stays 0 until [`into_vec`](Self::into_vec), so the
    /// vector itself never drops an item: `Drop` drops those in `filled`.
    items: Vec<R>,
    len: usize,
    /// The ranges of `items` that hold values: sorted, disjoint.
    filled: Vec<Range<usize>>,
}

impl<R> Placed<R> {
    /// Room for `len` items, if that much memory can be had.
    pub(crate) fn new(len: usize) -> Option<Self> {
        let mut items = Vec::new();
        items.try_reserve_exact(len).ok()?;
        let spare = items.spare_capacity_mut();
        let bytes = std::mem::size_of_val(spare);
        // SAFETY: the spare capacity is `bytes` bytes of memory the vector owns; viewing
        // uninitialised memory as `MaybeUninit<u8>` asserts nothing about its contents.
        let spare = unsafe {
            std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<MaybeUninit<u8>>(), bytes)
        };
        crate::sys::shm::prefer_huge_pages(spare);
        Some(Self {
            items,
            len,
            filled: Vec::new(),
        })
    }

    /// Moves the values of `run`, items `first ..`, to their places, leaving `run` empty (its
    /// capacity kept). Refuses (and leaves `run` as it was) a run that would not fit the list
    /// or that overlaps items already placed.
    pub(crate) fn put(&mut self, first: usize, run: &mut Vec<R>) -> Result<(), Misplaced> {
        let end = first.checked_add(run.len()).ok_or(Misplaced::Outside)?;
        let at = first..end;
        if at.end > self.len {
            return Err(Misplaced::Outside);
        }
        if at.is_empty() {
            return Ok(());
        }
        // The first range that ends after `at` starts must start at or after `at` ends.
        let next = self.filled.partition_point(|r| r.end <= at.start);
        if self.filled.get(next).is_some_and(|r| r.start < at.end) {
            return Err(Misplaced::Overlap);
        }
        // SAFETY: `at` lies within the capacity (`at.end <= len`, the capacity) and overlaps
        // no placed item (checked above), so the destination is uninitialised memory that no
        // value owns; the source is `run`'s `at.len()` initialised values, in a different
        // allocation. After the copy the values belong to `items` (recorded in `filled` below)
        // and `run` forgets them (`set_len(0)`), so each is dropped exactly once.
        unsafe {
            std::ptr::copy_nonoverlapping(
                run.as_ptr(),
                self.items.as_mut_ptr().add(at.start),
                at.len(),
            );
            run.set_len(0);
        }
        // Kept merged with its neighbours, so that a call's runs end as one range.
        let joins_prev = next > 0 && self.filled[next - 1].end == at.start;
        let joins_next = self.filled.get(next).is_some_and(|r| r.start == at.end);
        match (joins_prev, joins_next) {
            (true, true) => {
                self.filled[next - 1].end = self.filled[next].end;
                self.filled.remove(next);
            }
            (true, false) => self.filled[next - 1].end = at.end,
            (false, true) => self.filled[next].start = at.start,
            (false, false) => self.filled.insert(next, at),
        }
        Ok(())
    }

    /// The list of the items placed, if they are the first ones with none missing (all of
    /// them, unless the call had fewer items than it said).
    pub(crate) fn into_vec(mut self) -> Option<Vec<R>> {
        let placed = match self.filled.as_slice() {
            [] => 0,
            [only] if only.start == 0 => only.end,
            _ => return None,
        };
        self.filled.clear();
        let mut items = std::mem::take(&mut self.items);
        // SAFETY: the items `0..placed` were placed (the one range in `filled`), so the first
        // `placed` elements are initialised; `filled` is cleared, so `Drop` drops none of them
        // a second time.
        unsafe { items.set_len(placed) };
        Some(items)
    }
}

impl<R> Drop for Placed<R> {
    fn drop(&mut self) {
        for r in &self.filled {
            // SAFETY: the items in `filled` ranges were initialised by `put` and are owned by
            // this list alone (the vector's length is 0, so it drops none of them).
            unsafe {
                std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                    self.items.as_mut_ptr().add(r.start),
                    r.len(),
                ));
            }
        }
    }
}

/// Why a run was not placed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Misplaced {
    /// It reaches past the list: the call has more items than it said.
    Outside,
    /// It overlaps items placed before: an item's outcome arrived twice.
    Overlap,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn runs_in_any_order_make_the_list() {
        let mut list = Placed::new(10).unwrap();
        for (first, values) in [
            (6, vec![6, 7, 8, 9]),
            (0, vec![0, 1]),
            (2, vec![2, 3, 4, 5]),
        ] {
            let mut run: Vec<String> = values.iter().map(|v: &i32| v.to_string()).collect();
            list.put(first, &mut run).unwrap();
            assert!(run.is_empty());
        }
        assert_eq!(list.filled, vec![0..10usize]);
        let got = list.into_vec().unwrap();
        assert_eq!(got, (0..10).map(|v| v.to_string()).collect::<Vec<_>>());
    }

    #[test]
    fn overlapping_or_outside_runs_are_refused_untouched() {
        let mut list = Placed::new(5).unwrap();
        list.put(1, &mut vec![1, 2]).unwrap();
        for (first, len, why) in [
            (0, 2, Misplaced::Overlap),
            (2, 1, Misplaced::Overlap),
            (2, 3, Misplaced::Overlap),
            (4, 2, Misplaced::Outside),
            (usize::MAX, 1, Misplaced::Outside),
        ] {
            let mut run = vec![9; len];
            assert_eq!(list.put(first, &mut run), Err(why), "{first}+{len}");
            assert_eq!(run.len(), len);
        }
        list.put(3, &mut vec![3, 4]).unwrap();
        assert!(list.into_vec().is_none(), "item 0 is missing");
    }

    #[test]
    fn a_call_shorter_than_it_said_yields_the_items_it_had() {
        let mut list = Placed::new(10).unwrap();
        list.put(3, &mut vec![3, 4]).unwrap();
        list.put(0, &mut vec![0, 1, 2]).unwrap();
        assert_eq!(list.into_vec().unwrap(), [0, 1, 2, 3, 4]);
        assert_eq!(Placed::<u8>::new(4).unwrap().into_vec().unwrap(), []);
    }

    #[test]
    fn an_unfinished_list_drops_exactly_what_was_placed() {
        let token = Arc::new(());
        let mut list = Placed::new(100).unwrap();
        list.put(10, &mut vec![token.clone(); 5]).unwrap();
        list.put(50, &mut vec![token.clone(); 3]).unwrap();
        list.put(15, &mut vec![token.clone(); 2]).unwrap();
        assert_eq!(Arc::strong_count(&token), 11);
        drop(list);
        assert_eq!(Arc::strong_count(&token), 1);
    }
}
