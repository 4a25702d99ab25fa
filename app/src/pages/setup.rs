//! First run: create the first administrator. Gone once one exists.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::Redirect;

use crate::auth::use_auth;
use crate::components::{field_error, form_error, ErrorBanner, ErrorSummary, Field};
use crate::model::MIN_PASSWORD_CHARS;

#[component]
pub fn SetupPage() -> impl IntoView {
    let auth = use_auth();
    view! {
        <Title text="Create the first administrator · Segment Export"/>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match auth.info.await {
                    Ok(info) if !info.setup_needed => {
                        let to = if info.user.is_some() { "/" } else { "/login" };
                        view! { <Redirect path=to/> }.into_any()
                    }
                    _ => view! { <SetupForm/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn SetupForm() -> impl IntoView {
    let action = use_auth().setup;
    let value = action.value();
    let hint = format!("At least {MIN_PASSWORD_CHARS} characters.");
    view! {
        <main class="min-h-screen flex items-center justify-center px-4">
            <section class="w-full max-w-md rounded-lg bg-white p-8 shadow">
                <p class="text-sm font-semibold text-slate-500">"Segment Export"</p>
                <h1 class="mt-1 text-2xl font-semibold">"Create the first administrator"</h1>
                <p class="mt-2 text-sm text-slate-600">
                    "Nobody has an account yet. The account you create here manages users, connections and settings. This page disappears once it exists."
                </p>
                <ActionForm action=action attr:class="mt-6 space-y-4" attr:novalidate="">
                    <ErrorSummary error=Signal::derive(move || value.get().and_then(Result::err)) prefix="field"/>
                    <Field label="Email" name="email" kind="email" autocomplete="username"
                        error=Signal::derive(field_error(value, "email"))/>
                    <Field label="Password" name="password" kind="password" autocomplete="new-password"
                        hint=hint error=Signal::derive(field_error(value, "password"))/>
                    <Field label="Confirm password" name="confirm_password" kind="password" autocomplete="new-password"
                        error=Signal::derive(field_error(value, "confirm_password"))/>
                    {move || form_error(value)().map(|e| view! { <ErrorBanner error=e/> })}
                    <button type="submit" disabled=move || action.pending().get()
                        class="w-full rounded bg-slate-900 px-4 py-2 text-sm font-medium text-white hover:bg-slate-700 disabled:opacity-50">
                        "Create administrator"
                    </button>
                </ActionForm>
            </section>
        </main>
    }
}
