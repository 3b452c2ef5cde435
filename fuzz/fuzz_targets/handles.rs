//! A received handle (lock, semaphore, value, array, queue, ...) over arbitrary memory. See
//! `multiproc::fuzzing::handles`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| multiproc::fuzzing::handles(data));
