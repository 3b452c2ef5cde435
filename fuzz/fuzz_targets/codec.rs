//! The codec on typical user types, with a re-encoding check. See `multiproc::fuzzing::codec`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| multiproc::fuzzing::codec(data));
