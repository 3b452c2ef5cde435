//! The containers' operations — dicts, lists, values, queues — on the bytes the server keeps:
//! each runs whole under its object's lock (see `slot.rs`); a queue's may wait, letting go of
//! the lock meanwhile.

use std::collections::VecDeque;

use indexmap::IndexMap;

use super::Object;
use super::slot::{Slot, Stop, deadline};
use crate::error::{Error, Result};
use crate::manager::protocol::{Bytes, DictOp, ListOp, QueueOp, Reply, ValueOp};
use crate::wire::codec;

/// A dict as the server keeps it: encoded keys and values, in insertion order.
pub(super) type Dict = IndexMap<Bytes, Bytes>;

pub(super) fn dict_op(dict: &mut Dict, op: DictOp) -> Reply {
    match op {
        DictOp::Insert { key, value } => Reply::Value(dict.insert(key, value)),
        DictOp::Get { key } => Reply::Value(dict.get(&key).cloned()),
        DictOp::Remove { key } => Reply::Value(dict.shift_remove(&key)),
        DictOp::ContainsKey { key } => Reply::Bool(dict.contains_key(&key)),
        DictOp::Len => Reply::Len(dict.len() as u64),
        DictOp::Keys => Reply::List(dict.keys().cloned().collect()),
        DictOp::Values => Reply::List(dict.values().cloned().collect()),
        DictOp::Items => Reply::Pairs(dict.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        DictOp::Clear => {
            dict.clear();
            Reply::Done
        }
        DictOp::Update { key, entry } => match updated(&some_or_none(dict.get(&key)), entry) {
            Ok(value) => {
                dict.insert(key, value.clone());
                Reply::Value(Some(value))
            }
            Err(e) => Reply::Failed(e.to_string()),
        },
    }
}

/// A queue operation, which may wait (for an item, or for room; see `Slot::waiting`). `None`
/// if the object is not a queue.
pub(super) fn queue_op(
    slot: &Slot,
    op: QueueOp,
    still_there: &mut dyn FnMut() -> bool,
) -> Option<Reply> {
    let (mut put, wait_ms) = match op {
        QueueOp::Put { value, wait_ms } => (Some(value), wait_ms),
        QueueOp::Get { wait_ms } => (None, wait_ms),
        QueueOp::Len => return queue_query(slot, |items, _| Reply::Len(items.len() as u64)),
        QueueOp::Full => return queue_query(slot, |items, max| Reply::Bool(is_full(items, max))),
    };
    let putting = put.is_some();
    slot.waiting(
        deadline(wait_ms),
        still_there,
        |object| {
            let Object::Queue { items, maxsize } = object else {
                return Some(None);
            };
            match put.take() {
                Some(value) if !is_full(items, *maxsize) => {
                    items.push_back(value);
                    Some(Some(Reply::Bool(true)))
                }
                Some(value) => {
                    put = Some(value);
                    None
                }
                None => items.pop_front().map(|item| Some(Reply::Value(Some(item)))),
            }
        },
        |_, stop| {
            Some(match (stop, putting) {
                (Stop::TimedOut, true) => Reply::Bool(false),
                (Stop::TimedOut, false) => Reply::Value(None),
                (Stop::Left, _) => Reply::Failed("the client is gone".into()),
            })
        },
    )
}

fn is_full(items: &VecDeque<Bytes>, maxsize: usize) -> bool {
    maxsize != 0 && items.len() >= maxsize
}

fn queue_query(slot: &Slot, answer: impl Fn(&VecDeque<Bytes>, usize) -> Reply) -> Option<Reply> {
    match &*slot.lock() {
        Object::Queue { items, maxsize } => Some(answer(items, *maxsize)),
        _ => None,
    }
}

pub(super) fn value_op(value: &mut Option<Bytes>, op: ValueOp) -> Reply {
    match op {
        ValueOp::Get => Reply::Value(value.clone()),
        ValueOp::Set { value: new } => Reply::Value(value.replace(new)),
        ValueOp::Update { entry } => match value.as_deref().map(|v| updated(v, entry)) {
            Some(Ok(new)) => Reply::Value(Some(value.insert(new).clone())),
            Some(Err(e)) => Reply::Failed(e.to_string()),
            None => Reply::Failed("the value was never set".into()),
        },
    }
}

pub(super) fn list_op(list: &mut Vec<Bytes>, op: ListOp) -> Reply {
    let len = list.len();
    let at = |index: u64| usize::try_from(index).ok().filter(|&i| i < len);
    let out_of_range =
        |index: u64| Reply::Failed(format!("index {index} out of range (len {len})"));
    match op {
        ListOp::Push { value } => {
            list.push(value);
            Reply::Done
        }
        ListOp::Pop => Reply::Value(list.pop()),
        ListOp::Get { index } => Reply::Value(at(index).map(|i| list[i].clone())),
        ListOp::Set { index, value } => match at(index) {
            Some(i) => Reply::Value(Some(std::mem::replace(&mut list[i], value))),
            None => out_of_range(index),
        },
        ListOp::Insert { index, value } => {
            let i = usize::try_from(index).map_or(len, |i| i.min(len));
            list.insert(i, value);
            Reply::Done
        }
        ListOp::Remove { index } => match at(index) {
            Some(i) => Reply::Value(Some(list.remove(i))),
            None => out_of_range(index),
        },
        ListOp::Len => Reply::Len(len as u64),
        ListOp::ToVec => Reply::List(list.clone()),
        ListOp::Extend { values } => {
            list.extend(values);
            Reply::Done
        }
        ListOp::Clear => {
            list.clear();
            Reply::Done
        }
        ListOp::Update { index, entry } => match at(index) {
            Some(i) => match updated(&list[i], entry) {
                Ok(value) => {
                    list[i] = value.clone();
                    Reply::Value(Some(value))
                }
                Err(e) => Reply::Failed(e.to_string()),
            },
            None => out_of_range(index),
        },
    }
}

/// An encoded `Option<V>` from an encoded `V`, if any, as serde encodes it (a tag byte, then
/// the value): the argument of a dict's update function.
fn some_or_none(value: Option<&Bytes>) -> Bytes {
    match value {
        Some(v) => [&[1u8][..], v].concat(),
        None => vec![0],
    }
}

/// What the update function at `entry` makes of its encoded argument.
fn updated(input: &[u8], entry: i64) -> Result<Bytes> {
    // SAFETY: only a client that runs this same executable may ask for an update (checked in
    // its handshake, `welcome`), so `entry` is a trampoline offset it computed with
    // `task::entry_for`, valid here too.
    let entry = unsafe { crate::task::entry_at(entry) };
    let outcome = crate::task::run_once(entry, input);
    match codec::outcome_value(&outcome)? {
        Ok(value) => Ok(value.to_vec()),
        Err(failure) => Err(Error::from(failure)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_indices_are_checked() {
        let mut list = vec![vec![1u8], vec![2]];
        assert!(matches!(
            list_op(&mut list, ListOp::Get { index: u64::MAX }),
            Reply::Value(None)
        ));
        assert!(matches!(
            list_op(&mut list, ListOp::Remove { index: 2 }),
            Reply::Failed(_)
        ));
        assert!(matches!(
            list_op(
                &mut list,
                ListOp::Set {
                    index: 5,
                    value: vec![]
                }
            ),
            Reply::Failed(_)
        ));
        list_op(
            &mut list,
            ListOp::Insert {
                index: u64::MAX,
                value: vec![3],
            },
        );
        assert_eq!(list, [vec![1], vec![2], vec![3]]);
    }

    #[test]
    fn a_dict_update_gets_an_encoded_option() {
        assert_eq!(some_or_none(None), [0]);
        assert_eq!(some_or_none(Some(&vec![7, 8])), [1, 7, 8]);
        let encoded: Option<u16> =
            codec::decode(&some_or_none(Some(&codec::encode(&513u16).unwrap()))).unwrap();
        assert_eq!(encoded, Some(513));
    }
}
