//! The one HTTP client: Graph calls and azure_identity's token requests both go through it,
//! so both trust the same roots (the system's plus `B2B_EXTRA_CA_CERTS`).

use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    #[error("B2B_EXTRA_CA_CERTS: cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("B2B_EXTRA_CA_CERTS: no usable certificate in {path}: {reason}")]
    Pem { path: String, reason: String },
    #[error("HTTP client: {0}")]
    Build(String),
}

/// Builds the shared client. Per-request timeouts are set by callers from their deadline;
/// this only bounds a connection attempt, so a dead endpoint fails fast.
pub fn build_client(extra_ca_certs: Option<&Path>) -> Result<reqwest::Client, HttpClientError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(50))
        .user_agent(concat!("b2b-invites/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = extra_ca_certs {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| HttpClientError::Read {
            path: shown.clone(),
            source,
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| HttpClientError::Pem {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(HttpClientError::Pem {
                path: shown,
                reason: "the file holds no PEM certificate".into(),
            });
        }
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| HttpClientError::Build(e.to_string()))
}
