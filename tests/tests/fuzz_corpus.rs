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

/// The seeds of the decoders speak the current protocol: a seed that no longer decodes would
/// leave the fuzzer starting from the version check alone.
#[test]
fn the_decoders_seeds_decode() {
    use crudp::protocol::{decode_batch, decode_client_results, decode_results};
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let seed = |path: &str| crudp::protocol::Bytes::from(std::fs::read(fuzz.join(path)).unwrap());
    assert_eq!(
        decode_batch(&seed("batch/empty"), 10)
            .unwrap()
            .packets
            .len(),
        0
    );
    let two = decode_batch(&seed("batch/two-packets"), 10).unwrap();
    assert_eq!(
        two.packets.iter().map(|p| p.seq).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(
        decode_results(&seed("results/all-outcomes"), 10)
            .unwrap()
            .results
            .len(),
        5
    );
    let (client, results) = decode_client_results(&seed("results/client-results"), 10).unwrap();
    assert_eq!((client.0, results.results.len()), (9, 5));
    let text = String::from_utf8(std::fs::read(fuzz.join("events/results")).unwrap()).unwrap();
    let (name, data) = text.split_once('\n').unwrap();
    let event = crudp::transport::SseEvent {
        id: None,
        event: Some(name.to_owned()),
        data: data.to_owned(),
    };
    assert!(matches!(event.decode(), Some(Ok(_))), "{event:?}");
}
