//! Data > Segments: the list (with search), a new rule segment (condition
//! builder with a live member count), and a segment's page (rule, count,
//! preview, fill rates, edit, refresh).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_params_map};

use crate::components::{
    field_error, form_error, group, AfterHydration, ErrorBanner, ErrorSummary,
};
use crate::model::{
    ConditionInput, FieldView, Role, RuleInput, SegmentDetail, SegmentId, UserView, OPS,
};
use crate::pages::upload::{ProfileUpload, SegmentUpload};
use crate::segments_api::{
    get_segment, list_segments, preview_rule, profile_fields, CreateSegment, RefreshSegment,
    UpdateSegment,
};

pub fn list_page(user: UserView) -> AnyView {
    view! { <SegmentsPage can_manage=user.role.allows(Role::Contributor)/> }.into_any()
}

pub fn new_page(_user: UserView) -> AnyView {
    view! { <NewSegmentPage/> }.into_any()
}

pub fn detail_page(_user: UserView) -> AnyView {
    view! { <SegmentPage/> }.into_any()
}

#[component]
fn SegmentsPage(can_manage: bool) -> impl IntoView {
    let search = RwSignal::new(String::new());
    let imports = RwSignal::new(0u32);
    let segments = Resource::new(
        move || (search.get(), imports.get()),
        |(s, _)| list_segments(s),
    );
    view! {
        <Title text="Segments · Segment Export"/>
        <div class="flex items-start justify-between gap-4">
            <div>
                <h1 class="text-2xl font-semibold">"Segments"</h1>
                <p class="mt-1 text-slate-600">"Groups of customer profiles that exports send."</p>
            </div>
            <Show when=move || can_manage>
                <A href="/data/segments/new" attr:class="rounded bg-slate-900 px-4 py-2 text-sm font-medium text-white hover:bg-slate-700">"New segment"</A>
            </Show>
        </div>
        <label class="mt-4 block max-w-sm text-sm font-medium text-slate-700">"Search by name"
            <input type="search" class="mt-1 block w-full rounded border border-slate-300 px-3 py-2" bind:value=search/>
        </label>
        <Transition fallback=|| view! { <p class="mt-4 text-slate-500">"Loading segments…"</p> }>
            {move || Suspend::new(async move {
                match segments.await {
                    Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                    Ok(list) if list.is_empty() => view! {
                        <p class="mt-6 rounded-lg bg-white p-6 text-sm text-slate-600 shadow-sm">
                            "No segments yet. Import profiles below (or generate demo data with server demo-data), then create a rule segment or import a static one."
                        </p>
                    }.into_any(),
                    Ok(list) => view! {
                        <table class="mt-4 w-full rounded-lg bg-white text-left text-sm shadow-sm">
                            <thead class="text-slate-500">
                                <tr>
                                    <th class="px-4 py-2 font-medium">"Name"</th>
                                    <th class="px-4 py-2 font-medium">"Kind"</th>
                                    <th class="px-4 py-2 font-medium">"Members"</th>
                                    <th class="px-4 py-2 font-medium">"Last refreshed"</th>
                                </tr>
                            </thead>
                            <tbody>
                                {list.into_iter().map(|s| view! {
                                    <tr class="border-t border-slate-100">
                                        <td class="px-4 py-2">
                                            <A href=format!("/data/segments/{}", s.id) attr:class="font-medium underline">{s.name.clone()}</A>
                                            <p class="text-xs text-slate-500">{s.rule_text.clone().unwrap_or_else(|| s.description.clone())}</p>
                                        </td>
                                        <td class="px-4 py-2">{if s.kind == "rule" { "Rule" } else { "Static list" }}</td>
                                        <td class="px-4 py-2 tabular-nums">{group(s.member_count)}</td>
                                        <td class="px-4 py-2 text-slate-600">{s.refreshed.clone().unwrap_or_else(|| String::from("Never"))}</td>
                                    </tr>
                                }.into_any()).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                }
            })}
        </Transition>
        <Show when=move || can_manage>
            <ProfileUpload on_done=move |_| imports.update(|n| *n += 1)/>
            <SegmentUpload on_done=move |_| imports.update(|n| *n += 1)/>
        </Show>
    }
}

fn indices(n: usize) -> Vec<usize> {
    (0..n).collect()
}

/// The condition builder: match all/any, and rows of field, operator, value.
#[component]
fn RuleBuilder(
    fields: Vec<FieldView>,
    rule: RwSignal<RuleInput>,
    /// The segment's saved rule and how many members its last refresh
    /// found, when it has one.
    stored: Option<(RuleInput, i64)>,
) -> impl IntoView {
    let fields = StoredValue::new(fields);
    view! {
        <fieldset class="space-y-3">
            <legend class="text-sm font-medium text-slate-700">"Conditions"</legend>
            <label class="flex items-center gap-2 text-sm">"Profiles that match"
                <select aria-label="Match" class="rounded border border-slate-300 px-2 py-1"
                    prop:value=move || rule.with(|r| r.matching.clone())
                    on:change=move |ev| rule.update(|r| r.matching = event_target_value(&ev))>
                    <option value="all">"all conditions (AND)"</option>
                    <option value="any">"any condition (OR)"</option>
                </select>
            </label>
            <For
                each=move || indices(rule.with(|r| r.conditions.len()))
                key=|i| *i
                children=move |i| {
                    let n = i + 1;
                    let get = move |f: fn(&ConditionInput) -> String| move || rule.with(|r| r.conditions.get(i).map(f).unwrap_or_default());
                    view! {
                        <div class="flex flex-wrap items-center gap-2">
                            <select aria-label=format!("Field {n}") class="rounded border border-slate-300 px-2 py-1"
                                prop:value=get(|c| c.field.clone())
                                on:change=move |ev| rule.update(|r| if let Some(c) = r.conditions.get_mut(i) { c.field = event_target_value(&ev) })>
                                <option value="">"Choose a field"</option>
                                {fields.get_value().into_iter().map(|f| view! {
                                    <option value=f.name.clone()>{format!("{} ({}, {} filled)", f.name, f.kind, f.filled)}</option>
                                }).collect_view()}
                            </select>
                            <select aria-label=format!("Operator {n}") class="rounded border border-slate-300 px-2 py-1"
                                prop:value=get(|c| c.op.clone())
                                on:change=move |ev| rule.update(|r| if let Some(c) = r.conditions.get_mut(i) { c.op = event_target_value(&ev) })>
                                {OPS.into_iter().map(|(k, w)| view! { <option value=k>{w}</option> }).collect_view()}
                            </select>
                            <input aria-label=format!("Value {n}") class="rounded border border-slate-300 px-2 py-1"
                                prop:value=get(|c| c.value.clone())
                                on:input=move |ev| rule.update(|r| if let Some(c) = r.conditions.get_mut(i) { c.value = event_target_value(&ev) })/>
                            <button type="button" aria-label=format!("Remove condition {n}") class="rounded border border-slate-300 px-2 py-1"
                                on:click=move |_| rule.update(|r| { if r.conditions.len() > 1 && i < r.conditions.len() { r.conditions.remove(i); } })>"✕"</button>
                        </div>
                    }
                }
            />
            <button type="button" class="rounded border border-slate-300 px-3 py-1 text-sm hover:bg-slate-50"
                on:click=move |_| rule.update(|r| r.conditions.push(ConditionInput { field: String::new(), op: String::from("eq"), value: String::new() }))>
                "Add condition"
            </button>
            <p role="status" aria-live="polite" class="text-sm font-medium">
                // Counted in the browser only: see `AfterHydration`.
                <AfterHydration fallback=|| "Counting…">
                    <RuleCount rule stored=stored.clone()/>
                </AfterHydration>
            </p>
        </fieldset>
    }
}

/// What the count line is about: a rule still being written, the saved
/// rule (the members its last refresh found), or another rule to count
/// (as JSON).
#[derive(Clone, PartialEq)]
enum Ask {
    Incomplete,
    Saved(i64),
    Count(String),
}

/// What the count line says.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
enum Tally {
    Incomplete,
    Saved(i64),
    Now(i64),
}

/// How long a rule must stay the same before it is counted.
const COUNT_AFTER_MS: u64 = 400;

/// How many profiles the rule matches, counted again as it changes.
#[component]
fn RuleCount(rule: RwSignal<RuleInput>, stored: Option<(RuleInput, i64)>) -> impl IntoView {
    // Only a complete rule is counted: a condition without a field is
    // being written, and asking the server about it would only be refused.
    // A segment's saved rule is not counted again when its page opens:
    // that reads every profile (a second or more for a million), and its
    // last refresh has the number (Refresh counts it again).
    let wanted = Memo::new(move |_| {
        rule.with(|r| match &stored {
            Some((saved, members)) if saved == r => Ask::Saved(*members),
            _ if r.conditions.iter().any(|c| c.field.is_empty()) => Ask::Incomplete,
            _ => Ask::Count(serde_json::to_string(r).unwrap_or_default()),
        })
    });
    // A rule is counted once its value has stopped changing for a moment,
    // not at every key typed: each count reads every profile.
    let asked = RwSignal::new(wanted.get_untracked());
    let pending = StoredValue::new(None::<leptos::leptos_dom::helpers::TimeoutHandle>);
    let cancel = move || {
        if let Some(timer) = pending.try_update_value(Option::take).flatten() {
            timer.clear();
        }
    };
    Effect::new(move |_| {
        let next = wanted.get();
        cancel();
        if !matches!(next, Ask::Count(_)) {
            asked.set(next);
        } else if next != asked.get_untracked() {
            let timer = set_timeout_with_handle(
                move || {
                    asked.try_set(next);
                },
                std::time::Duration::from_millis(COUNT_AFTER_MS),
            );
            pending.set_value(timer.ok());
        }
    });
    on_cleanup(cancel);
    let count = Resource::new(
        move || asked.get(),
        |ask| async move {
            match ask {
                Ask::Count(json) => preview_rule(json).await.map(Tally::Now),
                Ask::Saved(members) => Ok(Tally::Saved(members)),
                Ask::Incomplete => Ok(Tally::Incomplete),
            }
        },
    );
    view! {
        <Transition fallback=|| "Counting…">
            {move || Suspend::new(async move {
                match count.await {
                    Ok(Tally::Now(n)) => format!("{} profiles match", group(n)),
                    Ok(Tally::Saved(n)) => format!("{} profiles matched at the last refresh", group(n)),
                    Ok(Tally::Incomplete) => String::from("Choose a field for every condition to count the matching profiles."),
                    Err(e) => format!("Not counted yet: {e}"),
                }
            })}
        </Transition>
    }
}

#[component]
fn NewSegmentPage() -> impl IntoView {
    let fields = Resource::new(|| (), |_| profile_fields());
    view! {
        <Title text="New segment · Segment Export"/>
        <h1 class="text-2xl font-semibold">"New segment"</h1>
        <Suspense fallback=|| view! { <p class="mt-4 text-slate-500">"Loading fields…"</p> }>
            {move || Suspend::new(async move {
                match fields.await {
                    Ok(f) => {
                        let update = ServerAction::<UpdateSegment>::new();
                        view! { <SegmentForm fields=f existing=None update/> }.into_any()
                    }
                    Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// Name, description and rule; creates a segment or saves an existing one.
#[component]
fn SegmentForm(
    fields: Vec<FieldView>,
    existing: Option<(SegmentId, String, String, RuleInput, Option<i64>)>,
    update: ServerAction<UpdateSegment>,
) -> impl IntoView {
    let create = ServerAction::<CreateSegment>::new();
    let (id, name0, desc0, rule0, stored) = match existing {
        Some((id, n, d, r, members)) => (Some(id), n, d, r.clone(), members.map(|m| (r, m))),
        None => (
            None,
            String::new(),
            String::new(),
            RuleInput::default(),
            None,
        ),
    };
    let name = RwSignal::new(name0);
    let description = RwSignal::new(desc0);
    let rule = RwSignal::new(rule0);
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(s)) = create.value().get() {
            navigate(&format!("/data/segments/{}", s.id), Default::default());
        }
    });
    let name_error = move || {
        field_error(create.value(), "name")().or_else(|| field_error(update.value(), "name")())
    };
    let rule_error = move || {
        field_error(create.value(), "rule")().or_else(|| field_error(update.value(), "rule")())
    };
    let other_error = move || form_error(create.value())().or_else(|| form_error(update.value())());
    let saved = move || matches!(update.value().get(), Some(Ok(_)));
    view! {
        <form class="mt-6 max-w-3xl space-y-4 rounded-lg bg-white p-5 shadow-sm" on:submit=move |ev| {
            ev.prevent_default();
            let json = serde_json::to_string(&rule.get()).unwrap_or_default();
            match id {
                Some(id) => { update.dispatch(UpdateSegment { id, name: name.get(), description: description.get(), rule: json }); }
                None => { create.dispatch(CreateSegment { name: name.get(), description: description.get(), rule: json }); }
            }
        }>
            <ErrorSummary prefix="segment" error=Signal::derive(move || {
                create.value().get().and_then(Result::err)
                    .or_else(|| update.value().get().and_then(Result::err))
            })/>
            <label class="block text-sm font-medium text-slate-700">"Name"
                <input id="segment-name" class="mt-1 block w-full rounded border border-slate-300 px-3 py-2" bind:value=name
                    aria-describedby="segment-name-error"
                    aria-invalid=move || name_error().is_some().then_some("true")/>
            </label>
            <p id="segment-name-error" class="text-sm text-red-700">{name_error}</p>
            <label class="block text-sm font-medium text-slate-700">"Description"
                <input class="mt-1 block w-full rounded border border-slate-300 px-3 py-2" bind:value=description/>
            </label>
            <div id="segment-rule" tabindex="-1" aria-describedby="segment-rule-error" class="focus:outline-none">
                <RuleBuilder fields rule stored/>
            </div>
            <p id="segment-rule-error" class="text-sm text-red-700">{rule_error}</p>
            {move || other_error().map(|e| view! { <ErrorBanner error=e/> })}
            <Show when=saved>
                <p role="status" class="text-sm text-green-700">"Saved and refreshed."</p>
            </Show>
            <button type="submit" class="rounded bg-slate-900 px-4 py-2 text-sm font-medium text-white hover:bg-slate-700">
                {if id.is_some() { "Save changes" } else { "Create segment" }}
            </button>
        </form>
    }
}

#[component]
fn SegmentPage() -> impl IntoView {
    let params = use_params_map();
    let refresh = ServerAction::<RefreshSegment>::new();
    let update = ServerAction::<UpdateSegment>::new();
    let id = move || {
        params
            .read()
            .get("id")
            .and_then(|v| v.parse::<SegmentId>().ok())
            .unwrap_or(SegmentId(0))
    };
    let detail = Resource::new(
        move || (id(), refresh.version().get(), update.version().get()),
        |(id, _, _)| get_segment(id),
    );
    let fields = Resource::new(|| (), |_| profile_fields());
    view! {
        <Transition fallback=|| view! { <p class="text-slate-500">"Loading segment…"</p> }>
            {move || Suspend::new(async move {
                match (detail.await, fields.await) {
                    (Ok(d), Ok(f)) => view! { <SegmentBody d fields=f refresh update/> }.into_any(),
                    (Err(e), _) | (_, Err(e)) => view! { <ErrorBanner error=e/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn SegmentBody(
    d: SegmentDetail,
    fields: Vec<FieldView>,
    refresh: ServerAction<RefreshSegment>,
    update: ServerAction<UpdateSegment>,
) -> impl IntoView {
    let s = d.segment.clone();
    let id = s.id;
    let members = s.member_count.max(1);
    let editable = d.can_manage && d.rule.is_some();
    let existing = d.rule.clone().map(|r| {
        (
            s.id,
            s.name.clone(),
            s.description.clone(),
            r,
            // A segment never refreshed has no count to show.
            s.refreshed.is_some().then_some(s.member_count),
        )
    });
    view! {
        <Title text=format!("{} · Segments · Segment Export", s.name)/>
        <p class="text-sm"><A href="/data/segments" attr:class="underline">"Segments"</A></p>
        <div class="mt-1 flex items-start justify-between gap-4">
            <div>
                <h1 class="text-2xl font-semibold">{s.name.clone()}</h1>
                <p class="mt-1 text-slate-600">{s.description.clone()}</p>
            </div>
            <Show when=move || d.can_manage>
                <button type="button" class="rounded border border-slate-300 px-3 py-2 text-sm hover:bg-slate-50"
                    disabled=move || refresh.pending().get()
                    on:click=move |_| { refresh.dispatch(RefreshSegment { id }); }>"Refresh"</button>
            </Show>
        </div>
        <dl class="mt-4 grid max-w-xl grid-cols-[10rem_1fr] gap-y-1 rounded-lg bg-white p-5 text-sm shadow-sm">
            <dt class="text-slate-500">"Kind"</dt><dd>{if s.kind == "rule" { "Rule" } else { "Static list" }}</dd>
            <dt class="text-slate-500">{if s.kind == "rule" { "Rule" } else { "Source" }}</dt>
            <dd>{s.rule_text.clone().unwrap_or_else(|| s.description.clone())}</dd>
            <dt class="text-slate-500">"Members"</dt><dd data-testid="member-count">{group(s.member_count)}</dd>
            <dt class="text-slate-500">"Last refreshed"</dt><dd>{s.refreshed.clone().unwrap_or_else(|| String::from("Never"))}</dd>
        </dl>
        {move || form_error(refresh.value())().map(|e| view! { <ErrorBanner error=e/> })}

        <section class="mt-6">
            <h2 class="font-semibold">"Fill rates"</h2>
            <table class="mt-2 max-w-xl w-full rounded-lg bg-white text-left text-sm shadow-sm">
                <thead class="text-slate-500"><tr><th class="px-4 py-2 font-medium">"Field"</th><th class="px-4 py-2 font-medium">"Members with a value"</th></tr></thead>
                <tbody>
                    {d.fill_rates.iter().map(|(f, n)| view! {
                        <tr class="border-t border-slate-100">
                            <td class="px-4 py-2">{f.clone()}</td>
                            <td class="px-4 py-2 tabular-nums">{format!("{} ({}%)", group(*n), n * 100 / members)}</td>
                        </tr>
                    }.into_any()).collect_view()}
                </tbody>
            </table>
        </section>

        <section class="mt-6">
            <h2 class="font-semibold">{format!("First {} members", d.preview.len())}</h2>
            <table class="mt-2 w-full rounded-lg bg-white text-left text-sm shadow-sm">
                <thead class="text-slate-500">
                    <tr>
                        <th class="px-4 py-2 font-medium">"Profile id"</th>
                        {d.preview_fields.iter().map(|f| view! { <th class="px-4 py-2 font-medium">{f.clone()}</th> }).collect_view()}
                    </tr>
                </thead>
                <tbody>
                    {d.preview.iter().map(|(pid, values)| view! {
                        <tr class="border-t border-slate-100">
                            <td class="px-4 py-2 font-mono text-xs">{pid.clone()}</td>
                            {values.iter().map(|v| view! { <td class="px-4 py-2">{v.clone()}</td> }).collect_view()}
                        </tr>
                    }.into_any()).collect_view()}
                </tbody>
            </table>
        </section>

        {editable.then(|| view! {
            <section class="mt-6">
                <h2 class="font-semibold">"Edit"</h2>
                <SegmentForm fields existing update/>
            </section>
        })}
    }
}
