//! The one place that turns values into bytes and back.
//!
//! bincode 2 (through serde) with its standard configuration was chosen by measuring it against
//! postcard and MessagePack on this crate's payloads: items are encoded one after another into a
//! shared buffer and decoded in the same order, so a codec that appends to a `Vec` and reports how
//! much it consumed is what matters. Swapping codecs means changing only this file.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

const CONFIG: bincode::config::Configuration = bincode::config::standard();

/// Appends the encoding of `value` to `out`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    bincode::serde::encode_into_std_write(value, out, CONFIG)
        .map(|_| ())
        .map_err(|e| Error::Encode(e.to_string()))
}

/// Encodes `value` into a new buffer.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Decodes one value from the front of `input` and advances `input` past it.
pub(crate) fn decode_front<T: DeserializeOwned>(input: &mut &[u8]) -> Result<T> {
    let (value, used) = bincode::serde::decode_from_slice(input, CONFIG)
        .map_err(|e| Error::Decode(e.to_string()))?;
    *input = &input[used..];
    Ok(value)
}

/// Decodes a value that must fill `input` exactly.
pub(crate) fn decode<T: DeserializeOwned>(mut input: &[u8]) -> Result<T> {
    let value = decode_front(&mut input)?;
    if !input.is_empty() {
        return Err(Error::Decode(format!(
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
    fn truncated_input_is_a_decode_error() {
        let buf = encode(&"hello".to_string()).unwrap();
        let err = decode::<String>(&buf[..3]).unwrap_err();
        assert!(matches!(err, Error::Decode(_)), "{err:?}");
    }

    #[test]
    fn trailing_bytes_are_a_decode_error() {
        let mut buf = encode(&7u32).unwrap();
        buf.push(0);
        assert!(matches!(decode::<u32>(&buf), Err(Error::Decode(_))));
    }
}
