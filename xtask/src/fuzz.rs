//! `cargo xtask fuzz [SECONDS]`: each fuzz target of `fuzz/` (cargo-fuzz, nightly toolchain)
//! for SECONDS (default 300), starting from its seed corpus; prints the executions each ran
//! and fails on the first crash, naming the input that caused it. Inputs the fuzzer finds go to
//! `target/fuzz-corpus/`, never into the committed seeds.

use std::{fs, process::Command};

use crate::{setup, target_dir, workspace_root};

/// The fuzz targets, in `fuzz/fuzz_targets/`.
const TARGETS: [&str; 4] = ["batch", "results", "token", "events"];

/// Runs every target for `seconds`; `false` if there is no nightly toolchain to run them.
pub(crate) fn run(seconds: u64) -> Result<bool, String> {
    if !setup::nightly() {
        return Ok(false);
    }
    setup::cargo_fuzz()?;
    let fuzz = workspace_root().join("fuzz");
    for target in TARGETS {
        let found = target_dir().join("fuzz-corpus").join(target);
        fs::create_dir_all(&found).map_err(|e| format!("{e}"))?;
        eprintln!("xtask: fuzzing `{target}` for {seconds} s");
        let output = Command::new("cargo")
            .args(["+nightly", "fuzz", "run", "--fuzz-dir"])
            .arg(&fuzz)
            .arg("--target-dir")
            .arg(target_dir().join("fuzz"))
            .arg(target)
            .arg(&found)
            .arg(fuzz.join("corpus").join(target))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .current_dir(&fuzz)
            .output()
            .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
        let log = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let crash = log
                .lines()
                .find(|l| l.contains("Test unit written to"))
                .unwrap_or("no input was written");
            return Err(format!(
                "fuzz target `{target}` failed ({crash}); add the input to \
                 fuzz/regressions/{target}/ once fixed:\n{}",
                log.lines().rev().take(40).collect::<Vec<_>>().join("\n")
            ));
        }
        let runs = log
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("Done ").and_then(|l| l.split(' ').next()))
            .unwrap_or("?");
        eprintln!("xtask: `{target}`: {runs} executions, no crash");
    }
    Ok(true)
}
