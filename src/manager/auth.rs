//! The handshake that lets a client in: a mutual challenge–response on the manager's key, as
//! CPython's `multiprocessing.connection` does (`deliver_challenge` / `answer_challenge`).
//!
//! Each side sends 32 random bytes; the other answers with their HMAC-SHA256 under the key,
//! and the answer is checked in constant time (`Mac::verify_slice`). The key itself never
//! crosses. The server challenges first, so a client without the key learns nothing of the
//! server's answers; the client then challenges the server, so it never talks to an impostor.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

/// Bytes of a challenge.
pub(crate) const CHALLENGE: usize = 32;

/// The length of an answer (an HMAC-SHA256).
pub(crate) const MAC: usize = 32;

/// A fresh challenge.
pub(crate) fn challenge() -> Result<[u8; CHALLENGE]> {
    let mut bytes = [0u8; CHALLENGE];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Io(std::io::Error::other(format!("no random bytes: {e}"))))?;
    Ok(bytes)
}

/// The answer to `challenge` under `key`.
pub(crate) fn answer(key: &[u8], challenge: &[u8]) -> Vec<u8> {
    mac(key, challenge).finalize().into_bytes().to_vec()
}

/// Whether `answer` is the answer to `challenge` under `key` (in constant time).
pub(crate) fn verify(key: &[u8], challenge: &[u8], answer: &[u8]) -> bool {
    mac(key, challenge).verify_slice(answer).is_ok()
}

fn mac(key: &[u8], challenge: &[u8]) -> Hmac<Sha256> {
    // SHA-256's HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(challenge);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_key_answers_its_challenge() {
        let c = challenge().unwrap();
        assert_ne!(c, challenge().unwrap(), "challenges are fresh");
        let a = answer(b"secret", &c);
        assert!(verify(b"secret", &c, &a));
        assert!(!verify(b"other", &c, &a));
        assert!(!verify(b"secret", &challenge().unwrap(), &a));
        assert!(!verify(b"secret", &c, &a[..31]));
        // RFC 4231, test case 2.
        let expect = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let got: String = answer(b"Jefe", b"what do ya want for nothing?")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, expect);
    }
}
