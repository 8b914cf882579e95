//! Bearer-token authentication. A token belongs to one organisation and has one
//! role; handlers see only its [`Principal`], so every query they make is scoped to
//! that organisation. The operator token (optional) may only create organisations.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::Shared;
use super::error::{ApiError, ApiResult};
use tapeseal_core::ErrorCode;
use tapeseal_store::catalogue::{Principal, Role};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

fn bearer(parts: &Parts) -> ApiResult<&str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unauthorized)?;
    value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(unauthorized)
}

fn unauthorized() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthorized,
        "a valid API token is required (Authorization: Bearer tsk_...)",
    )
}

impl FromRequestParts<Shared> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> ApiResult<Self> {
        let secret = bearer(parts)?;
        match state.catalogue.authenticate(secret)? {
            Some(principal) => Ok(Self(principal)),
            None => Err(unauthorized()),
        }
    }
}

impl Auth {
    /// The caller's organisation.
    pub fn org(&self) -> &str {
        &self.0.org_id
    }

    /// The caller as the audit log names it.
    pub fn actor(&self) -> &str {
        &self.0.token_id
    }

    /// Refuses callers whose role is not one of `roles`.
    pub fn require(&self, roles: &[Role]) -> ApiResult<()> {
        if roles.contains(&self.0.role) {
            return Ok(());
        }
        let names: Vec<&str> = roles.iter().map(|r| r.name()).collect();
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "this needs a token with role {}; this token is {}",
                names.join(" or "),
                self.0.role.name()
            ),
        ))
    }
}

/// The server operator, proven by the configured operator token.
#[derive(Debug, Clone, Copy)]
pub struct Operator;

impl FromRequestParts<Shared> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> ApiResult<Self> {
        let Some(expected) = &state.operator_token else {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "no operator token is configured; create organisations with `tapeseal org create`",
            ));
        };
        let presented = bearer(parts)?;
        if same_secret(presented, &expected.0) {
            Ok(Self)
        } else {
            Err(unauthorized())
        }
    }
}

/// Compares a presented secret with the expected one in constant time (over their
/// SHA-256, so lengths leak nothing either).
pub(crate) fn same_secret(presented: &str, expected: &str) -> bool {
    let digest = |s: &str| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
    aws_lc_rs::constant_time::verify_slices_are_equal(
        digest(presented).as_ref(),
        digest(expected).as_ref(),
    )
    .is_ok()
}
