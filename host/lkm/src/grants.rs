//! Playback grants (`tapeseal_keys::grant`): a platform registers, over Hawk, the
//! Ed25519 key that signs its grants (`/grant-issuer`); a page then presents one grant
//! to `/browser-decrypt` instead of credentials, and gets one recording's DEK once.
//! The grant must verify with its issuer's registered key (the issuer's credential
//! still active), be within its lifetime, name exactly this key pair and wrapped DEK,
//! and not have been used before, also before a restart (its id is in the request
//! log, like Hawk nonces).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tapeseal_keys::grant::{Grant, GrantError, PUBLIC_KEY_LEN};
use tapeseal_keys::lkm::wire::{
    BrowserDecryptRequest, DecryptResponse, GrantIssuer, GrantIssuerRequest,
};
use tapeseal_store::time::now_ms;

use crate::auth::{Allow, Caller, Spent, authenticate};
use crate::http::{Shared, blocking, padding, unwrap_dek, wrapped_dek};
use crate::incoming::Incoming;
use crate::reply::ApiError;

/// The Hawk credential id of an authenticated caller (the endpoint allows Hawk only).
async fn hawk_caller(state: &Shared, request: &Incoming) -> Result<String, ApiError> {
    match authenticate(state, request, Allow::Hawk).await? {
        Caller::Hawk(id) => Ok(id),
        Caller::Admin => Err(ApiError::unauthorized(
            "this endpoint needs Hawk credentials",
        )),
    }
}

/// `PUT /grant-issuer {publicKey}` (Hawk): the key that verifies the caller's grants
/// from now on, replacing any earlier one.
pub(crate) async fn register_issuer(
    State(state): State<Shared>,
    request: Incoming,
) -> Result<Json<GrantIssuer>, ApiError> {
    let issuer = hawk_caller(&state, &request).await?;
    let GrantIssuerRequest { public_key } = request.json("grant-issuer")?;
    let public_key = B64
        .decode(public_key.trim())
        .map_err(|_| ApiError::bad_request("publicKey is not base64"))?;
    if public_key.len() != PUBLIC_KEY_LEN {
        return Err(ApiError::bad_request(format!(
            "publicKey is a raw Ed25519 public key of {PUBLIC_KEY_LEN} bytes, not {}",
            public_key.len()
        )));
    }
    let row = blocking(&state, move |k| {
        k.store().put_grant_issuer(&issuer, &public_key, now_ms())
    })
    .await?
    .to_wire();
    tracing::info!(
        issuer = row.issuer,
        key_id = row.key_id,
        "grant issuer registered"
    );
    Ok(Json(row))
}

/// `GET /grant-issuer` (Hawk): the caller's registered grant key, or 404.
pub(crate) async fn read_issuer(
    State(state): State<Shared>,
    request: Incoming,
) -> Result<Json<GrantIssuer>, ApiError> {
    let issuer = hawk_caller(&state, &request).await?;
    blocking(&state, move |k| k.store().grant_issuer(&issuer))
        .await?
        .map(|row| Json(row.to_wire()))
        .ok_or_else(|| ApiError::not_found("no grant key is registered for these credentials"))
}

/// `POST /browser-decrypt {grant, keypairId, body}` (the grant is the credential):
/// the DEK, base64, once per grant. CORS is [`crate::cors`]'s.
pub(crate) async fn browser_decrypt(
    State(state): State<Shared>,
    request: Incoming,
) -> Result<Json<DecryptResponse>, ApiError> {
    let body: BrowserDecryptRequest = request.json("browser-decrypt")?;
    request.noted.keypair(&body.keypair_id);
    let grant = Grant::parse(&body.grant).map_err(|e| refused(&e, None))?;
    let issuer = grant.issuer().to_string();
    let lookup = issuer.clone();
    let Some(key) = blocking(&state, move |k| k.store().grant_issuer(&lookup)).await? else {
        // The same answer as a bad signature: whether an issuer is registered is not
        // disclosed.
        tracing::info!(
            claimed_issuer = issuer,
            "grant refused: no active credential has registered this issuer"
        );
        return Err(ApiError::grant(&GrantError::BadSignature));
    };
    let (now, now_secs) = (Instant::now(), unix_secs());
    let claimed = grant.claims().clone();
    let claims = grant
        .verify(&key.public_key, now_secs, state.limits.skew.as_secs())
        .map_err(|e| {
            // Past the signature check, the issuer is known to have signed it, so
            // the user and recording it names are logged with the refusal.
            if e != GrantError::BadSignature {
                request.noted.credential(&issuer);
                request.noted.user(&claimed.sub);
                request.noted.recording(&claimed.rec);
            }
            refused(&e, Some(&issuer))
        })?;
    request.noted.credential(&claims.iss);
    request.noted.user(&claims.sub);
    request.noted.recording(&claims.rec);
    let wrapped = wrapped_dek(&body.body)?;
    claims
        .check_binding(&body.keypair_id, &wrapped)
        .map_err(|e| refused(&e, Some(&claims.iss)))?;
    let padding = padding(claims.dty.as_deref())?;
    // Before the grant is spent: a grant refused for the rate may be retried.
    state
        .grant_decrypts
        .take(&claims.iss, now)
        .map_err(ApiError::rate_limited)?;
    state
        .nonces
        .first_grant_use(&claims.iss, &claims.jti, claims.exp, now, now_secs)
        .map_err(|spent| match spent {
            Spent::Replayed => refused(&GrantError::Replayed, Some(&claims.iss)),
            Spent::Full => ApiError::busy("too many grants to remember; retry later"),
        })?;
    let expires_ms = i64::try_from(claims.exp.saturating_mul(1000)).unwrap_or(i64::MAX);
    request.noted.grant(&claims.jti, expires_ms);
    unwrap_dek(&state, body.keypair_id, wrapped, padding).await
}

/// The answer to a refused grant; the log gets the reason and the issuer it claimed.
fn refused(error: &GrantError, issuer: Option<&str>) -> ApiError {
    tracing::info!(%error, issuer, "grant refused");
    ApiError::grant(error)
}

/// The LKM's clock, Unix seconds.
fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
