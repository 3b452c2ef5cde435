//! The records MPI ranks exchange, and a chunk from rank 0 cut as an agent's pool cuts it. See
//! `multiproc::fuzzing::mpi_records`. Run with `--features mpi`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| multiproc::fuzzing::mpi_records(data));
