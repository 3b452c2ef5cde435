//! Everything that touches the bytes on a socket: framing, the codec, descriptor passing.
//!
//! A frame is an 8-byte header — payload length (`u32`, little-endian), a kind byte, the number
//! of file descriptors that travel with it, a flags byte, a zero byte — then the payload. A
//! payload of 128 KiB or more travels as a *bulk* frame (flag 1): the frame carries its
//! length, and its last descriptor is the shared memory that holds it (`bulk.rs`). Descriptors ride
//! as `SCM_RIGHTS` on the header's first byte, so they arrive before the frame can be parsed.
//! Frames larger than [`MAX_FRAME`] or with unknown header bits are errors for that channel.

mod bulk;
pub(crate) mod channel;
pub(crate) mod codec;
pub(crate) mod fds;
pub(crate) mod message;

pub(crate) use channel::{BULK_IDLE, Channel, Frame, Io};

/// Largest payload a frame may carry (1 GiB). Anything larger is refused as malformed.
pub(crate) const MAX_FRAME: usize = 1 << 30;

/// Largest encoding of one value that can travel (a task's argument or result, a pipe
/// message): [`MAX_FRAME`] less room for the headers a message puts around it. A larger value is
/// refused as soon as its size is known (`codec::encode_message`), before it is copied whole.
pub(crate) const MAX_VALUE: usize = MAX_FRAME - 64;

/// Bytes in a frame header.
pub(crate) const HEADER: usize = 8;
