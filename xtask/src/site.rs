//! The site: the wasm bundle (split into the main module and the pages'
//! lazily loaded modules), the style sheet, content-hashed names and
//! precompressed copies, in `target/site/pkg`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::{cargo, npm_bin, root, site_root, step, target_dir, OUTPUT_NAME, WASM_TARGET};

/// The split modules' loader, under the name Leptos links when the
/// bundle's hash file names none (`HydrationScripts`): the name the split
/// and `wasm-bindgen` write, which `fingerprint` replaces.
const SPLIT_LINK: &str = "__wasm_split.______________________.js";

/// V8's compile hint (Chromium 136 and later; other browsers read a
/// comment): compile every function of the script when the script is
/// compiled, so that the browser's code cache, written after the first
/// run, holds them all. Without it the cache holds only the code that ran
/// at the top level, and every new tab compiled the glue's functions
/// again, one by one as the wasm first called them (138 functions, 16–20
/// ms of the page's thread a load on a two-core machine, against 41 and
/// about 7 ms with it).
const COMPILE_ALL: &str = "//# allFunctionsCalledOnLoad\n";

/// The most modules one lazily loaded page may need (its group's and the
/// chunks the groups share); two groups need two.
const MAX_MODULES_PER_PAGE: usize = 4;

pub(crate) fn build_site() -> Result<()> {
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

    // The pages (`lazy_page!`: `#[lazy(group)]`) go into a module per
    // group, loaded when a page of the group is first opened, with chunks
    // for what the groups share; what is left is the main module.
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
    // Each module a page needs is one more for the browser to compile and
    // instantiate before the page answers; small ones miss its code cache.
    // A module per page made a hundred per page and doubled direct loads.
    for (group, modules) in &split.prefetch_map {
        anyhow::ensure!(
            modules.len() <= MAX_MODULES_PER_PAGE,
            "the pages of `{group}` need {} wasm modules (at most {MAX_MODULES_PER_PAGE}): \
             group pages with `lazy_page!` rather than giving each its own module",
            modules.len()
        );
    }

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

    // Every module is optimised: the main one, each group of pages' and
    // the chunks the groups share (a few: see `lazy_page!` in the app).
    // With `SITE_WASM_NAMES` set, the modules keep their functions' names,
    // for a browser profile that reads them (about half as large again).
    let names = std::env::var_os("SITE_WASM_NAMES").is_some();
    for module in std::iter::once(final_wasm).chain(split.split_modules.iter().cloned()) {
        step(
            &format!("wasm-opt -Oz {}", module.display()),
            Command::new(npm_bin("wasm-opt"))
                .arg("-Oz")
                .args(names.then_some("-g"))
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

    fingerprint(&pkg, &site_root().join("hash.txt"))?;

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
/// a page links for preloading. The loader is named in `fingerprint`,
/// with the main script it imports.
fn name_split_modules(
    pkg: &Path,
    modules: &[PathBuf],
    manifest: &std::collections::HashMap<String, Vec<String>>,
) -> Result<()> {
    let link = pkg.join(SPLIT_LINK);
    let mut loader = std::fs::read_to_string(&link)
        .with_context(|| format!("reading the split modules' loader {}", link.display()))?;
    let mut names = std::collections::HashMap::new();
    for module in modules {
        let stem = module
            .file_stem()
            .and_then(|s| s.to_str())
            .context("a split module without a name")?
            .to_owned();
        let bytes =
            std::fs::read(module).with_context(|| format!("reading {}", module.display()))?;
        let hashed = format!("{stem}.{}", content_hash(&bytes));
        std::fs::rename(module, pkg.join(format!("{hashed}.wasm")))
            .with_context(|| format!("renaming {}", module.display()))?;
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

/// Renames the bundle's script, module and style sheet, and the split
/// modules' loader, after their content (`segment-export.<hash>.js`), so
/// the server can let browsers keep them for good, and writes the hashes
/// to `site/hash.txt` in the form Leptos reads (`js: <hash>`). Every
/// script, module and style sheet under `pkg` then gets a brotli (`.br`)
/// and a gzip (`.gz`) copy, at the best levels, which the server sends
/// instead of compressing on the fly.
fn fingerprint(pkg: &Path, hash_file: &Path) -> Result<()> {
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
    // The split modules' loader and the main script import each other, so
    // neither can be named after its final content. The loader is named
    // after both as they are before either names the other: whatever
    // changes in one changes the loader's name, the main script imports
    // it by that name (and so is named after it), and the loader then
    // imports the main script by the script's name. Both are immutable.
    let link = pkg.join(SPLIT_LINK);
    let loader = format!("{COMPILE_ALL}{}", std::fs::read_to_string(&link)?);
    let script_path = pkg.join(format!("{OUTPUT_NAME}.js"));
    let script = format!("{COMPILE_ALL}{}", std::fs::read_to_string(&script_path)?);
    let loader_hash = content_hash(format!("{loader}\n{script}").as_bytes());
    let loader_name = format!("__wasm_split.{loader_hash}.js");
    // Only the script's imports: the keys of the module's import object
    // are the names the wasm module imports from, and stay.
    let imported = format!("from \"./{SPLIT_LINK}\"");
    anyhow::ensure!(
        script.contains(&imported),
        "the main script does not import the split modules' loader ({imported})"
    );
    std::fs::write(
        &script_path,
        script.replace(&imported, &format!("from \"./{loader_name}\"")),
    )?;

    let mut manifest = String::new();
    let mut js_hash = String::new();
    for kind in ["js", "wasm", "css"] {
        let plain = pkg.join(format!("{OUTPUT_NAME}.{kind}"));
        let bytes =
            std::fs::read(&plain).with_context(|| format!("reading {}", plain.display()))?;
        let hash = content_hash(&bytes);
        std::fs::rename(&plain, pkg.join(format!("{OUTPUT_NAME}.{hash}.{kind}")))?;
        manifest.push_str(&format!("{kind}: {hash}\n"));
        if kind == "js" {
            js_hash = hash;
        }
    }
    // Leptos links the loader by this line (`split`).
    manifest.push_str(&format!("split: {loader_hash}\n"));
    std::fs::write(hash_file, manifest)?;
    let plain = format!("\"/pkg/{OUTPUT_NAME}.js\"");
    anyhow::ensure!(
        loader.contains(&plain),
        "the split modules' loader does not import {plain}"
    );
    std::fs::write(
        pkg.join(&loader_name),
        loader.replace(&plain, &format!("\"/pkg/{OUTPUT_NAME}.{js_hash}.js\"")),
    )?;
    std::fs::remove_file(&link)?;
    compress_tree(pkg)
}

/// The first 16 hex digits of a file's SHA-256: the part of a hashed
/// name (`name.<hash>.ext`) that changes with its content.
fn content_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly by design
    use super::*;

    /// A bundle as `wasm-bindgen` and the split leave it: the main script
    /// imports the loader (and names it in the module's import object),
    /// the loader imports the main script.
    fn built(dir: &Path, script_extra: &str) {
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
        write(
            &format!("{OUTPUT_NAME}.js"),
            &format!(
                "import * as import1 from \"./{SPLIT_LINK}\"\n\
                 const imports = {{ \"./{SPLIT_LINK}\": import1 }};\n{script_extra}"
            ),
        );
        write(&format!("{OUTPUT_NAME}.wasm"), "\0asm");
        write(&format!("{OUTPUT_NAME}.css"), "body{}");
        write(
            SPLIT_LINK,
            &format!("import {{ initSync }} from \"/pkg/{OUTPUT_NAME}.js\";\n"),
        );
    }

    /// Such a bundle, fingerprinted: its directory, its `pkg` and the
    /// hashes `hash.txt` lists.
    fn fingerprinted(
        script_extra: &str,
    ) -> (
        tempfile::TempDir,
        PathBuf,
        std::collections::HashMap<String, String>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (pkg, hash_file) = (dir.path().join("pkg"), dir.path().join("hash.txt"));
        std::fs::create_dir_all(&pkg).unwrap();
        built(&pkg, script_extra);
        fingerprint(&pkg, &hash_file).unwrap();
        let hashes = std::fs::read_to_string(hash_file)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        (dir, pkg, hashes)
    }

    #[test]
    fn the_loader_and_the_main_script_are_named_after_their_content() {
        let (_dir, pkg, h) = fingerprinted("");
        let (js, split) = (&h["js"], &h["split"]);

        let script = std::fs::read(pkg.join(format!("{OUTPUT_NAME}.{js}.js"))).unwrap();
        assert_eq!(&content_hash(&script), js);
        let script = String::from_utf8(script).unwrap();
        assert!(script.starts_with(COMPILE_ALL));
        assert!(script.contains(&format!("from \"./__wasm_split.{split}.js\"")));
        // The wasm module imports from the placeholder name: it stays.
        assert!(script.contains(&format!("\"./{SPLIT_LINK}\": import1")));
        let loader = std::fs::read_to_string(pkg.join(format!("__wasm_split.{split}.js"))).unwrap();
        assert!(loader.starts_with(COMPILE_ALL));
        assert!(loader.contains(&format!("from \"/pkg/{OUTPUT_NAME}.{js}.js\"")));
        assert!(!pkg.join(SPLIT_LINK).exists());
        assert!(pkg.join(format!("__wasm_split.{split}.js.br")).exists());

        // A change to the main script alone renames the loader too, so a
        // name never stands for two contents.
        let (_other, _, h2) = fingerprinted("// changed\n");
        assert_ne!(&h2["split"], split);
        assert_ne!(&h2["js"], js);
        assert_eq!(h2["wasm"], h["wasm"]);
    }
}
