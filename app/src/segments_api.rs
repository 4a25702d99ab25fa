//! Data > Segments: server functions. Everyone signed in reads; admins and
//! contributors create, edit and refresh.

use leptos::prelude::*;

use crate::error::AppError;
use crate::model::{FieldView, SegmentDetail, SegmentId, SegmentView};

#[cfg(feature = "ssr")]
mod convert {
    use crate::model::{ConditionInput, RuleInput, SegmentView};
    use engine::segments::{Match, Rule, Segment};

    pub fn rule_input(rule: &Rule) -> RuleInput {
        // The engine's types serialize to exactly the builder's shape.
        serde_json::from_value(serde_json::to_value(rule).unwrap_or_default()).unwrap_or_else(
            |_| RuleInput {
                matching: String::from(if rule.matching == Match::Any {
                    "any"
                } else {
                    "all"
                }),
                conditions: Vec::<ConditionInput>::new(),
            },
        )
    }

    pub fn parse_rule(json: &str) -> Result<Rule, engine::Error> {
        // Far above any rule within the limits; parsing stops here first.
        if json.len() > 256 * 1024 {
            return Err(engine::Error::invalid("rule", "The rule is too large."));
        }
        serde_json::from_str(json).map_err(|_| {
            engine::Error::invalid(
                "rule",
                "The rule is not complete: check each condition's operator.",
            )
        })
    }

    pub fn view(s: Segment) -> SegmentView {
        SegmentView {
            rule_text: s.rule.as_ref().map(|r| rule_input(r).text()),
            id: s.id,
            name: s.name,
            description: s.description,
            kind: String::from(if s.kind == engine::segments::Kind::Rule {
                "rule"
            } else {
                "static"
            }),
            member_count: s.member_count,
            refreshed: s.refreshed_at.map(engine::time::format_ms),
        }
    }
}

#[server(endpoint = "list_segments")]
pub async fn list_segments(search: String) -> Result<Vec<SegmentView>, AppError> {
    use engine::policy;
    let call = crate::ssr::call();
    call.run(async {
        call.allowed(policy::read).await?;
        Ok(engine::segments::list(call.db(), &search)
            .await?
            .into_iter()
            .map(convert::view)
            .collect())
    })
    .await
}

#[server(endpoint = "profile_fields")]
pub async fn profile_fields() -> Result<Vec<FieldView>, AppError> {
    use engine::policy;
    let call = crate::ssr::call();
    call.run(async {
        call.allowed(policy::read).await?;
        Ok(engine::profiles::fields(call.db())
            .await?
            .into_iter()
            .map(|f| FieldView {
                name: f.name,
                kind: f.kind,
                filled: f.filled,
            })
            .collect())
    })
    .await
}

#[server(endpoint = "get_segment")]
pub async fn get_segment(id: SegmentId) -> Result<SegmentDetail, AppError> {
    use engine::policy;
    let call = crate::ssr::call();
    call.run(async {
        let me = call.allowed(policy::read).await?;
        let db = call.db();
        let segment = engine::segments::get(db, id)
            .await?
            .ok_or_else(|| AppError::Refused(String::from("The segment was not found.")))?;
        let preview_fields: Vec<String> = ["email", "first_name", "last_name", "country"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let preview = engine::segments::preview(db, id, 50)
            .await?
            .into_iter()
            .map(|(pid, attrs)| {
                let values = preview_fields
                    .iter()
                    .map(|f| attrs.get(f).cloned().unwrap_or_default())
                    .collect();
                (pid, values)
            })
            .collect();
        let fill_rates = engine::segments::fill_rates(db, id)
            .await?
            .into_iter()
            .collect();
        Ok(SegmentDetail {
            rule: segment.rule.as_ref().map(convert::rule_input),
            segment: convert::view(segment),
            preview_fields,
            preview,
            fill_rates,
            can_manage: policy::may_change_segment(db, &me, id).await.is_ok(),
        })
    })
    .await
}

/// How many profiles a rule selects now (nothing is saved).
#[server(endpoint = "preview_rule")]
pub async fn preview_rule(rule: String) -> Result<i64, AppError> {
    use engine::policy;
    let call = crate::ssr::call();
    call.run(async {
        call.allowed(policy::create_segment).await?;
        let rule = convert::parse_rule(&rule)?;
        rule.validate()?;
        Ok(engine::segments::count_matching(call.db(), &rule).await?)
    })
    .await
}

#[server(endpoint = "create_segment")]
pub async fn create_segment(
    name: String,
    description: String,
    rule: String,
) -> Result<SegmentView, AppError> {
    use engine::policy;
    let call = crate::ssr::call();
    call.run(async {
        let user = call.allowed(policy::create_segment).await?;
        let (name, rule) = engine::segments::check(&name, convert::parse_rule(&rule))?;
        Ok(convert::view(
            engine::segments::create_rule(call.db(), Some(&user), &name, &description, &rule)
                .await?,
        ))
    })
    .await
}

#[server(endpoint = "update_segment")]
pub async fn update_segment(
    id: SegmentId,
    name: String,
    description: String,
    rule: String,
) -> Result<SegmentView, AppError> {
    use engine::policy;
    let call = crate::ssr::call();
    call.run(async {
        let user = call.allowed(policy::create_segment).await?;
        policy::may_change_segment(call.db(), &user, id).await?;
        let (name, rule) = engine::segments::check(&name, convert::parse_rule(&rule))?;
        Ok(convert::view(
            engine::segments::update_rule(call.db(), Some(&user), id, &name, &description, &rule)
                .await?,
        ))
    })
    .await
}

#[server(endpoint = "refresh_segment")]
pub async fn refresh_segment(id: SegmentId) -> Result<SegmentView, AppError> {
    use engine::policy;
    let call = crate::ssr::call();
    call.run(async {
        let user = call.allowed(policy::create_segment).await?;
        policy::may_change_segment(call.db(), &user, id).await?;
        Ok(convert::view(
            engine::segments::refresh_by(call.db(), &user, id).await?,
        ))
    })
    .await
}
