//! See [`crudp_fuzz::checks::batch`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| crudp_fuzz::checks::batch(data));
