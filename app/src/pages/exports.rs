//! Data > Exports: the list with live progress, Add destination / Edit,
//! an export's run history, and a run's page (timeline, counts, errors,
//! download, cancel).

use std::time::Duration;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};

use crate::components::{
    field_error, form_error, group, AfterHydration, ErrorBanner, ErrorSummary,
};
use crate::exports_api::{
    connection_custom_fields, connection_lists, count_export_filled, count_export_profiles,
    get_export, get_export_form, get_run, list_exports, CancelRun, CreateConnectionList,
    RemoveExport, RunExport, SaveExport,
};
use crate::model::{
    ExportForm, ExportInputView, ExportRow, MappingView, Role, RunDetail, RunView, UserView,
};

pub fn list_page(user: UserView) -> AnyView {
    view! { <ExportsPage is_admin=user.role.allows(Role::Admin)/> }.into_any()
}

pub fn new_page(_user: UserView) -> AnyView {
    view! { <ExportFormPage id=None/> }.into_any()
}

pub fn edit_page(_user: UserView) -> AnyView {
    let params = use_params_map();
    let id = params
        .read_untracked()
        .get("id")
        .and_then(|v| v.parse::<i64>().ok());
    view! { <ExportFormPage id/> }.into_any()
}

pub fn detail_page(_user: UserView) -> AnyView {
    view! { <ExportPage/> }.into_any()
}

pub fn run_page(_user: UserView) -> AnyView {
    view! { <RunPage/> }.into_any()
}

/// A counter that ticks every second while `active` says so (in the
/// browser only): resources keyed on it refresh without reloading.
fn live_ticker(active: RwSignal<bool>) -> RwSignal<u32> {
    let tick = RwSignal::new(0u32);
    Effect::new(move |_| {
        if let Ok(handle) = set_interval_with_handle(
            move || {
                if active.get_untracked() {
                    tick.update(|t| *t = t.wrapping_add(1));
                }
            },
            Duration::from_millis(1000),
        ) {
            on_cleanup(move || handle.clear());
        }
    });
    tick
}

fn badge_class(status: &str) -> &'static str {
    match status {
        "succeeded" => "rounded bg-green-100 px-2 py-0.5 text-xs font-medium text-green-800",
        "partially_succeeded" => {
            "rounded bg-amber-100 px-2 py-0.5 text-xs font-medium text-amber-800"
        }
        "failed" => "rounded bg-red-100 px-2 py-0.5 text-xs font-medium text-red-800",
        "cancelled" => "rounded bg-slate-200 px-2 py-0.5 text-xs font-medium text-slate-700",
        "dry_run" => "rounded bg-violet-100 px-2 py-0.5 text-xs font-medium text-violet-800",
        _ => "rounded bg-sky-100 px-2 py-0.5 text-xs font-medium text-sky-800",
    }
}

fn mode_label(mode: &str) -> &'static str {
    match mode {
        "dry_run" => "Dry run",
        "full" => "Full resend",
        _ => "Incremental",
    }
}

/// What is left of an active run, in words: the estimate when the run
/// has made one (0 means it has not: it is queued, just started, or only
/// waiting for Constant Contact to process its last imports).
fn eta_text(run: &RunView) -> Option<String> {
    if run.status != "running" {
        return None;
    }
    let read_all = run
        .total
        .is_some_and(|t| run.counts.read >= t.max(0) as u64);
    match run.counts.eta_seconds {
        0 if read_all => Some(String::from(
            "finishing: Constant Contact is processing the last imports",
        )),
        0 => None,
        s if s < 60 => Some(String::from("less than a minute left")),
        s if s < 90 * 60 => Some(format!("about {} min left", s.div_ceil(60))),
        s => Some(format!("about {} h left", s.div_ceil(3600))),
    }
}

/// A run's status badge, progress bar and counts, in one line.
#[component]
fn RunSummary(run: RunView) -> impl IntoView {
    let c = run.counts.clone();
    let pct = run.percent();
    let active = run.is_active();
    let total = run.total.map(group).unwrap_or_else(|| String::from("…"));
    let eta = eta_text(&run);
    view! {
        <div data-testid="run-summary" class="space-y-1">
            <div class="flex flex-wrap items-center gap-2">
                <span data-testid="run-status" class=badge_class(run.badge())>{run.status_label()}</span>
                <A href=format!("/runs/{}", run.id) attr:class="text-xs underline">{format!("Run #{}", run.id)}</A>
                <span class="text-xs text-slate-500">{mode_label(&run.mode)}</span>
                <span class="text-xs text-slate-500">{run.finished_at.clone().or(run.started_at.clone()).unwrap_or(run.queued_at.clone())}</span>
            </div>
            {active.then(|| view! {
                <div class="h-2 w-48 rounded bg-slate-200" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow=pct.to_string()>
                    <div class="h-2 rounded bg-sky-600" style=format!("width: {pct}%")></div>
                </div>
                <p class="text-xs text-slate-600">
                    {format!("{} of {} read · {} sent", group(c.read), total, group(c.sent))}
                    {eta.map(|e| format!(" · {e}"))}
                </p>
            })}
            {(!active).then(|| view! {
                <p class="text-xs text-slate-600" data-testid="run-counts">
                    {if run.mode == "dry_run" {
                        format!("would send {} ({} new, {} changed) · {} unchanged · {} skipped", group(c.adds + c.updates + c.resent), group(c.adds), group(c.updates), group(c.unchanged), group(c.skipped()))
                    } else {
                        format!("{} sent · {} unchanged · {} skipped · {} removed", group(c.sent), group(c.unchanged), group(c.skipped()), group(c.removed))
                    }}
                </p>
            })}
        </div>
    }
}

#[component]
fn ExportsPage(is_admin: bool) -> impl IntoView {
    let active = RwSignal::new(false);
    let tick = live_ticker(active);
    let run = ServerAction::<RunExport>::new();
    let remove = ServerAction::<RemoveExport>::new();
    let query = use_query_map();
    let saved = move || query.read().get("saved").is_some();
    let page = Resource::new(
        move || (tick.get(), run.version().get(), remove.version().get()),
        |_| list_exports(),
    );
    Effect::new(move |_| {
        if let Some(Ok(p)) = page.get() {
            active.set(
                p.exports
                    .iter()
                    .any(|e| e.last_run.as_ref().is_some_and(RunView::is_active)),
            );
        }
    });
    view! {
        <Title text="Exports · Segment Export"/>
        <div class="flex items-start justify-between gap-4">
            <div>
                <h1 class="text-2xl font-semibold">"Exports"</h1>
                <p class="mt-1 text-slate-600">"Destinations that send segments to Constant Contact lists, on the scheduled refresh and on demand."</p>
            </div>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    page.await.ok().filter(|p| p.can_add).map(|_| view! {
                        <A href="/data/exports/new" attr:class="rounded bg-slate-900 px-4 py-2 text-sm font-medium text-white hover:bg-slate-700">"Add destination"</A>
                    })
                })}
            </Transition>
        </div>
        <Show when=saved>
            <p role="status" class="mt-4 rounded border border-green-300 bg-green-50 px-4 py-3 text-sm text-green-800">
                "Export saved. Saving did not send anything: it runs on the next scheduled refresh, or now with Run now."
            </p>
        </Show>
        {move || form_error(run.value())().map(|e| view! { <div class="mt-4"><ErrorBanner error=e/></div> })}
        {move || form_error(remove.value())().map(|e| view! { <div class="mt-4"><ErrorBanner error=e/></div> })}
        <Transition fallback=|| view! { <p class="mt-4 text-slate-500">"Loading exports…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Err(e) => view! { <div class="mt-4"><ErrorBanner error=e/></div> }.into_any(),
                    Ok(p) if p.exports.is_empty() => view! {
                        <p class="mt-6 rounded-lg bg-white p-6 text-sm text-slate-600 shadow-sm">
                            {if p.can_add { "No exports yet. Add a destination to send segments to a Constant Contact list." } else { "No exports yet." }}
                        </p>
                    }.into_any(),
                    Ok(p) => view! {
                        <table class="mt-4 w-full rounded-lg bg-white text-left text-sm shadow-sm">
                            <thead class="text-slate-500">
                                <tr>
                                    <th class="px-4 py-2 font-medium">"Name"</th>
                                    <th class="px-4 py-2 font-medium">"Connection"</th>
                                    <th class="px-4 py-2 font-medium">"List"</th>
                                    <th class="px-4 py-2 font-medium">"Segments"</th>
                                    <th class="px-4 py-2 font-medium">"Schedule"</th>
                                    <th class="px-4 py-2 font-medium">"Last run"</th>
                                    <th class="px-4 py-2 font-medium"><span class="sr-only">"Actions"</span></th>
                                </tr>
                            </thead>
                            <tbody>
                                {p.exports.into_iter().map(|e| view! { <ExportLine e run remove is_admin next=p.next_refresh.clone()/> }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn ExportLine(
    e: ExportRow,
    run: ServerAction<RunExport>,
    remove: ServerAction<RemoveExport>,
    is_admin: bool,
    next: Option<String>,
) -> impl IntoView {
    let id = e.id;
    let confirming = RwSignal::new(false);
    let busy = e.last_run.as_ref().is_some_and(RunView::is_active);
    let can_run = e.can_change && e.enabled && !busy;
    let name = e.name.clone();
    view! {
        <tr class="border-t border-slate-100 align-top" data-testid="export-row">
            <td class="px-4 py-2">
                <A href=format!("/data/exports/{id}") attr:class="font-medium underline">{e.name.clone()}</A>
                {e.disabled_reason.clone().filter(|_| !e.enabled).map(|r| view! { <p class="text-xs text-red-700">{format!("Disabled: {r}")}</p> })}
            </td>
            <td class="px-4 py-2">
                <span class="text-xs text-slate-500">{e.connection_kind.clone()}</span>
                <p>{e.connection.clone().unwrap_or_else(|| String::from("(removed)"))}</p>
            </td>
            <td class="px-4 py-2">
                <p>{e.list_name.clone()}</p>
                <p class="font-mono text-xs text-slate-500">{e.list_id.clone()}</p>
            </td>
            <td class="px-4 py-2">{e.segments.join(", ")}</td>
            <td class="px-4 py-2">
                {if e.on_schedule { "On scheduled refresh" } else { "On demand only" }}
                {next.filter(|_| e.on_schedule && e.enabled).map(|n| view! { <p class="text-xs text-slate-500">{format!("Next: {n}")}</p> })}
            </td>
            <td class="px-4 py-2">
                {match e.last_run.clone() {
                    Some(r) => view! { <RunSummary run=r/> }.into_any(),
                    None => view! { <span class="text-slate-500">"Never run"</span> }.into_any(),
                }}
            </td>
            <td class="px-4 py-2">
                <Show when=move || e.can_change
                    fallback=|| view! { <p class="text-xs text-slate-500">"Only its owner or an administrator can run or change it."</p> }>
                    <div class="flex flex-wrap gap-2">
                        <button type="button" class="rounded bg-slate-900 px-3 py-1 text-white hover:bg-slate-700 disabled:opacity-50"
                            disabled=move || !can_run || run.pending().get()
                            on:click=move |_| { run.dispatch(RunExport { id, mode: String::from("incremental") }); }>"Run now"</button>
                        <button type="button" class="rounded border border-slate-300 px-3 py-1 hover:bg-slate-50 disabled:opacity-50"
                            disabled=move || !can_run || run.pending().get()
                            on:click=move |_| { run.dispatch(RunExport { id, mode: String::from("dry_run") }); }>"Dry run"</button>
                        <A href=format!("/data/exports/{id}/edit") attr:class="rounded border border-slate-300 px-3 py-1 hover:bg-slate-50">"Edit"</A>
                        <button type="button" class="rounded border border-red-300 px-3 py-1 text-red-700 hover:bg-red-50"
                            on:click=move |_| confirming.set(true)>"Remove"</button>
                    </div>
                </Show>
                <Show when=move || confirming.get()>
                    <div role="alertdialog" aria-label="Confirm removal" class="mt-2 rounded border border-red-300 bg-red-50 p-3 text-xs">
                        <p>{format!("Remove the export \u{201c}{name}\u{201d}? Nothing more is sent for it; a queued run is cancelled and a running one stops at its next batch.")}</p>
                        {(!is_admin).then(|| view! { <p class="mt-1 text-slate-600">"Its run history stays readable."</p> })}
                        <div class="mt-2 flex gap-2">
                            <button type="button" class="rounded bg-red-700 px-3 py-1 text-white"
                                on:click=move |_| { confirming.set(false); remove.dispatch(RemoveExport { id }); }>"Remove export"</button>
                            <button type="button" class="rounded border border-slate-300 px-3 py-1" on:click=move |_| confirming.set(false)>"Keep it"</button>
                        </div>
                    </div>
                </Show>
            </td>
        </tr>
    }
}

#[component]
fn ExportFormPage(id: Option<i64>) -> impl IntoView {
    let form = Resource::new(move || id, get_export_form);
    view! {
        <Title text=if id.is_some() { "Edit export · Segment Export" } else { "Add destination · Segment Export" }/>
        <p class="text-sm"><A href="/data/exports" attr:class="underline">"Exports"</A></p>
        <h1 class="mt-1 text-2xl font-semibold">{if id.is_some() { "Edit export" } else { "Add destination" }}</h1>
        <Suspense fallback=|| view! { <p class="mt-4 text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match form.await {
                    Ok(f) if f.connections.is_empty() => view! { <NoConnection is_admin=f.is_admin/> }.into_any(),
                    // The editor loads the account's lists and counts the
                    // segments with resources of its own: in the browser only.
                    Ok(f) => view! {
                        <AfterHydration fallback=|| view! { <p class="mt-4 text-slate-500">"Loading…"</p> }>
                            <ExportEditor id form=f.clone()/>
                        </AfterHydration>
                    }.into_any(),
                    Err(e) => view! { <div class="mt-4"><ErrorBanner error=e/></div> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn NoConnection(is_admin: bool) -> impl IntoView {
    view! {
        <section class="mt-6 max-w-2xl rounded-lg bg-white p-5 text-sm shadow-sm" data-testid="no-connection">
            <h2 class="font-semibold">"Connection for export"</h2>
            <p class="mt-2 text-slate-700">
                "There is no connection you may use. An administrator must add a Constant Contact connection under Admin > Connections, and allow contributors to use it if you are one."
            </p>
            {is_admin.then(|| view! {
                <p class="mt-3"><A href="/admin/connections/new" attr:class="underline">"Add a connection"</A></p>
            })}
        </section>
    }
}

fn indices(n: usize) -> Vec<usize> {
    (0..n).collect()
}

fn target_label(target: &str, labels: &[(String, String)]) -> String {
    labels
        .iter()
        .find(|(k, _)| k == target)
        .map(|(_, l)| l.clone())
        .unwrap_or_else(|| target.to_owned())
}

/// The Add destination / Edit form.
#[component]
fn ExportEditor(id: Option<i64>, form: ExportForm) -> impl IntoView {
    let start = form.export.clone().unwrap_or(ExportInputView {
        name: String::new(),
        connection_id: form.connections.first().map(|c| c.id).unwrap_or_default(),
        list_id: String::new(),
        mapping: Vec::new(),
        segment_ids: Vec::new(),
        on_schedule: true,
        remove_left: false,
        removal_limit_pct: 20,
    });
    let email0 = start
        .mapping
        .iter()
        .find(|m| m.target == "email")
        .map(|m| m.source.clone())
        .or_else(|| {
            form.fields
                .iter()
                .find(|f| f.kind == "email" || f.name == "email")
                .map(|f| f.name.clone())
        })
        .unwrap_or_default();
    let name = RwSignal::new(start.name.clone());
    let connection_id = RwSignal::new(start.connection_id);
    let list_id = RwSignal::new(start.list_id.clone());
    let email_source = RwSignal::new(email0);
    let extra = RwSignal::new(
        start
            .mapping
            .iter()
            .filter(|m| m.target != "email")
            .cloned()
            .collect::<Vec<_>>(),
    );
    let segment_ids = RwSignal::new(start.segment_ids.clone());
    let search = RwSignal::new(String::new());
    let on_schedule = RwSignal::new(start.on_schedule);
    let remove_left = RwSignal::new(start.remove_left);
    let new_list = RwSignal::new(String::new());
    let create_list = ServerAction::<CreateConnectionList>::new();
    let save = ServerAction::<SaveExport>::new();

    let lists = Resource::new(
        move || (connection_id.get(), create_list.version().get()),
        |(c, _)| async move {
            if c == 0 {
                return Ok(Vec::new());
            }
            connection_lists(c).await
        },
    );
    let custom = Resource::new(
        move || connection_id.get(),
        |c| async move {
            if c == 0 {
                return Ok(Vec::new());
            }
            connection_custom_fields(c).await
        },
    );
    let count = Resource::new(
        move || segment_ids.get(),
        |ids| async move {
            if ids.is_empty() {
                return Ok(0);
            }
            let joined = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            count_export_profiles(joined).await
        },
    );
    // How many of the selected profiles have an email in the mapped field.
    let filled = Resource::new(
        move || (segment_ids.get(), email_source.get()),
        |(ids, field)| async move {
            if ids.is_empty() || field.is_empty() {
                return Ok((0, 0));
            }
            let joined = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            count_export_filled(joined, field).await
        },
    );
    Effect::new(move |_| {
        if let Some(Ok(l)) = create_list.value().get() {
            list_id.set(l.list_id.clone());
            new_list.set(String::new());
        }
    });
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(_)) = save.value().get() {
            navigate("/data/exports?saved=1", Default::default());
        }
    });

    let fields = StoredValue::new(form.fields.clone());
    let contact_fields = StoredValue::new(form.contact_fields.clone());
    let connections = StoredValue::new(form.connections.clone());
    let segments = StoredValue::new(form.segments.clone());
    let max_profiles = form.max_profiles;
    let profiles = form.profiles.max(1);

    // Every target on offer: the contact fields (not email) and the
    // account's custom fields.
    let targets = move || {
        let mut all: Vec<(String, String)> = contact_fields
            .get_value()
            .into_iter()
            .filter(|(k, _)| k != "email")
            .collect();
        if let Some(Ok(cf)) = custom.get() {
            all.extend(cf);
        }
        all
    };
    let submit = move || {
        let mut mapping = vec![MappingView {
            source: email_source.get_untracked(),
            target: String::from("email"),
        }];
        mapping.extend(extra.get_untracked());
        let input = ExportInputView {
            name: name.get_untracked(),
            connection_id: connection_id.get_untracked(),
            list_id: list_id.get_untracked(),
            mapping,
            segment_ids: segment_ids.get_untracked(),
            on_schedule: on_schedule.get_untracked(),
            remove_left: remove_left.get_untracked(),
            removal_limit_pct: start.removal_limit_pct,
        };
        save.dispatch(SaveExport {
            id,
            export: serde_json::to_string(&input).unwrap_or_default(),
        });
    };
    let err = move |f: &'static str| field_error(save.value(), f);
    let invalid = move |f: &'static str| move || err(f)().is_some().then_some("true");
    let save_error = Signal::derive(move || {
        save.value()
            .with(|v| v.as_ref().and_then(|r| r.as_ref().err().cloned()))
    });

    view! {
        <form class="mt-6 max-w-3xl space-y-6" novalidate on:submit=move |ev| { ev.prevent_default(); submit(); }>
            <ErrorSummary error=save_error prefix="export"/>
            <section class="space-y-2 rounded-lg bg-white p-5 shadow-sm">
                <h2 class="font-semibold">"Connection for export"</h2>
                <fieldset id="export-connection" tabindex="-1">
                    <legend class="text-sm text-slate-600">"Constant Contact"</legend>
                    {connections.get_value().into_iter().map(|c| {
                        let cid = c.id;
                        view! {
                            <label class="mt-1 flex items-center gap-2 text-sm">
                                <input type="radio" name="connection" prop:checked=move || connection_id.get() == cid
                                    on:change=move |_| { connection_id.set(cid); list_id.set(String::new()); }/>
                                {c.display_name.clone()}
                            </label>
                        }
                    }).collect_view()}
                </fieldset>
                <p id="export-connection-error" class="text-sm text-red-700">{err("connection")}</p>
            </section>

            <section class="space-y-2 rounded-lg bg-white p-5 shadow-sm">
                <h2 class="font-semibold">"Constant Contact list"</h2>
                <Transition fallback=|| view! { <p class="text-sm text-slate-500">"Loading the account's lists…"</p> }>
                    {move || Suspend::new(async move {
                        match lists.await {
                            Ok(ls) => view! {
                                <label class="block text-sm font-medium text-slate-700">"Constant Contact list"
                                    <select class="mt-1 block w-full rounded border border-slate-300 px-3 py-2"
                                        prop:value=move || list_id.get()
                                        on:change=move |ev| list_id.set(event_target_value(&ev))>
                                        <option value="">"Choose a list…"</option>
                                        {ls.into_iter().map(|l| {
                                            let label = match l.members {
                                                Some(n) => format!("{} ({} members)", l.name, group(n)),
                                                None => l.name.clone(),
                                            };
                                            view! { <option value=l.list_id.clone()>{label}</option> }
                                        }).collect_view()}
                                    </select>
                                </label>
                            }.into_any(),
                            Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                        }
                    })}
                </Transition>
                <label class="block text-sm font-medium text-slate-700">"Or paste a list ID"
                    <input id="export-list_id" class="mt-1 block w-full rounded border border-slate-300 px-3 py-2 font-mono text-sm"
                        aria-describedby="export-list_id-error" aria-invalid=invalid("list_id")
                        placeholder="1b3c5d7e-0000-4000-8000-123456789abc"
                        prop:value=move || list_id.get() on:input=move |ev| list_id.set(event_target_value(&ev))/>
                </label>
                <p class="text-xs text-slate-500">"The ID is in the list's address in Constant Contact: …/contacts/ui#contacts/<list ID>."</p>
                <p id="export-list_id-error" class="text-sm text-red-700" data-testid="list-error">{err("list_id")}</p>
                <div class="flex items-end gap-2">
                    <label class="block flex-1 text-sm font-medium text-slate-700">"New list name"
                        <input class="mt-1 block w-full rounded border border-slate-300 px-3 py-2" bind:value=new_list/>
                    </label>
                    <button type="button" class="rounded border border-slate-300 px-3 py-2 text-sm hover:bg-slate-50"
                        on:click=move |_| { create_list.dispatch(CreateConnectionList { connection_id: connection_id.get(), name: new_list.get() }); }>"Create list"</button>
                </div>
                <p class="text-sm text-red-700">{field_error(create_list.value(), "new_list")}</p>
                {move || form_error(create_list.value())().map(|e| view! { <ErrorBanner error=e/> })}
            </section>

            <section class="space-y-3 rounded-lg bg-white p-5 shadow-sm">
                <h2 class="font-semibold">"Data matching"</h2>
                <label class="block text-sm font-medium text-slate-700">"Email field (required)"
                    <select id="export-email" class="mt-1 block w-full rounded border border-slate-300 px-3 py-2"
                        aria-describedby="export-email-error" aria-invalid=invalid("email")
                        prop:value=move || email_source.get()
                        on:change=move |ev| email_source.set(event_target_value(&ev))>
                        <option value="">"Choose the profile field with the email address…"</option>
                        {fields.get_value().into_iter().map(|f| {
                            let label = format!("{} ({}% filled)", f.name, f.filled * 100 / profiles);
                            view! { <option value=f.name.clone()>{label}</option> }
                        }).collect_view()}
                    </select>
                </label>
                <p id="export-email-error" class="text-sm text-red-700">{err("email")}</p>
                <For
                    each=move || indices(extra.with(Vec::len))
                    key=|i| *i
                    children=move |i| {
                        let n = i + 1;
                        let source = move || extra.with(|m| m.get(i).map(|x| x.source.clone()).unwrap_or_default());
                        let target = move || extra.with(|m| m.get(i).map(|x| x.target.clone()).unwrap_or_default());
                        view! {
                            <div class="flex flex-wrap items-center gap-2" data-testid="attribute-row">
                                <select aria-label=format!("Profile field {n}") class="rounded border border-slate-300 px-2 py-1"
                                    prop:value=source
                                    on:change=move |ev| extra.update(|m| if let Some(x) = m.get_mut(i) { x.source = event_target_value(&ev) })>
                                    <option value="">"Profile field…"</option>
                                    {fields.get_value().into_iter().map(|f| view! { <option value=f.name.clone()>{f.name.clone()}</option> }).collect_view()}
                                </select>
                                <span aria-hidden="true">"→"</span>
                                <select aria-label=format!("Constant Contact field {n}") class="rounded border border-slate-300 px-2 py-1"
                                    prop:value=target
                                    on:change=move |ev| extra.update(|m| if let Some(x) = m.get_mut(i) { x.target = event_target_value(&ev) })>
                                    <option value="">"Constant Contact field…"</option>
                                    // Custom fields arrive after the row: each option
                                    // says whether it is the chosen one.
                                    {move || {
                                        let chosen = target();
                                        targets().into_iter().map(|(k, l)| {
                                            let taken = extra.with(|m| m.iter().enumerate().any(|(j, x)| j != i && x.target == k));
                                            let selected = k == chosen;
                                            view! { <option value=k.clone() disabled=taken selected=selected>{l}</option> }
                                        }).collect_view()
                                    }}
                                </select>
                                <button type="button" aria-label=format!("Remove attribute {n}") class="rounded border border-slate-300 px-2 py-1"
                                    on:click=move |_| extra.update(|m| { if i < m.len() { m.remove(i); } })>"✕"</button>
                            </div>
                        }
                    }
                />
                <button id="export-mapping" type="button" class="rounded border border-slate-300 px-3 py-1 text-sm hover:bg-slate-50"
                    aria-describedby="export-mapping-error"
                    on:click=move |_| extra.update(|m| m.push(MappingView { source: String::new(), target: String::new() }))>"Add attribute"</button>
                <p id="export-mapping-error" class="text-sm text-red-700">{err("mapping")}</p>
                <p class="text-xs text-slate-500">
                    {move || {
                        let labels = targets();
                        let mapped: Vec<String> = extra.get().iter().filter(|m| !m.target.is_empty()).map(|m| format!("{} → {}", m.source, target_label(&m.target, &labels))).collect();
                        if mapped.is_empty() { String::from("Only the email address is sent.") } else { format!("Also sent: {}", mapped.join(", ")) }
                    }}
                </p>
            </section>

            <section class="space-y-2 rounded-lg bg-white p-5 shadow-sm">
                <h2 class="font-semibold">"Segments"</h2>
                <input id="export-segments" type="search" aria-label="Search segments" placeholder="Search segments"
                    aria-describedby="export-segments-error"
                    class="block w-full max-w-sm rounded border border-slate-300 px-3 py-2 text-sm" bind:value=search/>
                <div class="max-h-64 space-y-1 overflow-y-auto">
                    {move || {
                        let q = search.get().to_lowercase();
                        segments.get_value().into_iter().filter(|s| s.name.to_lowercase().contains(&q)).map(|s| {
                            let sid = s.id;
                            view! {
                                <label class="flex items-center gap-2 text-sm">
                                    <input type="checkbox" prop:checked=move || segment_ids.with(|v| v.contains(&sid))
                                        on:change=move |ev| {
                                            let on = event_target_checked(&ev);
                                            segment_ids.update(|v| { v.retain(|x| *x != sid); if on { v.push(sid); v.sort_unstable(); } });
                                        }/>
                                    {format!("{} ({} members)", s.name, group(s.members))}
                                </label>
                            }
                        }).collect_view()
                    }}
                </div>
                <p role="status" aria-live="polite" class="text-sm font-medium" data-testid="export-count">
                    <Transition fallback=|| "Counting…">
                        {move || Suspend::new(async move {
                            match count.await {
                                Ok(n) if n as u64 > max_profiles => format!("{} profiles selected: more than {}, so a run would fail before sending anything. Choose fewer segments.", group(n), group(max_profiles)),
                                Ok(n) => format!("{} profiles selected", group(n)),
                                Err(e) => e.to_string(),
                            }
                        })}
                    </Transition>
                </p>
                {move || match filled.get() {
                    Some(Ok((with, all))) if all > 0 && with < all => {
                        let field = email_source.get();
                        let text = if with == 0 {
                            format!("None of these {} profiles has a value in {field}: a run would send nothing. Check the Email mapping.", group(all))
                        } else {
                            format!("{} of these {} profiles ({}%) have a value in {field}; the others will be skipped.", group(with), group(all), with * 100 / all)
                        };
                        Some(view! { <p class="rounded border border-amber-300 bg-amber-50 px-3 py-2 text-sm text-amber-900" data-testid="email-fill-warning">{text}</p> })
                    }
                    _ => None,
                }}
                <p id="export-segments-error" class="text-sm text-red-700">{err("segments")}</p>
            </section>

            <section class="space-y-2 rounded-lg bg-white p-5 shadow-sm">
                <h2 class="font-semibold">"Options"</h2>
                <label class="block text-sm font-medium text-slate-700">"Export name"
                    <input id="export-name" class="mt-1 block w-full rounded border border-slate-300 px-3 py-2"
                        aria-describedby="export-name-error" aria-invalid=invalid("name") bind:value=name/>
                </label>
                <p id="export-name-error" class="text-sm text-red-700">{err("name")}</p>
                <label class="flex items-center gap-2 text-sm">
                    <input type="checkbox" bind:checked=on_schedule/>
                    "Run on every scheduled refresh (otherwise only with Run now)"
                </label>
                <label class="flex items-center gap-2 text-sm">
                    <input type="checkbox" bind:checked=remove_left/>
                    "Remove contacts who left the segments from the list"
                </label>
                <p class="text-xs text-slate-500">"Only contacts this export added are removed, never anyone added another way. A run stops before removing more than 20% of the list."</p>
            </section>

            {move || form_error(save.value())().map(|e| view! { <ErrorBanner error=e/> })}
            <div class="flex items-center gap-3">
                <button type="submit" class="rounded bg-slate-900 px-4 py-2 text-sm font-medium text-white hover:bg-slate-700 disabled:opacity-50"
                    disabled=move || save.pending().get()>"Save"</button>
                <A href="/data/exports" attr:class="text-sm underline">"Cancel"</A>
                <span class="text-xs text-slate-500">"Saving does not run the export."</span>
            </div>
        </form>
    }
}

#[component]
fn ExportPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || {
        params
            .read()
            .get("id")
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let active = RwSignal::new(false);
    let tick = live_ticker(active);
    let run = ServerAction::<RunExport>::new();
    let detail = Resource::new(
        move || (id(), tick.get(), run.version().get()),
        |(id, _, _)| get_export(id),
    );
    Effect::new(move |_| {
        if let Some(Ok(d)) = detail.get() {
            active.set(d.runs.iter().any(RunView::is_active));
        }
    });
    view! {
        <p class="text-sm"><A href="/data/exports" attr:class="underline">"Exports"</A></p>
        {move || form_error(run.value())().map(|e| view! { <div class="mt-2"><ErrorBanner error=e/></div> })}
        <Transition fallback=|| view! { <p class="text-slate-500">"Loading export…"</p> }>
            {move || Suspend::new(async move {
                match detail.await {
                    Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                    Ok(d) => {
                        let e = d.export.clone();
                        let eid = e.id;
                        let running = d.runs.iter().any(RunView::is_active);
                        let can_run = e.can_change && e.enabled && !running;
                        // Why the buttons are missing or greyed, when they are.
                        let why_not = if !e.can_change {
                            Some(String::from("Only the export's owner or an administrator can run, change or remove it."))
                        } else if !e.enabled {
                            Some(format!("Disabled: {}", e.disabled_reason.clone().unwrap_or_else(|| String::from("its connection cannot be used"))))
                        } else if running {
                            Some(String::from("A run is in progress: the next can start when it ends."))
                        } else {
                            None
                        };
                        let confirm_full = RwSignal::new(false);
                        let can_change = e.can_change;
                        view! {
                            <Title text=format!("{} · Exports · Segment Export", e.name)/>
                            <div class="mt-1 flex flex-wrap items-start justify-between gap-4">
                                <h1 class="text-2xl font-semibold">{e.name.clone()}</h1>
                                <Show when=move || can_change>
                                    <div class="flex flex-wrap gap-2">
                                        <button type="button" class="rounded bg-slate-900 px-3 py-2 text-sm text-white disabled:opacity-50" disabled=move || !can_run
                                            on:click=move |_| { run.dispatch(RunExport { id: eid, mode: String::from("incremental") }); }>"Run now"</button>
                                        <button type="button" class="rounded border border-slate-300 px-3 py-2 text-sm disabled:opacity-50" disabled=move || !can_run
                                            on:click=move |_| confirm_full.set(true)>"Full resend"</button>
                                        <button type="button" class="rounded border border-slate-300 px-3 py-2 text-sm disabled:opacity-50" disabled=move || !can_run
                                            on:click=move |_| { run.dispatch(RunExport { id: eid, mode: String::from("dry_run") }); }>"Dry run"</button>
                                        <A href=format!("/data/exports/{eid}/edit") attr:class="rounded border border-slate-300 px-3 py-2 text-sm">"Edit"</A>
                                    </div>
                                </Show>
                            </div>
                            {why_not.map(|w| view! { <p class="mt-2 text-sm text-slate-600" data-testid="why-not">{w}</p> })}
                            <Show when=move || confirm_full.get()>
                                <div role="alertdialog" aria-label="Confirm full resend" class="mt-3 max-w-2xl rounded border border-amber-300 bg-amber-50 p-3 text-sm">
                                    <p>"Send every contact again, changed or not? This uses more of the daily Constant Contact quota than a normal run; contacts that are already on the list are updated, never duplicated."</p>
                                    <div class="mt-2 flex gap-2">
                                        <button type="button" class="rounded bg-slate-900 px-3 py-1 text-white"
                                            on:click=move |_| { confirm_full.set(false); run.dispatch(RunExport { id: eid, mode: String::from("full") }); }>"Send everything again"</button>
                                        <button type="button" class="rounded border border-slate-300 px-3 py-1" on:click=move |_| confirm_full.set(false)>"Cancel"</button>
                                    </div>
                                </div>
                            </Show>
                            <dl class="mt-4 grid max-w-2xl grid-cols-[10rem_1fr] gap-y-1 rounded-lg bg-white p-5 text-sm shadow-sm">
                                <dt class="text-slate-500">"Connection"</dt><dd>{d.export.connection.clone().unwrap_or_else(|| String::from("(removed)"))}</dd>
                                <dt class="text-slate-500">"List"</dt><dd>{format!("{} ({})", d.export.list_name, d.export.list_id)}</dd>
                                <dt class="text-slate-500">"Segments"</dt><dd>{d.export.segments.join(", ")}</dd>
                                <dt class="text-slate-500">"Fields"</dt>
                                <dd>{d.export.mapping.iter().map(|m| format!("{} → {}", m.source, m.target)).collect::<Vec<_>>().join(", ")}</dd>
                                <dt class="text-slate-500">"Schedule"</dt><dd>{if d.export.on_schedule { "On scheduled refresh and on demand" } else { "On demand only" }}</dd>
                                <dt class="text-slate-500">"Removals"</dt><dd>{if d.export.remove_left { "Contacts who leave are removed" } else { "Off" }}</dd>
                                <dt class="text-slate-500">"Owner"</dt><dd>{d.export.owner.clone().unwrap_or_default()}</dd>
                            </dl>
                            <h2 class="mt-6 font-semibold">"Run history"</h2>
                            {if d.runs.is_empty() {
                                view! { <p class="mt-2 text-sm text-slate-500">"Never run."</p> }.into_any()
                            } else {
                                view! {
                                    <ul class="mt-2 max-w-2xl space-y-2">
                                        {d.runs.into_iter().map(|r| view! { <li class="rounded-lg bg-white p-3 shadow-sm"><RunSummary run=r/></li> }).collect_view()}
                                    </ul>
                                }.into_any()
                            }}
                        }.into_any()
                    }
                }
            })}
        </Transition>
    }
}

#[component]
fn RunPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || {
        params
            .read()
            .get("id")
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let page_no = RwSignal::new(0i64);
    let active = RwSignal::new(false);
    let tick = live_ticker(active);
    let cancel = ServerAction::<CancelRun>::new();
    let detail = Resource::new(
        move || (id(), page_no.get(), tick.get(), cancel.version().get()),
        |(id, p, _, _)| get_run(id, p),
    );
    Effect::new(move |_| {
        if let Some(Ok(d)) = detail.get() {
            active.set(d.run.is_active());
        }
    });
    view! {
        <p class="text-sm"><A href="/data/exports" attr:class="underline">"Exports"</A></p>
        {move || form_error(cancel.value())().map(|e| view! { <div class="mt-2"><ErrorBanner error=e/></div> })}
        <Transition fallback=|| view! { <p class="text-slate-500">"Loading run…"</p> }>
            {move || Suspend::new(async move {
                match detail.await {
                    Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                    Ok(d) => view! { <RunBody d page_no cancel/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn RunBody(d: RunDetail, page_no: RwSignal<i64>, cancel: ServerAction<CancelRun>) -> impl IntoView {
    let r = d.run.clone();
    let c = r.counts.clone();
    let rid = r.id;
    let pages = (d.errors_total + 49) / 50;
    let dry = r.mode == "dry_run";
    let rows: Vec<(&'static str, u64)> = if dry {
        vec![
            ("Profiles read", c.read),
            ("Would add (new)", c.adds),
            ("Would update (changed)", c.updates),
            ("Would send again (unchanged, full resend)", c.resent),
            ("Unchanged (not sent)", c.unchanged),
            ("Would remove", c.removals),
            ("Import batches", c.batches),
            ("API calls needed", c.api_calls),
            ("Daily API calls left", c.quota_left),
            ("Expected duration (s)", c.eta_seconds),
        ]
    } else {
        vec![
            ("Profiles read", c.read),
            ("Sent", c.sent),
            ("New", c.adds),
            ("Changed", c.updates),
            ("Sent again unchanged (full resend)", c.resent),
            ("Unchanged (not sent)", c.unchanged),
            ("Processed by Constant Contact", c.accepted),
            ("Rejected by Constant Contact", c.rejected),
            ("Unsubscribed (not added)", c.unsubscribed),
            ("Left the segments", c.removals),
            ("Removed from the list", c.removed),
            ("Batches done", c.batches_done),
            ("API calls used", c.api_calls),
        ]
    };
    let skips: Vec<(&'static str, u64)> = vec![
        ("No email", c.skipped_no_email),
        ("Invalid email", c.skipped_invalid_email),
        ("Duplicate email", c.skipped_duplicate_email),
        (
            "Value Constant Contact would refuse",
            c.skipped_invalid_value,
        ),
        ("Unsubscribed in Constant Contact", c.skipped_unsubscribed),
    ];
    view! {
        <Title text=format!("Run #{rid} · Segment Export")/>
        <div class="mt-1 flex items-start justify-between gap-4">
            <div>
                <h1 class="text-2xl font-semibold">{format!("Run #{rid} of {}", r.export_name)}</h1>
                <p class="mt-1 flex items-center gap-2">
                    <span data-testid="run-status" class=badge_class(r.badge())>{r.status_label()}</span>
                    <span class="text-sm text-slate-600">{mode_label(&r.mode)}</span>
                </p>
            </div>
            <Show when=move || d.can_cancel>
                <button type="button" class="rounded border border-red-300 px-3 py-2 text-sm text-red-700 hover:bg-red-50 disabled:opacity-50"
                    disabled=move || cancel.pending().get()
                    on:click=move |_| { cancel.dispatch(CancelRun { id: rid }); }>"Cancel run"</button>
            </Show>
        </div>
        {r.message.clone().map(|m| view! { <p class="mt-3 max-w-3xl rounded bg-white p-3 text-sm shadow-sm" data-testid="run-message">{m}</p> })}
        {r.is_active().then(|| view! { <div class="mt-3"><RunSummary run=r.clone()/></div> })}
        <div class="mt-4 grid max-w-4xl gap-4 md:grid-cols-2">
            <section class="rounded-lg bg-white p-4 text-sm shadow-sm">
                <h2 class="font-semibold">"Timeline"</h2>
                <ul class="mt-2 space-y-1">
                    <li>{format!("Queued {} ({})", r.queued_at, r.requested_by.clone().unwrap_or_else(|| r.trigger.clone()))}</li>
                    {r.started_at.clone().map(|s| view! { <li>{format!("Started {s}")}</li> })}
                    {d.batches.iter().map(|b| view! {
                        <li class="text-slate-600">{format!("{} {} batch {} of {} contacts: {}", b.at, b.kind, b.seq, b.size, b.state)}</li>
                    }).collect_view()}
                    {r.finished_at.clone().map(|f| view! { <li>{format!("Finished {f}")}</li> })}
                    {r.duration_seconds.map(|s| view! { <li class="text-slate-600">{format!("Duration {s} s")}</li> })}
                    {(r.attempts > 1).then(|| view! { <li class="text-slate-600">{format!("Resumed {} times after a worker stopped", r.attempts - 1)}</li> })}
                </ul>
            </section>
            <section class="rounded-lg bg-white p-4 text-sm shadow-sm">
                <h2 class="font-semibold">"Counts"</h2>
                <dl class="mt-2 grid grid-cols-[1fr_auto] gap-y-1" data-testid="run-count-table">
                    {rows.into_iter().map(|(k, v)| view! { <dt class="text-slate-600">{k}</dt><dd class="tabular-nums">{group(v)}</dd> }).collect_view()}
                </dl>
                <h3 class="mt-3 font-medium">"Skipped"</h3>
                <dl class="mt-1 grid grid-cols-[1fr_auto] gap-y-1">
                    {skips.into_iter().map(|(k, v)| view! { <dt class="text-slate-600">{k}</dt><dd class="tabular-nums">{group(v)}</dd> }).collect_view()}
                </dl>
            </section>
        </div>
        <section class="mt-6 max-w-5xl">
            <div class="flex items-center justify-between">
                <h2 class="font-semibold">{format!("Contact errors ({})", group(d.errors_total))}</h2>
                <a href=format!("/runs/{rid}/errors.csv") download=format!("run-{rid}-errors.csv") class="rounded border border-slate-300 px-3 py-1 text-sm hover:bg-slate-50">"Download CSV"</a>
            </div>
            {if d.errors.is_empty() {
                view! { <p class="mt-2 text-sm text-slate-500">"No contact had a problem."</p> }.into_any()
            } else {
                view! {
                    <table class="mt-2 w-full rounded-lg bg-white text-left text-sm shadow-sm" data-testid="run-errors">
                        <thead class="text-slate-500"><tr>
                            <th class="px-3 py-2 font-medium">"Profile"</th>
                            <th class="px-3 py-2 font-medium">"Email"</th>
                            <th class="px-3 py-2 font-medium">"Problem"</th>
                            <th class="px-3 py-2 font-medium">"Field"</th>
                            <th class="px-3 py-2 font-medium">"Reason"</th>
                        </tr></thead>
                        <tbody>
                            {d.errors.into_iter().map(|e| view! {
                                <tr class="border-t border-slate-100">
                                    <td class="px-3 py-1 font-mono text-xs">{e.profile_id}</td>
                                    <td class="px-3 py-1">{e.email}</td>
                                    <td class="px-3 py-1">{e.kind.replace('_', " ")}</td>
                                    <td class="px-3 py-1">{e.field}</td>
                                    <td class="px-3 py-1">{e.reason}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                    <div class="mt-2 flex items-center gap-2 text-sm">
                        <button type="button" class="rounded border border-slate-300 px-2 py-1 disabled:opacity-50" disabled=move || page_no.get() == 0
                            on:click=move |_| page_no.update(|p| *p = (*p - 1).max(0))>"Previous"</button>
                        <span>{move || format!("Page {} of {}", group(page_no.get() + 1), group(pages.max(1)))}</span>
                        <button type="button" class="rounded border border-slate-300 px-2 py-1 disabled:opacity-50" disabled=move || { page_no.get() + 1 >= pages }
                            on:click=move |_| page_no.update(|p| *p += 1)>"Next"</button>
                    </div>
                }.into_any()
            }}
        </section>
    }
}
