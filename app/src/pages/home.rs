//! Overview: who you are, what your role lets you do, and this
//! installation at a glance.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

use crate::components::ErrorBanner;
use crate::model::{Role, UserView};
use crate::users_api::get_overview;

pub fn page(user: UserView) -> AnyView {
    view! { <HomePage user/> }.into_any()
}

#[component]
fn HomePage(user: UserView) -> impl IntoView {
    let facts = Resource::new(|| (), |_| get_overview());
    let role = user.role;
    view! {
        <Title text="Overview · Segment Export"/>
        <h1 class="text-2xl font-semibold">"Overview"</h1>
        <p class="mt-1 text-slate-600">"Export segments of customer profiles to Constant Contact lists."</p>

        <section class="mt-6 grid gap-4 md:grid-cols-2">
            <div class="rounded-lg bg-white p-5 shadow-sm">
                <h2 class="font-semibold">"Your account"</h2>
                <dl class="mt-3 grid grid-cols-[8rem_1fr] gap-y-1 text-sm">
                    <dt class="text-slate-500">"Email"</dt><dd>{user.email.clone()}</dd>
                    <dt class="text-slate-500">"Role"</dt><dd>{role.label()}</dd>
                    <dt class="text-slate-500">"Last sign-in"</dt>
                    <dd>{user.last_sign_in.clone().unwrap_or_else(|| String::from("This is your first session"))}</dd>
                </dl>
                <p class="mt-3 text-sm text-slate-600">{role.summary()}</p>
            </div>
            <div class="rounded-lg bg-white p-5 shadow-sm">
                <h2 class="font-semibold">"This installation"</h2>
                <Suspense fallback=|| view! { <p class="mt-3 text-sm text-slate-500">"Loading…"</p> }>
                    {move || Suspend::new(async move {
                        match facts.await {
                            Ok(f) => view! {
                                <dl class="mt-3 grid grid-cols-[8rem_1fr] gap-y-1 text-sm">
                                    <dt class="text-slate-500">"Database"</dt><dd>{f.database}</dd>
                                    <dt class="text-slate-500">"Version"</dt><dd>{f.version}</dd>
                                    <dt class="text-slate-500">"Active users"</dt>
                                    <dd>{format!(
                                        "{}, {}, {}",
                                        plural(f.admins, "administrator"),
                                        plural(f.contributors, "contributor"),
                                        plural(f.viewers, "viewer"),
                                    )}</dd>
                                </dl>
                            }.into_any(),
                            Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                        }
                    })}
                </Suspense>
            </div>
        </section>

        <section class="mt-6 rounded-lg bg-white p-5 shadow-sm">
            <h2 class="font-semibold">"Roles"</h2>
            <table class="mt-3 w-full text-left text-sm">
                <thead class="text-slate-500">
                    <tr><th class="py-1 pr-4 font-medium">"Role"</th><th class="py-1 font-medium">"Can"</th></tr>
                </thead>
                <tbody>
                    {Role::ALL.into_iter().map(|r| view! {
                        <tr class="border-t border-slate-100" class:font-semibold=move || r == role>
                            <td class="py-2 pr-4 align-top">{r.label()}</td>
                            <td class="py-2">{r.summary()}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
            <Show when=move || role.allows(Role::Admin)>
                <p class="mt-4 text-sm">
                    <A href="/admin/users" attr:class="underline">"Manage users"</A>
                </p>
            </Show>
        </section>
    }
}

fn plural(n: i64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
