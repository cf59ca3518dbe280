//! The example API against its lock file, `examples/api/crudp-api.lock`: a change that would
//! break the front ends already deployed fails here (`cargo xtask api-check` runs this alone).

use crudp::describe::{Description, check_lock};
use example_api::{AttachmentsClient, BoardClient, TodosClient};

#[test]
fn the_example_api_keeps_to_its_lock() {
    // ANCHOR: check
    let api = Description::of(|d| {
        d.module::<TodosClient>()
            .module::<BoardClient>()
            .module::<AttachmentsClient>();
    })
    .unwrap();
    let lock = concat!(env!("CARGO_MANIFEST_DIR"), "/../api/crudp-api.lock");
    if let Err(error) = check_lock(lock, &api) {
        panic!("{error}");
    }
    // ANCHOR_END: check
}
