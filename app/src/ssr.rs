//! Server-side helpers for server functions: the shared state, the caller,
//! and the one-line role check.
//!
//! Everything a server function needs from the Leptos context is taken in
//! [`call`], synchronously, before its first `.await`: during server-side
//! rendering, a resource's future may be polled outside the reactive owner
//! that holds the context.

use engine::users::{self, User};
use engine::Db;
use leptos::prelude::*;
use leptos_axum::ResponseOptions;
use tower_sessions::Session;

use crate::error::AppError;

pub use engine::sessions::{SIGNED_IN_AT_KEY, USER_ID_KEY};
/// A one-time message for the connections page (set by the OAuth callback).
pub const CONNECTIONS_FLASH_KEY: &str = "connections_flash";

/// What every server function can reach, provided by the server.
#[derive(Clone, Debug)]
pub struct AppState {
    pub db: Db,
    /// Seals OAuth tokens at rest.
    pub cipher: engine::crypto::Cipher,
    /// The Constant Contact application, if configured.
    pub cc: Option<engine::connect::CcApp>,
    /// The most profiles one export run may send.
    pub max_profiles_per_run: u64,
    /// The accounts' lists and custom fields, kept for a minute.
    pub accounts: engine::account_cache::AccountCache,
    /// The style sheet's address, with its content hash.
    pub stylesheet: String,
    /// The wasm-bindgen script's address, with its content hash.
    pub script: String,
    /// The main wasm module's address, with its content hash.
    pub wasm: String,
}

/// One server function call: the state, the request's session and the
/// response to set a status on.
pub struct Call {
    /// Missing only outside a request: when the route list is generated at
    /// start, the app is rendered once and its resources call server
    /// functions with no request behind them. [`Call::run`] then answers
    /// with an error without running the body.
    state: Option<AppState>,
    session: Option<Session>,
    response: Option<ResponseOptions>,
    /// The client's address as the socket saw it.
    client: Option<std::net::IpAddr>,
}

/// Takes the call's context. Call it first thing, before any `.await`.
pub fn call() -> Call {
    let parts = use_context::<http::request::Parts>();
    let client = parts.as_ref().and_then(|p| {
        p.extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip())
    });
    Call {
        state: use_context::<AppState>(),
        session: parts.and_then(|p| p.extensions.get::<Session>().cloned()),
        response: use_context::<ResponseOptions>(),
        client,
    }
}

impl Call {
    /// The application state. Only reachable from a body run by
    /// [`Call::run`], which has checked it is there.
    pub fn state(&self) -> &AppState {
        match &self.state {
            Some(s) => s,
            None => unreachable!("Call::run checks the state before running the body"),
        }
    }

    pub fn db(&self) -> &Db {
        &self.state().db
    }

    pub fn session(&self) -> Result<&Session, AppError> {
        self.session.as_ref().ok_or_else(|| {
            tracing::error!("no session on the request: is the session layer installed?");
            AppError::Internal
        })
    }

    /// The client's address, as a key for sign-in attempts.
    pub fn client(&self) -> String {
        self.client
            .map_or_else(|| String::from("unknown"), |ip| ip.to_string())
    }

    /// The signed-in user, if any. A deactivated user, or a session from
    /// before a deactivation, counts as signed out.
    pub async fn current_user(&self) -> Result<Option<User>, AppError> {
        Ok(signed_in_user(self.db(), self.session()?).await?)
    }

    /// The signed-in caller, if `policy` (an [`engine::policy`] action)
    /// allows them; 401 when signed out, 403 when refused.
    pub async fn allowed(
        &self,
        policy: impl FnOnce(&User) -> engine::Result<()>,
    ) -> Result<User, AppError> {
        let user = self
            .current_user()
            .await?
            .ok_or(AppError::Unauthenticated)?;
        policy(&user)?;
        Ok(user)
    }

    /// Starts a signed-in session for `user_id` under a new session id, so
    /// an id planted before sign-in is worthless after it.
    pub async fn start_session(&self, user_id: engine::UserId) -> Result<(), AppError> {
        let session = self.session()?;
        session.cycle_id().await.map_err(session_error)?;
        session
            .insert(USER_ID_KEY, user_id)
            .await
            .map_err(session_error)?;
        session
            .insert(SIGNED_IN_AT_KEY, engine::time::now_ms())
            .await
            .map_err(session_error)?;
        Ok(())
    }

    /// Runs a server function body and answers errors with their HTTP status.
    pub async fn run<T>(
        &self,
        body: impl std::future::Future<Output = Result<T, AppError>>,
    ) -> Result<T, AppError> {
        if self.state.is_none() {
            tracing::debug!("server function called outside a request");
            return Err(AppError::Internal);
        }
        let result = body.await;
        if let (Err(e), Some(res)) = (&result, &self.response) {
            if let Ok(status) = http::StatusCode::from_u16(e.status()) {
                res.set_status(status);
            }
        }
        result
    }
}

/// The user a session is signed in as, if it still may act for them; for
/// server functions and plain routes alike.
pub async fn signed_in_user(db: &Db, session: &Session) -> Result<Option<User>, engine::Error> {
    let read = |e: tower_sessions::session::Error| engine::Error::internal(e);
    let id: Option<i64> = session.get(USER_ID_KEY).await.map_err(read)?;
    let Some(id) = id else { return Ok(None) };
    let at: i64 = session
        .get(SIGNED_IN_AT_KEY)
        .await
        .map_err(read)?
        .unwrap_or(0);
    users::session_user(db, engine::UserId(id), at).await
}

fn session_error(e: tower_sessions::session::Error) -> AppError {
    tracing::error!(error = %e, "session store failed");
    AppError::Internal
}

/// The Content-Security-Policy of a rendered page: only our own scripts,
/// and inline ones only with this response's nonce (the hydration script
/// and the resources serialised into the page carry it). Styles may be
/// inline (progress bars set a width), scripts never. Everything that is
/// not a page gets the server's stricter default.
pub fn content_security_policy() {
    let (Some(nonce), Some(response)) =
        (leptos::nonce::use_nonce(), use_context::<ResponseOptions>())
    else {
        return;
    };
    let policy = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    if let Ok(value) = http::HeaderValue::from_str(&policy) {
        response.insert_header(http::header::CONTENT_SECURITY_POLICY, value);
    }
}

/// Defines `__wasm_early(href)`, which starts fetching and compiling a
/// wasm module as soon as the document's head is read, and
/// `__wasm_take(href)`, the compiled module (a promise), for the start-up
/// script to instantiate. The split loader asks for a page's modules later
/// and one at a time (the chunk, then the group, after the main module
/// has started and the router has found the page), each with `fetch` and
/// `WebAssembly.instantiateStreaming`: for a module compiled early, that
/// `fetch` answers with a token and `instantiateStreaming` instantiates
/// the module already compiled. So every module a page needs is compiled
/// at once, on the browser's other threads, while the document is still
/// being read; if an early compile fails, the module is fetched and
/// compiled again the usual way.
///
/// Not `<link rel="preload">`: Chromium hands a preloaded response to
/// `WebAssembly.instantiateStreaming` without its compiled-code cache, so
/// a module fetched that way is compiled again in every new tab (2,300
/// functions, 40 ms of a segment page's load); fetched with `fetch()` and
/// compiled with `WebAssembly.compileStreaming` it comes from the cache
/// once the browser has kept it.
const EARLY_WASM: &str = r#"(() => {
  const fetchNow = self.fetch, early = new Map(), EARLY = Symbol();
  // (A browser without the streaming calls reads the whole response first.)
  const bytes = async (response) => (await response).arrayBuffer();
  const compile = WebAssembly.compileStreaming
    ?? (async (response) => WebAssembly.compile(await bytes(response)));
  const instantiateNow = WebAssembly.instantiateStreaming
    ?? (async (response, imports) => WebAssembly.instantiate(await bytes(response), imports));
  const key = (input) => typeof input === "string" ? new URL(input, location.href).href
    : input instanceof URL ? input.href : "";
  self.__wasm_early = (href) => {
    const k = key(href);
    if (!early.has(k)) {
      const module = compile(fetchNow(k));
      module.catch(() => {});
      early.set(k, module);
    }
  };
  self.__wasm_take = (href) => {
    const k = key(href);
    self.__wasm_early(k);
    const module = early.get(k);
    early.delete(k);
    return module.catch(() => fetchNow(k));
  };
  self.fetch = function (input, init) {
    const k = init === undefined ? key(input) : "";
    const module = early.get(k);
    if (module === undefined) return fetchNow.apply(this, arguments);
    early.delete(k);
    return Promise.resolve({ [EARLY]: module, href: k });
  };
  WebAssembly.instantiateStreaming = async function (source, imports, options) {
    const response = await source;
    if (response?.[EARLY] === undefined) return instantiateNow.call(this, response, imports, options);
    let module;
    try {
      module = await response[EARLY];
    } catch {
      return instantiateNow.call(this, fetchNow(response.href), imports, options);
    }
    return { module, instance: await WebAssembly.instantiate(module, imports) };
  };
})();
"#;

/// The document's start-up scripts, in place of Leptos's
/// `HydrationScripts`: the same module script (import the wasm-bindgen
/// script, instantiate the main module, hydrate), with the script linked
/// for preloading and the main module fetched and compiled early by
/// [`EARLY_WASM`] rather than linked with `<link rel="preload">`.
pub fn bootstrap(options: LeptosOptions) -> impl IntoView {
    // Leptos's component reads the split manifest and gives it to the
    // page (the lazily loaded routes and `preload_page_modules` read it);
    // its markup is replaced by the one below.
    let _ = leptos::prelude::HydrationScripts(
        leptos::prelude::HydrationScriptsProps::builder()
            .options(options.clone())
            .build(),
    );
    let (script, wasm) = use_context::<AppState>().map_or_else(
        || {
            let name = &options.output_name;
            (format!("/pkg/{name}.js"), format!("/pkg/{name}.wasm"))
        },
        |state| (state.script.clone(), state.wasm.clone()),
    );
    let nonce = leptos::nonce::use_nonce();
    let early = format!("{EARLY_WASM}__wasm_early({wasm:?});");
    let start = format!(
        "import init, {{ hydrate }} from {script:?};\ninit({{ module_or_path: __wasm_take({wasm:?}) }}).then(hydrate);"
    );
    view! {
        <link rel="modulepreload" href=script/>
        <script nonce=nonce.clone()>{early}</script>
        <script type="module" nonce=nonce>{start}</script>
    }
}

/// Starts fetching the modules a lazily loaded page (`lazy_page!`) needs
/// (with `__wasm_early`, see [`EARLY_WASM`]), for the browser to have
/// them beside the main bundle instead of after it: its group's module and
/// the modules that one imports, from the split manifest the site build
/// writes (`__wasm_split_manifest.json`, read by `HydrationScripts` in
/// [`bootstrap`]), and links the loader script.
///
/// Leptos links them itself only when the request's task happens to run
/// with the page's reactive owner current (`leptos_integration_utils`
/// reads its contexts outside any owner), which left about one direct
/// load in four without them; so the page links its own modules, here,
/// while its owner is current, and `App` gives Leptos's list a stand-in
/// (`ignore_upstream_prefetches`) so that nothing is linked twice.
pub fn preload_page_modules(group: &str) {
    use leptos_meta::Link;

    let Some(manifest) = use_context::<leptos::WasmSplitManifest>() else {
        return;
    };
    let Some(manifest) = manifest.0.try_read_value() else {
        return;
    };
    let (pkg, pages, loader) = &*manifest;
    // `#[lazy(group)]` names the module `<group>_<hash of the call site>`.
    let key = format!("{group}_");
    let Some(modules) = pages
        .iter()
        .find(|(page, _)| page.starts_with(&key))
        .map(|(_, modules)| modules)
    else {
        return;
    };
    // A leptos_meta tag rendered to HTML on the server registers itself
    // with the page's head instead of returning markup.
    let fetches: String = modules
        .iter()
        .map(|module| format!("self.__wasm_early?.({:?});", format!("{pkg}/{module}.wasm")))
        .collect();
    let _ = view! { <leptos_meta::Script>{fetches}</leptos_meta::Script> }.to_html();
    let _ = view! { <Link rel="modulepreload" href=format!("{pkg}/{loader}")/> }.to_html();
}

/// Leptos's own list of the lazily loaded pages a response renders: a
/// fresh one in the app's root, in place of the one the integration reads
/// (see [`preload_page_modules`]).
pub fn ignore_upstream_prefetches() {
    provide_context(leptos::PrefetchLazyFn::default());
}
