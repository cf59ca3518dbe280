//! The fuzz targets' checks (`fuzz/src/checks.rs`) on their seed corpus and on every input
//! that once failed (`fuzz/regressions/`), on the stable toolchain, in the normal suite.

#![cfg(not(target_arch = "wasm32"))]

#[path = "../../fuzz/src/checks.rs"]
#[expect(
    unreachable_pub,
    reason = "the fuzz crate's public API, included here as a module"
)]
mod checks;

use std::path::PathBuf;

/// Runs `check` on every file under `fuzz/{corpus,regressions}/<target>/`; how many.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut inputs = 0;
    for kind in ["corpus", "regressions"] {
        let Ok(files) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        for file in files {
            let path = file.unwrap().path();
            check(&std::fs::read(&path).unwrap());
            inputs += 1;
        }
    }
    inputs
}

#[test]
fn every_seed_and_every_input_that_once_failed_passes_its_check() {
    for (target, check, seeds) in [
        ("batch", checks::batch as fn(&[u8]), 2),
        ("results", checks::results, 2),
        ("token", checks::token, 2),
        ("events", checks::events, 4),
    ] {
        assert!(
            replay(target, check) >= seeds,
            "{target}: its seeds are there"
        );
    }
}
