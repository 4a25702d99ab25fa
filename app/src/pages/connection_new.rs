//! Admin > Connections > Add connection: choose the type, then the
//! Constant Contact form (name, who may use it, consent, authenticate,
//! export user, save). The form's values survive the trip to Constant
//! Contact because the server keeps them in the session.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_navigate;

use crate::components::{field_error, form_error, ErrorBanner, ErrorSummary};
use crate::connections_api::{
    get_connection_draft, AddExportUser, CancelConnection, SaveConnection, StartConnect,
};
use crate::error::AppError;
use crate::model::{usable_by_label, ConnectionDraft, UserView};
use crate::pages::connections::{go_to, CcBadge};

pub fn choose_page(_user: UserView) -> AnyView {
    view! {
        <Title text="Add connection · Segment Export"/>
        <h1 class="text-2xl font-semibold">"Add connection"</h1>
        <p class="mt-1 text-slate-600">"Choose the kind of account to connect."</p>
        <ul class="mt-6 max-w-md space-y-2" aria-label="Connection types">
            <li>
                <A href="/admin/connections/new/constant-contact"
                    attr:class="flex items-center justify-between rounded-lg bg-white p-4 shadow-sm hover:bg-slate-50">
                    <CcBadge/>
                    <span class="text-sm text-slate-500">"Export segments to contact lists"</span>
                </A>
            </li>
        </ul>
    }
    .into_any()
}

pub fn form_page(user: UserView) -> AnyView {
    view! { <ConstantContactForm me=user/> }.into_any()
}

const PRIVACY_STATEMENT: &str = "When you allow this product to send data to Constant Contact, you allow data to leave this system's compliance boundary, including possibly sensitive data such as personal data. The data is sent on your instruction, and you are responsible for ensuring that Constant Contact meets any privacy or security obligations you have.";

#[component]
fn ConstantContactForm(me: UserView) -> impl IntoView {
    let add_export_user = ServerAction::<AddExportUser>::new();
    let draft = Resource::new(
        move || add_export_user.version().get(),
        |_| get_connection_draft(),
    );
    view! {
        <Title text="Add Constant Contact connection · Segment Export"/>
        <h1 class="text-2xl font-semibold">"Add a Constant Contact connection"</h1>
        <Transition fallback=|| view! { <p class="mt-4 text-slate-500">"Loading…"</p> }>
            {move || {
                let me = me.clone();
                Suspend::new(async move {
                match draft.await {
                    Ok(d) => view! { <FormBody draft=d me add_export_user/> }.into_any(),
                    Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                }
            })}}
        </Transition>
    }
}

#[component]
fn FormBody(
    draft: ConnectionDraft,
    me: UserView,
    add_export_user: ServerAction<AddExportUser>,
) -> impl IntoView {
    let start = ServerAction::<StartConnect>::new();
    let save = ServerAction::<SaveConnection>::new();
    let cancel = ServerAction::<CancelConnection>::new();
    let name = RwSignal::new(draft.display_name.clone());
    let usable_by = RwSignal::new(draft.usable_by.clone());
    let agreed = RwSignal::new(draft.agreed);
    // "Connect" opens the authentication step; after the round trip it is open.
    let connecting = RwSignal::new(draft.agreed);
    let authorized = draft.authorized;
    let export_user = draft.export_user.clone();
    let has_export_user = export_user.is_some();
    let navigate = use_navigate();
    let nav_after_save = navigate.clone();
    Effect::new(move |_| {
        if let Some(Ok(url)) = start.value().get() {
            go_to(&url);
        }
    });
    Effect::new(move |_| {
        if matches!(save.value().get(), Some(Ok(_))) {
            nav_after_save("/admin/connections", Default::default());
        }
    });
    Effect::new(move |_| {
        if matches!(cancel.value().get(), Some(Ok(_))) {
            navigate("/admin/connections", Default::default());
        }
    });
    let name_error = move || {
        field_error(start.value(), "display_name")()
            .or_else(|| field_error(save.value(), "display_name")())
    };
    let start_error = form_error(start.value());
    let save_error = move || {
        save.value()
            .with(|v| match v {
                Some(Err(e @ AppError::Field { field, .. })) if field != "display_name" => {
                    Some(e.clone())
                }
                _ => None,
            })
            .or_else(form_error(save.value()))
    };
    view! {
        <div class="mt-6 max-w-2xl space-y-6">
            {(!draft.configured).then(|| view! {
                <p class="rounded border border-amber-300 bg-amber-50 px-4 py-3 text-sm text-amber-900">
                    "Constant Contact is not configured on this server: set CC_CLIENT_ID and CC_CLIENT_SECRET (see the README)."
                </p>
            })}
            {draft.error.clone().map(|e| view! { <ErrorBanner error=AppError::Refused(e)/> })}

            <ErrorSummary prefix="connection" error=Signal::derive(move || {
                start.value().get().and_then(Result::err)
                    .or_else(|| save.value().get().and_then(Result::err))
            })/>
            <section class="rounded-lg bg-white p-5 shadow-sm space-y-4">
                <div class="space-y-1">
                    <label for="connection-display_name" class="block text-sm font-medium text-slate-700">"Display name"</label>
                    <input id="connection-display_name" name="display_name" maxlength="100" bind:value=name
                        aria-describedby="connection-display_name-error"
                        aria-invalid=move || name_error().is_some().then_some("true")
                        class="block w-full rounded border border-slate-300 px-3 py-2 text-sm"/>
                    <p class="text-xs text-slate-500">"A name that says what the connection is for, e.g. “Newsletter account”."</p>
                    <p id="connection-display_name-error" class="text-sm text-red-700">{name_error}</p>
                </div>
                <fieldset class="space-y-1">
                    <legend class="text-sm font-medium text-slate-700">"Who can use this connection"</legend>
                    {["admins", "admins_and_contributors"].into_iter().map(|k| view! {
                        <label class="flex items-center gap-2 text-sm">
                            <input type="radio" name="usable_by" value=k
                                prop:checked=move || usable_by.get() == k
                                on:change=move |_| usable_by.set(k.to_owned())/>
                            {usable_by_label(k)}
                        </label>
                    }).collect_view()}
                </fieldset>
                <fieldset class="space-y-2">
                    <legend class="text-sm font-medium text-slate-700">"Data privacy and compliance"</legend>
                    <p class="text-sm text-slate-600">{PRIVACY_STATEMENT}</p>
                    <label class="flex items-center gap-2 text-sm font-medium">
                        <input type="checkbox" id="connection-agree" name="agree" bind:checked=agreed
                            aria-describedby="connection-agree-error"
                            aria-invalid=move || field_error(start.value(), "agree")().is_some().then_some("true")/>
                        "I agree"
                    </label>
                    <p id="connection-agree-error" class="text-sm text-red-700">{field_error(start.value(), "agree")}</p>
                </fieldset>
                <button type="button" disabled=move || !agreed.get()
                    on:click=move |_| connecting.set(true)
                    class="rounded bg-slate-900 px-4 py-2 text-sm font-medium text-white hover:bg-slate-700 disabled:opacity-50">
                    "Connect"
                </button>
            </section>

            <Show when=move || connecting.get() && agreed.get()>
                <section class="rounded-lg bg-white p-5 shadow-sm space-y-4">
                    <h2 class="font-semibold">"Authentication"</h2>
                    {if authorized {
                        view! { <p role="status" class="text-sm font-medium text-green-700">"✓ Authorized with Constant Contact"</p> }.into_any()
                    } else {
                        view! { <p class="text-sm text-slate-600">"Sign in to Constant Contact with the account's administrator credentials and allow access."</p> }.into_any()
                    }}
                    {move || start_error().map(|e| view! { <ErrorBanner error=e/> })}
                    <button type="button" disabled=move || start.pending().get()
                        on:click=move |_| {
                            start.dispatch(StartConnect {
                                display_name: name.get(),
                                usable_by: usable_by.get(),
                                agree: agreed.get().then(|| String::from("on")),
                            });
                        }
                        class="rounded border border-blue-600 px-4 py-2 text-sm font-medium text-blue-700 hover:bg-blue-50 disabled:opacity-50">
                        {if authorized { "Authenticate again" } else { "Authenticate with Constant Contact" }}
                    </button>
                </section>
            </Show>

            <Show when=move || authorized>
                <section class="rounded-lg bg-white p-5 shadow-sm space-y-3">
                    <h2 class="font-semibold">"Export user"</h2>
                    {match export_user.clone() {
                        Some(email) => view! { <p role="status" class="text-sm">{format!("Export user: {email}")}</p> }.into_any(),
                        None => view! {
                            <button type="button" on:click=move |_| { add_export_user.dispatch(AddExportUser {}); }
                                class="rounded border border-slate-300 px-4 py-2 text-sm hover:bg-slate-50">
                                "Add yourself as export user"
                            </button>
                            <p class="text-xs text-slate-500">{format!("Exports through this connection will run as {}.", me.email)}</p>
                        }.into_any(),
                    }}
                </section>
            </Show>

            {move || save_error().map(|e| view! { <ErrorBanner error=e/> })}
            <div class="flex gap-3">
                <button type="button" disabled=move || !(authorized && has_export_user) || save.pending().get()
                    on:click=move |_| { save.dispatch(SaveConnection { display_name: name.get(), usable_by: usable_by.get() }); }
                    class="rounded bg-slate-900 px-4 py-2 text-sm font-medium text-white hover:bg-slate-700 disabled:opacity-50">
                    "Save"
                </button>
                <button type="button" on:click=move |_| { cancel.dispatch(CancelConnection {}); }
                    class="rounded border border-slate-300 px-4 py-2 text-sm hover:bg-slate-50">
                    "Cancel"
                </button>
            </div>
        </div>
    }
}
