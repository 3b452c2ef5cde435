//! A socket stream read frame by frame by the crate's Channel. See `multiproc::fuzzing::frames`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| multiproc::fuzzing::frames(data));
