//! `cargo xtask bench`: runs the benchmarks side by side and writes `BENCHMARKS.md`.

use std::{fs, path::Path, process::Command};

use crate::{WASM_TARGET, bindgen, cargo, front_ends, setup, target_dir, workspace_root};

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

fn dispatch() -> Result<String, String> {
    let output = capture(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args([
            "bench",
            "--locked",
            "-p",
            "crudp-bench",
            "--bench",
            "dispatch",
            "--",
            "--output-format",
            "bencher",
        ]),
    )?;
    let mut rows = Vec::new();
    for line in output.lines().filter(|l| l.starts_with("test ")) {
        let name = line
            .trim_start_matches("test ")
            .split(" ... ")
            .next()
            .unwrap_or_default()
            .to_owned();
        let ns: f64 = line
            .split("bench:")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(|n| n.replace(',', ""))
            .and_then(|n| n.parse().ok())
            .unwrap_or(f64::NAN);
        let spread = line
            .split("(+/-")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .unwrap_or("?")
            .trim()
            .to_owned();
        rows.push((name, ns, spread));
    }
    let find = |suffix: &str| {
        rows.iter()
            .find(|r| r.0.ends_with(suffix))
            .map_or(f64::NAN, |r| r.1)
    };
    let mut table =
        String::from("| dispatch of one `create` | ns per call | ± |\n|---|---:|---:|\n");
    for (name, ns, spread) in &rows {
        table.push_str(&format!("| {name} | {ns:.0} | {spread} |\n"));
    }
    table.push_str(&format!(
        "\nGenerated ÷ hand-written: **{:.3}×**\n",
        find("generated") / find("hand-written")
    ));
    Ok(table)
}

pub(crate) fn all() -> Result<(), String> {
    setup::wasm_target()?;
    setup::wasm_bindgen_runner()?;
    cargo(&["build", "--locked", "--release", "-p", "crudp-bench"])?;
    let report =
        capture(Command::new(target_dir().join("release").join("crudp-bench")).arg("run"))?;
    let dispatch = dispatch()?;

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

    let text = format!(
        "# Benchmarks\n\nWritten by `cargo xtask bench` on {date}: {machine}, {cores} cores, {memory}, {rustc}. \
         Everything in one run on one machine; servers and clients share its cores.\n\n\
         {report}\n### In-process dispatch (criterion)\n\n{dispatch}\n\
         ### Wasm size (release, `opt-level = \"z\"`, LTO, no wasm-opt; gzip -9, bytes)\n\n{sizes}\n{notes}"
    );
    fs::write(workspace_root().join("BENCHMARKS.md"), text)
        .map_err(|e| format!("cannot write BENCHMARKS.md: {e}"))?;
    eprintln!("xtask: BENCHMARKS.md written");
    Ok(())
}
