//! Everything a function needs, built once per process from the environment: settings, the
//! Graph client, the ledger and the mailer.

use std::sync::Arc;
use tokio::time::Instant;

use super::mail::MailSender;
use crate::adapters::emf::EmfMetrics;
use crate::adapters::graph::{GraphClient, RetryPolicy, build_credential};
use crate::adapters::http::build_client;
use crate::adapters::ledger::{DynamoBudget, DynamoLedger, EmbeddedLedger};
use crate::adapters::mailer::templates::Templates;
use crate::adapters::mailer::{OutboxMailer, SesMailer};
use crate::adapters::queue::{SqsRedelivery, SqsWorkQueue};
use crate::adapters::secrets::fetch_secret;
use crate::config::{AzureConfig, ConfigError, CredentialSource, Env, LedgerLocation, Settings};
use crate::domain::plan::PlanSettings;
use crate::ports::budget::WriteBudget;
use crate::ports::directory::Directory;
use crate::ports::ledger::Ledger;
use crate::ports::mailer::Mailer;
use crate::ports::metrics::{Metrics, NoMetrics};
use crate::ports::progress::Progress;
use crate::ports::queue::{Redelivery, WorkQueue};

/// A start-up failure: one line, naming the variable where there is one.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Other(String),
}

/// Hands out the directory for a unit of work with its deadline.
pub trait Directories: Send + Sync {
    fn at(&self, deadline: Instant) -> Arc<dyn Directory>;
}

impl Directories for GraphClient {
    fn at(&self, deadline: Instant) -> Arc<dyn Directory> {
        Arc::new(self.directory(deadline))
    }
}

/// The process-wide wiring a handler runs with.
#[derive(Clone)]
pub struct Runtime {
    pub function: &'static str,
    pub settings: Arc<Settings>,
    pub directories: Arc<dyn Directories>,
    pub ledger: Arc<dyn Ledger>,
    /// Absent when neither OUTBOX_DIR nor MAIL_FROM is set: `own` delivery is then refused.
    pub mail: Option<Arc<MailSender>>,
    /// `WORK_QUEUE_URL`: where large units go in parts; `None` does everything inline.
    pub queue: Option<Arc<dyn WorkQueue>>,
    /// Where queued messages are held back while the invitation circuit is open; `None`
    /// without AWS (local runs), where they are simply left for redelivery.
    pub redelivery: Option<Arc<dyn Redelivery>>,
    /// `GRAPH_MAX_WRITES_PER_SECOND`: what sizes inline work and parts.
    pub writes_per_second: u32,
    /// `AZURE_TENANT_ID`: ours, named to trusted partners.
    pub tenant_id: String,
    /// Told how far each unit got; `None` in Lambda.
    pub progress: Option<Arc<dyn Progress>>,
    /// Where the counts of the work go: EMF lines in Lambda, nowhere in local runs.
    pub metrics: Arc<dyn Metrics>,
    /// Loaded only when an AWS service is configured.
    pub aws: Option<aws_config::SdkConfig>,
}

impl Runtime {
    pub async fn from_env(function: &'static str, env: &dyn Env) -> Result<Runtime, StartupError> {
        let settings = Settings::from_env(env)?;
        let azure = AzureConfig::require(env)?;
        let needs_aws = matches!(settings.ledger, LedgerLocation::DynamoDb { .. })
            || matches!(
                azure.credential,
                CredentialSource::SecretArn(_) | CredentialSource::AwsWebIdentity
            )
            || (settings.mail.outbox_dir.is_none() && settings.mail.from.is_some())
            || env.var("WEBHOOK_SECRETS_ARN").is_some()
            || settings.work_queue.is_some();
        let aws = if needs_aws {
            Some(aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await)
        } else {
            None
        };
        let secret = match (&azure.credential, &aws) {
            (CredentialSource::SecretArn(arn), Some(aws)) => Some(
                fetch_secret(&aws_sdk_secretsmanager::Client::new(aws), arn)
                    .await
                    .map_err(|e| StartupError::Other(format!("AZURE_CLIENT_SECRET_ARN: {e}")))?,
            ),
            _ => None,
        };
        let http = build_client(azure.extra_ca_certs.as_deref())
            .map_err(|e| StartupError::Other(e.to_string()))?;
        let credential = build_credential(&azure, secret.as_deref(), &http, aws.as_ref())
            .map_err(|e| StartupError::Other(e.to_string()))?;
        // The deployed ledger holds the deployment's one write budget; the embedded one
        // serves one process, whose own limiter is the budget.
        let budget: Option<Arc<dyn WriteBudget>> = match (&settings.ledger, &aws) {
            (LedgerLocation::DynamoDb { table }, Some(aws)) => Some(Arc::new(DynamoBudget::new(
                aws_sdk_dynamodb::Client::new(aws),
                table.clone(),
                azure.max_writes_per_second,
            ))),
            _ => None,
        };
        let graph = GraphClient::new(
            http,
            &azure.graph_base_url,
            credential,
            azure.max_writes_per_second,
            budget,
            RetryPolicy::default(),
        );
        let ledger: Arc<dyn Ledger> = match (&settings.ledger, &aws) {
            (LedgerLocation::DynamoDb { table }, Some(aws)) => Arc::new(DynamoLedger::new(
                aws_sdk_dynamodb::Client::new(aws),
                table.clone(),
            )),
            (LedgerLocation::Embedded { dir }, _) => Arc::new(
                EmbeddedLedger::open(dir)
                    .map_err(|e| StartupError::Other(format!("LEDGER_PATH: {e}")))?,
            ),
            (LedgerLocation::DynamoDb { .. }, None) => unreachable!("AWS is loaded for DynamoDB"),
        };
        let mail = mail_sender(&settings, aws.as_ref())?;
        let queue: Option<Arc<dyn WorkQueue>> = match (&settings.work_queue, &aws) {
            (Some(url), Some(aws)) => Some(Arc::new(SqsWorkQueue::new(
                aws_sdk_sqs::Client::new(aws),
                url.clone(),
            ))),
            _ => None,
        };
        let redelivery: Option<Arc<dyn Redelivery>> = aws
            .as_ref()
            .map(|aws| Arc::new(SqsRedelivery::new(aws_sdk_sqs::Client::new(aws))) as _);
        Ok(Runtime {
            redelivery,
            function,
            settings: Arc::new(settings),
            directories: Arc::new(graph),
            ledger,
            mail,
            queue,
            writes_per_second: azure.max_writes_per_second,
            progress: None,
            tenant_id: azure.tenant_id.clone(),
            metrics: if env.var("AWS_LAMBDA_FUNCTION_NAME").is_some() {
                Arc::new(EmfMetrics)
            } else {
                Arc::new(NoMetrics)
            },
            aws,
        })
    }

    pub fn directory(&self, deadline: Instant) -> Arc<dyn Directory> {
        self.directories.at(deadline)
    }

    /// What plans depend on: the configuration and the tenant's verified domains.
    pub async fn plan_settings(
        &self,
        directory: &dyn Directory,
    ) -> Result<PlanSettings, super::Abort> {
        Ok(PlanSettings {
            default_delivery: self.settings.mail.delivery,
            redirect_url: self.settings.redirect_url.clone(),
            verified_domains: directory.verified_domains().await?,
            policy: self.settings.domains.clone(),
        })
    }
}

fn mail_sender(
    settings: &Settings,
    aws: Option<&aws_config::SdkConfig>,
) -> Result<Option<Arc<MailSender>>, StartupError> {
    let templates = Templates::load(settings.mail.templates.as_deref())
        .map_err(|e| StartupError::Other(format!("MAIL_TEMPLATES: {e}")))?;
    let from = settings
        .mail
        .from
        .clone()
        .unwrap_or_else(|| "b2b-invites@localhost.localdomain".into());
    let mailer: Arc<dyn Mailer> = match (&settings.mail.outbox_dir, aws) {
        (Some(dir), _) => Arc::new(OutboxMailer::new(dir)),
        (None, Some(aws)) if settings.mail.from.is_some() => Arc::new(SesMailer::new(
            aws_sdk_sesv2::Client::new(aws),
            from.clone(),
        )),
        _ => return Ok(None),
    };
    Ok(Some(Arc::new(MailSender::new(
        mailer,
        templates,
        from,
        settings
            .mail
            .organisation()
            .unwrap_or_else(|| "our organisation".into()),
        settings.mail.language.clone(),
    ))))
}
