//! A run's page: its timeline, counts, batches, per-contact errors (paged,
//! and as CSV) and Cancel.

use super::*;

#[component]
pub(super) fn RunPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || {
        params
            .read()
            .get("id")
            .and_then(|v| v.parse::<RunId>().ok())
            .unwrap_or(RunId(0))
    };
    let page_no = RwSignal::new(0i64);
    // The errors' filter as typed, and as applied.
    let typed = RwSignal::new(String::new());
    let filter = RwSignal::new(String::new());
    let active = RwSignal::new(false);
    let tick = live_ticker(active);
    let cancel = ServerAction::<CancelRun>::new();
    let detail = Resource::new(
        move || {
            (
                id(),
                page_no.get(),
                filter.get(),
                tick.get(),
                cancel.version().get(),
            )
        },
        |(id, p, f, _, _)| get_run(id, p, Some(f)),
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
                    Ok(d) => view! { <RunBody d page_no typed filter cancel/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
pub(super) fn RunBody(
    d: RunDetail,
    page_no: RwSignal<i64>,
    typed: RwSignal<String>,
    filter: RwSignal<String>,
    cancel: ServerAction<CancelRun>,
) -> impl IntoView {
    let filtered = !filter.get_untracked().is_empty();
    let searchable = d.errors_total > 0 || filtered;
    let r = d.run.clone();
    let c = r.counts.clone();
    let rid = r.id;
    let pages = (d.errors_total + 49) / 50;
    let dry = r.is_dry_run();
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
                    <span class="text-sm text-slate-600">{r.mode.label()}</span>
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
                    <li>{format!("Queued {} ({})", r.queued_at, r.requested_by.clone().unwrap_or_else(|| r.trigger.as_str().to_owned()))}</li>
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
                <h2 class="font-semibold">{if filtered {
                    format!("Contact errors ({} matching \u{201c}{}\u{201d})", group(d.errors_total), filter.get_untracked())
                } else {
                    format!("Contact errors ({})", group(d.errors_total))
                }}</h2>
                <a href=format!("/runs/{rid}/errors.csv") download=format!("run-{rid}-errors.csv") class="rounded border border-slate-300 px-3 py-1 text-sm hover:bg-slate-50">"Download CSV"</a>
            </div>
            {searchable.then(|| view! {
                <form role="search" aria-label="Filter contact errors" class="mt-2 flex flex-wrap items-end gap-2 text-sm"
                    on:submit=move |ev| {
                        ev.prevent_default();
                        page_no.set(0);
                        filter.set(typed.get_untracked().trim().to_owned());
                    }>
                    <label class="font-medium text-slate-700">"Search errors"
                        <input type="search" placeholder="email, profile, problem or reason" bind:value=typed
                            class="mt-1 block w-72 max-w-full rounded border border-slate-300 px-3 py-1"/>
                    </label>
                    <button type="submit" class="rounded border border-slate-300 px-3 py-1 hover:bg-slate-50">"Search"</button>
                    {filtered.then(|| view! {
                        <button type="button" class="rounded border border-slate-300 px-3 py-1 hover:bg-slate-50"
                            on:click=move |_| { typed.set(String::new()); page_no.set(0); filter.set(String::new()); }>"Show all"</button>
                    })}
                </form>
            })}
            {if d.errors.is_empty() && filtered {
                view! { <p class="mt-2 text-sm text-slate-500">"No errors match."</p> }.into_any()
            } else if d.errors.is_empty() {
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
