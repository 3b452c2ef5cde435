//! A received pipe Connection reading a stream of user messages. See `multiproc::fuzzing::pipe`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| multiproc::fuzzing::pipe(data));
