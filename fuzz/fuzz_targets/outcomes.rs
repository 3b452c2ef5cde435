//! A RESULTS payload: header, then outcomes decoded as the supervisor does. See
//! `multiproc::fuzzing::outcomes`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| multiproc::fuzzing::outcomes(data));
