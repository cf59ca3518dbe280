//! See [`crudp_fuzz::checks::events`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| crudp_fuzz::checks::events(data));
