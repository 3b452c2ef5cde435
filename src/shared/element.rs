//! The element types of `Value` and `Array`: Python's typecodes as Rust types.
//!
//! Each element is stored as an atomic of its own width, so reading memory that another
//! process may be writing is never undefined behaviour, with or without the lock. Types with
//! invalid bit patterns (`bool`, `char`) are decoded leniently: any non-zero byte is `true`, an
//! invalid scalar value is U+FFFD.

use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering::Relaxed};

mod sealed {
    pub trait Sealed {}
}

/// A plain-old-data type that `Value` and `Array` can hold: `i8`…`i64`, `u8`…`u64`, `f32`,
/// `f64`, `bool`, `char` (Python's typecodes `b B h H i I q Q f d ?` and `u`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an element of a shared `Value` or `Array`",
    label = "not one of the element types",
    note = "elements are plain numbers, `bool` or `char` (Python's typecodes): `i8`…`i64`, `u8`…`u64`, `f32`, `f64`, `bool`, `char`",
    note = "for other data, use a `Queue`, a `Pipe`, or `SharedMemory` with your own layout"
)]
pub trait Element:
    Copy + Default + Send + Sync + std::fmt::Debug + 'static + sealed::Sealed
{
    /// The atomic that stores one element.
    #[doc(hidden)]
    type Atomic: Send + Sync;
    /// Identifies the type in a segment received from another process.
    #[doc(hidden)]
    const TAG: u32;
    /// Reads an element.
    #[doc(hidden)]
    fn load(slot: &Self::Atomic) -> Self;
    /// Writes an element.
    #[doc(hidden)]
    fn store(slot: &Self::Atomic, value: Self);
}

macro_rules! element {
    ($t:ty, $atomic:ty, $tag:expr, |$v:ident| $to:expr, |$b:ident| $from:expr) => {
        impl sealed::Sealed for $t {}
        impl Element for $t {
            type Atomic = $atomic;
            const TAG: u32 = $tag;
            #[inline]
            fn load(slot: &Self::Atomic) -> Self {
                let $b = slot.load(Relaxed);
                $from
            }
            #[inline]
            fn store(slot: &Self::Atomic, $v: Self) {
                slot.store($to, Relaxed)
            }
        }
    };
}

element!(u8, AtomicU8, 0x101, |v| v, |b| b);
element!(i8, AtomicU8, 0x102, |v| v as u8, |b| b as i8);
element!(bool, AtomicU8, 0x103, |v| v as u8, |b| b != 0);
element!(u16, AtomicU16, 0x201, |v| v, |b| b);
element!(i16, AtomicU16, 0x202, |v| v as u16, |b| b as i16);
element!(u32, AtomicU32, 0x401, |v| v, |b| b);
element!(i32, AtomicU32, 0x402, |v| v as u32, |b| b as i32);
element!(f32, AtomicU32, 0x403, |v| v.to_bits(), |b| f32::from_bits(
    b
));
element!(char, AtomicU32, 0x404, |v| v as u32, |b| char::from_u32(b)
    .unwrap_or(char::REPLACEMENT_CHARACTER));
element!(u64, AtomicU64, 0x801, |v| v, |b| b);
element!(i64, AtomicU64, 0x802, |v| v as u64, |b| b as i64);
element!(f64, AtomicU64, 0x803, |v| v.to_bits(), |b| f64::from_bits(
    b
));
