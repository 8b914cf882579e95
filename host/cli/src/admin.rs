//! `tapeseal org` and `tapeseal token`: the catalogue's organisations and API tokens,
//! through the same validated, audited calls the API uses.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use tapeseal_store::catalogue::{Catalogue, Role};
use tapeseal_store::datadir::{DataDir, DataDirError};

use crate::exit::{Failure, Outcome};

/// The audit log's name for the command line.
const ACTOR: &str = "cli";

#[derive(Debug, Args)]
pub(crate) struct DataArgs {
    /// The server's data directory; the catalogue is catalogue.sqlite3 inside it
    /// unless --catalogue names a PostgreSQL one.
    #[arg(long, default_value = "tapeseal-data")]
    data: PathBuf,
    /// A PostgreSQL catalogue (postgres://user@host:port/database), as the
    /// servers' `catalogue` setting names it.
    #[arg(long)]
    catalogue: Option<String>,
    /// Name of an environment variable holding the PostgreSQL catalogue's password.
    #[arg(long, requires = "catalogue")]
    catalogue_password_env: Option<String>,
    /// CA certificates (PEM) the catalogue's server certificate must chain to
    /// (default: the system's roots), when its URL's sslmode uses TLS.
    #[arg(long, requires = "catalogue")]
    catalogue_ca_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum OrgAction {
    /// Create an organisation (managed keys, rotation disabled).
    Create {
        #[command(flatten)]
        data: DataArgs,
        /// Unique name.
        name: String,
    },
    /// List organisations.
    List {
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenAction {
    /// Create an API token; its secret is printed once and never stored.
    Create {
        #[command(flatten)]
        data: DataArgs,
        /// Organisation name or id.
        #[arg(long)]
        org: String,
        /// What the token may do.
        #[arg(long, value_enum)]
        role: TokenRole,
        /// A note for whoever lists tokens later.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Revoke a token by its id.
    Revoke {
        #[command(flatten)]
        data: DataArgs,
        /// Organisation name or id.
        #[arg(long)]
        org: String,
        /// The token's id (tok-...).
        token_id: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum TokenRole {
    /// Keys, schedules, tokens and jobs.
    Admin,
    /// Ingest recordings.
    Recorder,
    /// Play back and download recordings.
    Player,
}

impl From<TokenRole> for Role {
    fn from(r: TokenRole) -> Self {
        match r {
            TokenRole::Admin => Role::Admin,
            TokenRole::Recorder => Role::Recorder,
            TokenRole::Player => Role::Player,
        }
    }
}

fn catalogue(data: &DataArgs) -> Outcome<Catalogue> {
    if let Some(url) = &data.catalogue {
        tapeseal_store::catalogue::check_postgres_url(url).map_err(Failure::input)?;
        let password = match &data.catalogue_password_env {
            Some(var) => Some(zeroize::Zeroizing::new(std::env::var(var).map_err(
                |_| Failure::input(format!("the catalogue password variable {var} is not set")),
            )?)),
            None => None,
        };
        return Ok(Catalogue::connect_postgres(
            url,
            password.as_ref().map(|p| p.as_str()),
            data.catalogue_ca_file.as_deref(),
        )?);
    }
    DataDir::new(&data.data)
        .open_catalogue()
        .map_err(|e| match e {
            DataDirError::Create { path, source } => Failure::io("cannot create", &path, source),
            DataDirError::Catalogue(e) => e.into(),
        })
}

pub(crate) fn org(action: OrgAction) -> Outcome {
    match action {
        OrgAction::Create { data, name } => {
            let catalogue = catalogue(&data)?;
            let org = catalogue.create_org(&name, ACTOR)?;
            println!("organisation {} created: id {}", org.name, org.id);
        }
        OrgAction::List { data } => {
            for org in catalogue(&data)?.list_orgs()? {
                println!("{}  {}  keys: {}", org.id, org.name, org.key_mode);
            }
        }
    }
    Ok(())
}

pub(crate) fn token(action: TokenAction) -> Outcome {
    match action {
        TokenAction::Create {
            data,
            org,
            role,
            label,
        } => {
            let catalogue = catalogue(&data)?;
            let token = catalogue.create_token(&org, role.into(), &label, ACTOR)?;
            eprintln!(
                "token {} ({}) for {}: the secret below is shown once and never stored",
                token.id,
                token.role.name(),
                token.org_id
            );
            println!("{}", token.secret.as_str());
        }
        TokenAction::Revoke {
            data,
            org,
            token_id,
        } => {
            let catalogue = catalogue(&data)?;
            let org = catalogue.find_org(&org)?;
            if !catalogue.revoke_token(&org.id, &token_id, ACTOR)? {
                return Err(Failure::input(format!(
                    "{token_id}: no such active token in {}",
                    org.name
                )));
            }
            println!("token {token_id} revoked");
        }
    }
    Ok(())
}
