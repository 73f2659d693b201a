//! One test's world: a dev tenant, a ledger, an outbox, webhook secrets, and the
//! environment that points a function process at them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use b2b::adapters::ledger::{DynamoLedger, EmbeddedLedger};
use b2b::ports::ledger::Ledger;
use b2b_dev_tenant::{Control, DevTenant, DevTenantOptions, Seed, WriteLimit};
use tempfile::TempDir;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::process::{FunctionProcess, Profile, binary_path};

/// The webhook secrets every test environment configures: two, as during a rotation.
pub const WEBHOOK_SECRETS: [&str; 2] = [
    "whsec-current-6f1d2c9a8b7e4f30",
    "whsec-previous-0a9b8c7d6e5f4a3b",
];

/// The sender of our own invitation emails.
pub const MAIL_FROM: &str = "Contoso IT <it@contoso.com>";

/// The AWS variables a process needs to reach the emulator.
const AWS_VARIABLES: [&str; 4] = [
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
];

/// Which ledger the functions share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LedgerKind {
    /// The embedded store in a temporary folder: one process at a time.
    #[default]
    Embedded,
    /// A fresh DynamoDB table on the local emulator: any number of processes.
    Dynamo,
}

enum LedgerPlace {
    Embedded(PathBuf),
    Dynamo {
        table: String,
        client: aws_sdk_dynamodb::Client,
    },
}

/// How to set up a [`TestEnv`].
#[derive(Debug, Clone)]
pub struct TestEnvBuilder {
    seed: Seed,
    ledger: LedgerKind,
    now: Option<OffsetDateTime>,
    write_limit: Option<WriteLimit>,
    profile: Profile,
    vars: Vec<(String, String)>,
}

impl TestEnvBuilder {
    /// Which build of the function binaries [`TestEnv::spawn`] runs (default: debug).
    pub fn profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    pub fn seed(mut self, seed: Seed) -> Self {
        self.seed = seed;
        self
    }

    pub fn ledger(mut self, ledger: LedgerKind) -> Self {
        self.ledger = ledger;
        self
    }

    /// Acts as of `now`: sets `B2B_NOW` for the functions and the dev tenant's clock.
    pub fn now(mut self, now: OffsetDateTime) -> Self {
        self.now = Some(now);
        self
    }

    /// The dev tenant's write limit; `None` is Graph's.
    pub fn write_limit(mut self, limit: WriteLimit) -> Self {
        self.write_limit = Some(limit);
        self
    }

    /// A variable every function process of this environment gets (overrides defaults).
    pub fn var(mut self, name: &str, value: impl Into<String>) -> Self {
        self.vars.retain(|(n, _)| n != name);
        self.vars.push((name.to_string(), value.into()));
        self
    }

    pub async fn start(self) -> anyhow::Result<TestEnv> {
        let root = tempfile::Builder::new().prefix("b2b-e2e-").tempdir()?;
        let tenant = DevTenant::start(DevTenantOptions {
            seed: self.seed,
            write_limit: self.write_limit,
            ..DevTenantOptions::new(root.path().join("dev-tenant"))
        })
        .await
        .context("starting the dev tenant")?;
        if let Some(now) = self.now {
            tenant.control().set_now(now);
        }
        let outbox = root.path().join("outbox");
        std::fs::create_dir_all(&outbox)?;
        let (ledger, aws_vars) = match self.ledger {
            LedgerKind::Embedded => (
                LedgerPlace::Embedded(root.path().join("ledger")),
                Vec::new(),
            ),
            LedgerKind::Dynamo => {
                let aws_vars = aws_emulator_env()?;
                let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .endpoint_url(value_of(&aws_vars, "AWS_ENDPOINT_URL"))
                    .region(aws_config::Region::new(value_of(&aws_vars, "AWS_REGION")))
                    .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                        value_of(&aws_vars, "AWS_ACCESS_KEY_ID"),
                        value_of(&aws_vars, "AWS_SECRET_ACCESS_KEY"),
                        None,
                        None,
                        "aws-emulator",
                    ))
                    .load()
                    .await;
                let client = aws_sdk_dynamodb::Client::new(&config);
                let table = format!("b2b-e2e-{}", uuid::Uuid::new_v4().simple());
                DynamoLedger::create_table(&client, &table)
                    .await
                    .with_context(|| {
                        format!(
                            "creating the ledger table on the AWS emulator at {}",
                            value_of(&aws_vars, "AWS_ENDPOINT_URL")
                        )
                    })?;
                (LedgerPlace::Dynamo { table, client }, aws_vars)
            }
        };
        let mut vars: Vec<(String, String)> = tenant.env();
        vars.extend(aws_vars);
        match &ledger {
            LedgerPlace::Embedded(dir) => vars.push(("LEDGER_PATH".into(), path_text(dir))),
            LedgerPlace::Dynamo { table, .. } => vars.push(("LEDGER_TABLE".into(), table.clone())),
        }
        vars.push(("OUTBOX_DIR".into(), path_text(&outbox)));
        vars.push(("MAIL_FROM".into(), MAIL_FROM.into()));
        vars.push(("WEBHOOK_SECRETS".into(), WEBHOOK_SECRETS.join(",")));
        vars.push(("RUST_LOG".into(), "info".into()));
        // Tests act as of other times (`now`, or B2B_NOW per process through spawn_with).
        vars.push((b2b::clock::CLOCK_OVERRIDE_SWITCH.into(), "true".into()));
        if let Some(now) = self.now {
            vars.push(("B2B_NOW".into(), now.format(&Rfc3339)?));
        }
        for (name, value) in self.vars {
            vars.retain(|(n, _)| *n != name);
            vars.push((name, value));
        }
        Ok(TestEnv {
            tenant,
            profile: self.profile,
            ledger,
            outbox,
            vars,
            root,
        })
    }
}

/// A test's world. Dropping it stops the dev tenant and removes its files.
pub struct TestEnv {
    tenant: DevTenant,
    profile: Profile,
    ledger: LedgerPlace,
    outbox: PathBuf,
    vars: Vec<(String, String)>,
    // Last: the folder outlives everything stored in it.
    root: TempDir,
}

impl TestEnv {
    pub fn builder() -> TestEnvBuilder {
        TestEnvBuilder {
            seed: Seed::Demo,
            ledger: LedgerKind::Embedded,
            now: None,
            write_limit: None,
            profile: Profile::Debug,
            vars: Vec::new(),
        }
    }

    pub fn tenant(&self) -> &DevTenant {
        &self.tenant
    }

    pub fn control(&self) -> Control {
        self.tenant.control()
    }

    /// The environment a function process of this world runs with.
    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }

    /// A variable's value as the functions see it.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Starts `target/<profile>/<function>` in this world and waits until it is ready.
    pub async fn spawn(&self, function: &str) -> anyhow::Result<FunctionProcess> {
        self.spawn_with(function, &[]).await
    }

    /// [`TestEnv::spawn`] with extra (or overriding) variables.
    pub async fn spawn_with(
        &self,
        function: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<FunctionProcess> {
        let mut vars = self.vars.clone();
        for (name, value) in extra {
            vars.retain(|(n, _)| n != name);
            vars.push(((*name).to_string(), (*value).to_string()));
        }
        let binary = binary_path(function, self.profile)?;
        let process = FunctionProcess::spawn_binary(&binary, function, &vars).await?;
        process.ready(Duration::from_secs(30)).await?;
        Ok(process)
    }

    /// The `.eml` files our mailer wrote, oldest first.
    pub fn outbox(&self) -> anyhow::Result<Vec<OutboxMail>> {
        let mut mails = Vec::new();
        for entry in std::fs::read_dir(&self.outbox)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "eml") {
                let modified = std::fs::metadata(&path)?.modified()?;
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                mails.push((modified, OutboxMail { path, text }));
            }
        }
        mails.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.path.cmp(&b.1.path)));
        Ok(mails.into_iter().map(|(_, m)| m).collect())
    }

    /// The ledger the functions use. The embedded one serves one process at a time: stop
    /// the function processes first, and drop the handle before starting another.
    pub async fn ledger(&self) -> anyhow::Result<Arc<dyn Ledger>> {
        Ok(match &self.ledger {
            LedgerPlace::Embedded(dir) => Arc::new(
                EmbeddedLedger::open_with_wait(dir, Duration::from_secs(5)).with_context(
                    || "opening the embedded ledger (stop the function processes first)",
                )?,
            ),
            LedgerPlace::Dynamo { table, client } => {
                Arc::new(DynamoLedger::new(client.clone(), table.clone()))
            }
        })
    }

    /// The `X-Signature` value for `body` signed now with the current secret.
    pub fn sign(&self, body: &[u8]) -> String {
        b2b::domain::signature::sign(
            body,
            WEBHOOK_SECRETS[0],
            OffsetDateTime::now_utc().unix_timestamp(),
        )
    }
}

/// One `.eml` file of the outbox.
#[derive(Debug, Clone)]
pub struct OutboxMail {
    pub path: PathBuf,
    pub text: String,
}

impl OutboxMail {
    fn parsed(&self) -> anyhow::Result<mail_parser::Message<'_>> {
        mail_parser::MessageParser::default()
            .parse(self.text.as_bytes())
            .with_context(|| format!("{} is not an RFC 5322 message", self.path.display()))
    }

    /// The addresses of the `To` header.
    pub fn to(&self) -> anyhow::Result<Vec<String>> {
        let message = self.parsed()?;
        Ok(message
            .to()
            .map(|to| {
                to.iter()
                    .filter_map(|a| a.address().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }

    pub fn subject(&self) -> anyhow::Result<String> {
        Ok(self.parsed()?.subject().unwrap_or_default().to_string())
    }

    /// The decoded text and HTML parts, one after the other.
    pub fn bodies(&self) -> anyhow::Result<String> {
        let message = self.parsed()?;
        let mut all = String::new();
        for i in 0..message.text_body.len() {
            if let Some(text) = message.body_text(i) {
                all.push_str(&text);
                all.push('\n');
            }
        }
        for i in 0..message.html_body.len() {
            if let Some(html) = message.body_html(i) {
                all.push_str(&html);
                all.push('\n');
            }
        }
        Ok(all)
    }

    /// Every distinct URL starting with `prefix` in the decoded bodies.
    pub fn urls(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let bodies = self.bodies()?;
        let mut urls: Vec<String> = Vec::new();
        for (at, _) in bodies.match_indices(prefix) {
            let url: String = bodies[at..]
                .chars()
                .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | '<' | '>' | ')'))
                .collect();
            // HTML bodies escape the query separator.
            let url = url.replace("&amp;", "&");
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
        Ok(urls)
    }
}

/// The emulator's variables from the test process, or an error that says how to start it.
fn aws_emulator_env() -> anyhow::Result<Vec<(String, String)>> {
    let Some(endpoint) = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        bail!(
            "AWS_ENDPOINT_URL is not set: this test needs the local AWS emulator (DynamoDB). \
             Run `scripts/aws-emulator start; eval \"$(scripts/aws-emulator env)\"` before \
             `cargo nextest run -p b2b-e2e`"
        );
    };
    let mut vars = vec![("AWS_ENDPOINT_URL".to_string(), endpoint)];
    for name in &AWS_VARIABLES[1..] {
        let fallback = match *name {
            "AWS_REGION" => "eu-west-1",
            _ => "testing",
        };
        let value = std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| fallback.to_string());
        vars.push(((*name).to_string(), value));
    }
    Ok(vars)
}

fn value_of(vars: &[(String, String)], name: &str) -> String {
    vars.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}
