//! The site's bundle under `/pkg`: hashed names, kept for good, sent
//! precompressed.
//!
//! `cargo xtask build` names the script, module and style sheet after
//! their content (`segment-export.<hash>.js`), lists the hashes in
//! `site/hash.txt`, and writes a brotli and a gzip copy of each. A hashed
//! file never changes, so it is sent with `Cache-Control: immutable` and a
//! year's `max-age`; anything else under `/pkg` (the bindings' snippets, a
//! bundle built without hashes) must be revalidated (`no-cache`). Pages
//! name the current files, and are never cached themselves.

use std::path::{Path, PathBuf};

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tower_http::services::ServeDir;

/// The bundle's file names, as the pages link them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// `site/hash.txt`, when the bundle was built with hashed names.
    pub hash_file: Option<PathBuf>,
    /// The style sheet's address (`/pkg/segment-export.<hash>.css`).
    pub stylesheet: String,
    /// The wasm-bindgen script's address (`/pkg/segment-export.<hash>.js`).
    pub script: String,
    /// The main wasm module's address (`/pkg/segment-export.<hash>.wasm`).
    pub wasm: String,
}

impl Bundle {
    /// Reads `hash.txt` in `site_root`, if there is one.
    pub fn read(site_root: &Path, output_name: &str) -> Bundle {
        let hash_file = site_root.join("hash.txt");
        let hashes = std::fs::read_to_string(&hash_file).unwrap_or_default();
        let hash = |kind: &str| {
            hashes
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim() == kind)
                .map(|(_, hash)| hash.trim().to_owned())
        };
        let name = |kind: &str| match hash(kind) {
            Some(hash) => format!("/pkg/{output_name}.{hash}.{kind}"),
            None => format!("/pkg/{output_name}.{kind}"),
        };
        Bundle {
            // Leptos joins it to the executable's directory; an absolute
            // path stays as it is.
            hash_file: hash("css").map(|_| std::path::absolute(&hash_file).unwrap_or(hash_file)),
            stylesheet: name("css"),
            script: name("js"),
            wasm: name("wasm"),
        }
    }
}

/// `/pkg`, served from `site_root/pkg` with the precompressed copies.
pub fn routes(site_root: &Path) -> Router {
    let files = ServeDir::new(site_root.join("pkg"))
        .precompressed_br()
        .precompressed_gzip();
    Router::new()
        .fallback_service(files)
        .layer(middleware::from_fn(cache_control))
}

async fn cache_control(req: Request, next: Next) -> Response {
    let immutable = is_hashed(req.uri().path());
    let mut res = next.run(req).await;
    if res.status().is_success() || res.status() == axum::http::StatusCode::NOT_MODIFIED {
        let value = if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    }
    res
}

/// Whether a file name carries its content's hash: `name.<16 hex>.ext`.
fn is_hashed(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or("");
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() == 3 && parts[1].len() == 16 && parts[1].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_content_hashed_names_are_immutable() {
        assert!(is_hashed("/segment-export.0123456789abcdef.wasm"));
        assert!(is_hashed("/pkg/segment-export.0123456789abcdef.js"));
        assert!(!is_hashed("/segment-export.wasm"));
        assert!(!is_hashed("/segment-export.js.br"));
        assert!(!is_hashed("/snippets/app-1234/inline0.js"));
        assert!(!is_hashed("/segment-export.0123456789abcdeg.js"));
    }

    #[test]
    fn the_bundles_names_follow_the_hash_file() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let plain = Bundle::read(dir.path(), "site");
        assert_eq!(plain.stylesheet, "/pkg/site.css");
        assert_eq!(
            (plain.script.as_str(), plain.wasm.as_str()),
            ("/pkg/site.js", "/pkg/site.wasm")
        );
        assert_eq!(plain.hash_file, None);
        std::fs::write(
            dir.path().join("hash.txt"),
            "js: 1111111111111111\nwasm: 2222222222222222\ncss: 3333333333333333\n",
        )
        .expect("hash file");
        let hashed = Bundle::read(dir.path(), "site");
        assert_eq!(hashed.stylesheet, "/pkg/site.3333333333333333.css");
        assert_eq!(hashed.script, "/pkg/site.1111111111111111.js");
        assert_eq!(hashed.wasm, "/pkg/site.2222222222222222.wasm");
        assert!(hashed.hash_file.is_some_and(|p| p.is_absolute()));
    }
}
