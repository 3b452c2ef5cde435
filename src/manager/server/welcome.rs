//! The server's side of the handshake (see `auth.rs`): a stranger proves it knows the key, says
//! which version of the protocol it speaks and which executable it runs, and learns that the
//! server knows the key too. Until then it may send only small frames, and only for a while.

use std::time::Instant;

use crate::error::Result;
use crate::manager::auth;
use crate::manager::protocol::{
    Answer, Executable, HANDSHAKE_FRAME, HANDSHAKE_TIMEOUT, VERSION, kind, split_answer,
};
use crate::wire::{Channel, MAX_FRAME, codec};

/// How a client's handshake ended.
pub(super) enum Welcome {
    Refused,
    In(Executable),
}

/// The server's side of the handshake (see `auth`). Until the client has proven it knows the
/// key, it may send only small frames, and must within [`HANDSHAKE_TIMEOUT`]. A client in is
/// told whether it runs this same executable (and so may name functions for the server).
pub(super) fn welcome(chan: &mut Channel, key: &[u8]) -> Result<Welcome> {
    chan.limit_frames(HANDSHAKE_FRAME);
    let mine = auth::challenge()?;
    chan.send(kind::CHALLENGE, &mine)?;
    let frame = chan.recv(Some(Instant::now() + HANDSHAKE_TIMEOUT))?;
    let head = match frame.kind {
        kind::ANSWER => split_answer(frame.payload()),
        _ => None,
    };
    let Some((version, rest)) = head
        .filter(|(_, mac, _)| auth::verify(key, &mine, mac))
        .map(|(version, _, rest)| (version, rest))
    else {
        let _ = chan.send(kind::REFUSED, b"the manager refused the key");
        return Ok(Welcome::Refused);
    };
    if version != VERSION {
        let why = format!(
            "the manager speaks version {VERSION} of the protocol, this program version \
             {version} (built with another release of multiproc)"
        );
        let _ = chan.send(kind::INCOMPATIBLE, why.as_bytes());
        return Ok(Welcome::Refused);
    }
    let answer: Answer = codec::decode(rest)?;
    chan.send(kind::WELCOME, &auth::answer(key, &answer.challenge))?;
    chan.limit_frames(MAX_FRAME);
    Ok(Welcome::In(
        match answer.identity == crate::child::protocol::identity()? {
            true => Executable::Same,
            false => Executable::Foreign,
        },
    ))
}
