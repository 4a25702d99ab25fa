//! Admin > System: when the scheduled refresh runs, and the next runs.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::{field_error, form_error, ErrorBanner};
use crate::model::UserView;
use crate::system_api::{get_system, RefreshNow, SaveSchedule, ScheduleInput, SystemView};

pub fn page(_user: UserView) -> AnyView {
    view! { <SystemPage/> }.into_any()
}

const DAYS: [(u8, &str); 7] = [
    (1, "Monday"),
    (2, "Tuesday"),
    (3, "Wednesday"),
    (4, "Thursday"),
    (5, "Friday"),
    (6, "Saturday"),
    (0, "Sunday"),
];

/// Zones offered in the list; any IANA name can be typed.
const ZONES: [&str; 12] = [
    "UTC",
    "Europe/Budapest",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Paris",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Australia/Sydney",
];

#[component]
fn SystemPage() -> impl IntoView {
    let save = ServerAction::<SaveSchedule>::new();
    let refresh = ServerAction::<RefreshNow>::new();
    // Read again after a successful save or refresh only: a refused save
    // keeps what the admin typed.
    let saved = RwSignal::new(0u32);
    Effect::new(move |_| {
        if matches!(save.value().get(), Some(Ok(_))) || matches!(refresh.value().get(), Some(Ok(_)))
        {
            saved.update(|n| *n += 1);
        }
    });
    let system = Resource::new(move || saved.get(), |_| get_system());
    view! {
        <Title text="System · Segment Export"/>
        <h1 class="text-2xl font-semibold">"System"</h1>
        <p class="mt-1 text-slate-600">"The scheduled refresh re-evaluates the rule segments, then runs every export that runs on the schedule."</p>
        <Suspense fallback=|| view! { <p class="mt-4 text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match system.await {
                    Ok(v) => view! { <ScheduleForm v save refresh/> }.into_any(),
                    Err(e) => view! { <div class="mt-4"><ErrorBanner error=e/></div> }.into_any(),
                }
            })}
        </Suspense>
        <crate::pages::alerts::AlertsSection/>
    }
}

#[component]
fn ScheduleForm(
    v: SystemView,
    save: ServerAction<SaveSchedule>,
    refresh: ServerAction<RefreshNow>,
) -> impl IntoView {
    let s = v.schedule.clone();
    let mode = RwSignal::new(s.mode.clone());
    let times = RwSignal::new(s.times.join(", "));
    let weekdays = RwSignal::new(s.weekdays.clone());
    let cron = RwSignal::new(s.cron.clone());
    let zone = RwSignal::new(s.time_zone.clone());
    let submit = move || {
        let input = ScheduleInput {
            mode: mode.get_untracked(),
            times: times
                .get_untracked()
                .split(',')
                .map(|t| t.trim().to_owned())
                .collect(),
            weekdays: weekdays.get_untracked(),
            cron: cron.get_untracked(),
            time_zone: zone.get_untracked(),
        };
        save.dispatch(SaveSchedule {
            schedule: serde_json::to_string(&input).unwrap_or_default(),
        });
    };
    let err = move |f: &'static str| field_error(save.value(), f);
    let saved = move || matches!(save.value().get(), Some(Ok(_)));
    let queued = move || match refresh.value().get() {
        Some(Ok(n)) => Some(format!("Refreshed: {n} export runs queued.")),
        _ => None,
    };
    view! {
        <form class="mt-6 max-w-2xl space-y-4 rounded-lg bg-white p-5 shadow-sm" on:submit=move |ev| { ev.prevent_default(); submit(); }>
            <h2 class="font-semibold">"Scheduled refresh"</h2>
            <fieldset class="space-y-1 text-sm">
                <legend class="font-medium text-slate-700">"How often"</legend>
                {[("daily", "Every day"), ("weekly", "On some days of the week"), ("cron", "A cron expression"), ("off", "Off (exports run only with Run now)")]
                    .into_iter()
                    .map(|(k, label)| view! {
                        <label class="flex items-center gap-2">
                            <input type="radio" name="mode" value=k prop:checked=move || mode.get() == k on:change=move |_| mode.set(k.to_owned())/>
                            {label}
                        </label>
                    })
                    .collect_view()}
            </fieldset>
            <p class="text-sm text-red-700">{err("mode")}</p>
            <Show when=move || mode.get() == "daily" || mode.get() == "weekly">
                <label class="block text-sm font-medium text-slate-700">"At (HH:MM, separated by commas)"
                    <input aria-label="Times" class="mt-1 block w-full rounded border border-slate-300 px-3 py-2" bind:value=times/>
                </label>
                <p class="text-sm text-red-700">{err("times")}</p>
            </Show>
            <Show when=move || mode.get() == "weekly">
                <fieldset class="flex flex-wrap gap-3 text-sm">
                    <legend class="font-medium text-slate-700">"On"</legend>
                    {DAYS.into_iter().map(|(d, name)| view! {
                        <label class="flex items-center gap-1">
                            <input type="checkbox" prop:checked=move || weekdays.with(|w| w.contains(&d))
                                on:change=move |ev| {
                                    let on = event_target_checked(&ev);
                                    weekdays.update(|w| { w.retain(|x| *x != d); if on { w.push(d); } });
                                }/>
                            {name}
                        </label>
                    }).collect_view()}
                </fieldset>
                <p class="text-sm text-red-700">{err("weekdays")}</p>
            </Show>
            <Show when=move || mode.get() == "cron">
                <label class="block text-sm font-medium text-slate-700">"Cron expression (minute hour day month weekday)"
                    <input aria-label="Cron expression" placeholder="0 2 * * *" class="mt-1 block w-full rounded border border-slate-300 px-3 py-2 font-mono" bind:value=cron/>
                </label>
                <p class="text-sm text-red-700">{err("cron")}</p>
            </Show>
            <label class="block text-sm font-medium text-slate-700">"Time zone"
                <input aria-label="Time zone" list="zones" class="mt-1 block w-full rounded border border-slate-300 px-3 py-2" bind:value=zone/>
                <datalist id="zones">{ZONES.into_iter().map(|z| view! { <option value=z/> }).collect_view()}</datalist>
            </label>
            <p class="text-sm text-red-700">{err("time_zone")}</p>
            {move || form_error(save.value())().map(|e| view! { <ErrorBanner error=e/> })}
            <Show when=saved>
                <p role="status" class="text-sm text-green-700">"Schedule saved."</p>
            </Show>
            <button type="submit" class="rounded bg-slate-900 px-4 py-2 text-sm font-medium text-white hover:bg-slate-700">"Save schedule"</button>
        </form>
        <section class="mt-6 max-w-2xl rounded-lg bg-white p-5 text-sm shadow-sm">
            <h2 class="font-semibold">"Next refreshes"</h2>
            {if v.next_runs.is_empty() {
                view! { <p class="mt-2 text-slate-600">"None: the scheduled refresh is off."</p> }.into_any()
            } else {
                view! { <ul class="mt-2 list-disc pl-5" data-testid="next-runs">{v.next_runs.iter().map(|t| view! { <li>{t.clone()}</li> }).collect_view()}</ul> }.into_any()
            }}
            <p class="mt-3 text-slate-600">{format!("{} exports run on the schedule. Last refresh: {}.", v.scheduled_exports, v.last_refresh.clone().unwrap_or_else(|| String::from("never")))}</p>
            <button type="button" class="mt-3 rounded border border-slate-300 px-3 py-2 hover:bg-slate-50 disabled:opacity-50"
                disabled=move || refresh.pending().get()
                on:click=move |_| { refresh.dispatch(RefreshNow {}); }>"Refresh now"</button>
            <p role="status" class="mt-2 text-green-700">{queued}</p>
            {move || form_error(refresh.value())().map(|e| view! { <ErrorBanner error=e/> })}
        </section>
    }
}
