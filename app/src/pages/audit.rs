//! Admin > Audit log: who did what, and when.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::audit_api::audit_log;
use crate::components::ErrorBanner;
use crate::model::UserView;

pub fn page(_user: UserView) -> AnyView {
    view! { <AuditPage/> }.into_any()
}

#[component]
fn AuditPage() -> impl IntoView {
    let entries = Resource::new(|| (), |_| audit_log());
    view! {
        <Title text="Audit log · Segment Export"/>
        <h1 class="text-2xl font-semibold">"Audit log"</h1>
        <p class="mt-1 text-slate-600">"Changes to users and connections, newest first."</p>
        <Suspense fallback=|| view! { <p class="mt-4 text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match entries.await {
                    Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                    Ok(list) => view! {
                        <table class="mt-4 w-full rounded-lg bg-white text-left text-sm shadow-sm">
                            <thead class="text-slate-500">
                                <tr>
                                    <th class="px-4 py-2 font-medium">"When"</th>
                                    <th class="px-4 py-2 font-medium">"Who"</th>
                                    <th class="px-4 py-2 font-medium">"Action"</th>
                                    <th class="px-4 py-2 font-medium">"Object"</th>
                                    <th class="px-4 py-2 font-medium">"Details"</th>
                                </tr>
                            </thead>
                            <tbody>
                                {list.into_iter().map(|e| view! {
                                    <tr class="border-t border-slate-100">
                                        <td class="px-4 py-2 whitespace-nowrap text-slate-600">{e.at}</td>
                                        <td class="px-4 py-2">{e.actor}</td>
                                        <td class="px-4 py-2" title=e.action.clone()>{action_label(&e.action)}</td>
                                        <td class="px-4 py-2">{e.target}</td>
                                        <td class="px-4 py-2 text-slate-600">{e.detail}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// An audit action as a user reads it ("export.update" → "Export changed").
fn action_label(action: &str) -> String {
    let known = match action {
        "user.create_first_admin" => "First administrator created",
        "user.create" => "User added",
        "user.set_role" => "Role changed",
        "user.deactivate" => "User deactivated",
        "user.reactivate" => "User reactivated",
        "connection.create" => "Connection added",
        "connection.update" => "Connection changed",
        "connection.authorize" => "Connection signed in again",
        "connection.remove" => "Connection removed",
        "export.create" => "Export added",
        "export.update" => "Export changed",
        "export.remove" => "Export removed",
        "segment.create" => "Segment created",
        "segment.update" => "Segment changed",
        "segment.refresh" => "Segment refreshed",
        "segment.import_static" => "Static segment imported",
        "segment.replace_members" => "Static segment's members replaced",
        "schedule.update" => "Scheduled refresh changed",
        other => return other.replace(['.', '_'], " "),
    };
    known.to_owned()
}
