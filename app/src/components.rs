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

/// Renders `children` only in the browser, once the page has hydrated;
/// the server, and the browser while it hydrates, render `fallback`.
///
/// For parts of a page that create resources of their own inside the
/// page's `Suspense`. On the server Leptos runs a `Suspend` body more than
/// once while it waits (each run creating its resources again), so a
/// resource created there gets a different number on the server than in
/// the browser, the browser reads another resource's data, renders
/// something else and hydration fails. A page's own resources (created
/// once per run of the route's body, in the same order) are safe; the
/// ones nested below them go here.
#[component]
pub fn AfterHydration(
    #[prop(optional, into)] fallback: ViewFn,
    children: ChildrenFn,
) -> impl IntoView {
    let hydrated = RwSignal::new(false);
    // Effects run only in the browser, after hydration.
    Effect::new(move |_| hydrated.set(true));
    move || {
        if hydrated.get() {
            children().into_any()
        } else {
            fallback.run().into_any()
        }
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
/// like the product's menus; the page in the middle. On a narrow screen
/// the navigation folds behind a Menu button and nothing is wider than
/// the screen (wide tables scroll inside themselves).
#[component]
pub fn Shell(user: UserView, children: Children) -> impl IntoView {
    let is_admin = user.role.allows(Role::Admin);
    let menu_open = RwSignal::new(false);
    // A link followed closes the menu.
    let location = use_location();
    Effect::new(move |_| {
        location.pathname.track();
        menu_open.set(false);
    });
    view! {
        <a href="#main" class="sr-only focus:not-sr-only focus:absolute focus:left-2 focus:top-2 focus:z-10 focus:rounded focus:bg-white focus:px-3 focus:py-2 focus:text-slate-900">
            "Skip to content"
        </a>
        <div class="min-h-screen flex flex-col">
            <TopBar user menu_open/>
            <div class="flex flex-1 flex-col md:flex-row">
                <MainNav is_admin menu_open/>
                <main id="main" tabindex="-1" class="min-w-0 flex-1 px-4 py-6 md:px-8">{children()}</main>
            </div>
        </div>
    }
}

/// The product, the Menu button (narrow screens), the user and sign out.
#[component]
fn TopBar(user: UserView, menu_open: RwSignal<bool>) -> impl IntoView {
    let auth = use_auth();
    view! {
        <header class="bg-slate-900 text-white">
            <div class="px-4 py-3 flex flex-wrap items-center justify-between gap-x-4 gap-y-2 md:px-6">
                <div class="flex items-center gap-3">
                    <button type="button" class="rounded border border-slate-500 px-2 py-1 text-sm md:hidden"
                        aria-controls="main-navigation"
                        aria-expanded=move || if menu_open.get() { "true" } else { "false" }
                        on:click=move |_| menu_open.update(|o| *o = !*o)>
                        "Menu"
                    </button>
                    <A href="/" attr:class="text-lg font-semibold tracking-tight">"Segment Export"</A>
                </div>
                <div class="flex min-w-0 flex-wrap items-center gap-2 text-sm md:gap-3">
                    <span class="min-w-0 truncate" data-testid="signed-in-user">{user.email.clone()}</span>
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
    }
    .into_any()
}

/// Navigation grouped like the product's menus; folded on narrow screens
/// until the Menu button opens it.
#[component]
fn MainNav(is_admin: bool, menu_open: RwSignal<bool>) -> impl IntoView {
    view! {
        <nav id="main-navigation" aria-label="Main"
            class=move || {
                let shown = if menu_open.get() { "block" } else { "hidden" };
                format!("{shown} border-b border-slate-200 bg-white px-4 py-4 text-sm md:block md:w-56 md:shrink-0 md:border-b-0 md:border-r md:py-6")
            }>
            <ul class="space-y-1">
                <NavLink href="/" label="Overview"/>
            </ul>
            <NavGroup title="Data">
                <NavLink href="/data/segments" label="Segments"/>
                <NavLink href="/data/exports" label="Exports"/>
            </NavGroup>
            <Show when=move || is_admin>
                <NavGroup title="Admin">
                    <NavLink href="/admin/connections" label="Connections"/>
                    <NavLink href="/admin/users" label="Users"/>
                    <NavLink href="/admin/system" label="System"/>
                    <NavLink href="/admin/api-tokens" label="API tokens"/>
                    <NavLink href="/admin/audit" label="Audit log"/>
                </NavGroup>
            </Show>
        </nav>
    }
    .into_any()
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
            Some(Err(AppError::Field { .. } | AppError::Fields(_))) | Some(Ok(_)) | None => None,
            Some(Err(e)) => Some(e.clone()),
        })
    }
}

/// The field problems of a form's last submit, all at once: announced
/// (`role="alert"`) and focused, so keyboard and screen-reader users land
/// on them; each links to its field (`#{prefix}-{field}`). Each field also
/// shows its own message next to it.
#[component]
pub fn ErrorSummary(error: Signal<Option<AppError>>, prefix: &'static str) -> impl IntoView {
    let node = NodeRef::<leptos::html::Div>::new();
    let problems = move || {
        error
            .get()
            .map(|e| e.field_problems())
            .filter(|p| !p.is_empty())
    };
    Effect::new(move |_| {
        if let (Some(_), Some(el)) = (problems(), node.get()) {
            let _ = el.focus();
        }
    });
    move || {
        problems().map(|all| {
            let heading = match all.len() {
                1 => String::from("One thing to fix before saving:"),
                n => format!("{n} things to fix before saving:"),
            };
            view! {
                <div node_ref=node role="alert" tabindex="-1" data-testid="error-summary"
                    class="rounded border border-red-300 bg-red-50 px-4 py-3 text-sm text-red-800 focus:outline-none focus:ring-2 focus:ring-red-400">
                    <p class="font-medium">{heading}</p>
                    <ul class="mt-1 list-disc pl-5">
                        {all.into_iter().map(|(field, message)| {
                            let id = format!("{prefix}-{field}");
                            let href = format!("#{id}");
                            view! {
                                <li>
                                    <a href=href class="underline" on:click=move |ev| {
                                        // Focus the field itself (the router would
                                        // take the link for a navigation).
                                        ev.prevent_default();
                                        if let Some(el) = document().get_element_by_id(&id) {
                                            use leptos::wasm_bindgen::JsCast;
                                            if let Some(el) = el.dyn_ref::<leptos::web_sys::HtmlElement>() {
                                                let _ = el.focus();
                                            }
                                        }
                                    }>{message}</a>
                                </li>
                            }
                        }).collect_view()}
                    </ul>
                </div>
            }
        })
    }
}

/// A form's Role select (`field-role`, Contributor first chosen), with
/// its error underneath.
#[component]
pub fn RoleSelect(
    error: Signal<Option<String>>,
    #[prop(optional)] hint: Option<&'static str>,
) -> impl IntoView {
    view! {
        <div class="space-y-1">
            <label for="field-role" class="block text-sm font-medium text-slate-700">"Role"</label>
            <select id="field-role" name="role" aria-describedby="field-role-error"
                aria-invalid=move || error.get().is_some().then_some("true")
                class="block w-full rounded border border-slate-300 px-3 py-2 text-sm">
                {crate::model::Role::ALL.into_iter().map(|r| view! {
                    <option value=r.key() selected=r == crate::model::Role::Contributor>{r.label()}</option>
                }).collect_view()}
            </select>
            {hint.map(|h| view! { <p class="text-xs text-slate-500">{h}</p> })}
            <p id="field-role-error" class="text-sm text-red-700">{move || error.get()}</p>
        </div>
    }
}

/// Empties `form` each time its action succeeds, ready for the next entry.
pub fn reset_on_success<T, S>(form: NodeRef<leptos::html::Form>, value: S)
where
    S: With<Value = Option<Result<T, AppError>>> + Copy + Send + Sync + 'static,
{
    Effect::new(move |_| {
        if value.with(|v| matches!(v, Some(Ok(_)))) {
            if let Some(form) = form.get() {
                form.reset();
            }
        }
    });
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

/// `n` with thousands separators: 1234567 → "1,234,567".
pub fn group<N: Into<i128>>(n: N) -> String {
    let n: i128 = n.into();
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::group;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0u64), "0");
        assert_eq!(group(999u64), "999");
        assert_eq!(group(1000u64), "1,000");
        assert_eq!(group(1_234_567u64), "1,234,567");
        assert_eq!(group(-12_345i64), "-12,345");
        assert_eq!(group(u64::MAX), "18,446,744,073,709,551,615");
    }
}
