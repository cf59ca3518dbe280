//! `cargo xtask bench`: runs the benchmarks side by side and writes `BENCHMARKS.md`.

use std::{fs, path::Path, process::Command};

use crate::{WASM_TARGET, bindgen, cargo, front_ends, setup, target_dir, workspace_root};

/// The marker lines around the targets' rows in the output of `crudp-bench run`.
const TARGETS_START: &str = "<!-- targets -->";
const TARGETS_END: &str = "<!-- /targets -->";

/// How the wasm is optimised after the build.
const WASM_OPT: &str = "`wasm-opt -Oz`, `tracing` compiled out";

/// The standard output of `command`, or why it failed.
fn capture(command: &mut Command) -> Result<String, String> {
    command.current_dir(workspace_root());
    eprintln!("xtask: running {command:?}");
    let output = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn gzipped(path: &Path) -> Result<usize, String> {
    let output = Command::new("gzip")
        .args(["-9", "-c"])
        .arg(path)
        .output()
        .map_err(|e| format!("gzip: {e}"))?;
    Ok(output.stdout.len())
}

/// Gzipped bytes of a wasm-bindgen output directory: (wasm, JS).
fn bundle(dir: &Path) -> Result<(usize, usize), String> {
    Ok((
        gzipped(&dir.join("app_bg.wasm"))?,
        gzipped(&dir.join("app.js"))?,
    ))
}

/// The wasm-size app without and with the client, through wasm-bindgen.
fn probe(features: &[&str], name: &str) -> Result<(usize, usize), String> {
    let mut args = vec![
        "build",
        "--locked",
        "--profile",
        "wasm-release",
        "--target",
        WASM_TARGET,
        "-p",
        "wasm-size",
    ];
    args.extend(features);
    cargo(&args)?;
    let out = target_dir().join("wasm-size").join(name);
    bindgen("wasm_size.wasm", &out)?;
    bundle(&out)
}

pub(crate) fn all() -> Result<(), String> {
    setup::wasm_target()?;
    setup::wasm_bindgen_runner()?;
    cargo(&[
        "build",
        "--locked",
        "--release",
        "-p",
        "crudp-bench",
        "--features",
        "peers",
    ])?;
    let output =
        capture(Command::new(target_dir().join("release").join("crudp-bench")).arg("run"))?;
    // Kept, so that a later step that fails does not lose the run's figures.
    let _ = fs::write(target_dir().join("crudp-bench-run.md"), &output);
    // The targets' rows come first, between two marker lines; the report follows.
    let (targets, report) = output
        .split_once(TARGETS_END)
        .ok_or("crudp-bench printed no targets")?;
    let report = report.trim();
    let targets = targets
        .trim_start()
        .trim_start_matches(TARGETS_START)
        .trim_start();

    let empty = probe(&[], "empty")?;
    let client = probe(&["--features", "client"], "client")?;
    let dist = front_ends()?;
    let (leptos, yew) = (bundle(&dist.join("leptos"))?, bundle(&dist.join("yew"))?);
    let sizes = format!(
        "| app | wasm gz | JS gz | total gz |\n|---|---:|---:|---:|\n\
         | empty wasm-bindgen app | {} | {} | {} |\n\
         | the same + `crudp-client` + one module | {} | {} | {} |\n\
         | **added by CRUDP** | **{}** | **{}** | **{}** |\n\
         | Leptos demo front end | {} | {} | {} |\n\
         | Yew demo front end | {} | {} | {} |\n",
        empty.0,
        empty.1,
        empty.0 + empty.1,
        client.0,
        client.1,
        client.0 + client.1,
        client.0 - empty.0,
        client.1 - empty.1,
        client.0 + client.1 - empty.0 - empty.1,
        leptos.0,
        leptos.1,
        leptos.0 + leptos.1,
        yew.0,
        yew.1,
        yew.0 + yew.1,
    );

    let machine = capture(Command::new("uname").args(["-srm"]))?
        .trim()
        .to_owned();
    let cores = capture(&mut Command::new("nproc"))?.trim().to_owned();
    let memory = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_owned())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or("?".to_owned(), |kb| format!("{} GiB", kb / (1 << 20)));
    let rustc = capture(Command::new("rustc").arg("-V"))?.trim().to_owned();
    let date = capture(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))?
        .trim()
        .to_owned();
    let notes =
        fs::read_to_string(workspace_root().join("bench").join("NOTES.md")).unwrap_or_default();
    let added = client.0 + client.1 - empty.0 - empty.1;
    let goal = 50_000;
    let wasm = format!(
        "| gzipped wasm + JS added to an empty app by `crudp-client` and one module | ≤ {:.1} KB | {:.1} KB | {} |\n",
        goal as f64 / 1000.0,
        added as f64 / 1000.0,
        if added <= goal { "met" } else { "**missed**" }
    );

    let text = format!(
        "# Benchmarks\n\nWritten by `cargo xtask bench` on {date}: {machine}, {cores} cores, {memory}, {rustc}. \
         Everything in one run on one machine; servers and clients share its cores.\n\n\
         ## The targets, read from this run's figures\n\n\
         | figure | target | this run | verdict |\n|---|---:|---:|---|\n{targets}{wasm}\n\
         ## The figures\n\n{report}\n\n\
         ### Wasm size (release, `opt-level = \"z\"`, LTO, {WASM_OPT}; gzip -9, bytes)\n\n{sizes}\n{notes}"
    );
    fs::write(workspace_root().join("BENCHMARKS.md"), text)
        .map_err(|e| format!("cannot write BENCHMARKS.md: {e}"))?;
    eprintln!("xtask: BENCHMARKS.md written");
    Ok(())
}
