//! `cargo xtask run|build|test`: the README's commands.
//!
//! xtask does what cargo-leptos does for a build, without the 15–20
//! minutes of installing it (see ../shared/TOOLCHAIN.md): the wasm bundle
//! (cargo, then wasm-bindgen through `wasm-bindgen-cli-support` at the
//! workspace's pinned version, then `wasm-opt` from npm's binaryen), the
//! CSS (Tailwind v4 CLI from npm), then the server. `cargo leptos watch`
//! keeps working from the `[[workspace.metadata.leptos]]` block.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

const OUTPUT_NAME: &str = "segment-export";
const WASM_TARGET: &str = "wasm32-unknown-unknown";

const USAGE: &str = "usage: cargo xtask <command>

commands:
  run           build everything (release) and serve http://127.0.0.1:3000
  build         build the site and the server (add --release for release)
  test          fmt, clippy, Rust tests on SQLite (and PostgreSQL when
                TEST_POSTGRES_URL is set), then Playwright in Chromium
  e2e           only the Playwright suite (builds first)
  setup         install what the build needs (wasm target, npm packages)
  bench [--profiles N] [--database postgres://…]
                the export benchmark against the sandbox (default 1,000,000
                profiles); writes target/bench/export.json
  bench --faults [RUNS]
                full resends under faults; writes target/bench/faults.json
  bench --http-users N [--seconds S]
                N signed-in users reloading pages while an export runs;
                p50/p95/p99 into target/bench/http.json";

mod bench;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(),
        Some("build") => build(args.iter().any(|a| a == "--release")).map(|_| ()),
        Some("test") => test(),
        Some("e2e") => build(false).and_then(|server| end_to_end(&server)),
        Some("setup") => setup(),
        Some("bench") => bench::bench(&args[1..]),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask's parent directory). `cargo run` sets
/// `CARGO_MANIFEST_DIR` at run time too, which stays right when a cached
/// xtask binary serves another checkout.
fn root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root().join(p) })
        .unwrap_or_else(|| root().join("target"))
}

fn site_root() -> PathBuf {
    target_dir().join("site")
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| String::from("cargo")));
    c.current_dir(root());
    c
}

fn npm_bin(name: &str) -> PathBuf {
    root().join("node_modules").join(".bin").join(name)
}

/// Runs a command, failing with its description if it fails.
fn step(what: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("\n==> {what}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start: {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn setup() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup is needed to add the wasm32 target")?;
    if !String::from_utf8_lossy(&installed.stdout).contains(WASM_TARGET) {
        step(
            "adding the wasm32 target",
            Command::new("rustup").args(["target", "add", WASM_TARGET]),
        )?;
    }
    let needed = ["tailwindcss", "wasm-opt", "playwright"];
    if needed.iter().any(|b| !npm_bin(b).exists()) {
        step(
            "installing npm packages (Tailwind, binaryen, Playwright)",
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(root()),
        )?;
    }
    Ok(())
}

/// Builds the wasm bundle and CSS into `target/site/pkg`, then the server.
/// Returns the server binary.
fn build(release: bool) -> Result<PathBuf> {
    setup()?;
    build_site()?;
    build_server(release)
}

/// The split modules' loader, under the name Leptos links when the
/// bundle's hash file names none (`HydrationScripts`).
const SPLIT_LINK: &str = "__wasm_split.______________________.js";

fn build_site() -> Result<()> {
    let pkg = site_root().join("pkg");
    std::fs::create_dir_all(&pkg)?;

    // The bundle is always built with the size-optimised profile: it is
    // what users download, and what the end-to-end tests exercise.
    step(
        "building the wasm bundle",
        cargo().args([
            "build",
            "--package",
            "frontend",
            "--lib",
            "--target",
            WASM_TARGET,
            "--profile",
            "wasm-release",
        ]),
    )?;
    let wasm = target_dir()
        .join(WASM_TARGET)
        .join("wasm-release")
        .join("frontend.wasm");

    // The pages (`#[lazy_route]`) go into modules of their own, loaded
    // when a page is first opened; what is left is the main module.
    eprintln!("\n==> splitting the lazily loaded pages out");
    for entry in std::fs::read_dir(&pkg)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("split_")
            || name.starts_with("chunk_")
            || name.starts_with("__wasm_split")
        {
            std::fs::remove_file(&path)?;
        }
    }
    let main_module = target_dir().join("wasm-split").join("frontend.wasm");
    std::fs::create_dir_all(main_module.parent().context("no parent")?)?;
    let input = std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let (link_name, main_script) = (format!("./{SPLIT_LINK}"), format!("/pkg/{OUTPUT_NAME}.js"));
    let split = wasm_split_cli_support::transform({
        let mut opts = wasm_split_cli_support::Options::new(&input);
        opts.output_dir = &pkg;
        opts.main_out_path = &main_module;
        opts.link_name = &link_name;
        opts.main_module = &main_script;
        opts
    })
    .map_err(|e| anyhow::anyhow!("splitting the wasm bundle failed: {e:?}"))?;

    eprintln!("\n==> wasm-bindgen");
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&main_module)
        .out_name(OUTPUT_NAME)
        // The split modules' loader takes the function table from the
        // main module's exports.
        .keep_lld_exports(true)
        .web(true)?
        .typescript(false)
        .generate(&pkg)
        .context("wasm-bindgen failed")?;
    // cargo-leptos names the module `<name>.wasm`; leptos loads that name.
    let bg = pkg.join(format!("{OUTPUT_NAME}_bg.wasm"));
    let final_wasm = pkg.join(format!("{OUTPUT_NAME}.wasm"));
    std::fs::rename(&bg, &final_wasm)?;

    // The main module and each page's module are optimised; the small
    // chunks the pages share (some hundreds, a few KB each) only lose
    // their function names, which takes minutes less.
    let pages = split
        .split_modules
        .iter()
        .filter(|m| {
            m.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("split_"))
        })
        .cloned();
    for chunk in split.split_modules.iter().filter(|m| {
        m.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("chunk_"))
    }) {
        let bytes = std::fs::read(chunk)?;
        std::fs::write(chunk, without_names(&bytes)?)?;
    }
    for module in std::iter::once(final_wasm).chain(pages) {
        step(
            &format!("wasm-opt -Oz {}", module.display()),
            Command::new(npm_bin("wasm-opt"))
                .arg("-Oz")
                .arg("--enable-bulk-memory")
                .arg("--enable-nontrapping-float-to-int")
                .arg("--enable-sign-ext")
                .arg("--enable-mutable-globals")
                .arg("--enable-reference-types")
                .arg(&module)
                .arg("-o")
                .arg(&module),
        )?;
    }
    name_split_modules(&pkg, &split.split_modules, &split.prefetch_map)?;

    step(
        "Tailwind CSS",
        Command::new(npm_bin("tailwindcss"))
            .current_dir(root())
            .arg("--input")
            .arg(root().join("style").join("tailwind.css"))
            .arg("--output")
            .arg(pkg.join(format!("{OUTPUT_NAME}.css")))
            .arg("--minify"),
    )?;

    fingerprint(&pkg)?;

    // Static assets (favicon) go to the site root, as cargo-leptos does.
    let public = root().join("public");
    if public.is_dir() {
        for entry in std::fs::read_dir(&public)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::copy(entry.path(), site_root().join(entry.file_name()))?;
            }
        }
    }
    Ok(())
}

/// Renames each split module after its content (`chunk_3.<hash>.wasm`),
/// so the server can let browsers keep it for good, and writes the new
/// names into the loader (which fetches them) and into the manifest
/// Leptos reads to preload a page's modules. The loader itself keeps its
/// fixed name: it and the main script import each other, so one of the
/// two cannot carry its content's hash, and it is small.
fn name_split_modules(
    pkg: &Path,
    modules: &[PathBuf],
    manifest: &std::collections::HashMap<String, Vec<String>>,
) -> Result<()> {
    use sha2::Digest;
    let link = pkg.join(SPLIT_LINK);
    let mut loader = std::fs::read_to_string(&link)?;
    let mut names = std::collections::HashMap::new();
    for module in modules {
        let stem = module
            .file_stem()
            .and_then(|s| s.to_str())
            .context("a split module without a name")?
            .to_owned();
        let bytes = std::fs::read(module)?;
        let digest = sha2::Sha256::digest(&bytes);
        let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let hashed = format!("{stem}.{hash}");
        std::fs::rename(module, pkg.join(format!("{hashed}.wasm")))?;
        let quoted = format!("\"./{stem}.wasm\"");
        anyhow::ensure!(
            loader.contains(&quoted),
            "the split modules' loader does not fetch {quoted}"
        );
        loader = loader.replace(&quoted, &format!("\"./{hashed}.wasm\""));
        names.insert(stem, hashed);
    }
    std::fs::write(&link, loader)?;
    let manifest: std::collections::HashMap<&String, Vec<&String>> = manifest
        .iter()
        .map(|(split, modules)| {
            let renamed = modules.iter().map(|m| names.get(m).unwrap_or(m)).collect();
            (split, renamed)
        })
        .collect();
    std::fs::write(
        pkg.join("__wasm_split_manifest.json"),
        serde_json::to_string_pretty(&manifest)?,
    )?;
    Ok(())
}

/// A wasm module without its custom sections of names and debugging
/// information (`name`, `.debug_*`): what `wasm-opt` would drop too.
fn without_names(module: &[u8]) -> Result<Vec<u8>> {
    fn leb(bytes: &[u8], at: &mut usize) -> Result<usize> {
        let (mut value, mut shift) = (0usize, 0);
        loop {
            let byte = *bytes.get(*at).context("truncated wasm module")?;
            *at += 1;
            value |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
        }
    }
    anyhow::ensure!(module.starts_with(b"\0asm"), "not a wasm module");
    let mut out = module[..8].to_vec();
    let mut at = 8;
    while at < module.len() {
        let start = at;
        let id = module[at];
        at += 1;
        let size = leb(module, &mut at)?;
        let end = at + size;
        anyhow::ensure!(end <= module.len(), "truncated wasm module");
        let dropped = id == 0 && {
            let mut name_at = at;
            let len = leb(module, &mut name_at)?;
            let name = module.get(name_at..name_at + len).unwrap_or_default();
            name == b"name" || name.starts_with(b".debug")
        };
        if !dropped {
            out.extend_from_slice(&module[start..end]);
        }
        at = end;
    }
    Ok(out)
}

/// Renames the bundle's script, module and style sheet after their
/// content (`segment-export.<hash>.js`), so the server can let browsers
/// keep them for good, and writes the hashes to `site/hash.txt` in the
/// form Leptos reads (`js: <hash>`). Every script, module and style sheet
/// under `pkg` then gets a brotli (`.br`) and a gzip (`.gz`) copy, at the
/// best levels, which the server sends instead of compressing on the fly.
fn fingerprint(pkg: &Path) -> Result<()> {
    use sha2::Digest;
    // What earlier builds left: every other file under the bundle's name
    // (older hashed names and their compressed copies).
    let fresh = ["js", "wasm", "css"].map(|kind| format!("{OUTPUT_NAME}.{kind}"));
    for entry in std::fs::read_dir(pkg)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_file()
            && name.starts_with(&format!("{OUTPUT_NAME}."))
            && !fresh.iter().any(|f| f == name)
        {
            std::fs::remove_file(&path)?;
        }
    }
    let mut manifest = String::new();
    for kind in ["js", "wasm", "css"] {
        let plain = pkg.join(format!("{OUTPUT_NAME}.{kind}"));
        let bytes =
            std::fs::read(&plain).with_context(|| format!("reading {}", plain.display()))?;
        let digest = sha2::Sha256::digest(&bytes);
        let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        std::fs::rename(&plain, pkg.join(format!("{OUTPUT_NAME}.{hash}.{kind}")))?;
        manifest.push_str(&format!("{kind}: {hash}\n"));
    }
    std::fs::write(site_root().join("hash.txt"), manifest)?;
    // The split modules' loader imports the main script: by its new name.
    let link = pkg.join(SPLIT_LINK);
    if link.is_file() {
        let js_hash = std::fs::read_to_string(site_root().join("hash.txt"))?
            .lines()
            .find_map(|l| l.strip_prefix("js: ").map(str::to_owned))
            .context("no script hash")?;
        let text = std::fs::read_to_string(&link)?;
        let plain = format!("\"/pkg/{OUTPUT_NAME}.js\"");
        anyhow::ensure!(
            text.contains(&plain),
            "the split modules' loader does not import {plain}"
        );
        std::fs::write(
            &link,
            text.replace(&plain, &format!("\"/pkg/{OUTPUT_NAME}.{js_hash}.js\"")),
        )?;
    }
    compress_tree(pkg)
}

/// Writes `.br` and `.gz` beside every script, module and style sheet
/// under `dir`.
fn compress_tree(dir: &Path) -> Result<()> {
    use std::io::Write;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            compress_tree(&path)?;
            continue;
        }
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("js" | "wasm" | "css")
        ) {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        let with = |ext: &str| {
            let mut name = path.as_os_str().to_owned();
            name.push(ext);
            PathBuf::from(name)
        };
        let mut br = Vec::new();
        brotli::BrotliCompress(
            &mut bytes.as_slice(),
            &mut br,
            &brotli::enc::BrotliEncoderParams {
                quality: 11,
                lgwin: 22,
                ..Default::default()
            },
        )?;
        std::fs::write(with(".br"), br)?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&bytes)?;
        std::fs::write(with(".gz"), gz.finish()?)?;
    }
    Ok(())
}

fn build_server(release: bool) -> Result<PathBuf> {
    let mut cmd = cargo();
    // The Constant Contact sandbox is built alongside: `run` starts it.
    cmd.args(["build", "--package", "server", "--package", "sandbox"]);
    if release {
        cmd.arg("--release");
    }
    step(
        "building the server and the Constant Contact sandbox",
        &mut cmd,
    )?;
    let profile = if release { "release" } else { "debug" };
    Ok(target_dir().join(profile).join("server"))
}

/// Kills the child when dropped, so the sandbox never outlives `run`.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run() -> Result<()> {
    let server = build(true)?;
    let sandbox_bin = server.with_file_name("sandbox");
    let sandbox_port = std::env::var("SANDBOX_PORT").unwrap_or_else(|_| String::from("3030"));
    let _sandbox = KillOnDrop(
        Command::new(&sandbox_bin)
            .current_dir(root())
            .env("SANDBOX_PORT", &sandbox_port)
            .spawn()
            .context("could not start the Constant Contact sandbox")?,
    );
    eprintln!("\n==> Constant Contact sandbox on http://127.0.0.1:{sandbox_port} (sign in there as demo@example.com / demo-password)");
    eprintln!("==> serving on http://127.0.0.1:3000 (Ctrl-C stops)");
    // The app talks to the sandbox as its Constant Contact, with the
    // sandbox's demo client (unless the environment says otherwise).
    let mut cmd = Command::new(server);
    cmd.current_dir(root()).env("LEPTOS_SITE_ROOT", site_root());
    // A newcomer sees data: a small demo set on the first start.
    if std::env::var_os("DEMO_PROFILES_ON_EMPTY").is_none() {
        cmd.env("DEMO_PROFILES_ON_EMPTY", "2000");
    }
    if std::env::var_os("CC_CLIENT_ID").is_none() {
        cmd.env("CC_CLIENT_ID", "segment-export-demo")
            .env("CC_CLIENT_SECRET", "demo-client-secret")
            .env("CC_SANDBOX_URL", format!("http://127.0.0.1:{sandbox_port}"));
    }
    let status = cmd.status()?;
    if !status.success() {
        bail!("the server stopped with {status}");
    }
    Ok(())
}

fn test() -> Result<()> {
    setup()?;
    step(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    step(
        "clippy (server side)",
        cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]),
    )?;
    step(
        "clippy (browser side, wasm32)",
        cargo().args([
            "clippy",
            "--package",
            "frontend",
            "--target",
            WASM_TARGET,
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step("Rust tests on SQLite", cargo().args(["test"]))?;
    match std::env::var("TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => {
            // The tests that touch the database, again on PostgreSQL.
            step(
                "engine database tests on PostgreSQL",
                cargo()
                    .args([
                        "test",
                        "--package",
                        "engine",
                        "--lib",
                        "--test",
                        "users",
                        "--test",
                        "connections",
                        "--test",
                        "profiles",
                        "--test",
                        "segments",
                        "--test",
                        "exports",
                        "--test",
                        "resume",
                        "--test",
                        "stops",
                    ])
                    .env("TEST_DATABASE", "postgres"),
            )?;
            step(
                "server tests on PostgreSQL",
                cargo()
                    .args(["test", "--package", "server"])
                    .env("TEST_DATABASE", "postgres"),
            )?;
        }
        _ => eprintln!("\n==> TEST_POSTGRES_URL is not set: PostgreSQL tests skipped"),
    }
    build_site()?;
    // `cargo test` above built the server binary (the server's own tests
    // run it), with the test run's feature set; building it again with
    // `cargo build` would recompile much of the tree for other features.
    let server = target_dir().join("debug").join("server");
    let server = if server.exists() {
        server
    } else {
        build_server(false)?
    };
    end_to_end(&server)
}

/// Playwright in Chromium against a freshly built server with an empty
/// database of its own.
fn end_to_end(server: &Path) -> Result<()> {
    let data = std::env::temp_dir().join(format!("segment-export-e2e-{}", std::process::id()));
    if data.exists() {
        std::fs::remove_dir_all(&data)?;
    }
    std::fs::create_dir_all(&data)?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let sandbox_port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let results = root().join("end2end").join("test-results");
    let status = Command::new(npm_bin("playwright"))
        .current_dir(root().join("end2end"))
        .args(["test", "--config", "playwright.config.ts"])
        .env("BASE_URL", format!("http://127.0.0.1:{port}"))
        .env("SERVER_BIN", server)
        .env("SERVER_PORT", port.to_string())
        .env("SERVER_DATA_DIR", &data)
        .env("SANDBOX_BIN", server.with_file_name("sandbox"))
        .env("SANDBOX_PORT", sandbox_port.to_string())
        .env("LEPTOS_SITE_ROOT", site_root())
        .status()
        .context("could not start Playwright")?;
    let _ = std::fs::remove_dir_all(&data);
    print_e2e_summary(&results.join("results.json"));
    if !status.success() {
        bail!("end-to-end tests failed");
    }
    Ok(())
}

/// Prints a plain `N passed, N failed` line from Playwright's JSON report.
fn print_e2e_summary(report: &Path) {
    let stats = std::fs::read_to_string(report)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v.get("stats").cloned());
    let Some(stats) = stats else {
        eprintln!("end-to-end: no report found at {}", report.display());
        return;
    };
    let n = |k: &str| {
        stats
            .get(k)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    let passed = n("expected") + n("flaky");
    let failed = n("unexpected");
    println!(
        "end-to-end: {passed} passed, {failed} failed, {} skipped",
        n("skipped")
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly by design
    use super::*;

    /// A module with a type section and three custom sections: names,
    /// debugging information, and something else.
    fn module() -> Vec<u8> {
        let custom = |name: &str, body: &[u8]| {
            let mut payload = vec![name.len() as u8];
            payload.extend_from_slice(name.as_bytes());
            payload.extend_from_slice(body);
            let mut section = vec![0, payload.len() as u8];
            section.extend(payload);
            section
        };
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend(custom("name", b"\x01\x02ab"));
        m.extend([1, 4, 1, 0x60, 0, 0]);
        m.extend(custom(".debug_info", b"xyz"));
        m.extend(custom("producers", b"kept"));
        m
    }

    #[test]
    fn names_and_debugging_information_are_dropped_and_the_rest_kept() {
        let stripped = without_names(&module()).unwrap();
        let mut expected = b"\0asm\x01\0\0\0".to_vec();
        expected.extend([1, 4, 1, 0x60, 0, 0]);
        expected.extend([0, 14, 9]);
        expected.extend(b"producerskept");
        assert_eq!(stripped, expected);
        assert!(without_names(b"not wasm").is_err());
        assert!(without_names(&module()[..12]).is_err());
    }
}
