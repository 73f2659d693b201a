//! Where a command runs: the environment the function code is built from, and the tenant
//! behind it (the dev tenant, in this process or served by `b2b-invites dev-tenant`, or
//! the real tenant named by the Azure variables).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use b2b::config::{AzureConfig, Env, VARIABLES};
use b2b_dev_tenant::{DevTenant, DevTenantOptions, Seed, WriteLimit};
use rand::Rng;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Global;
use crate::dry_run::Recorder;

/// The API requester tokens are for when none is configured (local use only): the client id
/// of the dev tenant's API registration, the `aud` of the v2.0 tokens it mints.
pub const LOCAL_API_AUDIENCE: &str = b2b_dev_tenant::API_CLIENT_ID;

/// The file a serving `b2b-invites dev-tenant` leaves in its state folder, so that other
/// commands talk to it instead of opening the same state a second time.
pub const SERVER_FILE: &str = "server.json";

/// The tenant a command talks to.
pub enum Tenant {
    /// A dev tenant this process started; dropping it saves its state.
    InProcess(DevTenant),
    /// A dev tenant served by another process (`b2b-invites dev-tenant`).
    Served { authority: String },
    /// The tenant named by the Azure variables (a real one, or a dev tenant exported by hand).
    Azure,
}

pub struct Context {
    /// The variables the function code is built from.
    pub env: HashMap<String, String>,
    pub tenant: Tenant,
    /// Set with `--dry-run`: collects the writes instead of making them.
    pub recorder: Option<Arc<Recorder>>,
    pub state: PathBuf,
}

/// How a local dev tenant is started when one is needed.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// Used only when the state folder holds no tenant yet.
    pub seed: Seed,
    pub write_limit: Option<WriteLimit>,
}

impl Default for LocalOptions {
    /// The demo seed: the sample events name its people as sponsors and managers.
    fn default() -> Self {
        LocalOptions {
            seed: Seed::Demo,
            write_limit: None,
        }
    }
}

impl Context {
    /// The context of a command: the real tenant when the Azure variables are set,
    /// otherwise the dev tenant under `<state>/dev-tenant`.
    pub async fn open(global: &Global, local: LocalOptions) -> anyhow::Result<Context> {
        let mut env = process_variables();
        let state = global.state_dir();
        let tenant = if AzureConfig::from_env(&env)?.is_some() {
            Tenant::Azure
        } else {
            let dir = state.join("dev-tenant");
            if let Some((authority, info)) = served_tenant(&dir).await {
                env.extend(info);
                Tenant::Served { authority }
            } else {
                let tenant = DevTenant::start(DevTenantOptions {
                    state_dir: dir,
                    seed: local.seed,
                    write_limit: local.write_limit,
                    ..DevTenantOptions::default()
                })
                .await
                .context("starting the dev tenant")?;
                env.extend(tenant.env());
                Tenant::InProcess(tenant)
            }
        };
        let mut ctx = Context {
            env,
            tenant,
            recorder: global.dry_run.then(|| Arc::new(Recorder::default())),
            state,
        };
        ctx.local_defaults()?;
        ctx.follow_dev_clock().await?;
        Ok(ctx)
    }

    /// A context over a dev tenant the caller started (the demo).
    pub fn in_process(tenant: DevTenant, state: &Path, dry_run: bool) -> anyhow::Result<Context> {
        let mut env = process_variables();
        for var in [
            "AZURE_CLIENT_SECRET_ARN",
            "AZURE_CLIENT_CERTIFICATE_PATH",
            "AZURE_FEDERATED_TOKEN_FILE",
            "LEDGER_TABLE",
            "WEBHOOK_SECRETS_ARN",
            "WORK_QUEUE_URL",
            "MAIL_FROM",
        ] {
            env.remove(var);
        }
        env.extend(tenant.env());
        let mut ctx = Context {
            env,
            tenant: Tenant::InProcess(tenant),
            recorder: dry_run.then(|| Arc::new(Recorder::default())),
            state: state.to_path_buf(),
        };
        ctx.local_defaults()?;
        Ok(ctx)
    }

    pub fn dev_tenant(&self) -> Option<&DevTenant> {
        match &self.tenant {
            Tenant::InProcess(t) => Some(t),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        match &self.tenant {
            Tenant::InProcess(t) => format!(
                "the dev tenant in {} ({})",
                self.state.join("dev-tenant").display(),
                t.authority_host()
            ),
            Tenant::Served { authority } => format!("the dev tenant served at {authority}"),
            Tenant::Azure => format!(
                "tenant {} (from AZURE_TENANT_ID)",
                self.env.get("AZURE_TENANT_ID").map_or("?", String::as_str)
            ),
        }
    }

    /// The secret the runner signs webhook bodies with: the first of `WEBHOOK_SECRETS`.
    pub fn signing_secret(&self) -> Option<String> {
        self.env
            .var("WEBHOOK_SECRETS")
            .and_then(|v| b2b::config::split_secrets(&v).into_iter().next())
    }

    /// The time the functions act as of: `B2B_NOW` when set, else the clock.
    pub fn now(&self) -> anyhow::Result<OffsetDateTime> {
        match self.env.var("B2B_NOW") {
            Some(v) => OffsetDateTime::parse(&v, &Rfc3339)
                .map_err(|e| anyhow::anyhow!("B2B_NOW: not RFC 3339: {e}")),
            None => Ok(OffsetDateTime::now_utc()),
        }
    }

    /// Fills what local use needs and the process environment left out: an embedded
    /// ledger, an outbox for our own invitation emails, a webhook secret the runner signs
    /// with, an audience for requester tokens, and leave to act as of `B2B_NOW`.
    fn local_defaults(&mut self) -> anyhow::Result<()> {
        let env = &mut self.env;
        // The functions run here on someone's machine, never as the deployed service, so
        // replays and forecasts as of another time are what B2B_NOW is for.
        env.insert(b2b::clock::CLOCK_OVERRIDE_SWITCH.into(), "true".into());
        if env.var("LEDGER_TABLE").is_none() && env.var("LEDGER_PATH").is_none() {
            env.insert(
                "LEDGER_PATH".into(),
                self.state.join("ledger").display().to_string(),
            );
        }
        if env.var("OUTBOX_DIR").is_none() && env.var("MAIL_FROM").is_none() {
            env.insert(
                "OUTBOX_DIR".into(),
                self.state.join("outbox").display().to_string(),
            );
        }
        if env.var("WEBHOOK_SECRETS").is_none() && env.var("WEBHOOK_SECRETS_ARN").is_none() {
            env.insert("WEBHOOK_SECRETS".into(), local_webhook_secret(&self.state)?);
        }
        if env.var("API_AUDIENCE").is_none() && !matches!(self.tenant, Tenant::Azure) {
            env.insert("API_AUDIENCE".into(), LOCAL_API_AUDIENCE.into());
            if env.var("API_APP_ID_URI").is_none() {
                env.insert(
                    "API_APP_ID_URI".into(),
                    b2b_dev_tenant::API_APP_ID_URI.into(),
                );
            }
        }
        Ok(())
    }

    /// Against a dev tenant whose clock was moved on, the functions act as of its time.
    async fn follow_dev_clock(&mut self) -> anyhow::Result<()> {
        if self.env.var("B2B_NOW").is_some() {
            return Ok(());
        }
        let now = match &self.tenant {
            Tenant::InProcess(t) => Some(t.control().now()),
            Tenant::Served { authority } => {
                let body = dev_get(&self.state.join("dev-tenant"), authority, "/_dev/clock")
                    .await
                    .context("reading the served dev tenant's clock")?;
                body.get("now")
                    .and_then(Value::as_str)
                    .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            }
            Tenant::Azure => None,
        };
        if let Some(now) = now
            && (now - OffsetDateTime::now_utc()).abs() > time::Duration::seconds(5)
        {
            self.env.insert(
                "B2B_NOW".into(),
                now.replace_nanosecond(0)?.format(&Rfc3339)?,
            );
        }
        Ok(())
    }
}

/// The product's variables as the process environment has them.
fn process_variables() -> HashMap<String, String> {
    VARIABLES
        .iter()
        .filter_map(|v| {
            std::env::var(v)
                .ok()
                .filter(|x| !x.trim().is_empty())
                .map(|x| (v.to_string(), x))
        })
        .collect()
}

/// The webhook secret local runs sign with, made once per state folder.
fn local_webhook_secret(state: &Path) -> anyhow::Result<String> {
    let path = state.join("webhook-secret");
    if let Ok(s) = std::fs::read_to_string(&path)
        && s.trim().len() >= 16
    {
        return Ok(s.trim().to_string());
    }
    std::fs::create_dir_all(state).with_context(|| format!("creating {}", state.display()))?;
    let secret: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    write_private(&path, &secret)?;
    Ok(secret)
}

/// Writes a file only its owner may read (it holds a secret).
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// The variables of a dev tenant `b2b-invites dev-tenant` is serving from `dir`, if one is.
async fn served_tenant(dir: &Path) -> Option<(String, Vec<(String, String)>)> {
    let text = std::fs::read_to_string(dir.join(SERVER_FILE)).ok()?;
    let server: Value = serde_json::from_str(&text).ok()?;
    let authority = server.get("authorityHost")?.as_str()?.to_string();
    let info = dev_get(dir, &authority, "/_dev/info").await.ok()?;
    let text = |k: &str| info.get(k).and_then(Value::as_str).map(String::from);
    let vars = vec![
        ("AZURE_TENANT_ID".to_string(), text("tenantId")?),
        ("AZURE_CLIENT_ID".to_string(), text("clientId")?),
        ("AZURE_CLIENT_SECRET".to_string(), text("clientSecret")?),
        ("AZURE_AUTHORITY_HOST".to_string(), text("authorityHost")?),
        ("GRAPH_BASE_URL".to_string(), text("graphBaseUrl")?),
        ("B2B_EXTRA_CA_CERTS".to_string(), text("caPemPath")?),
    ];
    Some((authority, vars))
}

/// A GET on a served dev tenant's control routes.
async fn dev_get(dir: &Path, authority: &str, route: &str) -> anyhow::Result<Value> {
    let http = b2b::adapters::http::build_client(Some(&dir.join("ca.pem")))?;
    let response = http
        .get(format!("{authority}{route}"))
        .timeout(std::time::Duration::from_secs(3))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("{route} answered {}", response.status());
    }
    Ok(response.json().await?)
}

/// Parses `N/SECS` (writes per seconds), `N` (per second) or `unlimited`.
pub fn parse_write_limit(text: &str) -> Result<WriteLimit, String> {
    if text.eq_ignore_ascii_case("unlimited") {
        return Ok(WriteLimit::unlimited());
    }
    let (writes, per) = text.split_once('/').unwrap_or((text, "1"));
    let writes: u32 = writes
        .trim()
        .parse()
        .map_err(|_| format!("'{text}': expected WRITES/SECONDS, like 3000/150"))?;
    let per: u64 = per
        .trim()
        .parse()
        .map_err(|_| format!("'{text}': expected WRITES/SECONDS, like 3000/150"))?;
    if writes == 0 || per == 0 {
        return Err(format!("'{text}': both numbers must be at least 1"));
    }
    Ok(WriteLimit {
        writes,
        per: std::time::Duration::from_secs(per),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_limits() {
        let l = parse_write_limit("20/1").unwrap();
        assert_eq!((l.writes, l.per.as_secs()), (20, 1));
        let l = parse_write_limit("3000/150").unwrap();
        assert_eq!((l.writes, l.per.as_secs()), (3000, 150));
        assert_eq!(parse_write_limit("15").unwrap().per.as_secs(), 1);
        assert!(parse_write_limit("unlimited").unwrap().is_unlimited());
        assert!(parse_write_limit("0/1").is_err());
        assert!(parse_write_limit("x/1").is_err());
    }
}
