//! Admin > Users: list, add, change role, deactivate and reactivate.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::{
    field_error, form_error, reset_on_success, ErrorBanner, ErrorSummary, Field, RoleSelect,
};
use crate::model::{Role, UserId, UserView, MIN_PASSWORD_CHARS};
use crate::users_api::{list_users, CreateUser, SetUserActive, SetUserRole};

pub fn page(user: UserView) -> AnyView {
    view! { <UsersPage me=user/> }.into_any()
}

#[component]
fn UsersPage(me: UserView) -> impl IntoView {
    let create = ServerAction::<CreateUser>::new();
    let set_role = ServerAction::<SetUserRole>::new();
    let set_active = ServerAction::<SetUserActive>::new();
    let users = Resource::new(
        move || {
            (
                create.version().get(),
                set_role.version().get(),
                set_active.version().get(),
            )
        },
        |_| list_users(),
    );
    let row_error =
        move || form_error(set_role.value())().or_else(|| form_error(set_active.value())());
    let me_id = me.id;
    view! {
        <Title text="Users · Segment Export"/>
        <h1 class="text-2xl font-semibold">"Users"</h1>
        <p class="mt-1 text-slate-600">"People who can sign in, and what their role lets them do."</p>

        <div class="mt-4">{move || row_error().map(|e| view! { <ErrorBanner error=e/> })}</div>

        <Transition fallback=|| view! { <p class="mt-4 text-slate-500">"Loading users…"</p> }>
            {move || Suspend::new(async move {
                match users.await {
                    Ok(list) => view! { <UserTable users=list me_id set_role set_active/> }.into_any(),
                    Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                }
            })}
        </Transition>

        <AddUser create/>
    }
}

#[component]
fn UserTable(
    users: Vec<UserView>,
    me_id: UserId,
    set_role: ServerAction<SetUserRole>,
    set_active: ServerAction<SetUserActive>,
) -> impl IntoView {
    view! {
        <table class="mt-4 w-full rounded-lg bg-white text-left text-sm shadow-sm">
            <thead class="text-slate-500">
                <tr>
                    <th class="px-4 py-2 font-medium">"Email"</th>
                    <th class="px-4 py-2 font-medium">"Role"</th>
                    <th class="px-4 py-2 font-medium">"Status"</th>
                    <th class="px-4 py-2 font-medium">"Created"</th>
                    <th class="px-4 py-2 font-medium">"Last sign-in"</th>
                    <th class="px-4 py-2 font-medium">"Actions"</th>
                </tr>
            </thead>
            <tbody>
                {users.into_iter().map(|u| {
                    let email = u.email.clone();
                    let you = (u.id == me_id).then_some(" (you)");
                    view! {
                        <tr class="border-t border-slate-100">
                            <td class="px-4 py-2">{u.email.clone()}{you}</td>
                            <td class="px-4 py-2">
                                <ActionForm action=set_role attr:class="flex items-center gap-2">
                                    <input type="hidden" name="user_id" value=u.id.to_string()/>
                                    <select name="role" aria-label=format!("Role of {email}")
                                        class="rounded border border-slate-300 px-2 py-1">
                                        {Role::ALL.into_iter().map(|r| view! {
                                            <option value=r.key() selected=r == u.role>{r.label()}</option>
                                        }).collect_view()}
                                    </select>
                                    <button type="submit" class="rounded border border-slate-300 px-2 py-1 hover:bg-slate-50">
                                        "Change role"
                                    </button>
                                </ActionForm>
                            </td>
                            <td class="px-4 py-2">
                                {if u.active { "Active" } else { "Deactivated" }}
                            </td>
                            <td class="px-4 py-2 text-slate-600">{u.created.clone()}</td>
                            <td class="px-4 py-2 text-slate-600">{u.last_sign_in.clone().unwrap_or_else(|| String::from("Never"))}</td>
                            <td class="px-4 py-2">
                                <ActionForm action=set_active>
                                    <input type="hidden" name="user_id" value=u.id.to_string()/>
                                    <input type="hidden" name="active" value=(!u.active).to_string()/>
                                    <button type="submit" class="rounded border border-slate-300 px-2 py-1 hover:bg-slate-50">
                                        {if u.active { "Deactivate" } else { "Reactivate" }}
                                    </button>
                                </ActionForm>
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}

#[component]
fn AddUser(create: ServerAction<CreateUser>) -> impl IntoView {
    let value = create.value();
    // Empty the form once the user exists, ready for the next one.
    let form = NodeRef::<leptos::html::Form>::new();
    reset_on_success(form, value);
    let added = move || {
        value.with(|v| match v {
            Some(Ok(u)) => Some(format!(
                "{} was added as {}.",
                u.email,
                u.role.label().to_lowercase()
            )),
            _ => None,
        })
    };
    view! {
        <section class="mt-8 max-w-md rounded-lg bg-white p-5 shadow-sm">
            <h2 class="font-semibold">"Add user"</h2>
            <ActionForm action=create node_ref=form attr:class="mt-4 space-y-4">
                <ErrorSummary error=Signal::derive(move || value.get().and_then(Result::err)) prefix="field"/>
                <Field label="Email" name="email" kind="email" autocomplete="off"
                    error=Signal::derive(field_error(value, "email"))/>
                <RoleSelect error=Signal::derive(field_error(value, "role"))/>
                <Field label="Initial password" name="password" kind="password" autocomplete="new-password"
                    hint=format!("At least {MIN_PASSWORD_CHARS} characters. Share it with the user securely.")
                    error=Signal::derive(field_error(value, "password"))/>
                {move || form_error(value)().map(|e| view! { <ErrorBanner error=e/> })}
                <p role="status" class="text-sm text-green-700">{added}</p>
                <button type="submit" disabled=move || create.pending().get()
                    class="rounded bg-slate-900 px-4 py-2 text-sm font-medium text-white hover:bg-slate-700 disabled:opacity-50">
                    "Add user"
                </button>
            </ActionForm>
        </section>
    }
}
