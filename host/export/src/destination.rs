//! Where an export writes: a directory on the server (under the configured export
//! root) or an S3 bucket through `object_store` (built by the store crate's
//! [`tapeseal_store::s3::build`], as the S3 recording repository is), with
//! server-side encryption (SSE-S3 or SSE-KMS) on every object. Writes go through
//! the store crate's repository writer: durable and atomic in a directory (staged,
//! fsynced, renamed, directory fsynced), a single PUT or a multipart upload
//! completed in one step in S3. Nothing is visible at a path until its write
//! commits.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tapeseal_store::repo::Repository;
use tapeseal_store::s3::{self, Sse, valid_bucket, valid_region, valid_token};

use crate::layout;

/// `AES256`: SSE-S3, keys managed by S3.
pub const SSE_S3: &str = "AES256";
/// `aws:kms`: SSE-KMS under a KMS key the job names.
pub const SSE_KMS: &str = "aws:kms";

/// A secret that prints as `[redacted]` and is wiped when dropped.
pub use tapeseal_store::s3::Secret;

fn default_sse() -> String {
    SSE_S3.to_string()
}

/// A destination as a job names it. Serialised into the job's parameters without
/// its secret (the server keeps that sealed apart).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum DestinationSpec {
    /// The server's export directory (`[export] directory`).
    Directory {
        /// A sub-path inside it (`/`-separated; ASCII letters, digits, `-`, `_`, `.`).
        #[serde(default)]
        prefix: String,
    },
    /// An S3 bucket (the endpoint is the server's `[export] s3_endpoint_url`, or AWS).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket (same rules as a directory prefix).
        #[serde(default)]
        prefix: String,
        /// The bucket's region (default: `[export] s3_region`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
        /// Server-side encryption of every object: `AES256` (SSE-S3, the default) or
        /// `aws:kms` (SSE-KMS, with `sse_kms_key_id`).
        #[serde(default = "default_sse")]
        sse: String,
        /// The KMS key (id, ARN or alias) for `aws:kms`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sse_kms_key_id: Option<String>,
        /// An access key of the organisation's own; without one the server's
        /// credentials (environment, profile, instance role) are used.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        access_key_id: Option<String>,
        /// Its secret: sent once, kept sealed under the server's master key, never
        /// shown again.
        #[serde(default, skip_serializing)]
        #[schema(value_type = Option<String>)]
        secret_access_key: Option<Secret>,
    },
}

/// The server's settings for S3 destinations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// Another endpoint than AWS (a local S3-compatible service; `http://` allowed).
    pub endpoint_url: Option<String>,
    /// The region when a job names none.
    pub region: String,
}

impl DestinationSpec {
    /// Checks every field, the access key pair included; the message says what is
    /// wrong and what is allowed.
    pub fn check(&self) -> Result<(), String> {
        self.check_fields()?;
        match self {
            Self::S3 {
                access_key_id,
                secret_access_key,
                ..
            } => match (access_key_id, secret_access_key) {
                (None, None) => Ok(()),
                (Some(id), Some(secret))
                    if valid_token(id, 128) && valid_token(secret.expose(), 256) =>
                {
                    Ok(())
                }
                (Some(_), Some(_)) => Err("the access key is malformed".into()),
                _ => Err("give both access_key_id and secret_access_key, or neither".into()),
            },
            Self::Directory { .. } => Ok(()),
        }
    }

    /// Checks every field but the secret (which a stored job keeps apart).
    fn check_fields(&self) -> Result<(), String> {
        match self {
            Self::Directory { prefix } => layout::prefix(prefix).map(drop),
            Self::S3 {
                bucket,
                prefix,
                region,
                sse,
                sse_kms_key_id,
                ..
            } => {
                if !valid_bucket(bucket) {
                    return Err(format!("'{bucket}' is not a valid S3 bucket name"));
                }
                layout::prefix(prefix)?;
                if let Some(region) = region
                    && !valid_region(region)
                {
                    return Err(format!("'{region}' is not a valid AWS region"));
                }
                match (sse.as_str(), sse_kms_key_id) {
                    (SSE_S3, None) => {}
                    (SSE_S3, Some(_)) => {
                        return Err("sse_kms_key_id goes with sse \"aws:kms\" only".into());
                    }
                    (SSE_KMS, Some(key)) if valid_token(key, 2048) => {}
                    (SSE_KMS, _) => {
                        return Err(
                            "sse \"aws:kms\" needs sse_kms_key_id (a KMS key id, ARN or alias)"
                                .into(),
                        );
                    }
                    (other, _) => {
                        return Err(format!(
                            "sse must be \"AES256\" (SSE-S3) or \"aws:kms\" (SSE-KMS), not \"{other}\""
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    /// What the audit log and the manifest say of it (no secrets).
    pub fn describe(&self) -> String {
        match self {
            Self::Directory { prefix } => format!("export directory /{prefix}"),
            Self::S3 {
                bucket,
                prefix,
                sse,
                sse_kms_key_id,
                ..
            } => match sse_kms_key_id {
                Some(key) => format!("s3://{bucket}/{prefix} (SSE {sse} {key})"),
                None => format!("s3://{bucket}/{prefix} (SSE {sse})"),
            },
        }
    }
}

/// An opened destination.
#[derive(Debug, Clone)]
pub struct Destination {
    repo: Repository,
    prefix: String,
    local_root: Option<PathBuf>,
}

impl Destination {
    /// Opens `spec` (its fields checked first): a directory under `local_root`, or a
    /// bucket with `settings` and `secret_access_key`, which an access key in the
    /// spec needs. Nothing is contacted yet.
    pub fn open(
        spec: &DestinationSpec,
        settings: &S3Settings,
        local_root: &Path,
        secret_access_key: Option<&Secret>,
    ) -> Result<Self, String> {
        spec.check_fields()?;
        match spec {
            DestinationSpec::Directory { prefix } => {
                let repo = Repository::local(local_root).map_err(|e| e.to_string())?;
                Ok(Self {
                    repo,
                    prefix: layout::prefix(prefix)?,
                    local_root: Some(local_root.to_path_buf()),
                })
            }
            DestinationSpec::S3 {
                bucket,
                prefix,
                region,
                sse,
                sse_kms_key_id,
                access_key_id,
                ..
            } => {
                let sse = match sse_kms_key_id {
                    Some(key_id) if sse == SSE_KMS => Sse::Kms {
                        key_id: key_id.clone(),
                    },
                    _ => Sse::S3,
                };
                if access_key_id.is_some() && secret_access_key.is_none() {
                    return Err("the access key's secret is missing; give it again".into());
                }
                let bucket_settings = s3::S3Settings {
                    bucket: bucket.clone(),
                    // The export's own prefix is part of each path it writes.
                    prefix: None,
                    region: region.clone().unwrap_or_else(|| settings.region.clone()),
                    endpoint_url: settings.endpoint_url.clone(),
                    access_key_id: access_key_id.clone(),
                    secret_access_key: access_key_id.as_ref().and(secret_access_key.cloned()),
                    sse: Some(sse),
                };
                let repo = Repository::s3(&bucket_settings).map_err(|e| e.to_string())?;
                Ok(Self {
                    repo,
                    prefix: layout::prefix(prefix)?,
                    local_root: None,
                })
            }
        }
    }

    /// The checked prefix every path starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Writes through the repository writer (atomic, durable on commit).
    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// Writes a small object whole.
    pub async fn put(&self, path: &str, bytes: Bytes) -> std::io::Result<()> {
        let mut writer = self.repo.writer(path).await?;
        if let Err(e) = writer.put(bytes).await {
            let _ = writer.abort().await;
            return Err(e);
        }
        writer.commit().await
    }

    /// Removes what writes interrupted by a crash left staged in a directory
    /// destination (nothing to do in S3: an unfinished upload is invisible, and a
    /// bucket lifecycle rule removes its parts). Returns how many it removed.
    pub fn sweep(&self) -> std::io::Result<usize> {
        match &self.local_root {
            Some(root) => Repository::sweep_any_staging(root),
            None => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(json: &str) -> DestinationSpec {
        serde_json::from_str(json).expect("a destination")
    }

    #[test]
    fn s3_destinations_are_checked_before_anything_is_contacted() {
        assert!(s3(r#"{"type":"s3","bucket":"exports-1"}"#).check().is_ok());
        assert!(
            s3(r#"{"type":"s3","bucket":"b12","sse":"aws:kms","sse_kms_key_id":"alias/x"}"#)
                .check()
                .is_ok()
        );
        for (json, says) in [
            (r#"{"type":"s3","bucket":"B"}"#, "bucket"),
            (
                r#"{"type":"s3","bucket":"abc","sse":"aws:kms"}"#,
                "sse_kms_key_id",
            ),
            (r#"{"type":"s3","bucket":"abc","sse":"none"}"#, "AES256"),
            (
                r#"{"type":"s3","bucket":"abc","access_key_id":"AKIA"}"#,
                "both",
            ),
            (r#"{"type":"s3","bucket":"abc","prefix":"../x"}"#, "prefix"),
            (
                r#"{"type":"s3","bucket":"abc","region":"us east"}"#,
                "region",
            ),
        ] {
            let err = s3(json).check().expect_err(json);
            assert!(err.contains(says), "{json}: {err}");
        }
    }

    #[test]
    fn a_secret_never_prints_or_serialises() {
        let spec = s3(
            r#"{"type":"s3","bucket":"abc","access_key_id":"AKIAX","secret_access_key":"hunter2-secret"}"#,
        );
        assert!(!format!("{spec:?}").contains("hunter2"));
        let json = serde_json::to_string(&spec).expect("json");
        assert!(
            !json.contains("hunter2") && json.contains("AKIAX"),
            "{json}"
        );
    }
}
