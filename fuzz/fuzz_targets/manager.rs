//! A connection to a manager's server, before and after the handshake. See
//! `multiproc::fuzzing::manager`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| multiproc::fuzzing::manager(data));
