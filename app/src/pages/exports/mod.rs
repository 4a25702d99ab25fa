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
    ExportForm, ExportId, ExportInputView, ExportRow, Mapping, Role, RunDetail, RunId, RunStatus,
    RunView, SegmentId, UserView,
};

mod editor;
mod run;

use editor::ExportFormPage;
use run::RunPage;

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
        .and_then(|v| v.parse::<ExportId>().ok());
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
pub(crate) fn live_ticker(active: RwSignal<bool>) -> RwSignal<u32> {
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

/// What is left of an active run, in words: the estimate when the run
/// has made one (0 means it has not: it is queued, just started, or only
/// waiting for Constant Contact to process its last imports).
fn eta_text(run: &RunView) -> Option<String> {
    if run.status != RunStatus::Running {
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
                <span class="text-xs text-slate-500">{run.mode.label()}</span>
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
                    {if run.is_dry_run() {
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
    let query = RwSignal::new(String::new());
    let status = RwSignal::new(String::new());
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
        // Outside the live-refreshing list: typing is never interrupted.
        <ExportFilter query status/>
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
                                {move || {
                                    let q = query.get().trim().to_lowercase();
                                    let wanted = status.get();
                                    let shown: Vec<ExportRow> = p.exports.iter().filter(|e| export_matches(e, &q, &wanted)).cloned().collect();
                                    if shown.is_empty() {
                                        view! { <tr><td colspan="7" class="px-4 py-3 text-slate-600">"No exports match."</td></tr> }.into_any()
                                    } else {
                                        shown.into_iter().map(|e| view! { <ExportLine e run remove is_admin next=p.next_refresh.clone()/> }).collect_view().into_any()
                                    }
                                }}
                            </tbody>
                        </table>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}

/// The statuses the filters offer: a run's, "active" (queued or
/// running) and "never" (no run yet).
const STATUS_CHOICES: [(&str, &str); 8] = [
    ("", "All statuses"),
    ("succeeded", "Succeeded"),
    ("partially_succeeded", "Partially succeeded"),
    ("failed", "Failed"),
    ("cancelled", "Cancelled"),
    ("active", "Queued or running"),
    ("dry_run", "Dry run"),
    ("never", "Never run"),
];

/// True when a run (or its absence) has the status chosen in a filter.
fn status_matches(run: Option<&RunView>, wanted: &str) -> bool {
    match (wanted, run) {
        ("", _) => true,
        ("never", r) => r.is_none(),
        ("active", Some(r)) => r.is_active(),
        ("dry_run", Some(r)) => r.is_dry_run(),
        (s, Some(r)) => r.status.as_str() == s && (!r.is_dry_run() || s != "succeeded"),
        (_, None) => false,
    }
}

fn export_matches(e: &ExportRow, q: &str, status: &str) -> bool {
    let text = q.is_empty()
        || [Some(&e.name), e.connection.as_ref(), Some(&e.list_name)]
            .into_iter()
            .flatten()
            .any(|t| t.to_lowercase().contains(q));
    text && status_matches(e.last_run.as_ref(), status)
}

/// Status, trigger and date filter over an export's runs.
#[component]
fn RunFilter(filter: RwSignal<(String, String, String)>) -> impl IntoView {
    let field = "mt-1 block rounded border border-slate-300 px-2 py-1";
    view! {
        <div role="search" aria-label="Filter runs" class="mt-2 flex max-w-2xl flex-wrap items-end gap-3 text-sm">
            <div class="font-medium text-slate-700"><label for="run-filter-status">"Status"</label>
                <select id="run-filter-status" class=field on:change=move |ev| filter.update(|f| f.0 = event_target_value(&ev))>
                    {STATUS_CHOICES.into_iter().filter(|(k, _)| *k != "never")
                        .map(|(k, label)| view! { <option value=k selected=move || filter.with(|f| f.0 == k)>{label}</option> }).collect_view()}
                </select>
            </div>
            <div class="font-medium text-slate-700"><label for="run-filter-trigger">"Started by"</label>
                <select id="run-filter-trigger" class=field on:change=move |ev| filter.update(|f| f.1 = event_target_value(&ev))>
                    {[("", "Anyone or anything"), ("manual", "Run now"), ("schedule", "Scheduled refresh"), ("cli", "Command line"), ("api", "API")]
                        .into_iter()
                        .map(|(k, label)| view! { <option value=k selected=move || filter.with(|f| f.1 == k)>{label}</option> }).collect_view()}
                </select>
            </div>
            <label class="font-medium text-slate-700">"Since"
                <input type="date" class=field prop:value=move || filter.with(|f| f.2.clone())
                    on:change=move |ev| filter.update(|f| f.2 = event_target_value(&ev))/>
            </label>
        </div>
    }
}

/// Search and status filter above the exports.
#[component]
fn ExportFilter(query: RwSignal<String>, status: RwSignal<String>) -> impl IntoView {
    view! {
        <div role="search" aria-label="Filter exports" class="mt-4 flex flex-wrap items-end gap-3 text-sm">
            <label class="font-medium text-slate-700">"Search exports"
                <input type="search" placeholder="name, connection or list" bind:value=query
                    class="mt-1 block w-64 max-w-full rounded border border-slate-300 px-3 py-1"/>
            </label>
            <div class="font-medium text-slate-700"><label for="export-filter-status">"Last run"</label>
                <select id="export-filter-status" class="mt-1 block rounded border border-slate-300 px-2 py-1"
                    on:change=move |ev| status.set(event_target_value(&ev))>
                    {STATUS_CHOICES.into_iter().map(|(k, label)| view! { <option value=k selected=move || status.get() == k>{label}</option> }).collect_view()}
                </select>
            </div>
        </div>
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
fn ExportPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || {
        params
            .read()
            .get("id")
            .and_then(|v| v.parse::<ExportId>().ok())
            .unwrap_or(ExportId(0))
    };
    let active = RwSignal::new(false);
    let tick = live_ticker(active);
    let run = ServerAction::<RunExport>::new();
    // The run history's filter: status, trigger, first day (YYYY-MM-DD).
    let run_filter = RwSignal::new((String::new(), String::new(), String::new()));
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
                                let runs = d.runs.clone();
                                view! {
                                    <RunFilter filter=run_filter/>
                                    <ul class="mt-2 max-w-2xl space-y-2" data-testid="run-history">
                                        {move || {
                                            let (status, trigger, since) = run_filter.get();
                                            let shown: Vec<RunView> = runs.iter().filter(|r| {
                                                status_matches(Some(r), &status)
                                                    && (trigger.is_empty() || r.trigger.as_str() == trigger)
                                                    && (since.is_empty() || r.queued_at.get(..10).is_some_and(|day| day >= since.as_str()))
                                            }).cloned().collect();
                                            if shown.is_empty() {
                                                view! { <li class="text-sm text-slate-600">"No runs match."</li> }.into_any()
                                            } else {
                                                shown.into_iter().map(|r| view! { <li class="rounded-lg bg-white p-3 shadow-sm"><RunSummary run=r/></li> }).collect_view().into_any()
                                            }
                                        }}
                                    </ul>
                                }.into_any()
                            }}
                        }.into_any()
                    }
                }
            })}
        </Transition>
        // Outside the live-refreshing part: a half-filled form stays put.
        {move || {
            let export_id = id();
            (export_id.get() > 0).then(|| view! { <crate::pages::alerts::ExportAlertsSection export_id/> })
        }}
    }
}
