//! Overview, the home page: every export's health (failing first, with
//! its last runs as a chart), the connections, the Constant Contact quota
//! used today; then who you are and this installation.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

use crate::components::{group, ErrorBanner};
use crate::model::{Role, RunStatus, UserView};
use crate::overview_api::{get_dashboard, ConnectionHealth, Dashboard, ExportHealth, RunBar};
use crate::users_api::get_overview;

pub fn page(user: UserView) -> AnyView {
    view! { <HomePage user/> }.into_any()
}

#[component]
fn HomePage(user: UserView) -> impl IntoView {
    let facts = Resource::new(|| (), |_| get_overview());
    // Read again every second while a run is active: statuses move.
    let active = RwSignal::new(false);
    let tick = crate::pages::exports::live_ticker(active);
    let dashboard = Resource::new(move || tick.get(), |_| get_dashboard());
    Effect::new(move |_| {
        if let Some(Ok(d)) = dashboard.get() {
            active.set(
                d.exports
                    .iter()
                    .any(|e| e.last_run.as_ref().is_some_and(|r| r.is_active())),
            );
        }
    });
    let role = user.role;
    view! {
        <Title text="Overview · Segment Export"/>
        <h1 class="text-2xl font-semibold">"Overview"</h1>
        <p class="mt-1 text-slate-600">"Export segments of customer profiles to Constant Contact lists."</p>

        <Transition fallback=|| view! { <p class="mt-6 text-slate-500">"Loading exports…"</p> }>
            {move || Suspend::new(async move {
                match dashboard.await {
                    Ok(d) => view! { <Health dashboard=d/> }.into_any(),
                    Err(e) => view! { <div class="mt-6"><ErrorBanner error=e/></div> }.into_any(),
                }
            })}
        </Transition>

        <section class="mt-6 grid gap-4 md:grid-cols-2">
            <div class="rounded-lg bg-white p-5 shadow-sm">
                <h2 class="font-semibold">"Your account"</h2>
                <dl class="mt-3 grid grid-cols-[8rem_1fr] gap-y-1 text-sm">
                    <dt class="text-slate-500">"Email"</dt><dd>{user.email.clone()}</dd>
                    <dt class="text-slate-500">"Role"</dt><dd>{role.label()}</dd>
                    <dt class="text-slate-500">"Last sign-in"</dt>
                    <dd>{user.last_sign_in.clone().unwrap_or_else(|| String::from("This is your first session"))}</dd>
                </dl>
                <p class="mt-3 text-sm text-slate-600">{role.summary()}</p>
            </div>
            <div class="rounded-lg bg-white p-5 shadow-sm">
                <h2 class="font-semibold">"This installation"</h2>
                <Suspense fallback=|| view! { <p class="mt-3 text-sm text-slate-500">"Loading…"</p> }>
                    {move || Suspend::new(async move {
                        match facts.await {
                            Ok(f) => view! {
                                <dl class="mt-3 grid grid-cols-[8rem_1fr] gap-y-1 text-sm">
                                    <dt class="text-slate-500">"Database"</dt><dd>{f.database}</dd>
                                    <dt class="text-slate-500">"Version"</dt><dd>{f.version}</dd>
                                    <dt class="text-slate-500">"Active users"</dt>
                                    <dd>{format!(
                                        "{}, {}, {}",
                                        plural(f.admins, "administrator"),
                                        plural(f.contributors, "contributor"),
                                        plural(f.viewers, "viewer"),
                                    )}</dd>
                                </dl>
                            }.into_any(),
                            Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                        }
                    })}
                </Suspense>
            </div>
        </section>

        <section class="mt-6 rounded-lg bg-white p-5 shadow-sm">
            <h2 class="font-semibold">"Roles"</h2>
            <table class="mt-3 w-full text-left text-sm">
                <thead class="text-slate-500">
                    <tr><th class="py-1 pr-4 font-medium">"Role"</th><th class="py-1 font-medium">"Can"</th></tr>
                </thead>
                <tbody>
                    {Role::ALL.into_iter().map(|r| view! {
                        <tr class="border-t border-slate-100" class:font-semibold=move || r == role>
                            <td class="py-2 pr-4 align-top">{r.label()}</td>
                            <td class="py-2">{r.summary()}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
            <Show when=move || role.allows(Role::Admin)>
                <p class="mt-4 text-sm">
                    <A href="/admin/users" attr:class="underline">"Manage users"</A>
                </p>
            </Show>
        </section>
    }
}

fn plural(n: i64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[component]
fn Health(dashboard: Dashboard) -> impl IntoView {
    let failing = dashboard.exports.iter().filter(|e| e.failing).count();
    let total = dashboard.exports.len();
    let reauth = dashboard
        .connections
        .iter()
        .filter(|c| c.status != "authorized")
        .count();
    let (any_failing, any_reauth) = (failing > 0, reauth > 0);
    view! {
        <section class="mt-6 grid gap-4 sm:grid-cols-3" aria-label="At a glance">
            <div class="rounded-lg bg-white p-4 shadow-sm">
                <p class="text-sm text-slate-600">"Exports needing attention"</p>
                <p data-testid="failing-count" class="mt-1 text-2xl font-semibold"
                    class:text-red-700=any_failing>{format!("{failing} of {total}")}</p>
            </div>
            <div class="rounded-lg bg-white p-4 shadow-sm">
                <p class="text-sm text-slate-600">"Connections to sign in again"</p>
                <p class="mt-1 text-2xl font-semibold" class:text-red-700=any_reauth>{reauth}</p>
            </div>
            <div class="rounded-lg bg-white p-4 shadow-sm">
                <p class="text-sm text-slate-600">"Constant Contact requests today"</p>
                {if dashboard.quota.is_empty() {
                    view! { <p class="mt-1 text-2xl font-semibold">"0"</p> }.into_any()
                } else {
                    view! {
                        <ul class="mt-1 space-y-1 text-sm">
                            {dashboard.quota.iter().map(|q| view! {
                                <li data-testid="quota">
                                    <span class="text-lg font-semibold">{group(q.used)}</span>
                                    {format!(" of {} used, {} left", group(q.limit), group(q.left))}
                                    <span class="block truncate text-xs text-slate-600">{format!("Application {}", q.application)}</span>
                                </li>
                            }).collect_view()}
                        </ul>
                    }.into_any()
                }}
            </div>
        </section>

        <section class="mt-6">
            <h2 class="text-lg font-semibold">"Exports"</h2>
            {if dashboard.exports.is_empty() {
                view! {
                    <p class="mt-2 text-slate-600">
                        "No exports yet. "
                        <A href="/data/exports/new" attr:class="underline">"Add a destination"</A>
                        " to send a segment to a Constant Contact list."
                    </p>
                }.into_any()
            } else {
                view! {
                    <div class="mt-2 overflow-x-auto">
                        <table class="w-full rounded-lg bg-white text-left text-sm shadow-sm">
                            <caption class="sr-only">"Exports, those needing attention first"</caption>
                            <thead class="text-slate-600">
                                <tr>
                                    <th class="px-4 py-2 font-medium">"Export"</th>
                                    <th class="px-4 py-2 font-medium">"Last run"</th>
                                    <th class="px-4 py-2 font-medium">"Next run"</th>
                                    <th class="px-4 py-2 font-medium">"Connection"</th>
                                    <th class="px-4 py-2 font-medium">"Last 30 runs"</th>
                                </tr>
                            </thead>
                            <tbody>
                                {dashboard.exports.into_iter().map(|e| view! { <ExportLine export=e/> }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                }.into_any()
            }}
        </section>

        {(!dashboard.connections.is_empty()).then(|| view! {
            <section class="mt-6">
                <h2 class="text-lg font-semibold">"Connections"</h2>
                <ul class="mt-2 grid gap-2 md:grid-cols-2">
                    {dashboard.connections.into_iter().map(|c| view! { <ConnectionLine connection=c/> }).collect_view()}
                </ul>
            </section>
        })}
    }
}

fn connection_words(status: Option<&str>) -> &'static str {
    match status {
        Some("authorized") => "Authorized",
        Some("needs_reauth") => "Needs re-authentication",
        Some(_) => "Error",
        None => "Removed",
    }
}

#[component]
fn ExportLine(export: ExportHealth) -> impl IntoView {
    let e = export;
    let last = e.last_run.clone().map(|r| {
        let c = &r.counts;
        let outcome = if r.is_dry_run() {
            String::from("dry run")
        } else {
            format!(
                "{} sent · {} skipped · {} failed",
                group(c.sent),
                group(c.skipped()),
                group(c.rejected)
            )
        };
        let when = r
            .finished_at
            .clone()
            .or(r.started_at.clone())
            .unwrap_or(r.queued_at.clone());
        view! {
            <span data-testid="last-status" class="font-medium">{r.status_label()}</span>
            <span class="block text-xs text-slate-600">{when}</span>
            <span class="block text-xs text-slate-600">{outcome}</span>
        }
    });
    let status_word = if e.failing {
        "Needs attention"
    } else {
        "Healthy"
    };
    let chart = view! { <RunChart name=e.name.clone() runs=e.history.clone()/> };
    view! {
        <tr class="border-t border-slate-100 align-top" data-testid="export-health">
            <td class="px-4 py-2">
                <A href=format!("/data/exports/{}", e.id) attr:class="font-medium underline">{e.name.clone()}</A>
                <span class="block text-xs" class:text-red-700=e.failing class:text-slate-600=!e.failing>{status_word}</span>
                {e.disabled_reason.clone().map(|r| view! { <span class="block text-xs text-red-700">{format!("Disabled: {r}")}</span> })}
            </td>
            <td class="px-4 py-2">{last.map_or_else(|| view! { <span class="text-slate-600">"Never run"</span> }.into_any(), IntoAny::into_any)}</td>
            <td class="px-4 py-2 text-slate-600">{e.next_run.clone().unwrap_or_else(|| String::from("On demand only"))}</td>
            <td class="px-4 py-2">
                {e.connection.clone().unwrap_or_else(|| String::from("—"))}
                <span class="block text-xs" class:text-red-700=e.connection_status.as_deref() != Some("authorized")
                    class:text-slate-600=e.connection_status.as_deref() == Some("authorized")>
                    {connection_words(e.connection_status.as_deref())}
                </span>
            </td>
            <td class="px-4 py-2">{chart}</td>
        </tr>
    }
}

/// The last runs as bars: sent (green) over failed (red), scaled to the
/// largest run; described in words for screen readers.
#[component]
fn RunChart(name: String, runs: Vec<RunBar>) -> impl IntoView {
    if runs.is_empty() {
        return view! { <span class="text-xs text-slate-600">"No runs yet"</span> }.into_any();
    }
    let max = runs
        .iter()
        .map(|r| r.sent + r.failed)
        .max()
        .unwrap_or(0)
        .max(1);
    let sent: u64 = runs.iter().map(|r| r.sent).sum();
    let failed: u64 = runs.iter().map(|r| r.failed).sum();
    let label = format!(
        "{name}: last {} runs, {} sent and {} failed in all",
        runs.len(),
        group(sent),
        group(failed)
    );
    const H: u64 = 32;
    view! {
        <svg role="img" aria-label=label width="150" height=H.to_string() viewBox=format!("0 0 150 {H}") class="block">
            {runs.iter().enumerate().map(|(i, r)| {
                let x = (i * 5) as u64;
                let sent_h = r.sent * H / max;
                let failed_h = (r.failed * H / max).max(u64::from(r.failed > 0));
                let title = format!("Run #{}: {} sent, {} failed ({})", r.id, group(r.sent), group(r.failed), r.status.label().to_lowercase());
                view! {
                    <g>
                        <title>{title}</title>
                        <rect x=x.to_string() y=(H - sent_h).to_string() width="4" height=sent_h.to_string() class="fill-green-600"/>
                        <rect x=x.to_string() y=(H - sent_h - failed_h.min(H - sent_h)).to_string() width="4" height=failed_h.min(H - sent_h).to_string() class="fill-red-600"/>
                        {(r.sent + r.failed == 0).then(|| view! {
                            <rect x=x.to_string() y=(H - 1).to_string() width="4" height="1"
                                class=if r.status == RunStatus::Failed { "fill-red-600" } else { "fill-slate-400" }/>
                        })}
                    </g>
                }
            }).collect_view()}
        </svg>
    }.into_any()
}

#[component]
fn ConnectionLine(connection: ConnectionHealth) -> impl IntoView {
    let c = connection;
    let ok = c.status == "authorized";
    let age = c.token_age_days.map(|d| match d {
        0 => String::from("signed in today"),
        1 => String::from("signed in yesterday"),
        d => format!("signed in {d} days ago"),
    });
    view! {
        <li class="rounded-lg bg-white p-4 text-sm shadow-sm" data-testid="connection-health">
            <span class="font-medium">{c.name}</span>
            <span class="ml-2" class:text-red-700=!ok class:text-green-800=ok>{connection_words(Some(&c.status))}</span>
            <span class="block text-xs text-slate-600">
                {age.map(|a| format!("Constant Contact {a} ({})", c.authorized.clone().unwrap_or_default()))}
            </span>
            {c.status_reason.map(|r| view! { <span class="block text-xs text-red-700">{r}</span> })}
        </li>
    }
}
