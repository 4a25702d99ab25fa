//! The wasm entry point: hydrates the server-rendered page.

use wasm_bindgen::prelude::wasm_bindgen;

#[wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    let Some(body) = leptos::prelude::document().body() else {
        return;
    };
    // Pages are lazily loaded modules (see `app::App`): hydration waits
    // until the current page's module is in, so it starts from the same
    // view the server rendered.
    wasm_bindgen_futures::spawn_local(async move {
        let owner = leptos::mount::hydrate_from_async(body.clone(), app::App).await;
        owner.forget();
        // A marker the end-to-end tests wait for: clicks before hydration
        // would do nothing.
        let _ = body.set_attribute("data-hydrated", "true");
        // And the moment, on the page's own clock (User Timing), for the
        // page-load benchmark and for anyone measuring real loads.
        if let Some(performance) = leptos::prelude::window().performance() {
            let _ = performance.mark("segment-export:hydrated");
        }
    });
}
