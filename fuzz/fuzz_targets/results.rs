//! See [`crudp_fuzz::checks::results`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| crudp_fuzz::checks::results(data));
