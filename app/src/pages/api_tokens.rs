//! Admin > API tokens: create (the secret is shown once), list with last
//! use, revoke; and where the REST API is described.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::{
    field_error, form_error, reset_on_success, ErrorBanner, ErrorSummary, Field, RoleSelect,
};
use crate::model::{ApiTokenView, UserView};
use crate::tokens_api::{list_api_tokens, CreateApiToken, RevokeApiToken};

pub fn page(_user: UserView) -> AnyView {
    view! { <TokensPage/> }.into_any()
}

#[component]
fn TokensPage() -> impl IntoView {
    let create = ServerAction::<CreateApiToken>::new();
    let revoke = ServerAction::<RevokeApiToken>::new();
    let tokens = Resource::new(
        move || (create.version().get(), revoke.version().get()),
        |_| list_api_tokens(),
    );
    view! {
        <Title text="API tokens · Segment Export"/>
        <h1 class="text-2xl font-semibold">"API tokens"</h1>
        <p class="mt-1 text-slate-600">
            "Tokens let other tools use the REST API: list exports, start and cancel runs, read their errors. "
            "A token acts for the administrator who created it, with the role it is given."
        </p>
        <section class="mt-4 rounded-lg bg-white p-5 text-sm shadow-sm">
            <h2 class="font-semibold">"Using the API"</h2>
            <p class="mt-2">
                "Send the token as "<code class="rounded bg-slate-100 px-1">"Authorization: Bearer <token>"</code>
                " to the endpoints under "<code class="rounded bg-slate-100 px-1">"/api/v1"</code>". "
                "They are described in the "
                <a href="/api/v1/openapi.json" class="underline" rel="external">"OpenAPI document"</a>
                ", which any OpenAPI tool can read."
            </p>
            <pre class="mt-2 overflow-x-auto rounded bg-slate-900 p-3 text-xs text-slate-100">
                "curl -H 'Authorization: Bearer sxp_…' http://<server>/api/v1/exports\n"
                "curl -X POST -H 'Authorization: Bearer sxp_…' -H 'Idempotency-Key: nightly-2026-12-01' \\\n"
                "     -H 'Content-Type: application/json' -d '{\"mode\":\"incremental\"}' \\\n"
                "     http://<server>/api/v1/exports/1/runs"
            </pre>
        </section>

        <div class="mt-4">{move || form_error(revoke.value())().map(|e| view! { <ErrorBanner error=e/> })}</div>

        <Transition fallback=|| view! { <p class="mt-4 text-slate-500">"Loading tokens…"</p> }>
            {move || Suspend::new(async move {
                match tokens.await {
                    Ok(list) if list.is_empty() => view! {
                        <p class="mt-4 text-slate-600">"No tokens yet."</p>
                    }.into_any(),
                    Ok(list) => view! { <TokenTable tokens=list revoke/> }.into_any(),
                    Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                }
            })}
        </Transition>

        <CreateToken create/>
    }
}

#[component]
fn TokenTable(tokens: Vec<ApiTokenView>, revoke: ServerAction<RevokeApiToken>) -> impl IntoView {
    view! {
        <div class="mt-4 overflow-x-auto">
            <table class="w-full rounded-lg bg-white text-left text-sm shadow-sm">
                <caption class="sr-only">"API tokens"</caption>
                <thead class="text-slate-500">
                    <tr>
                        <th class="px-4 py-2 font-medium">"Name"</th>
                        <th class="px-4 py-2 font-medium">"Role"</th>
                        <th class="px-4 py-2 font-medium">"Token"</th>
                        <th class="px-4 py-2 font-medium">"Created"</th>
                        <th class="px-4 py-2 font-medium">"Last used"</th>
                        <th class="px-4 py-2 font-medium">"Status"</th>
                    </tr>
                </thead>
                <tbody>
                    {tokens.into_iter().map(|t| {
                        let name = t.name.clone();
                        view! {
                            <tr class="border-t border-slate-100">
                                <td class="px-4 py-2">{t.name.clone()}</td>
                                <td class="px-4 py-2">{t.role.label()}</td>
                                <td class="px-4 py-2 font-mono text-xs">{format!("{}…", t.prefix)}</td>
                                <td class="px-4 py-2 text-slate-600">{format!("{} by {}", t.created, t.created_by)}</td>
                                <td class="px-4 py-2 text-slate-600">{t.last_used.clone().unwrap_or_else(|| String::from("Never"))}</td>
                                <td class="px-4 py-2">
                                    {match t.revoked.clone() {
                                        Some(at) => view! { <span class="text-slate-500">{format!("Revoked {at}")}</span> }.into_any(),
                                        None => view! {
                                            <ActionForm action=revoke>
                                                <input type="hidden" name="id" value=t.id.to_string()/>
                                                <button type="submit" aria-label=format!("Revoke {name}")
                                                    class="rounded border border-red-300 px-2 py-1 text-red-800 hover:bg-red-50">
                                                    "Revoke"
                                                </button>
                                            </ActionForm>
                                        }.into_any(),
                                    }}
                                </td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

#[component]
fn CreateToken(create: ServerAction<CreateApiToken>) -> impl IntoView {
    let value = create.value();
    let form = NodeRef::<leptos::html::Form>::new();
    reset_on_success(form, value);
    let created = move || {
        value.with(|v| match v {
            Some(Ok(c)) => Some((c.token.name.clone(), c.secret.clone())),
            _ => None,
        })
    };
    view! {
        <section class="mt-8 max-w-xl rounded-lg bg-white p-5 shadow-sm">
            <h2 class="font-semibold">"Create token"</h2>
            {move || created().map(|(name, secret)| view! {
                <div role="status" class="mt-4 rounded border border-green-300 bg-green-50 p-3 text-sm">
                    <p class="font-medium text-green-900">{format!("Token \u{201c}{name}\u{201d} created. Copy it now: it will not be shown again.")}</p>
                    <label for="new-token-secret" class="mt-2 block text-slate-700">"Token"</label>
                    <input id="new-token-secret" readonly value=secret
                        class="mt-1 block w-full rounded border border-slate-300 bg-white px-2 py-1 font-mono text-xs"/>
                </div>
            })}
            <ActionForm action=create node_ref=form attr:class="mt-4 space-y-4">
                <ErrorSummary error=Signal::derive(move || value.get().and_then(Result::err)) prefix="field"/>
                <Field label="Name" name="name" autocomplete="off"
                    hint="What uses it, e.g. \u{201c}Nightly pipeline\u{201d}."
                    error=Signal::derive(field_error(value, "name"))/>
                <RoleSelect error=Signal::derive(field_error(value, "role"))
                    hint="Viewers read; contributors also run and cancel the exports of the administrator who creates the token; administrators run and cancel every export."/>
                {move || form_error(value)().map(|e| view! { <ErrorBanner error=e/> })}
                <button type="submit" disabled=move || create.pending().get()
                    class="rounded bg-slate-900 px-4 py-2 text-sm font-medium text-white hover:bg-slate-700 disabled:opacity-50">
                    "Create token"
                </button>
            </ActionForm>
        </section>
    }
}
