//! `GET /api/v1/openapi.json`: the API's OpenAPI 3.1 document, generated
//! from the handlers' `#[utoipa::path]` and the [`super::dto`] types.

use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::dto;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Segment Export API",
        description = "Export segments of customer profiles to Constant Contact lists: \
            read exports, trigger and follow runs, read their per-contact errors. \
            Authenticate with an API token made in Admin > API tokens.",
    ),
    paths(
        super::list_exports,
        super::get_export,
        super::trigger_run,
        super::get_run,
        super::run_errors,
        super::run_errors_csv,
        super::cancel_run,
    ),
    components(schemas(
        dto::ErrorBody,
        dto::ErrorDetail,
        dto::ExportList,
        dto::ExportDto,
        types::Mapping,
        dto::RunDto,
        dto::RunStatus,
        dto::RunMode,
        dto::RunCounts,
        types::Counts,
        dto::Progress,
        dto::TriggerRequest,
        dto::ErrorPage,
        dto::ContactErrorDto,
    )),
    modifiers(&BearerToken),
    tags(
        (name = "exports", description = "Exports (destinations)"),
        (name = "runs", description = "Runs of exports"),
    )
)]
pub struct ApiDoc;

/// The `token` security scheme: `Authorization: Bearer sxp_…`.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi
            .components
            .get_or_insert_with(utoipa::openapi::Components::new);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("API token")
                    .build(),
            ),
        );
    }
}

/// The document (no token needed: it describes, it does not disclose).
pub async fn document() -> Response {
    Json(ApiDoc::openapi()).into_response()
}
