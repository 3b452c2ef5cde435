//! A RESULTS payload: header, then outcomes decoded one after another. See
//! `multiproc::fuzzing::outcomes`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| multiproc::fuzzing::outcomes(data));
