//! Add destination and Edit: the export form, its lists, mapping and
//! segments, with every problem shown at once.

use super::*;

#[component]
pub(super) fn ExportFormPage(id: Option<ExportId>) -> impl IntoView {
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
pub(super) fn NoConnection(is_admin: bool) -> impl IntoView {
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

pub(super) fn indices(n: usize) -> Vec<usize> {
    (0..n).collect()
}

pub(super) fn target_label(target: &str, labels: &[(String, String)]) -> String {
    labels
        .iter()
        .find(|(k, _)| k == target)
        .map(|(_, l)| l.clone())
        .unwrap_or_else(|| target.to_owned())
}

/// The Add destination / Edit form.
#[component]
pub(super) fn ExportEditor(id: Option<ExportId>, form: ExportForm) -> impl IntoView {
    let start = form.export.clone().unwrap_or(ExportInputView {
        name: String::new(),
        connection_id: form.connections.first().map(|c| c.id),
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
            match c {
                Some(c) => connection_lists(c).await,
                None => Ok(Vec::new()),
            }
        },
    );
    let custom = Resource::new(
        move || connection_id.get(),
        |c| async move {
            match c {
                Some(c) => connection_custom_fields(c).await,
                None => Ok(Vec::new()),
            }
        },
    );
    let count = Resource::new(
        move || segment_ids.get(),
        |ids| async move {
            if ids.is_empty() {
                return Ok(0);
            }
            let joined = ids
                .iter()
                .map(SegmentId::to_string)
                .collect::<Vec<_>>()
                .join(",");
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
            let joined = ids
                .iter()
                .map(SegmentId::to_string)
                .collect::<Vec<_>>()
                .join(",");
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
        let mut mapping = vec![Mapping {
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
                                <input type="radio" name="connection" prop:checked=move || connection_id.get() == Some(cid)
                                    on:change=move |_| { connection_id.set(Some(cid)); list_id.set(String::new()); }/>
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
                        on:click=move |_| { if let Some(connection_id) = connection_id.get() { create_list.dispatch(CreateConnectionList { connection_id, name: new_list.get() }); } }>"Create list"</button>
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
                    on:click=move |_| extra.update(|m| m.push(Mapping { source: String::new(), target: String::new() }))>"Add attribute"</button>
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
