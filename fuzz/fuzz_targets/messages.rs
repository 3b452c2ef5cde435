//! One frame as the handshake (Hello, Ready, Refuse) and the task/result headers read it. See
//! `multiproc::fuzzing::messages`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| multiproc::fuzzing::messages(data));
