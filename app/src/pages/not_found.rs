use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
        res.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Page not found · Segment Export"/>
        <main class="min-h-screen flex flex-col items-center justify-center gap-3">
            <h1 class="text-2xl font-semibold">"Page not found"</h1>
            <p class="text-slate-600">"There is no page at this address."</p>
            <A href="/" attr:class="text-sm underline">"Go to the overview"</A>
        </main>
    }
}
