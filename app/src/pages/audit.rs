//! Admin > Audit log: who did what, and when.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::audit_api::audit_log;
use crate::components::ErrorBanner;
use crate::model::UserView;

pub fn page(_user: UserView) -> AnyView {
    view! { <AuditPage/> }.into_any()
}

#[component]
fn AuditPage() -> impl IntoView {
    // The filter as typed, and as applied (on Filter).
    let (who, what, from, to) = (
        RwSignal::new(String::new()),
        RwSignal::new(String::new()),
        RwSignal::new(String::new()),
        RwSignal::new(String::new()),
    );
    let applied = RwSignal::new((String::new(), String::new(), String::new(), String::new()));
    let entries = Resource::new(
        move || applied.get(),
        |(who, what, from, to)| audit_log(Some(who), Some(what), Some(from), Some(to)),
    );
    // A filter's problem, under its field. Read only by awaiting the
    // resource inside a `Suspend` of its own: a plain `.get()` here would
    // be tracked by the page's enclosing `Suspend` on the server, which
    // would then build the page (and this resource) again each time it
    // loads, for ever.
    let err = move |field: &'static str| {
        view! {
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    entries.await.err().and_then(|e| e.for_field(field))
                })}
            </Transition>
        }
    };
    let input = "mt-1 block w-full rounded border border-slate-300 px-3 py-2 text-sm";
    view! {
        <Title text="Audit log · Segment Export"/>
        <h1 class="text-2xl font-semibold">"Audit log"</h1>
        <p class="mt-1 text-slate-600">"Who changed what, newest first."</p>
        <form role="search" aria-label="Filter the audit log" class="mt-4 grid gap-3 rounded-lg bg-white p-4 shadow-sm sm:grid-cols-5"
            on:submit=move |ev| {
                ev.prevent_default();
                applied.set((who.get_untracked(), what.get_untracked(), from.get_untracked(), to.get_untracked()));
            }>
            <label class="text-sm font-medium text-slate-700">"Who"
                <input type="search" class=input placeholder="email" bind:value=who/>
            </label>
            <label class="text-sm font-medium text-slate-700">"What"
                <input type="search" class=input placeholder="action, object or detail" bind:value=what/>
            </label>
            <label class="text-sm font-medium text-slate-700">"From"
                <input type="date" class=input bind:value=from/>
                <span class="text-xs text-red-700">{err("from")}</span>
            </label>
            <label class="text-sm font-medium text-slate-700">"To"
                <input type="date" class=input bind:value=to/>
                <span class="text-xs text-red-700">{err("to")}</span>
            </label>
            <div class="flex items-end gap-2">
                <button type="submit" class="rounded bg-slate-900 px-4 py-2 text-sm font-medium text-white hover:bg-slate-700">"Filter"</button>
                <button type="button" class="rounded border border-slate-300 px-3 py-2 text-sm hover:bg-slate-50"
                    on:click=move |_| {
                        for s in [who, what, from, to] { s.set(String::new()); }
                        applied.set(Default::default());
                    }>"Clear"</button>
            </div>
        </form>
        <Transition fallback=|| view! { <p class="mt-4 text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match entries.await {
                    Err(e) if e.for_field("from").is_some() || e.for_field("to").is_some() => ().into_any(),
                    Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                    Ok(list) if list.is_empty() => view! { <p class="mt-4 text-slate-600">"No entries match."</p> }.into_any(),
                    Ok(list) => view! {
                        <table class="mt-4 w-full rounded-lg bg-white text-left text-sm shadow-sm">
                            <thead class="text-slate-500">
                                <tr>
                                    <th class="px-4 py-2 font-medium">"When"</th>
                                    <th class="px-4 py-2 font-medium">"Who"</th>
                                    <th class="px-4 py-2 font-medium">"Action"</th>
                                    <th class="px-4 py-2 font-medium">"Object"</th>
                                    <th class="px-4 py-2 font-medium">"Details"</th>
                                </tr>
                            </thead>
                            <tbody>
                                {list.into_iter().map(|e| view! {
                                    <tr class="border-t border-slate-100">
                                        <td class="px-4 py-2 whitespace-nowrap text-slate-600">{e.at}</td>
                                        <td class="px-4 py-2">{e.actor}</td>
                                        <td class="px-4 py-2" title=e.action.clone()>{action_label(&e.action)}</td>
                                        <td class="px-4 py-2">{e.target}</td>
                                        <td class="px-4 py-2 text-slate-600">{e.detail}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}

/// An audit action as a user reads it ("export.update" → "Export changed").
fn action_label(action: &str) -> String {
    let known = match action {
        "user.create_first_admin" => "First administrator created",
        "user.create" => "User added",
        "user.set_role" => "Role changed",
        "user.deactivate" => "User deactivated",
        "user.reactivate" => "User reactivated",
        "connection.create" => "Connection added",
        "connection.update" => "Connection changed",
        "connection.authorize" => "Connection signed in again",
        "connection.remove" => "Connection removed",
        "export.create" => "Export added",
        "export.update" => "Export changed",
        "export.remove" => "Export removed",
        "segment.create" => "Segment created",
        "segment.update" => "Segment changed",
        "segment.refresh" => "Segment refreshed",
        "segment.import_static" => "Static segment imported",
        "segment.replace_members" => "Static segment's members replaced",
        "schedule.update" => "Scheduled refresh changed",
        "api_token.create" => "API token created",
        "api_token.revoke" => "API token revoked",
        "alerts.rule" => "Alert rule changed",
        "alerts.smtp" => "Alert email settings changed",
        other => return other.replace(['.', '_'], " "),
    };
    known.to_owned()
}
