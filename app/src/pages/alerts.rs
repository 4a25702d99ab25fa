//! Alerts on screen: the rule form (Admin > System's default, an export's
//! own), the SMTP settings and signing secret, and the alert log with each
//! delivery's fate.

use leptos::prelude::*;

use crate::alerts_api::{
    get_alert_settings, get_export_alerts, AlertSettings, AlertView, RuleView,
    SaveDefaultAlertRule, SaveExportAlertRule, SaveSmtpSettings, SendTestAlert,
};
use crate::components::{field_error, form_error, ErrorBanner, ErrorSummary};
use crate::error::AppError;
use crate::model::ExportId;

/// A text input of an alerts form, labelled, with its error.
#[component]
fn AlertInput(
    label: &'static str,
    /// The field's key (errors name it); the input's id is `alert-{key}`.
    key: &'static str,
    /// The form name (`rule[emails]`).
    name: &'static str,
    value: String,
    #[prop(default = "text")] kind: &'static str,
    #[prop(optional)] hint: Option<&'static str>,
    error: Signal<Option<String>>,
    #[prop(default = false)] disabled: bool,
) -> impl IntoView {
    let id = format!("alert-{key}");
    let error_id = format!("{id}-error");
    view! {
        <div class="space-y-1">
            <label for=id.clone() class="block text-sm font-medium text-slate-700">{label}</label>
            <input id=id name=name type=kind value=value disabled=disabled
                aria-invalid=move || error.get().is_some().then_some("true")
                aria-describedby=error_id.clone()
                class="block w-full rounded border border-slate-300 px-3 py-2 text-sm disabled:bg-slate-100"/>
            {hint.map(|h| view! { <p class="text-xs text-slate-600">{h}</p> })}
            <p id=error_id class="text-sm text-red-700">{move || error.get()}</p>
        </div>
    }
}

/// The rule's fields, named `rule[…]`.
#[component]
fn RuleFields(
    rule: RuleView,
    /// The form's last error.
    error: Signal<Option<AppError>>,
    #[prop(default = true)] can_set_webhook: bool,
) -> impl IntoView {
    let on = move |field: &'static str| {
        Signal::derive(move || error.get().and_then(|e| e.for_field(field)))
    };
    let check = |name: &'static str, label: &'static str, on: bool| {
        view! {
            <label class="flex items-center gap-2">
                <input type="checkbox" name=name value="on" checked=on/>
                {label}
            </label>
        }
    };
    view! {
        <fieldset class="space-y-1 text-sm">
            <legend class="font-medium text-slate-700">"Alert when"</legend>
            {check("rule[on_failure]", "A run fails", rule.on_failure)}
            {check("rule[on_partial]", "A run skips or loses more than the threshold", rule.on_partial)}
            {check("rule[on_reauth]", "A connection needs signing in again", rule.on_reauth)}
            {check("rule[on_quota]", "The daily Constant Contact quota runs out", rule.on_quota)}
        </fieldset>
        <AlertInput label="Threshold (% of profiles skipped or rejected)" key="partial_threshold_pct"
            name="rule[partial_threshold_pct]" kind="number" value=rule.partial_threshold_pct.to_string()
            error=on("partial_threshold_pct")/>
        <AlertInput label="Email to" key="emails" name="rule[emails]" value=rule.emails
            hint="Addresses separated by commas."
            error=on("emails")/>
        <AlertInput label="Webhook URL" key="webhook_url" name="rule[webhook_url]" value=rule.webhook_url
            kind="url" disabled=!can_set_webhook
            hint="Receives signed JSON; a Slack incoming webhook shows its text."
            error=on("webhook_url")/>
    }
}

/// Admin > System > Alerts.
#[component]
pub fn AlertsSection() -> impl IntoView {
    let save_rule = ServerAction::<SaveDefaultAlertRule>::new();
    let save_smtp = ServerAction::<SaveSmtpSettings>::new();
    let test = ServerAction::<SendTestAlert>::new();
    let settings = Resource::new(
        move || {
            (
                save_rule.version().get(),
                save_smtp.version().get(),
                test.version().get(),
            )
        },
        |_| get_alert_settings(),
    );
    view! {
        <section class="mt-8 max-w-3xl" aria-labelledby="alerts-heading">
            <h2 id="alerts-heading" class="text-xl font-semibold">"Alerts"</h2>
            <p class="mt-1 text-sm text-slate-600">
                "Who is told when a run fails or skips too much, a connection needs signing in again, or the quota runs out. "
                "An export can have its own rule for its runs (on its page)."
            </p>
            <Suspense fallback=|| view! { <p class="mt-4 text-slate-500">"Loading alerts…"</p> }>
                {move || Suspend::new(async move {
                    match settings.await {
                        Ok(s) => view! { <AlertsForms s save_rule save_smtp test/> }.into_any(),
                        Err(e) => view! { <div class="mt-4"><ErrorBanner error=e/></div> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn AlertsForms(
    s: AlertSettings,
    save_rule: ServerAction<SaveDefaultAlertRule>,
    save_smtp: ServerAction<SaveSmtpSettings>,
    test: ServerAction<SendTestAlert>,
) -> impl IntoView {
    let rule_value = save_rule.value();
    let smtp_value = save_smtp.value();
    let tested = move || match test.value().get() {
        Some(Ok(0)) => Some(String::from(
            "Test alert recorded, but the default rule has no recipients.",
        )),
        Some(Ok(n)) => Some(format!(
            "Test alert sent to {n} recipient(s); see the log below."
        )),
        _ => None,
    };
    let tls = s.smtp_tls.clone();
    view! {
        <ActionForm action=save_rule attr:class="mt-4 space-y-4 rounded-lg bg-white p-5 shadow-sm">
            <h3 class="font-semibold">"Default rule"</h3>
            <ErrorSummary error=Signal::derive(move || rule_value.get().and_then(Result::err)) prefix="alert"/>
            <RuleFields rule=s.rule.clone() error=Signal::derive(move || rule_value.get().and_then(Result::err))/>
            {move || form_error(rule_value)().map(|e| view! { <ErrorBanner error=e/> })}
            <Show when=move || matches!(rule_value.get(), Some(Ok(_)))>
                <p role="status" class="text-sm text-green-700">"Alert rule saved."</p>
            </Show>
            <button type="submit" class="rounded bg-slate-900 px-4 py-2 text-sm font-medium text-white hover:bg-slate-700">"Save alert rule"</button>
        </ActionForm>

        <ActionForm action=save_smtp attr:class="mt-4 space-y-4 rounded-lg bg-white p-5 shadow-sm">
            <h3 class="font-semibold">"Email (SMTP)"</h3>
            <ErrorSummary error=Signal::derive(move || smtp_value.get().and_then(Result::err)) prefix="alert"/>
            <div class="grid gap-4 sm:grid-cols-2">
                <AlertInput label="SMTP host" key="smtp_host" name="smtp_host" value=s.smtp_host.clone()
                    hint="Empty: no email alerts."
                    error=Signal::derive(field_error(smtp_value, "smtp_host"))/>
                <AlertInput label="Port" key="smtp_port" name="smtp_port" kind="number" value=s.smtp_port.to_string()
                    error=Signal::derive(field_error(smtp_value, "smtp_port"))/>
            </div>
            <div class="space-y-1">
                <label for="alert-smtp_tls" class="block text-sm font-medium text-slate-700">"Security"</label>
                <select id="alert-smtp_tls" name="smtp_tls" class="block w-full rounded border border-slate-300 px-3 py-2 text-sm">
                    {[("starttls", "STARTTLS (port 587)"), ("tls", "TLS (port 465)"), ("none", "None (a local relay only)")]
                        .into_iter()
                        .map(|(k, label)| view! { <option value=k selected=tls == k>{label}</option> })
                        .collect_view()}
                </select>
            </div>
            <div class="grid gap-4 sm:grid-cols-2">
                <AlertInput label="User name" key="smtp_username" name="smtp_username" value=s.smtp_username.clone()
                    error=Signal::derive(field_error(smtp_value, "smtp_username"))/>
                <AlertInput label="Password" key="smtp_password" name="smtp_password" kind="password" value=String::new()
                    hint=if s.smtp_password_set { "Set. Leave empty to keep it." } else { "Not set." }
                    error=Signal::derive(field_error(smtp_value, "smtp_password"))/>
            </div>
            <AlertInput label="From" key="smtp_from" name="smtp_from" kind="email" value=s.smtp_from.clone()
                error=Signal::derive(field_error(smtp_value, "smtp_from"))/>
            {move || form_error(smtp_value)().map(|e| view! { <ErrorBanner error=e/> })}
            <Show when=move || matches!(smtp_value.get(), Some(Ok(_)))>
                <p role="status" class="text-sm text-green-700">"Email settings saved."</p>
            </Show>
            <button type="submit" class="rounded bg-slate-900 px-4 py-2 text-sm font-medium text-white hover:bg-slate-700">"Save email settings"</button>
        </ActionForm>

        <div class="mt-4 space-y-2 rounded-lg bg-white p-5 text-sm shadow-sm">
            <h3 class="font-semibold">"Webhook signatures"</h3>
            <p class="text-slate-600">
                "Each webhook carries "<code>"X-Segment-Export-Timestamp"</code>" and "<code>"X-Segment-Export-Signature"</code>
                ": sha256= and the HMAC-SHA256, under this secret, of the timestamp, a dot and the body."
            </p>
            <label for="webhook-secret" class="block font-medium text-slate-700">"Signing secret"</label>
            <input id="webhook-secret" readonly value=s.webhook_secret.clone()
                class="block w-full rounded border border-slate-300 bg-slate-50 px-2 py-1 font-mono text-xs"/>
            <button type="button" class="mt-2 rounded border border-slate-300 px-3 py-2 hover:bg-slate-50"
                on:click=move |_| { test.dispatch(SendTestAlert {}); }>"Send test alert"</button>
            <p role="status" class="text-green-700">{tested}</p>
            {move || form_error(test.value())().map(|e| view! { <ErrorBanner error=e/> })}
        </div>

        <AlertLog alerts=s.alerts/>
    }
}

fn delivery_words(status: &str) -> &'static str {
    match status {
        "sent" => "Sent",
        "failed" => "Failed",
        _ => "Retrying",
    }
}

#[component]
fn AlertLog(alerts: Vec<AlertView>) -> impl IntoView {
    view! {
        <div class="mt-4 rounded-lg bg-white p-5 text-sm shadow-sm">
            <h3 class="font-semibold">"Alert log"</h3>
            {if alerts.is_empty() {
                view! { <p class="mt-2 text-slate-600">"No alerts yet."</p> }.into_any()
            } else {
                view! {
                    <ul class="mt-2 divide-y divide-slate-100" data-testid="alert-log">
                        {alerts.into_iter().map(|a| view! {
                            <li class="py-2">
                                <p class="font-medium">{a.subject.clone()}</p>
                                <p class="text-xs text-slate-600">{a.at.clone()}</p>
                                <p class="mt-1 text-slate-700">{a.body.clone()}</p>
                                {if a.deliveries.is_empty() {
                                    view! { <p class="mt-1 text-xs text-slate-600">"No recipients."</p> }.into_any()
                                } else {
                                    view! {
                                        <ul class="mt-1 space-y-0.5 text-xs">
                                            {a.deliveries.into_iter().map(|d| view! {
                                                <li data-testid="delivery">
                                                    <span class="font-medium">{delivery_words(&d.status)}</span>
                                                    {format!(" · {} to {} · {} attempt(s)", d.channel, d.target, d.attempts)}
                                                    {d.last_error.map(|e| view! { <span class="block text-red-700">{e}</span> })}
                                                </li>
                                            }).collect_view()}
                                        </ul>
                                    }.into_any()
                                }}
                            </li>
                        }).collect_view()}
                    </ul>
                }.into_any()
            }}
        </div>
    }
}

/// An export's alerts (on its page): its own rule, or the default.
#[component]
pub fn ExportAlertsSection(export_id: ExportId) -> impl IntoView {
    let save = ServerAction::<SaveExportAlertRule>::new();
    let alerts = Resource::new(
        move || save.version().get(),
        move |_| get_export_alerts(export_id),
    );
    let value = save.value();
    view! {
        <section class="mt-8 rounded-lg bg-white p-5 shadow-sm" aria-labelledby="export-alerts-heading">
            <h2 id="export-alerts-heading" class="font-semibold">"Alerts"</h2>
            <Suspense fallback=|| view! { <p class="mt-2 text-sm text-slate-500">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match alerts.await {
                        Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                        Ok(a) => {
                            let uses_default = a.own.is_none();
                            let rule = a.own.clone().unwrap_or(a.default.clone());
                            let summary = if uses_default {
                                "This export uses the default rule (Admin > System)."
                            } else {
                                "This export has its own rule."
                            };
                            if !a.can_manage {
                                return view! { <p class="mt-2 text-sm text-slate-600">{summary}" Only whoever may manage this export changes it."</p> }.into_any();
                            }
                            view! {
                                <ActionForm action=save attr:class="mt-2 space-y-4">
                                    <p class="text-sm text-slate-600">{summary}</p>
                                    <input type="hidden" name="export_id" value=export_id.to_string()/>
                                    <ErrorSummary error=Signal::derive(move || value.get().and_then(Result::err)) prefix="alert"/>
                                    <label class="flex items-center gap-2 text-sm">
                                        <input type="checkbox" name="use_default" value="on" checked=uses_default/>
                                        "Use the default rule"
                                    </label>
                                    <RuleFields rule error=Signal::derive(move || value.get().and_then(Result::err)) can_set_webhook=a.can_set_webhook/>
                                    {move || form_error(value)().map(|e| view! { <ErrorBanner error=e/> })}
                                    <Show when=move || matches!(value.get(), Some(Ok(_)))>
                                        <p role="status" class="text-sm text-green-700">"Alert rule saved."</p>
                                    </Show>
                                    <button type="submit" class="rounded bg-slate-900 px-4 py-2 text-sm font-medium text-white hover:bg-slate-700">"Save alert rule"</button>
                                </ActionForm>
                            }.into_any()
                        }
                    }
                })}
            </Suspense>
        </section>
    }
}
