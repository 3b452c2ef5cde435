//! A received Queue whose shared memory, size and side socket another process wrote. See
//! `multiproc::fuzzing::queue`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| multiproc::fuzzing::queue(data));
