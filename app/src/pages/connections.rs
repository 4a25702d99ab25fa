//! Admin > Connections: the list, with edit, re-authenticate, test and
//! remove on each connection.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

use crate::components::{form_error, ErrorBanner};
use crate::connections_api::{
    list_connections, ReauthenticateConnection, RemoveConnection, TestConnection, UpdateConnection,
};
use crate::error::AppError;
use crate::model::{usable_by_label, ConnectionView, UserView};

pub fn page(_user: UserView) -> AnyView {
    view! { <ConnectionsPage/> }.into_any()
}

/// Sends the browser to Constant Contact's sign-in page.
pub fn go_to(url: &str) {
    let _ = window().location().set_href(url);
}

/// The Constant Contact mark: the type column's "logo".
#[component]
pub fn CcBadge() -> impl IntoView {
    view! {
        <span class="inline-flex items-center gap-2">
            <span aria-hidden="true" class="inline-flex size-6 items-center justify-center rounded bg-blue-600 text-[10px] font-bold text-white">"CC"</span>
            "Constant Contact"
        </span>
    }
}

#[component]
fn ConnectionsPage() -> impl IntoView {
    let update = ServerAction::<UpdateConnection>::new();
    let remove = ServerAction::<RemoveConnection>::new();
    let test = ServerAction::<TestConnection>::new();
    let reauth = ServerAction::<ReauthenticateConnection>::new();
    let data = Resource::new(
        move || {
            (
                update.version().get(),
                remove.version().get(),
                test.version().get(),
            )
        },
        |_| list_connections(),
    );
    Effect::new(move |_| {
        if let Some(Ok(url)) = reauth.value().get() {
            go_to(&url);
        }
    });
    let message = move || -> Option<Result<String, AppError>> {
        // The latest outcome of a row action, newest action first.
        remove
            .value()
            .get()
            .or_else(|| test.value().get())
            .or_else(|| {
                reauth
                    .value()
                    .get()
                    .map(|r| r.map(|_| String::from("Opening Constant Contact…")))
            })
    };
    view! {
        <Title text="Connections · Segment Export"/>
        <div class="flex items-start justify-between gap-4">
            <div>
                <h1 class="text-2xl font-semibold">"Connections"</h1>
                <p class="mt-1 text-slate-600">"Accounts that exports can send contacts to."</p>
            </div>
            <A href="/admin/connections/new" attr:class="rounded bg-slate-900 px-4 py-2 text-sm font-medium text-white hover:bg-slate-700">
                "Add connection"
            </A>
        </div>
        <div class="mt-4 space-y-2">
            {move || message().map(|m| match m {
                Ok(text) => view! { <p role="status" class="rounded border border-green-300 bg-green-50 px-4 py-3 text-sm text-green-800">{text}</p> }.into_any(),
                Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
            })}
            {move || form_error(update.value())().map(|e| view! { <ErrorBanner error=e/> })}
        </div>
        <Transition fallback=|| view! { <p class="mt-4 text-slate-500">"Loading connections…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                    Ok(page) => view! {
                        {page.notice.map(|n| {
                            if let Some(rest) = n.strip_prefix("Error: ") {
                                view! { <div class="mt-4"><ErrorBanner error=AppError::Refused(rest.to_owned())/></div> }.into_any()
                            } else {
                                view! { <p role="status" class="mt-4 rounded border border-green-300 bg-green-50 px-4 py-3 text-sm text-green-800">{n}</p> }.into_any()
                            }
                        })}
                        {(!page.configured).then(|| view! {
                            <p class="mt-4 rounded border border-amber-300 bg-amber-50 px-4 py-3 text-sm text-amber-900">
                                "Constant Contact is not configured on this server: set CC_CLIENT_ID and CC_CLIENT_SECRET (see the README) to add or re-authenticate connections."
                            </p>
                        })}
                        <ConnectionTable connections=page.connections update remove test reauth/>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn ConnectionTable(
    connections: Vec<ConnectionView>,
    update: ServerAction<UpdateConnection>,
    remove: ServerAction<RemoveConnection>,
    test: ServerAction<TestConnection>,
    reauth: ServerAction<ReauthenticateConnection>,
) -> impl IntoView {
    if connections.is_empty() {
        return view! {
            <p class="mt-6 rounded-lg bg-white p-6 text-sm text-slate-600 shadow-sm">
                "No connections yet. Add a Constant Contact connection to export segments to its lists."
            </p>
        }
        .into_any();
    }
    view! {
        <table class="mt-4 w-full rounded-lg bg-white text-left text-sm shadow-sm">
            <thead class="text-slate-500">
                <tr>
                    <th class="px-4 py-2 font-medium">"Type"</th>
                    <th class="px-4 py-2 font-medium">"Display name"</th>
                    <th class="px-4 py-2 font-medium">"Who can use it"</th>
                    <th class="px-4 py-2 font-medium">"Status"</th>
                    <th class="px-4 py-2 font-medium">"Export user"</th>
                    <th class="px-4 py-2 font-medium">"Authorized"</th>
                    <th class="px-4 py-2 font-medium">"Exports"</th>
                    <th class="px-4 py-2 font-medium">"Actions"</th>
                </tr>
            </thead>
            <tbody>
                {connections.into_iter().map(|c| view! { <ConnectionRow c update remove test reauth/> }.into_any()).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

#[component]
fn ConnectionRow(
    c: ConnectionView,
    update: ServerAction<UpdateConnection>,
    remove: ServerAction<RemoveConnection>,
    test: ServerAction<TestConnection>,
    reauth: ServerAction<ReauthenticateConnection>,
) -> AnyView {
    let editing = RwSignal::new(false);
    let confirming = RwSignal::new(false);
    let id = c.id;
    let name = c.display_name.clone();
    let status_class = match c.status.as_str() {
        "authorized" => "rounded bg-green-100 px-2 py-0.5 text-green-800",
        "needs_reauth" => "rounded bg-amber-100 px-2 py-0.5 text-amber-900",
        _ => "rounded bg-red-100 px-2 py-0.5 text-red-800",
    };
    let needs_reauth = c.status != "authorized";
    let edit_name = RwSignal::new(c.display_name.clone());
    let edit_usable = RwSignal::new(c.usable_by.clone());
    let confirm_name = name.clone();
    let removal_effect = if c.exports.is_empty() {
        String::from("No export uses this connection, so none is affected.")
    } else {
        format!(
            "These exports use it and will be disabled, and any run of theirs cancelled: {}.",
            c.exports.join(", ")
        )
    };
    view! {
        <tr class="border-t border-slate-100 align-top">
            <td class="px-4 py-2"><CcBadge/></td>
            <td class="px-4 py-2 font-medium">{c.display_name.clone()}</td>
            <td class="px-4 py-2">{c.usable_by_label()}</td>
            <td class="px-4 py-2">
                <span class=status_class>{c.status_label()}</span>
                {c.status_reason.clone().map(|r| view! { <p class="mt-1 text-xs text-slate-600">{r}</p> })}
            </td>
            <td class="px-4 py-2">{c.export_user.clone().unwrap_or_else(|| String::from("—"))}</td>
            <td class="px-4 py-2 text-slate-600">{c.authorized.clone().unwrap_or_else(|| String::from("—"))}</td>
            <td class="px-4 py-2" data-testid="connection-exports" title=c.exports.join(", ")>{c.exports.len()}</td>
            <td class="px-4 py-2">
                <div class="flex flex-wrap gap-2">
                    <button type="button" class="rounded border border-slate-300 px-2 py-1 hover:bg-slate-50"
                        aria-label=format!("Edit {name}") on:click=move |_| editing.update(|e| *e = !*e)>"Edit"</button>
                    <button type="button"
                        class=if needs_reauth { "rounded bg-amber-500 px-2 py-1 text-white hover:bg-amber-600" } else { "rounded border border-slate-300 px-2 py-1 hover:bg-slate-50" }
                        aria-label=format!("Re-authenticate {name}")
                        on:click=move |_| { reauth.dispatch(crate::connections_api::ReauthenticateConnection { id }); }>"Re-authenticate"</button>
                    <button type="button" class="rounded border border-slate-300 px-2 py-1 hover:bg-slate-50"
                        aria-label=format!("Test {name}") disabled=move || test.pending().get()
                        on:click=move |_| { test.dispatch(crate::connections_api::TestConnection { id }); }>"Test"</button>
                    <button type="button" class="rounded border border-red-300 px-2 py-1 text-red-700 hover:bg-red-50"
                        aria-label=format!("Remove {name}") on:click=move |_| confirming.set(true)>"Remove"</button>
                </div>
                <Show when=move || confirming.get()>
                    <div role="alertdialog" aria-label=format!("Remove {confirm_name}?") class="mt-2 rounded border border-red-300 bg-red-50 p-3 text-sm">
                        <p class="font-medium">{format!("Remove {}?", confirm_name)}</p>
                        <p class="mt-1 text-slate-700">
                            "Its access is revoked at Constant Contact and its tokens are deleted here. "
                            {removal_effect.clone()}
                        </p>
                        <div class="mt-2 flex gap-2">
                            <button type="button" class="rounded bg-red-600 px-3 py-1 text-white hover:bg-red-700"
                                on:click=move |_| { confirming.set(false); remove.dispatch(crate::connections_api::RemoveConnection { id }); }>"Remove connection"</button>
                            <button type="button" class="rounded border border-slate-300 px-3 py-1" on:click=move |_| confirming.set(false)>"Cancel"</button>
                        </div>
                    </div>
                </Show>
                <Show when=move || editing.get()>
                    <form class="mt-2 space-y-2 rounded border border-slate-200 p-3" on:submit=move |ev| {
                        ev.prevent_default();
                        update.dispatch(UpdateConnection { id, display_name: edit_name.get(), usable_by: edit_usable.get() });
                        editing.set(false);
                    }>
                        <label class="block text-xs font-medium text-slate-700">"Display name"
                            <input class="mt-1 block w-full rounded border border-slate-300 px-2 py-1" bind:value=edit_name/>
                        </label>
                        <label class="block text-xs font-medium text-slate-700">"Who can use this connection"
                            <select class="mt-1 block w-full rounded border border-slate-300 px-2 py-1"
                                on:change=move |ev| edit_usable.set(event_target_value(&ev))
                                prop:value=move || edit_usable.get()>
                                {["admins", "admins_and_contributors"].into_iter().map(|k| view! {
                                    <option value=k selected=move || edit_usable.get() == k>{usable_by_label(k)}</option>
                                }).collect_view()}
                            </select>
                        </label>
                        <button type="submit" class="rounded bg-slate-900 px-3 py-1 text-white">"Save changes"</button>
                    </form>
                </Show>
            </td>
        </tr>
    }
    .into_any()
}
