//! Configuration from the environment (SPEC section 6). Bad configuration fails at start
//! with one line naming the variable.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

use crate::clock::Clock;
use crate::domain::access::Access;
use crate::ports::directory::Delivery;

mod api_audience;
mod redact;
mod webhook;

pub use api_audience::ApiAudience;
pub use webhook::{MIN_WEBHOOK_SECRET, WebhookSecrets, split_secrets, webhook_secrets};

/// Every variable the loader reads. The infra template is cross-checked against this list.
pub const VARIABLES: &[&str] = &[
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_SECRET_ARN",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_FEDERATED_TOKEN_SOURCE",
    "AZURE_AUTHORITY_HOST",
    "GRAPH_BASE_URL",
    "B2B_EXTRA_CA_CERTS",
    "INVITE_REDIRECT_URL",
    "DELIVERY",
    "MAIL_FROM",
    "MAIL_TEMPLATES",
    "MAIL_LANGUAGE",
    "OUTBOX_DIR",
    "LEDGER_TABLE",
    "LEDGER_PATH",
    "CIRCUIT_PROBE_AFTER",
    "B2B_NOW",
    "B2B_ALLOW_CLOCK_OVERRIDE",
    "WEBHOOK_SECRETS",
    "WEBHOOK_SECRETS_ARN",
    "API_AUDIENCE",
    "API_APP_ID_URI",
    "ALLOWED_DOMAINS",
    "BLOCKED_DOMAINS",
    "ACCESS_RULES",
    "REMIND_AFTER",
    "REMIND_EVERY",
    "MAX_REMINDERS",
    "EXPIRE_AFTER",
    "EXPIRE_ACTION",
    "EXPIRE_MAX_PER_RUN",
    "SCOPE",
    "DRY_RUN",
    "GRAPH_MAX_WRITES_PER_SECOND",
    "WORK_QUEUE_URL",
    "HR_END_ACTION",
    "OFFBOARD_MAX_PER_RUN",
];

fn work_queue_url(env: &dyn Env) -> Result<Option<String>, ConfigError> {
    let Some(url) = env.var("WORK_QUEUE_URL") else {
        return Ok(None);
    };
    let url = url.trim();
    let parsed = url::Url::parse(url)
        .map_err(|e| ConfigError::new("WORK_QUEUE_URL", format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(ConfigError::new(
            "WORK_QUEUE_URL",
            "must be an SQS queue URL",
        ));
    }
    Ok(Some(url.to_string()))
}

/// A configuration problem, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl ConfigError {
    pub fn new(variable: &'static str, problem: impl Into<String>) -> Self {
        ConfigError {
            variable,
            problem: problem.into(),
        }
    }
}

/// Where variables come from: the process environment, or a map in tests.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

impl<S: std::hash::BuildHasher> Env for std::collections::HashMap<String, String, S> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned().filter(|v| !v.trim().is_empty())
    }
}

/// How the app proves its identity to Entra ID. `Debug` is written by hand: it never shows
/// the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum CredentialSource {
    Secret(String),
    /// A Secrets Manager ARN holding the secret.
    SecretArn(String),
    /// A PEM file holding the certificate and its unencrypted PKCS#8 private key.
    Certificate(PathBuf),
    /// Workload identity: a federated assertion read from this file.
    FederatedTokenFile(PathBuf),
    /// Workload identity without any secret: the function's AWS role obtains a web identity
    /// token from AWS STS (`GetWebIdentityToken`) and presents it as the assertion.
    AwsWebIdentity,
}

/// The app registration and where Entra ID and Graph are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureConfig {
    pub tenant_id: String,
    pub client_id: String,
    pub credential: CredentialSource,
    pub authority_host: String,
    pub graph_base_url: String,
    pub extra_ca_certs: Option<PathBuf>,
    pub max_writes_per_second: u32,
}

impl AzureConfig {
    /// `Ok(None)` when no Azure settings are present at all (local use picks the dev tenant).
    pub fn from_env(env: &dyn Env) -> Result<Option<Self>, ConfigError> {
        let tenant_id = env.var("AZURE_TENANT_ID");
        let client_id = env.var("AZURE_CLIENT_ID");
        if tenant_id.is_none() && client_id.is_none() {
            return Ok(None);
        }
        let tenant_id = tenant_id.ok_or_else(|| required("AZURE_TENANT_ID"))?;
        let client_id = client_id.ok_or_else(|| required("AZURE_CLIENT_ID"))?;
        if !tenant_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(ConfigError::new(
                "AZURE_TENANT_ID",
                "expected a tenant id (GUID) or a domain name",
            ));
        }
        let credential = if let Some(secret) = env.var("AZURE_CLIENT_SECRET") {
            CredentialSource::Secret(secret)
        } else if let Some(arn) = env.var("AZURE_CLIENT_SECRET_ARN") {
            CredentialSource::SecretArn(arn_of("AZURE_CLIENT_SECRET_ARN", arn)?)
        } else if let Some(path) = env.var("AZURE_CLIENT_CERTIFICATE_PATH") {
            CredentialSource::Certificate(PathBuf::from(path))
        } else if let Some(path) = env.var("AZURE_FEDERATED_TOKEN_FILE") {
            CredentialSource::FederatedTokenFile(PathBuf::from(path))
        } else if let Some(source) = env.var("AZURE_FEDERATED_TOKEN_SOURCE") {
            if source != "aws-sts" {
                return Err(ConfigError::new(
                    "AZURE_FEDERATED_TOKEN_SOURCE",
                    format!("'{source}': the only source is aws-sts"),
                ));
            }
            CredentialSource::AwsWebIdentity
        } else {
            return Err(ConfigError::new(
                "AZURE_CLIENT_SECRET",
                "no credential: set AZURE_CLIENT_SECRET, AZURE_CLIENT_SECRET_ARN, \
                 AZURE_CLIENT_CERTIFICATE_PATH, AZURE_FEDERATED_TOKEN_FILE or \
                 AZURE_FEDERATED_TOKEN_SOURCE=aws-sts",
            ));
        };
        Ok(Some(AzureConfig {
            tenant_id,
            client_id,
            credential,
            authority_host: https_url(
                "AZURE_AUTHORITY_HOST",
                env.var("AZURE_AUTHORITY_HOST")
                    .unwrap_or_else(|| "https://login.microsoftonline.com".into()),
            )?,
            graph_base_url: https_url(
                "GRAPH_BASE_URL",
                env.var("GRAPH_BASE_URL")
                    .unwrap_or_else(|| "https://graph.microsoft.com/v1.0".into()),
            )?,
            extra_ca_certs: existing_file(env, "B2B_EXTRA_CA_CERTS")?,
            max_writes_per_second: parse_or(env, "GRAPH_MAX_WRITES_PER_SECOND", 18u32)
                .and_then(|n| positive("GRAPH_MAX_WRITES_PER_SECOND", n))?,
        }))
    }

    pub fn require(env: &dyn Env) -> Result<Self, ConfigError> {
        Self::from_env(env)?.ok_or_else(|| required("AZURE_TENANT_ID"))
    }
}

/// Where the ledger lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerLocation {
    DynamoDb { table: String },
    Embedded { dir: PathBuf },
}

impl LedgerLocation {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        match (env.var("LEDGER_TABLE"), env.var("LEDGER_PATH")) {
            (Some(_), Some(_)) => Err(ConfigError::new(
                "LEDGER_TABLE",
                "set either LEDGER_TABLE or LEDGER_PATH, not both",
            )),
            (Some(table), None) => Ok(LedgerLocation::DynamoDb { table }),
            (None, Some(dir)) => Ok(LedgerLocation::Embedded {
                dir: PathBuf::from(dir),
            }),
            (None, None) => Err(ConfigError::new(
                "LEDGER_TABLE",
                "required (or LEDGER_PATH for the embedded ledger)",
            )),
        }
    }
}

/// How invitation emails go out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailConfig {
    pub delivery: Delivery,
    pub from: Option<String>,
    /// A folder of templates; the built-in ones when absent.
    pub templates: Option<PathBuf>,
    /// Write `.eml` files here instead of sending through SES.
    pub outbox_dir: Option<PathBuf>,
    /// The template language our emails use.
    pub language: String,
}

impl MailConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let delivery = match env.var("DELIVERY") {
            Some(v) => v
                .parse::<Delivery>()
                .map_err(|e| ConfigError::new("DELIVERY", e))?,
            None => Delivery::default(),
        };
        let from = env.var("MAIL_FROM");
        if let Some(from) = &from
            && crate::domain::email::Email::parse(mailbox_address(from)).is_err()
        {
            return Err(ConfigError::new("MAIL_FROM", "not a valid email address"));
        }
        let outbox_dir = env.var("OUTBOX_DIR").map(PathBuf::from);
        if delivery == Delivery::Own && from.is_none() && outbox_dir.is_none() {
            return Err(ConfigError::new(
                "MAIL_FROM",
                "required with DELIVERY=own (the sender identity verified in SES)",
            ));
        }
        Ok(MailConfig {
            delivery,
            from,
            templates: env.var("MAIL_TEMPLATES").map(PathBuf::from),
            outbox_dir,
            language: env.var("MAIL_LANGUAGE").unwrap_or_else(|| "en".into()),
        })
    }
}

impl MailConfig {
    /// The display name of `MAIL_FROM` (`Contoso IT <it@contoso.com>`), naming our
    /// organisation in emails.
    pub fn organisation(&self) -> Option<String> {
        let from = self.from.as_deref()?;
        let name = from[..from.rfind('<')?].trim().trim_matches('"').trim();
        (!name.is_empty()).then(|| name.to_string())
    }
}

/// `Name <address>` or a bare address: the address part.
fn mailbox_address(from: &str) -> &str {
    match (from.rfind('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => &from[a + 1..b],
        _ => from.trim(),
    }
}

/// The global domain policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DomainPolicy {
    /// Empty: every domain not blocked is allowed.
    pub allowed: Vec<String>,
    pub blocked: Vec<String>,
}

/// One `ACCESS_RULES` entry: records whose company and/or department match get the access.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    #[serde(rename = "match")]
    pub matches: RuleMatch,
    pub access: Access,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleMatch {
    pub company: Option<String>,
    pub department: Option<String>,
}

/// Settings every function shares.
#[derive(Debug, Clone)]
pub struct Settings {
    pub redirect_url: String,
    pub mail: MailConfig,
    pub ledger: LedgerLocation,
    pub circuit_probe_after: Duration,
    pub clock: Clock,
    pub domains: DomainPolicy,
    pub access_rules: Vec<AccessRule>,
    /// `WORK_QUEUE_URL`: the function's own queue for the parts of large units; without it
    /// every unit is done in the invocation that receives it.
    pub work_queue: Option<String>,
    /// `HR_END_ACTION`: what the `endDate` of an HR record does when it comes.
    pub hr_end_action: crate::domain::offboard::EndAction,
}

impl Settings {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let access_rules = match env.var("ACCESS_RULES") {
            Some(json) => serde_json::from_str::<Vec<AccessRule>>(&json)
                .map_err(|e| ConfigError::new("ACCESS_RULES", format!("invalid JSON: {e}")))?,
            None => Vec::new(),
        };
        if let Some(i) = access_rules
            .iter()
            .position(|r| r.matches.company.is_none() && r.matches.department.is_none())
        {
            return Err(ConfigError::new(
                "ACCESS_RULES",
                format!("rule {i} matches nothing: give company and/or department"),
            ));
        }
        Ok(Settings {
            redirect_url: https_url(
                "INVITE_REDIRECT_URL",
                env.var("INVITE_REDIRECT_URL")
                    .unwrap_or_else(|| "https://myapplications.microsoft.com".into()),
            )?,
            mail: MailConfig::from_env(env)?,
            ledger: LedgerLocation::from_env(env)?,
            circuit_probe_after: duration_or(env, "CIRCUIT_PROBE_AFTER", "6h")?,
            clock: Clock::from_env(env)?,
            domains: DomainPolicy {
                allowed: domain_list(env, "ALLOWED_DOMAINS")?,
                blocked: domain_list(env, "BLOCKED_DOMAINS")?,
            },
            access_rules,
            work_queue: work_queue_url(env)?,
            hr_end_action: match env.var("HR_END_ACTION") {
                None => crate::domain::offboard::EndAction::Disable,
                Some(name) => crate::domain::offboard::EndAction::from_name(name.trim())
                    .ok_or_else(|| {
                        ConfigError::new(
                            "HR_END_ACTION",
                            format!("'{name}': expected revoke, disable or delete"),
                        )
                    })?,
            },
        })
    }
}

/// What resend-stale does with guests still pending after `EXPIRE_AFTER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpireAction {
    Disable,
    Delete,
}

/// Which pending guests a sweep touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Only guests this product invited.
    Managed,
    All,
}

/// resend-stale's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepConfig {
    pub remind_after: Duration,
    pub remind_every: Duration,
    pub max_reminders: u32,
    pub expire: Option<(Duration, ExpireAction)>,
    pub expire_max_per_run: u32,
    pub scope: Scope,
    pub dry_run: bool,
    /// `OFFBOARD_MAX_PER_RUN`: guests one run may end (a brake on a mistaken end).
    pub offboard_max_per_run: u32,
}

impl SweepConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let expire = match env.var("EXPIRE_AFTER") {
            Some(v) => {
                let after = parse_duration(&v).map_err(|e| ConfigError::new("EXPIRE_AFTER", e))?;
                let action = match env.var("EXPIRE_ACTION").as_deref() {
                    Some("disable") | None => ExpireAction::Disable,
                    Some("delete") => ExpireAction::Delete,
                    Some(other) => {
                        return Err(ConfigError::new(
                            "EXPIRE_ACTION",
                            format!("'{other}': expected disable or delete"),
                        ));
                    }
                };
                Some((after, action))
            }
            None => None,
        };
        Ok(SweepConfig {
            remind_after: duration_or(env, "REMIND_AFTER", "3d")?,
            remind_every: duration_or(env, "REMIND_EVERY", "7d")?,
            max_reminders: parse_or(env, "MAX_REMINDERS", 2u32)?,
            expire,
            expire_max_per_run: parse_or(env, "EXPIRE_MAX_PER_RUN", 50u32)?,
            offboard_max_per_run: parse_or(env, "OFFBOARD_MAX_PER_RUN", 200u32)?,
            scope: match env.var("SCOPE").as_deref() {
                Some("managed") | None => Scope::Managed,
                Some("all") => Scope::All,
                Some(other) => {
                    return Err(ConfigError::new(
                        "SCOPE",
                        format!("'{other}': expected managed or all"),
                    ));
                }
            },
            dry_run: parse_or(env, "DRY_RUN", false)?,
        })
    }
}

/// Parses `90m`, `36h`, `3d` (also `s` and `w`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("'{text}': missing unit (s, m, h, d or w)"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{text}': expected a whole number then a unit, like 36h"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(format!("'{text}': unknown unit '{unit}' (s, m, h, d or w)")),
    };
    n.checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("'{text}': too long"))
}

fn required(variable: &'static str) -> ConfigError {
    ConfigError::new(variable, "required")
}

fn duration_or(env: &dyn Env, var: &'static str, default: &str) -> Result<Duration, ConfigError> {
    parse_duration(&env.var(var).unwrap_or_else(|| default.into()))
        .map_err(|e| ConfigError::new(var, e))
}

fn parse_or<T: std::str::FromStr>(
    env: &dyn Env,
    var: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match env.var(var) {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|e| ConfigError::new(var, format!("'{v}': {e}"))),
        None => Ok(default),
    }
}

fn positive(var: &'static str, n: u32) -> Result<u32, ConfigError> {
    if n == 0 {
        Err(ConfigError::new(var, "must be at least 1"))
    } else {
        Ok(n)
    }
}

fn https_url(var: &'static str, value: String) -> Result<String, ConfigError> {
    let url = url::Url::parse(&value).map_err(|e| ConfigError::new(var, format!("{e}")))?;
    if url.scheme() != "https" {
        return Err(ConfigError::new(var, "must be an https URL"));
    }
    Ok(value.trim_end_matches('/').to_string())
}

fn arn_of(var: &'static str, value: String) -> Result<String, ConfigError> {
    if value.starts_with("arn:") && value.split(':').count() >= 6 {
        Ok(value)
    } else {
        Err(ConfigError::new(var, "not an ARN"))
    }
}

fn existing_file(env: &dyn Env, var: &'static str) -> Result<Option<PathBuf>, ConfigError> {
    match env.var(var) {
        Some(p) => {
            let path = PathBuf::from(&p);
            if path.is_file() {
                Ok(Some(path))
            } else {
                Err(ConfigError::new(var, format!("no such file: {p}")))
            }
        }
        None => Ok(None),
    }
}

fn domain_list(env: &dyn Env, var: &'static str) -> Result<Vec<String>, ConfigError> {
    let Some(value) = env.var(var) else {
        return Ok(Vec::new());
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            crate::domain::email::normalise_domain(d)
                .map_err(|e| ConfigError::new(var, format!("'{d}': {e}")))
        })
        .collect()
}

/// An environment of the given variables, for tests.
#[cfg(test)]
pub(crate) fn test_env(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_env as env;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("36h").unwrap(), Duration::from_secs(129_600));
        assert_eq!(parse_duration("3d").unwrap(), Duration::from_secs(259_200));
        assert!(parse_duration("3").unwrap_err().contains("missing unit"));
        assert!(parse_duration("3x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn no_azure_settings_means_local() {
        assert_eq!(AzureConfig::from_env(&env(&[])).unwrap(), None);
    }

    #[test]
    fn errors_name_the_variable() {
        let e = AzureConfig::from_env(&env(&[("AZURE_TENANT_ID", "t")])).unwrap_err();
        assert_eq!(e.to_string(), "AZURE_CLIENT_ID: required");
        let e = AzureConfig::from_env(&env(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s"),
            ("AZURE_AUTHORITY_HOST", "http://login.example"),
        ]))
        .unwrap_err();
        assert_eq!(e.variable, "AZURE_AUTHORITY_HOST");
        let e = Settings::from_env(&env(&[("LEDGER_PATH", "/tmp/x"), ("ACCESS_RULES", "[{")]))
            .unwrap_err();
        assert_eq!(e.variable, "ACCESS_RULES");
        let e = SweepConfig::from_env(&env(&[("SCOPE", "some")])).unwrap_err();
        assert_eq!(e.variable, "SCOPE");
    }

    #[test]
    fn secretless_federation_through_aws_sts() {
        let base = [("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "c")];
        let mut vars = base.to_vec();
        vars.push(("AZURE_FEDERATED_TOKEN_SOURCE", "aws-sts"));
        let cfg = AzureConfig::require(&env(&vars)).unwrap();
        assert_eq!(cfg.credential, CredentialSource::AwsWebIdentity);
        let mut vars = base.to_vec();
        vars.push(("AZURE_FEDERATED_TOKEN_SOURCE", "gcp"));
        let e = AzureConfig::require(&env(&vars)).unwrap_err();
        assert_eq!(e.variable, "AZURE_FEDERATED_TOKEN_SOURCE");
    }

    #[test]
    fn access_rules_parse() {
        let s = Settings::from_env(&env(&[
            ("LEDGER_PATH", "/tmp/x"),
            ("OUTBOX_DIR", "/tmp/out"),
            (
                "ACCESS_RULES",
                r#"[{"match":{"department":"Engineering"},"access":{"groups":["g1"]}}]"#,
            ),
        ]))
        .unwrap();
        assert_eq!(s.access_rules.len(), 1);
        assert!(s.access_rules[0].access.groups.contains("g1"));
    }
}
