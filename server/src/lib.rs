//! The server: configuration, the axum router (Leptos pages and server
//! functions, health), and the command-line subcommands.

pub mod api;
pub mod assets;
pub mod cli;
pub mod config;
mod downloads;
pub mod error;
pub mod health;
mod oauth_callback;
pub mod security;
mod upload;

use std::net::SocketAddr;

use anyhow::Context as _;
use app::ssr::AppState;
use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::middleware;
use axum::routing::get;
use axum::Router;
use engine::secrets::SecretKey;
use engine::Db;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::{Key, SameSite};
use tower_sessions::session_store::ExpiredDeletion;
use tower_sessions::{Expiry, SessionManagerLayer};

pub use config::Config;

/// The name the site bundle is built under (`pkg/segment-export.*`).
pub const OUTPUT_NAME: &str = "segment-export";

/// Opens and migrates the database. A failed migration stops the start.
pub async fn open_database(config: &Config) -> anyhow::Result<Db> {
    let db = Db::connect(&config.database_url).await.with_context(|| {
        format!(
            "could not open the database ({})",
            redact_url(&config.database_url)
        )
    })?;
    db.migrate().await.map_err(|e| match e {
        engine::Error::Migrate(m) => anyhow::anyhow!("database migration failed: {m}"),
        other => anyhow::anyhow!("database migration failed: {other:?}"),
    })?;
    Ok(db)
}

/// The secret key from `SECRET_KEY`, or the one generated into the data
/// directory.
pub fn secret_key(config: &Config) -> anyhow::Result<SecretKey> {
    match &config.secret_key {
        Some(text) => Ok(SecretKey::from_base64(text)?),
        None => Ok(SecretKey::load_or_create(
            &config.data_dir.join("secret.key"),
        )?),
    }
}

/// The whole application as an axum router.
pub async fn router(config: &Config, db: Db) -> anyhow::Result<Router> {
    let key = secret_key(config)?;
    let store = engine::sessions::Store::for_db(&db).await?;
    tokio::spawn(
        store
            .clone()
            .continuously_delete_expired(tokio::time::Duration::from_secs(3600)),
    );
    let sessions = SessionManagerLayer::new(store)
        .with_name("segment_export_session")
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(config.secure_cookies)
        .with_expiry(Expiry::OnInactivity(time::Duration::minutes(
            config.session_inactivity_minutes,
        )))
        .with_signed(Key::from(key.bytes()));

    let bundle = assets::Bundle::read(std::path::Path::new(&config.site_root), OUTPUT_NAME);
    let mut options = LeptosOptions::builder()
        .output_name(OUTPUT_NAME)
        .site_root(config.site_root.as_str())
        .site_pkg_dir("pkg")
        .site_addr(config.addr)
        .build();
    if let Some(hash_file) = &bundle.hash_file {
        options.hash_files = true;
        options.hash_file = hash_file.to_string_lossy().into();
    }
    let state = AppState {
        db: db.clone(),
        cipher: engine::crypto::Cipher::new(&key),
        cc: config.cc_app(),
        max_profiles_per_run: config.max_profiles_per_run,
        accounts: Default::default(),
        stylesheet: bundle.stylesheet.clone(),
        script: bundle.script.clone(),
        wasm: bundle.wasm.clone(),
    };
    let callback_state = state.clone();
    let upload_state = state.clone();
    let download_state = state.clone();
    let api_state = state.clone();
    let context = move || provide_context(state.clone());
    let routes = route_list();
    let origins = security::Origins::new(config.public_url.as_deref(), config.addr)?;
    let limiter = security::PasswordLimiter::default();
    {
        let limiter = limiter.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                limiter.shrink();
            }
        });
    }

    let router = Router::new()
        .route("/health", get(health::health).with_state(db.clone()))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready).with_state(db.clone()))
        .nest("/api/v1", api::routes(api_state))
        .nest_service(
            "/pkg",
            assets::routes(std::path::Path::new(&config.site_root)),
        )
        .route(
            "/data/import/profiles",
            axum::routing::post(upload::import_profiles).with_state(upload_state.clone()),
        )
        .route(
            "/data/import/segment",
            axum::routing::post(upload::import_segment).with_state(upload_state),
        )
        .route(
            "/runs/{id}/errors.csv",
            get(downloads::run_errors_csv).with_state(download_state),
        )
        .route(
            "/oauth/constant-contact/callback",
            get(oauth_callback::callback).with_state(callback_state),
        )
        .leptos_routes_with_context(&options, routes, context.clone(), {
            let options = options.clone();
            move || app::shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler_with_context(
            context,
            app::shell,
        ))
        .with_state(options);
    // Request latency is measured only when metrics are served.
    let router = if config.metrics {
        let metrics = std::sync::Arc::new(health::Metrics::default());
        router
            .route(
                "/metrics",
                get(health::metrics).with_state((db, metrics.clone())),
            )
            .layer(middleware::from_fn_with_state(metrics, health::measure))
    } else {
        router
    };
    let router = router
        .layer(sessions)
        .layer(middleware::from_fn_with_state(
            limiter,
            security::limit_password_attempts,
        ))
        .layer(middleware::from_fn_with_state(
            origins,
            security::same_origin_writes,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<Body>| {
                let path = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_else(|| req.uri().path().to_owned());
                // Never the query string or headers: they may carry secrets.
                tracing::info_span!("request", method = %req.method(), path)
            }),
        );
    // Pages, server-function answers and assets go out compressed (br or
    // gzip, as the browser accepts), at the fastest level: the wasm bundle
    // shrinks to a third, and a page's 90 KB of HTML to a tenth.
    let router = router.layer(
        tower_http::compression::CompressionLayer::new()
            .quality(tower_http::CompressionLevel::Fastest),
    );
    Ok(security::with_headers(router))
}

/// The app's routes, worked out once per process. Working them out runs
/// the whole app with data loading switched off for the whole process
/// (Leptos's `SuppressResourceLoad`): a page being rendered by another
/// router in this process at that moment would wait for its data for
/// ever (leptos-rs/leptos#4773). Tests build many routers in one process.
fn route_list() -> Vec<leptos_axum::AxumRouteListing> {
    static ROUTES: std::sync::OnceLock<Vec<leptos_axum::AxumRouteListing>> =
        std::sync::OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(app::App)).clone()
}

/// What executes runs in this process.
pub fn executor(config: &Config, db: Db) -> anyhow::Result<engine::run::Executor> {
    Ok(engine::run::Executor {
        db,
        cipher: engine::crypto::Cipher::new(&secret_key(config)?),
        app: config.cc_app(),
        worker: engine::worker::process_name(),
        settings: config.run_settings(),
        shutdown: Default::default(),
    })
}

/// Export workers running in the background until the returned sender
/// sends `true`, on [`background_runtime`].
pub fn start_workers(
    config: &Config,
    db: Db,
) -> anyhow::Result<(
    tokio::sync::watch::Sender<bool>,
    Vec<tokio::task::JoinHandle<()>>,
)> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    if config.workers == 0 {
        return Ok((stop, Vec::new()));
    }
    let executor = executor(config, db)?;
    let _background = background_runtime()?.enter();
    let handles = engine::worker::spawn(executor, config.workers, stopped);
    Ok((stop, handles))
}

/// The runtime export runs execute on: threads of their own, which the
/// operating system runs after the ones serving pages (nice 10 on Linux).
/// A run is throughput work measured in seconds; a page is waited for in
/// milliseconds. Sharing the runtime's threads, a full resend on two cores
/// made page requests wait behind its batches (p99 82–89 ms at 50 users,
/// `cargo xtask bench --http-users 50`); when nothing else wants the CPU
/// a run still has all of it. One per process, for its lifetime.
pub fn background_runtime() -> anyhow::Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: std::sync::Mutex<Option<&'static tokio::runtime::Runtime>> =
        std::sync::Mutex::new(None);
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(runtime) = *slot {
        return Ok(runtime);
    }
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("export-runs")
        .on_thread_start(lower_priority)
        .enable_all()
        .build()
        .context("could not start the export runs' threads")?;
    let runtime: &'static tokio::runtime::Runtime = Box::leak(Box::new(runtime));
    *slot = Some(runtime);
    Ok(runtime)
}

/// Gives the calling thread a lower scheduling priority. Only on Linux,
/// where the nice value is per thread (elsewhere it would lower the whole
/// process, pages too). Failing is harmless: the thread runs as before.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(None, 10) {
        tracing::debug!(error = %e, "could not lower an export thread's priority");
    }
}

/// Serves until Ctrl-C (or SIGTERM).
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let db = open_database(&config).await?;
    if config.demo_profiles_on_empty > 0 && engine::profiles::count(&db).await? == 0 {
        tracing::info!(
            profiles = config.demo_profiles_on_empty,
            "empty database: loading demo data"
        );
        engine::demo::generate(&db, config.demo_profiles_on_empty, 42).await?;
    }
    let app = router(&config, db.clone()).await?;
    // The runs get connections of their own, opened on their threads: a
    // SQLite connection runs on a thread of its own, which takes the
    // priority of the thread that opened it, and a PostgreSQL connection's
    // socket is served by the runtime that opened it; with one pool, page
    // queries would also wait on the runs' lower-priority threads.
    let runs_db = if config.workers == 0 {
        db.clone()
    } else {
        let url = config.database_url.clone();
        background_runtime()?
            .spawn(async move { Db::connect(&url).await })
            .await?
            .with_context(|| {
                format!(
                    "could not open the database for the export runs ({})",
                    redact_url(&config.database_url)
                )
            })?
    };
    let (stop_workers, workers) = start_workers(&config, runs_db)?;
    tracing::info!(workers = workers.len(), "export workers started");
    // Every process ticks; one of them fires each scheduled slot.
    tokio::spawn(engine::schedule::run(
        db.clone(),
        std::time::Duration::from_secs(20),
        stop_workers.subscribe(),
    ));
    // Every process raises and delivers alerts; each goes out once.
    tokio::spawn(engine::alerts::run(
        db,
        engine::crypto::Cipher::new(&secret_key(&config)?),
        engine::alerts::Settings::default(),
        stop_workers.subscribe(),
    ));
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("could not listen on {}", config.addr))?;
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!("Segment Export is listening on http://{addr}");
    // Answers go out as soon as they are written (no Nagle delay waiting
    // for the client's delayed ACK between a response's writes).
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    // A run in progress stops at its next safe point, writes what it
    // settled and gives its lease up: another worker (or the next start)
    // resumes it at once from its checkpoint.
    let _ = stop_workers.send(true);
    let stopped = futures_util::future::join_all(workers);
    if tokio::time::timeout(std::time::Duration::from_secs(30), stopped)
        .await
        .is_err()
    {
        tracing::warn!("export workers did not stop within 30 s");
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}

/// A database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
