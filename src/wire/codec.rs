//! The one place that turns values into bytes and back.
//!
//! bincode 2.0.1 (through serde) with fixed-width integers was chosen by measuring it against
//! postcard and MessagePack on this crate's payloads: items are encoded one after another into a
//! shared buffer and decoded in the same order, so a codec that appends to a `Vec` and reports how
//! much it consumed is what matters. It was 2–6× faster than postcard per small item, and 2–3×
//! faster than its own variable-length integers. Both ends run the same binary, so the format
//! never has to be stable across versions. bincode is finished (2.0.1 is its last working
//! release; it is pinned); postcard is the maintained fallback. Swapping codecs means changing
//! only this file.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::wire::MAX_VALUE;
use crate::wire::fds;
use crate::wire::message::Failure;

/// Largest size decoded containers may claim in all. bincode checks each claimed length
/// against the limit before allocating, so garbage bytes that announce an enormous string or
/// vector give a decode error instead of a huge (or aborting) allocation. The limit grows with
/// the input in three steps (64 MiB for inputs up to 16 MiB, 1 GiB up to 256 MiB, then 4 GiB):
/// bincode's limit is a type parameter, so it cannot follow the input exactly.
const LIMIT: usize = 1 << 32;

/// Inputs up to this size are decoded with the tighter [`SMALL_LIMIT`].
const SMALL_INPUT: usize = 16 << 20;
/// A decoded value takes at most about three times its encoding in memory (an empty `String`
/// is 8 bytes encoded, 24 in memory), so claims past four times the input are garbage: a
/// small message cannot make the reader allocate gigabytes.
const SMALL_LIMIT: usize = 4 * SMALL_INPUT;

type Config<const N: usize> = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
    bincode::config::Limit<N>,
>;

const CONFIG: Config<LIMIT> = bincode::config::standard()
    .with_fixed_int_encoding()
    .with_limit::<LIMIT>();

const SMALL: Config<SMALL_LIMIT> = bincode::config::standard()
    .with_fixed_int_encoding()
    .with_limit::<SMALL_LIMIT>();

/// Inputs up to this size are decoded with [`MEDIUM_LIMIT`]; larger ones with [`LIMIT`].
const MEDIUM_INPUT: usize = 256 << 20;
const MEDIUM_LIMIT: usize = 4 * MEDIUM_INPUT;

const MEDIUM: Config<MEDIUM_LIMIT> = bincode::config::standard()
    .with_fixed_int_encoding()
    .with_limit::<MEDIUM_LIMIT>();

/// Appends the encoding of `value` to `out`, whatever its size: for values that are small by
/// construction (handshakes) or do not travel in a frame (a queue's items).
#[inline]
pub(crate) fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    if append_scalar(value, out) {
        return Ok(());
    }
    encode_capped(value, out, usize::MAX, "value")
}

/// Appends the encoding of `value` to `out` if one message can carry it ([`MAX_VALUE`] bytes);
/// otherwise the error says `what` it was ("argument", "result", …) and its size, and `out` is
/// left as it was (see [`encode_capped`]).
#[inline]
pub(crate) fn encode_message<T: Serialize + ?Sized>(
    value: &T,
    what: &str,
    out: &mut Vec<u8>,
) -> Result<()> {
    if append_scalar(value, out) {
        return Ok(());
    }
    encode_capped(value, out, MAX_VALUE, what)
}

/// Appends `value` if it is a plain number (its memory is its encoding), and says whether it
/// did: the hot path of tiny tasks, kept apart so that it inlines into every caller.
#[inline(always)]
fn append_scalar<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> bool {
    match plain::scalar_bytes(value) {
        Some(bytes) => {
            out.extend_from_slice(bytes);
            true
        }
        None => false,
    }
}

/// Appends the encodings of `items`, plain numbers, back to back and says how many there were;
/// `None`, with nothing taken, if `T` is not a plain number. The hot path of `map` over numbers:
/// a copy per item, without the checks each value of another type needs.
#[inline(always)]
pub(crate) fn append_scalar_run<T: Serialize>(
    items: impl Iterator<Item = T>,
    out: &mut Vec<u8>,
) -> Option<usize> {
    if !plain::is_scalar::<T>() {
        return None;
    }
    let mut n = 0;
    for item in items {
        let Some(bytes) = plain::scalar_bytes(&item) else {
            unreachable!("a plain number has its bytes")
        };
        out.extend_from_slice(bytes);
        n += 1;
    }
    Some(n)
}

/// Appends the encoding of `value`, not a plain number, to `out` if it takes at most `limit`
/// bytes. A vector of plain numbers is measured before anything is copied. Any other value is
/// encoded until it passes the limit and only counted from there: serde cannot tell a value's
/// size without walking it, and a walk first would cost every value a second pass (and
/// register the descriptors of the handles inside twice). A value over the limit leaves `out`
/// as it was, capacity included, and the error gives its size.
#[inline]
fn encode_capped<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    limit: usize,
    what: &str,
) -> Result<()> {
    if let Some(bytes) = plain::as_bytes(value) {
        let size = 8 + bytes.len();
        if size > limit {
            return Err(CodecError::too_large(what, size, limit));
        }
        out.reserve(size);
        crate::sys::shm::prefer_huge_pages(out.spare_capacity_mut());
        out.extend_from_slice(&(plain::len_of(value) as u64).to_le_bytes());
        out.extend_from_slice(bytes);
        return Ok(());
    }
    let (at, capacity) = (out.len(), out.capacity());
    let mut dropped = 0;
    let writer = Capped::new(&mut *out, at.saturating_add(limit), &mut dropped);
    let encoded = bincode::serde::encode_into_writer(value, writer, CONFIG);
    let size = out.len() - at + dropped;
    match encoded {
        Ok(()) if size <= limit => Ok(()),
        Ok(()) => {
            out.truncate(at);
            out.shrink_to(capacity);
            Err(CodecError::too_large(what, size, limit))
        }
        Err(e) => Err(CodecError::encoding(encode_failure_text(e))),
    }
}

/// Appends what bincode writes to `out`, except that a write that would take `out` past `end`
/// is dropped and only counted: the value is then over the limit, and what was kept goes too.
/// Nothing is ever written past `end`, and `out` is never grown past it, so an over-limit value
/// touches no more memory than the limit. (The limit is checked only when the write does not
/// fit below `stop`, which keeps the per-write path as short as a plain `Vec`'s: bincode writes
/// a byte vector inside a struct a byte at a time.)
struct Capped<'a> {
    out: &'a mut Vec<u8>,
    end: usize,
    /// Where the fast path stops: the capacity of `out`, or `end` if that comes first.
    stop: usize,
    /// Bytes written but not kept.
    dropped: &'a mut usize,
}

impl<'a> Capped<'a> {
    fn new(out: &'a mut Vec<u8>, end: usize, dropped: &'a mut usize) -> Self {
        let stop = out.capacity().min(end);
        Self {
            out,
            end,
            stop,
            dropped,
        }
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self, bytes: &[u8]) {
        let len = self.out.len();
        let needed = len.saturating_add(bytes.len());
        if needed > self.end {
            *self.dropped = self.dropped.saturating_add(bytes.len());
            return;
        }
        if needed > self.out.capacity() {
            // Doubling from 8 bytes, as `Vec` would, but never past the limit.
            let target = needed
                .max(self.out.capacity().saturating_mul(2))
                .max(8)
                .min(self.end);
            self.out.reserve_exact(target - len);
        }
        self.out.extend_from_slice(bytes);
        self.stop = self.out.capacity().min(self.end);
    }
}

impl bincode::enc::write::Writer for Capped<'_> {
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) -> std::result::Result<(), bincode::error::EncodeError> {
        if bytes.len() <= self.stop - self.out.len() {
            self.out.extend_from_slice(bytes);
        } else {
            self.grow(bytes);
        }
        Ok(())
    }
}

/// Encodes `value` into a new buffer.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Decodes one value from the front of `input` and advances `input` past it.
#[inline]
pub(crate) fn decode_front<T: DeserializeOwned>(input: &mut &[u8]) -> Result<T> {
    if let Some(decoded) = plain::decode_front(input) {
        return decoded;
    }
    let decoded = if input.len() <= SMALL_INPUT {
        bincode::serde::decode_from_slice(input, SMALL)
    } else if input.len() <= MEDIUM_INPUT {
        bincode::serde::decode_from_slice(input, MEDIUM)
    } else {
        bincode::serde::decode_from_slice(input, CONFIG)
    };
    match decoded {
        Ok((value, used)) => {
            *input = &input[used..];
            Ok(value)
        }
        Err(e) => Err(CodecError::decoding(decode_failure_text(e))),
    }
}

/// The fast path for vectors of plain numbers (`Vec<u8>`, `Vec<f64>`, …), the usual large
/// payloads. serde hands them to bincode one element at a time (about a nanosecond per byte);
/// their bincode encoding — a `u64` length, then each number fixed-width little-endian — is
/// exactly their memory on a little-endian machine, so they are copied whole instead. The bytes
/// are the same either way, so the two paths read each other's output. Only the value's own
/// type is recognised (a `Vec<u8>` argument or result, not one inside a struct: wrap those in
/// `serde_bytes::ByteBuf`, which bincode also copies whole).
pub(crate) mod plain {
    use std::any::TypeId;
    use std::mem::{ManuallyDrop, MaybeUninit};

    use super::{CodecError, Result};

    macro_rules! plain_types {
        ($($t:ty),*) => {
            /// The memory of `value` if it is a vector of plain numbers.
            #[inline(always)]
            pub(super) fn as_bytes<T: ?Sized>(value: &T) -> Option<&[u8]> {
                if !cfg!(target_endian = "little") {
                    return None;
                }
                let id = typeid::of::<T>();
                $(
                    if id == TypeId::of::<Vec<$t>>() {
                        // SAFETY: `T` has the type id of `Vec<$t>`, which has no lifetimes to
                        // erase, so `T` is `Vec<$t>` (and sized: the cast drops no metadata).
                        let v = unsafe { &*(value as *const T as *const Vec<$t>) };
                        return Some(bytemuck::cast_slice(v.as_slice()));
                    }
                )*
                None
            }

            /// The memory of `value` if it is a plain number (its bincode encoding too).
            #[inline(always)]
            pub(super) fn scalar_bytes<T: ?Sized>(value: &T) -> Option<&[u8]> {
                if !cfg!(target_endian = "little") {
                    return None;
                }
                let id = typeid::of::<T>();
                $(
                    if id == TypeId::of::<$t>() {
                        // SAFETY: `T` has the type id of `$t`, a type without lifetimes, so it
                        // is `$t`.
                        let v = unsafe { &*(value as *const T as *const $t) };
                        return Some(bytemuck::bytes_of(v));
                    }
                )*
                None
            }

            /// Whether `T` is a plain number whose memory is its encoding (at most 8 bytes, on a
            /// little-endian machine): the one test of every fast path for numbers.
            #[inline(always)]
            pub(crate) fn is_scalar<T: ?Sized>() -> bool {
                if !cfg!(target_endian = "little") {
                    return false;
                }
                let id = typeid::of::<T>();
                false $(|| id == TypeId::of::<$t>())*
            }

            /// Whether `T` is a plain number or a vector of them (it then holds no handle).
            #[inline(always)]
            pub(crate) fn is_plain<T: ?Sized>() -> bool {
                let id = typeid::of::<T>();
                false $(|| id == TypeId::of::<$t>() || id == TypeId::of::<Vec<$t>>())*
            }

            /// Number of elements of `value`, which [`as_bytes`] recognised.
            pub(super) fn len_of<T: ?Sized>(value: &T) -> usize {
                let id = typeid::of::<T>();
                $(
                    if id == TypeId::of::<Vec<$t>>() {
                        // SAFETY: as in `as_bytes`.
                        return unsafe { &*(value as *const T as *const Vec<$t>) }.len();
                    }
                )*
                0
            }

            /// Decodes outcomes that carry plain numbers from the front of `input` into `out`,
            /// at most `max` of them, as [`super::decode_successes`] does, if `T` is a plain
            /// number; says whether it was.
            #[inline(always)]
            pub(super) fn take_successes<T>(
                input: &mut &[u8],
                max: usize,
                out: &mut Vec<T>,
            ) -> bool {
                if !cfg!(target_endian = "little") {
                    return false;
                }
                let id = typeid::of::<T>();
                $(
                    if id == TypeId::of::<$t>() {
                        // SAFETY: `T` is `$t` (same type id, no lifetimes), so `Vec<T>` is
                        // `Vec<$t>`.
                        let out = unsafe { &mut *(out as *mut Vec<T>).cast::<Vec<$t>>() };
                        // An outcome is its tag byte, then the number.
                        const STRIDE: usize = 1 + size_of::<$t>();
                        let whole = (input.len() / STRIDE).min(max);
                        let outcomes = input[..whole * STRIDE].chunks_exact(STRIDE);
                        // The values before the first failure, in one pass the compiler can
                        // write without a length check per value.
                        let taken = outcomes
                            .clone()
                            .position(|o| o[0] != super::OUTCOME_OK)
                            .unwrap_or(whole);
                        out.extend(
                            outcomes
                                .take(taken)
                                .map(|o| bytemuck::pod_read_unaligned::<$t>(&o[1..])),
                        );
                        *input = &input[taken * STRIDE..];
                        return true;
                    }
                )*
                false
            }

            /// Decodes a vector of plain numbers from the front of `input`, if `T` is one.
            #[inline(always)]
            pub(super) fn decode_front<T>(input: &mut &[u8]) -> Option<Result<T>> {
                if !cfg!(target_endian = "little") {
                    return None;
                }
                let id = typeid::of::<T>();
                $(
                    if id == TypeId::of::<$t>() {
                        return Some(take_scalar::<$t>(input).map(|v| {
                            // SAFETY: `T` is `$t` (same type id, no lifetimes); `$t` is `Copy`.
                            unsafe { std::ptr::read(&v as *const $t as *const T) }
                        }));
                    }
                    if id == TypeId::of::<Vec<$t>>() {
                        return Some(take::<$t>(input).map(|v| {
                            let v = ManuallyDrop::new(v);
                            // SAFETY: `T` is `Vec<$t>` (same type id, no lifetimes); the
                            // original is not dropped, so ownership moves to the copy.
                            unsafe { std::ptr::read(&*v as *const Vec<$t> as *const T) }
                        }));
                    }
                )*
                None
            }
        };
    }

    plain_types!(u8, i8, u16, i16, u32, i32, u64, i64, f32, f64);

    /// Reads one `P` from the front of `input`.
    #[inline(always)]
    fn take_scalar<P: bytemuck::Pod>(input: &mut &[u8]) -> Result<P> {
        if input.len() < size_of::<P>() {
            return Err(CodecError::decoding("unexpected end of input"));
        }
        let (bytes, rest) = input.split_at(size_of::<P>());
        *input = rest;
        Ok(bytemuck::pod_read_unaligned(bytes))
    }

    /// Reads a length and that many `P` from the front of `input`. The claimed size is checked
    /// against the bytes present before anything is allocated.
    fn take<P: bytemuck::Pod>(input: &mut &[u8]) -> Result<Vec<P>> {
        let Some((len, rest)) = input.split_first_chunk::<8>() else {
            return Err(CodecError::decoding("missing vector length"));
        };
        let len = u64::from_le_bytes(*len);
        let size = usize::try_from(len)
            .ok()
            .and_then(|n| n.checked_mul(size_of::<P>()))
            .filter(|&size| size <= rest.len())
            .ok_or_else(|| {
                CodecError::decoding(format_args!(
                    "a vector claims {len} elements, more than the {} bytes left",
                    rest.len()
                ))
            })?;
        let count = size / size_of::<P>().max(1);
        let mut v = Vec::<P>::with_capacity(count);
        let spare = v.spare_capacity_mut();
        // SAFETY: the spare capacity is `count * size_of::<P>()` bytes of memory we own; viewing
        // uninitialised memory as `MaybeUninit<u8>` asserts nothing about its contents.
        let spare = unsafe {
            std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<MaybeUninit<u8>>(), size)
        };
        crate::sys::shm::prefer_huge_pages(spare);
        // SAFETY: `size` bytes fit the capacity (above) and come from `rest` (checked long
        // enough), which cannot overlap a fresh allocation; `P` is plain old data, so any bytes
        // are a valid `P` and the first `count` elements are initialised after the copy.
        unsafe {
            std::ptr::copy_nonoverlapping(rest.as_ptr(), v.as_mut_ptr().cast::<u8>(), size);
            v.set_len(count);
        }
        *input = &rest[size..];
        Ok(v)
    }
}

/// A value that could not be encoded or decoded. Kept small (one pointer and a flag) so that
/// `Result<T, CodecError>` costs little more than `T` on the hot path; it becomes
/// [`Error::Encode`] or [`Error::Decode`] with `?`.
#[derive(Debug)]
pub(crate) struct CodecError {
    encoding: bool,
    message: Box<str>,
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<CodecError> for Error {
    fn from(e: CodecError) -> Self {
        if e.encoding {
            Error::Encode(e.message.into())
        } else {
            Error::Decode(e.message.into())
        }
    }
}

impl CodecError {
    #[cold]
    pub(crate) fn decoding(message: impl std::fmt::Display) -> Self {
        Self {
            encoding: false,
            message: message.to_string().into(),
        }
    }

    #[cold]
    fn encoding(message: impl std::fmt::Display) -> Self {
        Self {
            encoding: true,
            message: message.to_string().into(),
        }
    }

    #[cold]
    fn too_large(what: &str, size: usize, limit: usize) -> Self {
        Self::encoding(format_args!(
            "{what} of {size} bytes exceeds the {limit}-byte limit of one message"
        ))
    }
}

type Result<T> = std::result::Result<T, CodecError>;

/// Why bincode could not encode a value, in words for the user. bincode's own `Display` is its
/// `Debug` (`OtherString("…")`), which would show the codec's insides in every message; the
/// common case, a `Serialize` that failed (a handle out of place, say), is its message alone.
#[cold]
fn encode_failure_text(e: bincode::error::EncodeError) -> String {
    use bincode::error::EncodeError as E;
    match e {
        E::OtherString(message) => message,
        E::Other(message) => message.to_string(),
        E::Serde(bincode::serde::EncodeError::SequenceMustHaveLength) => {
            "a sequence that does not say its length in advance (collect it into a Vec first)"
                .to_string()
        }
        E::RefCellAlreadyBorrowed { type_name, .. } => {
            format!("a RefCell<{type_name}> was mutably borrowed while it was being encoded")
        }
        E::LockFailed { type_name } => format!("a poisoned {type_name} could not be locked"),
        E::InvalidPathCharacters => "a path that is not valid UTF-8".to_string(),
        E::InvalidSystemTime { .. } => "a SystemTime before the Unix epoch".to_string(),
        E::Io { inner, .. } => inner.to_string(),
        E::UnexpectedEnd => "the output ran out of room".to_string(),
        _ => "the codec refused the value".to_string(),
    }
}

/// Why bincode could not decode a value, in words for the user (see [`encode_failure_text`]).
#[cold]
fn decode_failure_text(e: bincode::error::DecodeError) -> String {
    use bincode::error::DecodeError as D;
    use bincode::serde::DecodeError as S;
    match e {
        D::OtherString(message) => message,
        D::Other(message) => message.to_string(),
        D::UnexpectedEnd { additional } => {
            format!("the bytes end too soon (at least {additional} more were expected)")
        }
        D::LimitExceeded => {
            "the bytes claim a larger value than they can hold (garbage, or another type)"
                .to_string()
        }
        D::UnexpectedVariant {
            type_name, found, ..
        } => format!("{found} is not a variant of {type_name}"),
        D::EmptyEnum { type_name } => format!("{type_name} has no variants to decode"),
        D::Utf8 { inner } => format!("a string that is not valid UTF-8 ({inner})"),
        D::InvalidCharEncoding(_) => "a char that is not a Unicode scalar value".to_string(),
        D::InvalidBooleanValue(byte) => format!("{byte} is not a bool (0 or 1)"),
        D::ArrayLengthMismatch { required, found } => {
            format!("an array of {found} elements where {required} were expected")
        }
        D::OutsideUsizeRange(n) => format!("{n} does not fit a usize"),
        D::NonZeroTypeIsZero { .. } => "0 where a non-zero integer was expected".to_string(),
        D::InvalidIntegerType { .. } => "an integer of another width".to_string(),
        D::InvalidDuration { .. } => "a Duration whose seconds overflow".to_string(),
        D::InvalidSystemTime { .. } => "a SystemTime out of range".to_string(),
        D::CStringNulError { position } => format!("a CString with a 0 byte at {position}"),
        D::Io { inner, .. } => inner.to_string(),
        D::Serde(S::AnyNotSupported | S::IdentifierNotSupported) => {
            "a type that needs a self-describing format (`deserialize_any`: untagged or \
             flattened serde enums and structs, serde_json::Value …); use plain structs and \
             enums"
                .to_string()
        }
        D::Serde(S::IgnoredAnyNotSupported) => {
            "a type that skips unknown fields (`deserialize_ignored_any`)".to_string()
        }
        D::Serde(S::CannotBorrowOwnedData) => {
            "a type that borrows from its bytes (&str, &[u8]); use owned types (String, \
             Vec<u8>)"
                .to_string()
        }
        _ => "the bytes do not decode as the expected type".to_string(),
    }
}

/// Tag byte of an outcome that carries a value.
const OUTCOME_OK: u8 = 0;
/// Tag byte of an outcome that carries a [`Failure`].
const OUTCOME_FAILED: u8 = 1;

/// Appends the outcome of an item that produced `value`: a tag byte, then the value. (A
/// hand-made tag instead of serde's `Result` keeps decoding several times faster.) A value too
/// large for one message is an error that names its size; `out` is left as it was.
#[inline]
pub(crate) fn encode_ok<R: Serialize + ?Sized>(value: &R, out: &mut Vec<u8>) -> Result<()> {
    let at = out.len();
    out.push(OUTCOME_OK);
    if append_scalar(value, out) {
        return Ok(());
    }
    // A handle inside travels with the worker's reply (or is refused, with the reason).
    fds::encode_result(|| encode_capped(value, out, MAX_VALUE, "result"))
        .inspect_err(|_| out.truncate(at))
}

/// Appends the outcome of an item that failed.
pub(crate) fn encode_failure(failure: &Failure, out: &mut Vec<u8>) {
    let at = out.len();
    out.push(OUTCOME_FAILED);
    if encode_into(failure, out).is_err() {
        // A plain enum of strings always encodes into a Vec; keep the stream aligned anyway.
        out.truncate(at);
    }
}

/// The encoded value of an encoded outcome (the whole of `outcome`), or its failure: for a
/// server that keeps values as bytes (the Manager's), which never decodes them.
pub(crate) fn outcome_value(outcome: &[u8]) -> Result<std::result::Result<&[u8], Failure>> {
    match outcome.split_first() {
        Some((&OUTCOME_OK, value)) => Ok(Ok(value)),
        Some((&OUTCOME_FAILED, failure)) => Ok(Err(decode(failure)?)),
        _ => Err(CodecError::decoding("missing or bad outcome tag")),
    }
}

/// Decodes one outcome from the front of `input`.
#[inline]
pub(crate) fn decode_outcome<R: DeserializeOwned>(
    input: &mut &[u8],
) -> Result<std::result::Result<R, Failure>> {
    let Some((&tag, rest)) = input.split_first() else {
        return Err(CodecError::decoding("missing outcome"));
    };
    *input = rest;
    match tag {
        OUTCOME_OK => decode_front(input).map(Ok),
        OUTCOME_FAILED => decode_front(input).map(Err),
        other => Err(CodecError::decoding(format_args!(
            "bad outcome tag {other}"
        ))),
    }
}

/// Decodes outcomes that carry values from the front of `input` into `out`, at most `max` of
/// them, and stops before the first that does not (a failure, or bytes that do not decode),
/// leaving it in `input` for [`decode_outcome`].
#[inline]
pub(crate) fn decode_successes<R: DeserializeOwned>(
    input: &mut &[u8],
    max: usize,
    out: &mut Vec<R>,
) {
    out.reserve(max);
    if plain::take_successes(input, max, out) {
        return;
    }
    for _ in 0..max {
        let Some((&OUTCOME_OK, mut rest)) = input.split_first() else {
            return;
        };
        match decode_front(&mut rest) {
            Ok(value) => out.push(value),
            Err(_) => return,
        }
        *input = rest;
    }
}

/// Decodes a value that must fill `input` exactly.
pub(crate) fn decode<T: DeserializeOwned>(mut input: &[u8]) -> Result<T> {
    let value = decode_front(&mut input)?;
    if !input.is_empty() {
        return Err(CodecError::decoding(format_args!(
            "{} unexpected bytes after the value",
            input.len()
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_one_after_another() {
        let mut buf = Vec::new();
        for i in 0..100u64 {
            encode_into(&(i * i, format!("n{i}")), &mut buf).unwrap();
        }
        let mut input = &buf[..];
        for i in 0..100u64 {
            let (sq, name): (u64, String) = decode_front(&mut input).unwrap();
            assert_eq!((sq, name), (i * i, format!("n{i}")));
        }
        assert!(input.is_empty());
    }

    #[test]
    fn a_value_over_the_limit_is_refused_with_its_size_and_out_left_as_it_was() {
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(b"abc");
        let refused = |e: CodecError| {
            let e: Error = e.into();
            match e {
                Error::Encode(m) => m,
                other => panic!("not an encode error: {other:?}"),
            }
        };
        // A plain vector is measured, not copied; any other value is counted past the limit.
        let plain = encode_capped(&vec![7u8; 100], &mut out, 107, "argument").unwrap_err();
        assert_eq!(
            refused(plain),
            "argument of 108 bytes exceeds the 107-byte limit of one message"
        );
        assert_eq!((&out[..], out.capacity()), (&b"abc"[..], 16));
        let nested = (vec![7u8; 100], 5u32);
        let serde = encode_capped(&nested, &mut out, 50, "result").unwrap_err();
        assert_eq!(
            refused(serde),
            "result of 112 bytes exceeds the 50-byte limit of one message"
        );
        assert_eq!((&out[..], out.capacity()), (&b"abc"[..], 16));
        // At the limit exactly, both go through, with the usual bytes.
        encode_capped(&vec![7u8; 100], &mut out, 108, "argument").unwrap();
        encode_capped(&nested, &mut out, 112, "result").unwrap();
        let mut input = &out[3..];
        assert_eq!(decode_front::<Vec<u8>>(&mut input).unwrap(), vec![7u8; 100]);
        assert_eq!(decode_front::<(Vec<u8>, u32)>(&mut input).unwrap(), nested);
        assert!(input.is_empty());
    }

    /// Regression (review): once `out` had to grow, `Vec`'s doubling let its capacity pass the
    /// limit, and the fast path wrote on up to the capacity: an over-limit value touched about
    /// twice the limit before it was refused. Neither length nor capacity may pass the limit,
    /// whether the buffer starts empty or larger than the limit.
    #[test]
    fn a_capped_writer_never_holds_more_than_its_limit() {
        use bincode::enc::write::Writer;
        for (start, limit) in [(0, 1000), (3, 1000), (4096, 100), (0, 1)] {
            let mut out = Vec::with_capacity(start);
            out.extend(std::iter::repeat_n(9u8, start.min(3)));
            let at = out.len();
            let mut dropped = 0;
            let mut capped = Capped::new(&mut out, at + limit, &mut dropped);
            // One byte at a time, as bincode writes a byte vector inside a struct.
            for _ in 0..3 * limit {
                capped.write(&[7]).unwrap();
                let (len, capacity) = (capped.out.len(), capped.out.capacity());
                assert!(len <= at + limit, "{start}/{limit}: {len} bytes kept");
                assert!(
                    capacity <= (at + limit).max(start),
                    "{start}/{limit}: capacity {capacity}"
                );
            }
            assert_eq!(out.len() - at, limit);
            assert_eq!(dropped, 2 * limit);
        }
    }

    #[test]
    fn an_outcome_too_large_for_a_message_is_refused_before_it_is_copied() {
        // Untouched memory (calloc'd zeros): copying it whole would take a second and a GiB.
        let huge = vec![0u8; MAX_VALUE];
        let mut out = Vec::new();
        let t = std::time::Instant::now();
        let e: Error = encode_ok(&huge, &mut out).unwrap_err().into();
        assert!(t.elapsed() < std::time::Duration::from_millis(100));
        assert!(
            out.is_empty() && out.capacity() < 64,
            "the tag's byte at most"
        );
        let expect = format!("result of {} bytes exceeds", MAX_VALUE + 8);
        assert!(
            matches!(&e, Error::Encode(m) if m.starts_with(&expect)),
            "{e}"
        );
    }

    /// bincode's `Display` is its `Debug`: none of it may reach a user's message.
    #[test]
    fn codec_errors_read_as_words_not_as_bincode_debug() {
        fn decode_error<T: DeserializeOwned>(bytes: &[u8]) -> String {
            match decode::<T>(bytes).map_err(Error::from) {
                Err(Error::Decode(m)) => m,
                other => panic!("expected a decode error, got {:?}", other.err()),
            }
        }
        let short = decode_error::<String>(&[5, 0, 0, 0, 0, 0, 0, 0, b'a']);
        assert!(short.starts_with("the bytes end too soon"), "{short}");
        let utf8 = decode_error::<String>(&[1, 0, 0, 0, 0, 0, 0, 0, 0xff]);
        assert!(
            utf8.starts_with("a string that is not valid UTF-8"),
            "{utf8}"
        );
        assert_eq!(decode_error::<bool>(&[7]), "7 is not a bool (0 or 1)");
        let variant = decode_error::<Option<String>>(&[9]);
        assert!(
            !variant.contains('{') && !variant.contains("Unexpected"),
            "{variant}"
        );

        struct Refuses;
        impl Serialize for Refuses {
            fn serialize<S: serde::Serializer>(
                &self,
                _: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("not today"))
            }
        }
        let e: Error = encode(&(1u8, Refuses)).unwrap_err().into();
        assert!(matches!(&e, Error::Encode(m) if m == "not today"), "{e}");
    }

    #[test]
    fn a_small_input_cannot_claim_a_huge_allocation() {
        // 12 bytes that announce a 1 GiB string, and a vector of a billion u64.
        let mut garbage = (1u64 << 30).to_le_bytes().to_vec();
        garbage.extend_from_slice(b"abcd");
        let t = std::time::Instant::now();
        assert!(decode::<String>(&garbage).is_err());
        assert!(decode::<Vec<u64>>(&(1u64 << 30).to_le_bytes()).is_err());
        assert!(
            t.elapsed() < std::time::Duration::from_millis(100),
            "no gigabyte touched"
        );
        // An honest large value still decodes.
        let big = vec![7u8; SMALL_INPUT + 10];
        assert_eq!(
            decode::<Vec<u8>>(&encode(&big).unwrap()).unwrap().len(),
            big.len()
        );
    }

    #[test]
    fn plain_vectors_take_the_fast_path_and_match_bincode() {
        fn check<P>(v: Vec<P>)
        where
            P: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + Clone,
        {
            let fast = encode(&v).unwrap();
            assert!(plain::as_bytes(&v).is_some());
            let slow = bincode::serde::encode_to_vec(&v, CONFIG).unwrap();
            assert_eq!(fast, slow, "the same bytes as bincode's");
            // Both readers accept both: the fast one, and bincode's through a wrapper type.
            assert_eq!(decode::<Vec<P>>(&slow).unwrap(), v);
            let (wrapped, _): ((Vec<P>,), usize) =
                bincode::serde::decode_from_slice(&fast, CONFIG).unwrap();
            assert_eq!(wrapped.0, v);
        }
        check((0..=255u8).collect());
        check(vec![-1i8, 0, 1]);
        check(vec![1u16, 65535]);
        check(vec![-5i32; 3]);
        check(vec![u64::MAX, 7]);
        check(vec![-1i64]);
        check(vec![1.5f32, -0.0]);
        check(vec![f64::MAX, f64::MIN_POSITIVE]);
        check(Vec::<u8>::new());
        // Plain numbers on their own take the fast path too, with bincode's bytes.
        for x in [0u64, 1, u64::MAX] {
            assert_eq!(
                encode(&x).unwrap(),
                bincode::serde::encode_to_vec(x, CONFIG).unwrap()
            );
            assert_eq!(decode::<u64>(&encode(&x).unwrap()).unwrap(), x);
        }
        assert_eq!(decode::<f64>(&encode(&-2.5f64).unwrap()).unwrap(), -2.5);
        assert_eq!(decode::<i16>(&encode(&-3i16).unwrap()).unwrap(), -3);
        assert!(decode::<u32>(&[1, 2, 3]).is_err(), "too short");
        assert!(decode::<u16>(&[1, 2, 3]).is_err(), "trailing byte");
        // Not plain: strings, tuples, nested vectors go through serde.
        assert!(plain::as_bytes(&vec!["a".to_string()]).is_none());
        assert!(plain::as_bytes(&(vec![1u8],)).is_none());
        assert!(plain::as_bytes(&vec![vec![1u8]]).is_none());
    }

    #[test]
    fn a_plain_vector_cannot_claim_more_than_its_bytes() {
        let mut bytes = 3u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
        assert!(decode::<Vec<u32>>(&bytes).is_err(), "3 u32 need 12 bytes");
        assert!(decode::<Vec<u64>>(&u64::MAX.to_le_bytes()).is_err());
        assert!(decode::<Vec<u8>>(&[1, 0]).is_err(), "a cut length");
        let mut input = &bytes[..];
        assert_eq!(decode_front::<Vec<u8>>(&mut input).unwrap(), vec![1, 2, 3]);
        assert_eq!(input.len(), 8);
    }

    #[test]
    fn truncated_input_is_a_decode_error() {
        let buf = encode(&"hello".to_string()).unwrap();
        let err: Error = decode::<String>(&buf[..3]).unwrap_err().into();
        assert!(matches!(err, Error::Decode(_)), "{err:?}");
    }

    #[test]
    fn trailing_bytes_and_bad_tags_are_decode_errors() {
        let mut buf = encode(&7u32).unwrap();
        buf.push(0);
        assert!(decode::<u32>(&buf).is_err());
        let mut out = Vec::new();
        encode_ok(&5u8, &mut out).unwrap();
        encode_failure(&Failure::Decode("x".into()), &mut out);
        out.push(9);
        let mut input = &out[..];
        assert_eq!(decode_outcome::<u8>(&mut input).unwrap().unwrap(), 5);
        assert!(decode_outcome::<u8>(&mut input).unwrap().is_err());
        assert!(decode_outcome::<u8>(&mut input).is_err());

        // The run of successes stops at the failure, and at most `max`.
        let mut out = Vec::new();
        for x in [1u32, 2, 3] {
            encode_ok(&x, &mut out).unwrap();
        }
        encode_failure(&Failure::Decode("x".into()), &mut out);
        encode_ok(&4u32, &mut out).unwrap();
        let (mut input, mut got) = (&out[..], Vec::new());
        decode_successes::<u32>(&mut input, 2, &mut got);
        assert_eq!(got, [1, 2]);
        decode_successes::<u32>(&mut input, 10, &mut got);
        assert_eq!(got, [1, 2, 3]);
        assert!(decode_outcome::<u32>(&mut input).unwrap().is_err());
        decode_successes::<u32>(&mut input, 10, &mut got);
        assert_eq!(got, [1, 2, 3, 4]);
        assert!(input.is_empty());
        // A value that does not decode stays for the general path.
        let (mut input, mut got) = (&[OUTCOME_OK, 1][..], Vec::new());
        decode_successes::<u32>(&mut input, 1, &mut got);
        assert!(got.is_empty() && input.len() == 2);
        // Values that are not plain numbers stop at the failure the same way.
        let mut out = Vec::new();
        for x in ["a", "bc"] {
            encode_ok(&x.to_string(), &mut out).unwrap();
        }
        encode_failure(&Failure::Decode("x".into()), &mut out);
        let (mut input, mut got) = (&out[..], Vec::<String>::new());
        decode_successes(&mut input, 10, &mut got);
        assert_eq!(got, ["a", "bc"]);
        assert!(decode_outcome::<String>(&mut input).unwrap().is_err());
    }
}
