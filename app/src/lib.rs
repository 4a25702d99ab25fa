//! The Leptos UI: pages, components and the server functions they call.
//! Server functions only check the caller and call `engine`; everything
//! that touches the server is behind the `ssr` feature.

// Leptos view types nest deeply; the release (wasm) build needs room.
#![recursion_limit = "256"]

pub mod alerts_api;
pub mod audit_api;
pub mod auth;
pub mod components;
pub mod connections_api;
pub mod error;
pub mod exports_api;
pub mod model;
pub mod overview_api;
pub mod pages;
pub mod segments_api;
#[cfg(feature = "ssr")]
pub mod ssr;
pub mod system_api;
pub mod tokens_api;
pub mod users_api;
pub mod warm;

use leptos::lazy;
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{path, Lazy, LazyRoute, SsrMode};

use crate::auth::Auth;
use crate::components::Guarded;
use crate::model::Role;
use crate::pages::{
    api_tokens, audit, connection_new, connections, exports, home, login::LoginPage,
    not_found::NotFound, segments, setup::SetupPage, system, users,
};

/// How a page title reaches the document. On the server `leptos_meta`
/// writes the title into `<head>` as it is, unescaped, and titles carry
/// user text (a segment's or an export's name): escape it there. In the
/// browser the title is set through `document.title`, which takes text.
fn title_formatter() -> impl Fn(String) -> String + Send + Sync + 'static {
    |title| {
        if cfg!(feature = "ssr") {
            escape_html(&title)
        } else {
            title
        }
    }
}

/// `text` with the five characters that mean something in HTML escaped.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The HTML document around the app, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    // The style sheet's name carries its content's hash (see the server's
    // `assets`); the page is rendered only here, so the browser needs no
    // copy of it.
    let plain = format!("/pkg/{}.css", options.output_name);
    #[cfg(feature = "ssr")]
    let stylesheet = use_context::<ssr::AppState>().map_or(plain, |s| s.stylesheet.clone());
    #[cfg(not(feature = "ssr"))]
    let stylesheet = plain;
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <AutoReload options=options.clone()/>
                <Bootstrap options/>
                <link rel="stylesheet" href=stylesheet/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <MetaTags/>
            </head>
            <body class="bg-slate-50 text-slate-900 antialiased">
                <App/>
            </body>
        </html>
    }
}

/// What starts the app in the browser (see [`ssr::bootstrap`]); nothing
/// in the browser's own build, which never renders the document.
#[component]
fn Bootstrap(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    return ssr::bootstrap(options);
    #[cfg(not(feature = "ssr"))]
    drop(options)
}

/// A signed-in page as a route whose view the browser loads lazily, with
/// a module of its own: the main bundle holds only the shell, the router
/// and what every page shares. The server renders it as any other route;
/// on a direct load the page links its modules for preloading and the
/// browser hydrates once they are in (`hydrate_lazy`).
///
/// Pages are grouped: every page of a group goes into the group's one
/// module (`#[lazy(group)]` names the module; all uses of it here share one
/// call site, so one name). A module per page made about 270 small modules
/// of code two or more pages share, a hundred of them per page, and the
/// browser compiled those on every load (too small for its code cache):
/// direct loads took twice as long as with one bundle. With two groups,
/// the pages most people use and the administration pages, a page needs
/// at most three modules.
macro_rules! lazy_page {
    ($route:ident in $group:ident, $module:ident, $min:expr, $page:path) => {
        mod $module {
            use super::*;

            #[lazy($group)]
            pub fn view() -> AnyView {
                #[cfg(feature = "ssr")]
                ssr::preload_page_modules(stringify!($group));
                #[cfg(target_arch = "wasm32")]
                crate::warm::$group();
                view! { <Guarded min=$min page=$page/> }.into_any()
            }
        }

        struct $route;

        impl LazyRoute for $route {
            fn data() -> Self {
                $route
            }

            fn view(_this: Self) -> impl std::future::Future<Output = AnyView> {
                $module::view()
            }

            // Hydration starts once the page's modules are in.
            async fn preload() {
                #[cfg(target_arch = "wasm32")]
                $module::__preload_view().await;
            }
        }
    };
}

lazy_page!(HomeRoute in daily_pages, home_page, Role::Viewer, home::page);
lazy_page!(UsersRoute in admin_pages, users_page, Role::Admin, users::page);
lazy_page!(ConnectionsRoute in admin_pages, connections_page, Role::Admin, connections::page);
lazy_page!(
    ConnectionNewChooseRoute in admin_pages,
    connection_new_choose_page,
    Role::Admin,
    connection_new::choose_page
);
lazy_page!(
    ConnectionNewFormRoute in admin_pages,
    connection_new_form_page,
    Role::Admin,
    connection_new::form_page
);
lazy_page!(SegmentsListRoute in daily_pages, segments_list_page, Role::Viewer, segments::list_page);
lazy_page!(SegmentsNewRoute in daily_pages, segments_new_page, Role::Contributor, segments::new_page);
lazy_page!(
    SegmentsDetailRoute in daily_pages,
    segments_detail_page,
    Role::Viewer,
    segments::detail_page
);
lazy_page!(ExportsListRoute in daily_pages, exports_list_page, Role::Viewer, exports::list_page);
lazy_page!(ExportsNewRoute in daily_pages, exports_new_page, Role::Contributor, exports::new_page);
lazy_page!(
    ExportsDetailRoute in daily_pages,
    exports_detail_page,
    Role::Viewer,
    exports::detail_page
);
lazy_page!(ExportsEditRoute in daily_pages, exports_edit_page, Role::Contributor, exports::edit_page);
lazy_page!(ExportsRunRoute in daily_pages, exports_run_page, Role::Viewer, exports::run_page);
lazy_page!(SystemRoute in admin_pages, system_page, Role::Admin, system::page);
lazy_page!(ApiTokensRoute in admin_pages, api_tokens_page, Role::Admin, api_tokens::page);
lazy_page!(AuditRoute in admin_pages, audit_page, Role::Admin, audit::page);

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    #[cfg(feature = "ssr")]
    ssr::content_security_policy();
    #[cfg(feature = "ssr")]
    ssr::ignore_upstream_prefetches();
    Auth::provide();
    view! {
        <Title text="Segment Export" formatter=title_formatter()/>
        // Pages render once their data is in (`SsrMode::Async`), so a
        // signed-out visitor gets a real 302 to the sign-in page rather
        // than a page that redirects itself.
        <Router>
            <Routes fallback=NotFound>
                <Route path=path!("/") ssr=SsrMode::Async view={Lazy::<HomeRoute>::new()}/>
                <Route path=path!("/login") ssr=SsrMode::Async view=LoginPage/>
                <Route path=path!("/setup") ssr=SsrMode::Async view=SetupPage/>
                <Route path=path!("/admin/users") ssr=SsrMode::Async view={Lazy::<UsersRoute>::new()}/>
                <Route path=path!("/admin/connections") ssr=SsrMode::Async view={Lazy::<ConnectionsRoute>::new()}/>
                <Route path=path!("/admin/connections/new") ssr=SsrMode::Async view={Lazy::<ConnectionNewChooseRoute>::new()}/>
                <Route path=path!("/admin/connections/new/constant-contact") ssr=SsrMode::Async view={Lazy::<ConnectionNewFormRoute>::new()}/>
                <Route path=path!("/data/segments") ssr=SsrMode::Async view={Lazy::<SegmentsListRoute>::new()}/>
                <Route path=path!("/data/segments/new") ssr=SsrMode::Async view={Lazy::<SegmentsNewRoute>::new()}/>
                <Route path=path!("/data/segments/:id") ssr=SsrMode::Async view={Lazy::<SegmentsDetailRoute>::new()}/>
                <Route path=path!("/data/exports") ssr=SsrMode::Async view={Lazy::<ExportsListRoute>::new()}/>
                <Route path=path!("/data/exports/new") ssr=SsrMode::Async view={Lazy::<ExportsNewRoute>::new()}/>
                <Route path=path!("/data/exports/:id") ssr=SsrMode::Async view={Lazy::<ExportsDetailRoute>::new()}/>
                <Route path=path!("/data/exports/:id/edit") ssr=SsrMode::Async view={Lazy::<ExportsEditRoute>::new()}/>
                <Route path=path!("/runs/:id") ssr=SsrMode::Async view={Lazy::<ExportsRunRoute>::new()}/>
                <Route path=path!("/admin/system") ssr=SsrMode::Async view={Lazy::<SystemRoute>::new()}/>
                <Route path=path!("/admin/api-tokens") ssr=SsrMode::Async view={Lazy::<ApiTokensRoute>::new()}/>
                <Route path=path!("/admin/audit") ssr=SsrMode::Async view={Lazy::<AuditRoute>::new()}/>
            </Routes>
        </Router>
    }
}
