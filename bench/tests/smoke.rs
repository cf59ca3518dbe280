//! The benchmark harness runs end to end with tiny sizes, so it cannot rot. (Its figures are
//! not checked: timings belong in the report, never in assertions.)

#[test]
fn the_harness_runs_every_scenario() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_crudp-bench"))
        .args(["run", "--quick"])
        .output()
        .expect("the harness starts");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for section in [
        "Creates per second",
        "Bytes on the wire",
        "SSE fan-out",
        "| crudp `/upload/{id}` |",
        "| 10 | crudp |",
        "| 10 | naive |",
        "<!-- targets -->",
        "| generated dispatch ÷ hand-written `match` (interleaved) | ≤ 1.05× |",
        "In-process dispatch",
    ] {
        assert!(report.contains(section), "missing {section:?} in\n{report}");
    }
    assert!(
        !report.contains("NaN") && !report.contains("inf"),
        "a scenario produced no figure:\n{report}"
    );
}
