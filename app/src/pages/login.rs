//! Sign in.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::Redirect;

use crate::auth::use_auth;
use crate::components::{field_error, form_error, ErrorBanner, ErrorSummary, Field};

#[component]
pub fn LoginPage() -> impl IntoView {
    let auth = use_auth();
    view! {
        <Title text="Sign in · Segment Export"/>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match auth.info.await {
                    Ok(info) if info.setup_needed => view! { <Redirect path="/setup"/> }.into_any(),
                    Ok(info) if info.user.is_some() => view! { <Redirect path="/"/> }.into_any(),
                    _ => view! { <LoginForm/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn LoginForm() -> impl IntoView {
    let action = use_auth().sign_in;
    let value = action.value();
    view! {
        <main class="min-h-screen flex items-center justify-center px-4">
            <section class="w-full max-w-sm rounded-lg bg-white p-8 shadow">
                <p class="text-sm font-semibold text-slate-500">"Segment Export"</p>
                <h1 class="mt-1 text-2xl font-semibold">"Sign in"</h1>
                <ActionForm action=action attr:class="mt-6 space-y-4" attr:novalidate="">
                    <ErrorSummary error=Signal::derive(move || value.get().and_then(Result::err)) prefix="field"/>
                    <Field label="Email" name="email" kind="email" autocomplete="username"
                        error=Signal::derive(field_error(value, "email"))/>
                    <Field label="Password" name="password" kind="password" autocomplete="current-password"
                        error=Signal::derive(field_error(value, "password"))/>
                    {move || form_error(value)().map(|e| view! { <ErrorBanner error=e/> })}
                    <button type="submit" disabled=move || action.pending().get()
                        class="w-full rounded bg-slate-900 px-4 py-2 text-sm font-medium text-white hover:bg-slate-700 disabled:opacity-50">
                        "Sign in"
                    </button>
                </ActionForm>
            </section>
        </main>
    }
}
