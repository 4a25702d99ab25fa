//! The app shell (header, navigation) and small shared pieces.

use leptos::prelude::*;
use leptos_router::components::{Redirect, A};
use leptos_router::hooks::use_location;

use crate::auth::use_auth;
use crate::error::AppError;
use crate::model::{Role, UserView};

/// A page body, given the signed-in user.
pub type PageFn = fn(UserView) -> AnyView;

/// Renders `page` inside the shell for a signed-in user whose role allows
/// `min`; sends everyone else where they belong. The server functions the
/// page calls check the role again: this only decides what to show.
#[component]
pub fn Guarded(min: Role, page: PageFn) -> impl IntoView {
    let auth = use_auth();
    view! {
        <Transition fallback=|| view! { <p class="p-8 text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match auth.info.await {
                    Ok(info) if info.setup_needed => view! { <Redirect path="/setup"/> }.into_any(),
                    Ok(info) => match info.user {
                        None => view! { <Redirect path="/login"/> }.into_any(),
                        Some(user) if !user.role.allows(min) => view! {
                            <Shell user=user.clone()>
                                <NoAccess/>
                            </Shell>
                        }.into_any(),
                        Some(user) => view! {
                            <Shell user=user.clone()>
                                {page(user)}
                            </Shell>
                        }.into_any(),
                    },
                    Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn NoAccess() -> impl IntoView {
    view! {
        <section class="max-w-xl">
            <h1 class="text-2xl font-semibold">"No access"</h1>
            <p class="mt-2 text-slate-600">
                "You do not have permission to see this page. Ask an administrator if you need access."
            </p>
        </section>
    }
}

/// Header with the product, the user and sign out; navigation grouped
/// like the product's menus; the page in the middle.
#[component]
pub fn Shell(user: UserView, children: Children) -> impl IntoView {
    let auth = use_auth();
    let is_admin = user.role.allows(Role::Admin);
    view! {
        <div class="min-h-screen flex flex-col">
            <header class="bg-slate-900 text-white">
                <div class="px-6 py-3 flex items-center justify-between gap-4">
                    <A href="/" attr:class="text-lg font-semibold tracking-tight">"Segment Export"</A>
                    <div class="flex items-center gap-3 text-sm">
                        <span data-testid="signed-in-user">{user.email.clone()}</span>
                        <span class="rounded bg-slate-700 px-2 py-0.5 text-xs uppercase tracking-wide">
                            {user.role.label()}
                        </span>
                        <ActionForm action=auth.sign_out>
                            <button type="submit" class="rounded border border-slate-500 px-3 py-1 hover:bg-slate-800">
                                "Sign out"
                            </button>
                        </ActionForm>
                    </div>
                </div>
            </header>
            <div class="flex flex-1">
                <nav aria-label="Main" class="w-56 shrink-0 border-r border-slate-200 bg-white px-4 py-6 text-sm">
                    <NavLink href="/" label="Overview"/>
                    <NavGroup title="Data">
                        <NavLink href="/data/segments" label="Segments"/>
                        <NavLink href="/data/exports" label="Exports"/>
                    </NavGroup>
                    <Show when=move || is_admin>
                        <NavGroup title="Admin">
                            <NavLink href="/admin/connections" label="Connections"/>
                            <NavLink href="/admin/users" label="Users"/>
                            <NavLink href="/admin/system" label="System"/>
                            <NavLink href="/admin/audit" label="Audit log"/>
                        </NavGroup>
                    </Show>
                </nav>
                <main class="flex-1 px-8 py-6">{children()}</main>
            </div>
        </div>
    }
}

#[component]
fn NavGroup(title: &'static str, children: Children) -> impl IntoView {
    view! {
        <div class="mt-6">
            <h2 class="px-2 text-xs font-semibold uppercase tracking-wide text-slate-500">{title}</h2>
            <ul class="mt-2 space-y-1">{children()}</ul>
        </div>
    }
}

#[component]
fn NavLink(href: &'static str, label: &'static str) -> impl IntoView {
    let location = use_location();
    // A section's pages (Add connection under Connections) light it too.
    let current = move || {
        let path = location.pathname.get();
        path == href || (href != "/" && path.starts_with(&format!("{href}/")))
    };
    view! {
        <li class="list-none">
            <A
                href=href
                attr:class=move || {
                    if current() {
                        "block rounded px-2 py-1.5 bg-slate-100 font-medium text-slate-900"
                    } else {
                        "block rounded px-2 py-1.5 text-slate-700 hover:bg-slate-50"
                    }
                }
            >
                {label}
            </A>
        </li>
    }
}

/// A form-level error (one that belongs to no single field).
#[component]
pub fn ErrorBanner(error: AppError) -> impl IntoView {
    view! {
        <div role="alert" class="rounded border border-red-300 bg-red-50 px-4 py-3 text-sm text-red-800">
            {error.to_string()}
        </div>
    }
}

/// The error of an action's last result that belongs to `field`.
pub fn field_error<T, S>(
    value: S,
    field: &'static str,
) -> impl Fn() -> Option<String> + Copy + Send + Sync + 'static
where
    S: With<Value = Option<Result<T, AppError>>> + Copy + Send + Sync + 'static,
{
    move || {
        value.with(|v| match v {
            Some(Err(e)) => e.for_field(field),
            _ => None,
        })
    }
}

/// The error of an action's last result that belongs to no field.
pub fn form_error<T, S>(value: S) -> impl Fn() -> Option<AppError> + Copy + Send + Sync + 'static
where
    S: With<Value = Option<Result<T, AppError>>> + Copy + Send + Sync + 'static,
{
    move || {
        value.with(|v| match v {
            Some(Err(AppError::Field { .. })) | Some(Ok(_)) | None => None,
            Some(Err(e)) => Some(e.clone()),
        })
    }
}

/// A labelled input with its error underneath.
#[component]
pub fn Field(
    label: &'static str,
    name: &'static str,
    #[prop(default = "text")] kind: &'static str,
    #[prop(optional)] autocomplete: Option<&'static str>,
    #[prop(optional, into)] hint: Option<String>,
    error: Signal<Option<String>>,
) -> impl IntoView {
    let id = format!("field-{name}");
    let error_id = format!("{id}-error");
    view! {
        <div class="space-y-1">
            <label for=id.clone() class="block text-sm font-medium text-slate-700">{label}</label>
            <input
                id=id
                name=name
                type=kind
                autocomplete=autocomplete
                aria-invalid=move || error.get().is_some().then_some("true")
                aria-describedby=error_id.clone()
                class="block w-full rounded border border-slate-300 px-3 py-2 text-sm focus:border-slate-500 focus:outline-none focus:ring-1 focus:ring-slate-500"
            />
            {hint.map(|h| view! { <p class="text-xs text-slate-500">{h}</p> })}
            <p id=error_id class="text-sm text-red-700">{move || error.get()}</p>
        </div>
    }
}
