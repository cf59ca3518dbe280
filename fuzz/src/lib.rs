//! CRUDP's fuzz targets, for cargo-fuzz: `cargo xtask fuzz` runs each for a while.

pub mod checks;
