//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    admin, error, export, grants, jobs, keys, kms, lkm, playback, recordings, rewrap, sealed,
};
use tapeseal_export::DestinationSpec;
use tapeseal_store::catalogue::{AuditEntry, ExportSelection, Job, JobState, Org, TokenInfo};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tapeseal recording server",
        description = "Recordings sealed per recording under organisation-controlled KEKs. Authenticate with `Authorization: Bearer tsk_...`."
    ),
    paths(
        recordings::ingest, recordings::list, recordings::metadata, playback::content,
        playback::envelope, sealed::upload,
        keys::list, keys::current, keys::one, keys::rotate, keys::remove, keys::schedule, keys::set_schedule,
        keys::set_mode,
        lkm::settings, lkm::configure, lkm::register, lkm::register_grant_key,
        kms::settings, kms::configure,
        grants::playback,
        rewrap::create_rewrap, jobs::list, jobs::one, jobs::cancel, jobs::resume, export::create,
        admin::healthz, admin::metrics, admin::openapi, admin::create_org, admin::create_token,
        admin::list_tokens, admin::revoke_token, admin::audit,
    ),
    components(schemas(
        recordings::RecordingView, keys::KekView, keys::CurrentKekView, keys::ScheduleView, rewrap::RewrapRequest,
        export::ExportRequest, ExportSelection, DestinationSpec,
        keys::KeyModeRequest, keys::KeyModeView, kms::KmsRequest, kms::KmsView,
        lkm::LkmRequest, lkm::LkmView, lkm::RegisterKeypair, grants::PlaybackView, grants::GrantView,
        admin::Health, admin::NewOrg, admin::CreatedOrg, admin::NewTokenRequest, admin::CreatedToken,
        error::ErrorBody, error::ErrorDetail, AuditEntry, Job, JobState, Org, TokenInfo,
    )),
    modifiers(&Security),
    tags(
        (name = "recordings", description = "Ingest, playback and download"),
        (name = "keys", description = "KEKs, rotation, the deletion guard, key modes, the Local Key Manager and AWS KMS"),
        (name = "jobs", description = "Rewrap and export jobs: progress, cancellation, resumption"),
        (name = "organisations", description = "Organisations, tokens and the audit log"),
        (name = "operations", description = "Health, metrics and this document"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for name in ["token", "operator"] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

/// The OpenAPI document as JSON.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".into())
}
