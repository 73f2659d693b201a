//! Tokens through azure_identity: a client secret, a certificate, or a federated assertion,
//! all on our HTTP client so they trust the same roots as Graph calls. azure_identity caches
//! and refreshes the token.

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientMethodOptions, ClientOptions, RetryOptions, Transport};
use azure_identity::{
    ClientAssertion, ClientAssertionCredential, ClientAssertionCredentialOptions,
    ClientSecretCredential, ClientSecretCredentialOptions, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{AzureConfig, CredentialSource};

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("{variable}: {problem}")]
    Config {
        variable: &'static str,
        problem: String,
    },
}

/// Options every credential shares. Retries are ours (the Graph client retries a whole call,
/// token included, within the caller's deadline), so azure_core's own are off.
fn client_options(cfg: &AzureConfig, http: &reqwest::Client) -> ClientOptions {
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = cfg.authority_host.clone();
    ClientOptions {
        transport: Some(Transport::new(Arc::new(http.clone()))),
        retry: RetryOptions::none(),
        cloud: Some(Arc::new(CloudConfiguration::Custom(cloud))),
        ..ClientOptions::default()
    }
}

/// Builds the credential the configuration names. `resolved_secret` carries a secret that was
/// fetched from Secrets Manager for [`CredentialSource::SecretArn`].
/// `aws` is needed for [`CredentialSource::AwsWebIdentity`] only.
pub fn build_credential(
    cfg: &AzureConfig,
    resolved_secret: Option<&str>,
    http: &reqwest::Client,
    aws: Option<&aws_config::SdkConfig>,
) -> Result<Arc<dyn TokenCredential>, CredentialError> {
    let client_options = client_options(cfg, http);
    let bad = |variable: &'static str, e: azure_core::Error| CredentialError::Config {
        variable,
        problem: e.to_string(),
    };
    match &cfg.credential {
        CredentialSource::Secret(_) | CredentialSource::SecretArn(_) => {
            let secret = match (&cfg.credential, resolved_secret) {
                (CredentialSource::Secret(s), _) => s.clone(),
                (_, Some(s)) => s.to_string(),
                _ => {
                    return Err(CredentialError::Config {
                        variable: "AZURE_CLIENT_SECRET_ARN",
                        problem: "the secret was not fetched".into(),
                    });
                }
            };
            let credential = ClientSecretCredential::new(
                &cfg.tenant_id,
                cfg.client_id.clone(),
                Secret::new(secret),
                Some(ClientSecretCredentialOptions { client_options }),
            )
            .map_err(|e| bad("AZURE_CLIENT_SECRET", e))?;
            Ok(credential)
        }
        CredentialSource::Certificate(path) => {
            let assertion = CertificateAssertion::load(
                path,
                &cfg.client_id,
                &format!("{}/{}/oauth2/v2.0/token", cfg.authority_host, cfg.tenant_id),
            )?;
            assertion_credential(cfg, assertion, client_options)
                .map_err(|e| bad("AZURE_CLIENT_CERTIFICATE_PATH", e))
        }
        CredentialSource::FederatedTokenFile(path) => {
            let mut options = WorkloadIdentityCredentialOptions::default();
            options.credential_options.client_options = client_options;
            options.client_id = Some(cfg.client_id.clone());
            options.tenant_id = Some(cfg.tenant_id.clone());
            options.token_file_path = Some(path.clone());
            let credential = WorkloadIdentityCredential::new(Some(options))
                .map_err(|e| bad("AZURE_FEDERATED_TOKEN_FILE", e))?;
            Ok(credential)
        }
        CredentialSource::AwsWebIdentity => {
            let aws = aws.ok_or_else(|| CredentialError::Config {
                variable: "AZURE_FEDERATED_TOKEN_SOURCE",
                problem: "aws-sts needs the AWS configuration, which was not loaded".into(),
            })?;
            let assertion = StsWebIdentityAssertion {
                sts: aws_sdk_sts::Client::new(aws),
            };
            assertion_credential(cfg, assertion, client_options)
                .map_err(|e| bad("AZURE_FEDERATED_TOKEN_SOURCE", e))
        }
    }
}

fn assertion_credential<C: ClientAssertion + 'static>(
    cfg: &AzureConfig,
    assertion: C,
    client_options: ClientOptions,
) -> azure_core::Result<Arc<dyn TokenCredential>> {
    let credential: Arc<dyn TokenCredential> = ClientAssertionCredential::new(
        cfg.tenant_id.clone(),
        cfg.client_id.clone(),
        assertion,
        Some(ClientAssertionCredentialOptions { client_options }),
    )?;
    Ok(credential)
}

/// The audience Entra ID expects of a federated assertion.
const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// A federated assertion issued by AWS STS for the function's own role: its `sub` is the
/// role ARN, which the app registration's federated identity credential names. No secret
/// exists anywhere.
#[derive(Debug)]
struct StsWebIdentityAssertion {
    sts: aws_sdk_sts::Client,
}

#[async_trait::async_trait]
impl ClientAssertion for StsWebIdentityAssertion {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        let answer = self
            .sts
            .get_web_identity_token()
            .audience(TOKEN_EXCHANGE_AUDIENCE)
            .signing_algorithm("RS256")
            // Entra only needs it for the one token request it is sent with.
            .duration_seconds(300)
            .send()
            .await
            .map_err(|e| {
                azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Credential,
                    format!(
                        "AWS STS GetWebIdentityToken failed: {}",
                        aws_sdk_sts::error::DisplayErrorContext(&e)
                    ),
                )
            })?;
        answer
            .web_identity_token()
            .map(String::from)
            .ok_or_else(|| {
                azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Credential,
                    "AWS STS GetWebIdentityToken answered without a token",
                )
            })
    }
}

/// A certificate credential as Entra ID defines it: a short-lived JWT signed with the
/// certificate's key (PS256), naming the certificate by its SHA-256 thumbprint.
struct CertificateAssertion {
    key: jsonwebtoken::EncodingKey,
    thumbprint: String,
    client_id: String,
    audience: String,
    path: PathBuf,
}

impl std::fmt::Debug for CertificateAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAssertion")
            .field("path", &self.path)
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl CertificateAssertion {
    fn load(path: &Path, client_id: &str, audience: &str) -> Result<Self, CredentialError> {
        let problem = |problem: String| CredentialError::Config {
            variable: "AZURE_CLIENT_CERTIFICATE_PATH",
            problem,
        };
        let text = std::fs::read(path)
            .map_err(|e| problem(format!("cannot read {}: {e}", path.display())))?;
        let blocks = pem::parse_many(&text)
            .map_err(|e| problem(format!("{} is not PEM: {e}", path.display())))?;
        let cert = blocks
            .iter()
            .find(|b| b.tag() == "CERTIFICATE")
            .ok_or_else(|| problem(format!("{} holds no CERTIFICATE block", path.display())))?;
        let key_pem = blocks
            .iter()
            .find(|b| b.tag() == "PRIVATE KEY" || b.tag() == "RSA PRIVATE KEY")
            .ok_or_else(|| {
                problem(format!(
                    "{} holds no unencrypted PRIVATE KEY block",
                    path.display()
                ))
            })?;
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem::encode(key_pem).as_bytes())
            .map_err(|e| problem(format!("the private key is not an RSA key: {e}")))?;
        let thumbprint = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(cert.contents()));
        Ok(CertificateAssertion {
            key,
            thumbprint,
            client_id: client_id.to_string(),
            audience: audience.to_string(),
            path: path.to_path_buf(),
        })
    }
}

#[async_trait::async_trait]
impl ClientAssertion for CertificateAssertion {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::PS256);
        header.x5t_s256 = Some(self.thumbprint.clone());
        let claims = serde_json::json!({
            "aud": self.audience,
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        });
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| {
            azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                format!("cannot sign the certificate assertion: {e}"),
            )
        })
    }
}
