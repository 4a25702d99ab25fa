//! Uploads with a progress bar: a profiles CSV (with its import report)
//! and a static segment's CSV of profile ids.

use leptos::prelude::*;
use leptos_router::components::A;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::model::SegmentId;

/// The report the server answers with (`engine::profiles::ImportReport`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Report {
    pub rows: u64,
    pub imported: u64,
    pub rejected: u64,
    pub errors: Vec<RowError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RowError {
    pub line: u64,
    pub reason: String,
}

/// What the server answers for a static segment's list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SegmentReport {
    pub id: SegmentId,
    pub name: String,
    /// Ids read from the file.
    pub ids: u64,
    pub members: i64,
    /// Ids that are no profile (skipped), and the first of them.
    pub unknown: u64,
    pub unknown_ids: Vec<String>,
}

// Only the browser moves past `Idle`.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
#[derive(Debug, Clone, PartialEq, Eq)]
enum State<T> {
    Idle,
    Uploading(u32),
    Importing,
    Done(T),
    Failed(String),
}

impl<T> State<T> {
    fn busy(&self) -> bool {
        matches!(self, State::Uploading(_) | State::Importing)
    }
}

/// Progress, or the failure; `done` renders the report.
fn progress<T>(state: State<T>, done: impl FnOnce(T) -> AnyView) -> AnyView {
    match state {
        State::Idle => ().into_any(),
        State::Uploading(p) => view! {
            <label class="block text-sm">"Uploading"
                <progress class="ml-2 align-middle" max="100" value=p.to_string() aria-label="Upload progress">{format!("{p}%")}</progress>
            </label>
        }.into_any(),
        State::Importing => view! { <p role="status" class="text-sm">"Importing…"</p> }.into_any(),
        State::Failed(m) => view! { <p role="alert" class="rounded border border-red-300 bg-red-50 px-3 py-2 text-sm text-red-800">{m}</p> }.into_any(),
        State::Done(r) => done(r),
    }
}

#[component]
pub fn ProfileUpload(#[prop(into)] on_done: Callback<()>) -> impl IntoView {
    let file_input = NodeRef::<leptos::html::Input>::new();
    let id_column = RwSignal::new(String::from("id"));
    let state = RwSignal::new(State::<Report>::Idle);
    let start = move |_| {
        let Some(input) = file_input.get() else {
            return;
        };
        let url = format!(
            "/data/import/profiles?id_column={}",
            encode(&id_column.get_untracked())
        );
        send(input, url, state, on_done);
    };
    view! {
        <section class="mt-8 max-w-2xl rounded-lg bg-white p-5 shadow-sm space-y-3">
            <h2 class="font-semibold">"Import profiles"</h2>
            <p class="text-sm text-slate-600">"A UTF-8 CSV file with a header row. Rows are added or updated by their id; bad rows are reported by line and skipped."</p>
            <label class="block text-sm font-medium text-slate-700">"CSV file"
                <input type="file" accept=".csv,text/csv" node_ref=file_input class="mt-1 block text-sm"/>
            </label>
            <label class="block text-sm font-medium text-slate-700">"Id column"
                <input class="mt-1 block rounded border border-slate-300 px-2 py-1" bind:value=id_column/>
            </label>
            <button type="button" on:click=start
                disabled=move || state.with(State::busy)
                class="rounded bg-slate-900 px-4 py-2 text-sm font-medium text-white hover:bg-slate-700 disabled:opacity-50">
                "Upload"
            </button>
            {move || progress(state.get(), |r| view! {
                <div role="status" class="text-sm">
                    <p class="font-medium">{format!("Imported {} of {} rows; {} rejected.", r.imported, r.rows, r.rejected)}</p>
                    <ul class="mt-1 list-disc pl-5 text-slate-700">
                        {r.errors.into_iter().map(|e| view! { <li>{format!("Line {}: {}", e.line, e.reason)}</li> }).collect_view()}
                    </ul>
                </div>
            }.into_any())}
        </section>
    }
}

/// A static segment from a CSV of profile ids: a new name creates it, the
/// name of an existing static segment replaces its members.
#[component]
pub fn SegmentUpload(#[prop(into)] on_done: Callback<()>) -> impl IntoView {
    let file_input = NodeRef::<leptos::html::Input>::new();
    let name = RwSignal::new(String::new());
    let state = RwSignal::new(State::<SegmentReport>::Idle);
    let start = move |_| {
        let Some(input) = file_input.get() else {
            return;
        };
        if name.with_untracked(|n| n.trim().is_empty()) {
            state.set(State::Failed(String::from("Give the segment a name.")));
            return;
        }
        let url = format!(
            "/data/import/segment?name={}&file={}",
            encode(name.get_untracked().trim()),
            encode(&file_name(&input))
        );
        send(input, url, state, on_done);
    };
    view! {
        <section class="mt-8 max-w-2xl rounded-lg bg-white p-5 shadow-sm space-y-3">
            <h2 class="font-semibold">"Import a static segment"</h2>
            <p class="text-sm text-slate-600">"A CSV file of profile ids, one per row, in the first column (a header row named id or profile_id is skipped). The name of an existing static segment replaces its members; who entered and who left is recorded."</p>
            <label class="block text-sm font-medium text-slate-700">"Segment name"
                <input class="mt-1 block w-full max-w-sm rounded border border-slate-300 px-2 py-1" bind:value=name/>
            </label>
            <label class="block text-sm font-medium text-slate-700">"Ids file"
                <input type="file" accept=".csv,.txt,text/csv,text/plain" node_ref=file_input class="mt-1 block text-sm"/>
            </label>
            <button type="button" on:click=start
                disabled=move || state.with(State::busy)
                class="rounded bg-slate-900 px-4 py-2 text-sm font-medium text-white hover:bg-slate-700 disabled:opacity-50">
                "Import segment"
            </button>
            {move || progress(state.get(), |r| view! {
                <div role="status" class="text-sm">
                    <p class="font-medium">
                        <A href=format!("/data/segments/{}", r.id) attr:class="underline">{r.name.clone()}</A>
                        {format!(" now has {} ({} read).", plural(r.members as u64, "member"), plural(r.ids, "id"))}
                    </p>
                    {(r.unknown > 0).then(|| view! {
                        <p class="mt-1 text-amber-800">{format!(
                            "{}: {}{}",
                            if r.unknown == 1 {
                                String::from("1 id is not a profile and was skipped")
                            } else {
                                format!("{} ids are not profiles and were skipped", r.unknown)
                            },
                            r.unknown_ids.join(", "),
                            if r.unknown as usize > r.unknown_ids.len() { ", …" } else { "" },
                        )}</p>
                    })}
                </div>
            }.into_any())}
        </section>
    }
}

/// Sends the chosen file to `url`, reporting progress into `state`.
#[cfg(feature = "hydrate")]
fn send<T>(
    input: web_sys::HtmlInputElement,
    url: String,
    state: RwSignal<State<T>>,
    on_done: Callback<()>,
) where
    T: DeserializeOwned + Send + Sync + 'static,
{
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::JsCast;

    let Some(file) = input.files().and_then(|f| f.get(0)) else {
        state.set(State::Failed(String::from("Choose a CSV file first.")));
        return;
    };
    let Ok(xhr) = web_sys::XmlHttpRequest::new() else {
        return;
    };
    if xhr.open("POST", &url).is_err() {
        return;
    }
    let _ = xhr.set_request_header("Content-Type", "text/csv");
    state.set(State::Uploading(0));
    if let Ok(upload) = xhr.upload() {
        let progress =
            Closure::<dyn FnMut(web_sys::ProgressEvent)>::new(move |e: web_sys::ProgressEvent| {
                if e.length_computable() && e.total() > 0.0 {
                    let pct = ((e.loaded() / e.total()) * 100.0).round() as u32;
                    state.set(if pct >= 100 {
                        State::Importing
                    } else {
                        State::Uploading(pct)
                    });
                }
            });
        upload.set_onprogress(Some(progress.as_ref().unchecked_ref()));
        progress.forget();
    }
    let request = xhr.clone();
    let done = Closure::<dyn FnMut()>::new(move || {
        let status = request.status().unwrap_or(0);
        let text = request.response_text().ok().flatten().unwrap_or_default();
        if status == 200 {
            match serde_json::from_str::<T>(&text) {
                Ok(r) => {
                    state.set(State::Done(r));
                    on_done.run(());
                }
                Err(_) => state.set(State::Failed(String::from(
                    "The server's answer could not be read.",
                ))),
            }
        } else {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_else(|| format!("The upload failed ({status})."));
            state.set(State::Failed(message));
        }
    });
    xhr.set_onloadend(Some(done.as_ref().unchecked_ref()));
    done.forget();
    if xhr.send_with_opt_blob(Some(&file)).is_err() {
        state.set(State::Failed(String::from("The upload could not start.")));
    }
}

/// The chosen file's name (empty on the server, or with none chosen).
#[cfg(feature = "hydrate")]
fn file_name(input: &web_sys::HtmlInputElement) -> String {
    input
        .files()
        .and_then(|f| f.get(0))
        .map(|f| f.name())
        .unwrap_or_default()
}

#[cfg(not(feature = "hydrate"))]
fn file_name<I>(_input: &I) -> String {
    String::new()
}

/// "1 member", "3 members".
fn plural(n: u64, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// On the server the button never runs; this keeps the types in step.
#[cfg(not(feature = "hydrate"))]
fn send<I, T>(_input: I, _url: String, _state: RwSignal<State<T>>, _on_done: Callback<()>)
where
    T: DeserializeOwned + Send + Sync + 'static,
{
}
