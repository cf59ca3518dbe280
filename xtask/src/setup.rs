//! Installs what the tests need on a fresh machine, when it is missing.

use std::{env, fs, path::PathBuf, process::Command};

use crate::{WASM_TARGET, run, target_dir, workspace_root};

/// Where Debian's `chromium-driver` puts the driver.
pub(crate) const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program)
        .args(args)
        .current_dir(workspace_root())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The wasm32 target, for the toolchain the repository selects.
pub(crate) fn wasm_target() -> Result<(), String> {
    let installed = output("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if installed.lines().any(|l| l.trim() == WASM_TARGET) {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

/// The `wasm-bindgen` version in `Cargo.lock`; the test runner must match it exactly.
fn wasm_bindgen_version() -> Result<String, String> {
    let lock = fs::read_to_string(workspace_root().join("Cargo.lock"))
        .map_err(|e| format!("cannot read Cargo.lock: {e}"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasm-bindgen\"" {
            let version = lines
                .next()
                .and_then(|l| l.strip_prefix("version = \"")?.strip_suffix('"'));
            return version
                .map(str::to_owned)
                .ok_or_else(|| "Cargo.lock has no wasm-bindgen version".into());
        }
    }
    Err("Cargo.lock has no wasm-bindgen".into())
}

/// `wasm-bindgen-test-runner` at the version of the `wasm-bindgen` crate.
///
/// `cargo install wasm-bindgen-cli --locked` fails on the registry here (its lockfile pins a
/// `webpki-roots` the registry lacks), so the crate it leaves in the cache is installed with
/// that one dependency moved to the previous release.
pub(crate) fn wasm_bindgen_runner() -> Result<(), String> {
    let version = wasm_bindgen_version()?;
    let installed = output("wasm-bindgen-test-runner", &["--version"]).unwrap_or_default();
    if installed.split_whitespace().any(|word| word == version) {
        return Ok(());
    }
    let cli = format!("wasm-bindgen-cli@{version}");
    if run(Command::new("cargo").args(["install", "--locked", &cli])).is_ok() {
        return Ok(());
    }
    eprintln!("xtask: installing {cli} from its cached crate with webpki-roots 1.0.10");
    let home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let name = format!("wasm-bindgen-cli-{version}.crate");
    let cached = fs::read_dir(home.join("registry").join("cache"))
        .map_err(|e| format!("no cargo registry cache: {e}"))?
        .filter_map(Result::ok)
        .map(|registry| registry.path().join(&name))
        .find(|path| path.exists())
        .ok_or_else(|| format!("{name} is not in the cargo cache"))?;
    let scratch = env::temp_dir().join(format!("crudp-wasm-bindgen-cli-{version}"));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).map_err(|e| format!("{e}"))?;
    run(Command::new("tar")
        .arg("xzf")
        .arg(&cached)
        .arg("-C")
        .arg(&scratch))?;
    let source = scratch.join(format!("wasm-bindgen-cli-{version}"));
    run(Command::new("cargo")
        .args(["update", "-p", "webpki-roots", "--precise", "1.0.10"])
        .current_dir(&source))?;
    run(Command::new("cargo")
        .args(["install", "--locked", "--path", "."])
        .current_dir(&source))
}

/// The cargo-fuzz release the fuzz targets are run with.
const CARGO_FUZZ: &str = "cargo-fuzz@0.13.2";

/// Whether a nightly toolchain is installed (cargo-fuzz needs one).
pub(crate) fn nightly() -> bool {
    output("rustup", &["toolchain", "list"])
        .is_some_and(|list| list.lines().any(|l| l.starts_with("nightly")))
}

/// `cargo fuzz`, at [`CARGO_FUZZ`].
pub(crate) fn cargo_fuzz() -> Result<(), String> {
    let version = CARGO_FUZZ.trim_start_matches("cargo-fuzz@");
    let installed = output("cargo", &["fuzz", "--version"]).unwrap_or_default();
    if installed.split_whitespace().any(|word| word == version) {
        return Ok(());
    }
    run(Command::new("cargo").args(["install", "--locked", CARGO_FUZZ]))
}

/// Debian's Chromium and its driver.
pub(crate) fn chromium() -> Result<(), String> {
    if PathBuf::from(CHROMEDRIVER).exists() && output("chromium", &["--version"]).is_some() {
        return Ok(());
    }
    apt(&["chromium", "chromium-driver"])
}

/// Debian's `redis-server`, which the scale-out tests start on free ports of their own.
pub(crate) fn redis() -> Result<(), String> {
    if output("redis-server", &["--version"]).is_some() {
        return Ok(());
    }
    apt(&["redis-server"])
}

/// The binaryen release whose `wasm-opt` optimises the wasm bundles: Debian's is too old to
/// read what current rustc writes, so it comes from npm.
const BINARYEN: &str = "132.0.0";

/// `wasm-opt`, installed from npm's `binaryen` package under the target directory on first use.
pub(crate) fn wasm_opt() -> Result<PathBuf, String> {
    let dir = target_dir()
        .join("tools")
        .join(format!("binaryen-{BINARYEN}"));
    let bin = dir.join("node_modules").join(".bin").join("wasm-opt");
    if bin.exists() {
        return Ok(bin);
    }
    if output("npm", &["--version"]).is_none() {
        apt(&["npm"])?;
    }
    run(Command::new("npm")
        .args([
            "install",
            "--no-save",
            "--no-audit",
            "--no-fund",
            "--prefix",
        ])
        .arg(&dir)
        .arg(format!("binaryen@{BINARYEN}")))?;
    Ok(bin)
}

/// Installs Debian `packages`, as root.
fn apt(packages: &[&str]) -> Result<(), String> {
    let root = output("id", &["-u"]).is_some_and(|uid| uid.trim() == "0");
    if !root {
        return Err(format!(
            "missing: run `apt-get update && apt-get install -y {}` as root",
            packages.join(" ")
        ));
    }
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get")
        .args(["install", "-y"])
        .args(packages))
}
