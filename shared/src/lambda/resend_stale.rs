//! resend-stale: the sweep of pending guests, run by an EventBridge schedule or invoked
//! directly by an operator with `{"dryRun":bool,"scope":"managed"|"all"}` (SPEC sections 1
//! and 2).

use async_trait::async_trait;
use serde_json::Value;
use tokio::time::Instant;

use super::InvocationError;
use super::serve::Handler;
use super::trigger::Trigger;
use crate::adapters::emf::{Emf, Unit};
use crate::app::circuit::CircuitGate;
use crate::app::offboard::Offboarding;
use crate::app::runtime::{Runtime, StartupError};
use crate::app::sweep::{Summary, Sweep};
use crate::config::{Env, Scope, SweepConfig};

pub const FUNCTION: &str = "resend-stale";

/// The CloudWatch namespace of the product's metrics.
pub const METRICS_NAMESPACE: &str = crate::adapters::emf::NAMESPACE;

const ACCEPTED: &str = "an EventBridge schedule, or a direct invocation with \
    {\"dryRun\":true|false,\"scope\":\"managed\"|\"all\"}";

pub struct ResendStale {
    pub runtime: Runtime,
    /// From the environment; a direct invocation may override `dry_run` and `scope`.
    pub config: SweepConfig,
}

/// What a direct invocation may change for its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Overrides {
    pub dry_run: Option<bool>,
    pub scope: Option<Scope>,
}

impl Overrides {
    /// Validates a direct invocation's payload. Unknown fields are ignored; a known field of
    /// the wrong type is refused, naming it.
    pub fn parse(payload: &Value) -> Result<Overrides, InvocationError> {
        let refuse = |m: String| InvocationError::UnsupportedTrigger(m);
        let Some(object) = payload.as_object() else {
            return Err(refuse(format!(
                "{FUNCTION} takes {ACCEPTED}: the payload is not a JSON object"
            )));
        };
        // Other AWS events and CloudEvents are not a direct invocation that happens to have
        // unknown fields: running a sweep for them would be a surprise.
        if let Some(field) = ["detail-type", "specversion", "Records", "requestContext"]
            .into_iter()
            .find(|f| object.contains_key(*f))
        {
            return Err(refuse(format!(
                "{FUNCTION} does not take this event (it has '{field}'): it is triggered by {ACCEPTED}"
            )));
        }
        let dry_run = match object.get("dryRun") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                return Err(refuse(format!(
                    "dryRun: expected true or false, got {}",
                    kind(other)
                )));
            }
        };
        let scope = match object.get("scope") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s == "managed" => Some(Scope::Managed),
            Some(Value::String(s)) if s == "all" => Some(Scope::All),
            Some(Value::String(s)) => {
                return Err(refuse(format!(
                    "scope: expected \"managed\" or \"all\", got \"{}\"",
                    s.chars().take(40).collect::<String>()
                )));
            }
            Some(other) => {
                return Err(refuse(format!(
                    "scope: expected \"managed\" or \"all\", got {}",
                    kind(other)
                )));
            }
        };
        Ok(Overrides { dry_run, scope })
    }

    pub fn apply(self, config: &SweepConfig) -> SweepConfig {
        let mut config = config.clone();
        if let Some(d) = self.dry_run {
            config.dry_run = d;
        }
        if let Some(s) = self.scope {
            config.scope = s;
        }
        config
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl ResendStale {
    pub async fn from_env(env: &dyn Env) -> Result<Self, StartupError> {
        let config = SweepConfig::from_env(env)?;
        let runtime = Runtime::from_env(FUNCTION, env).await?;
        Ok(ResendStale { runtime, config })
    }

    /// One sweep with `config`, to be done by `deadline`.
    pub async fn sweep(&self, config: &SweepConfig, deadline: Instant) -> Summary {
        let directory = self.runtime.directory(deadline);
        let gate = CircuitGate::reporting(self.runtime.metrics.clone());
        let settings = &self.runtime.settings;
        let mut summary = Sweep {
            directory: directory.as_ref(),
            ledger: self.runtime.ledger.as_ref(),
            mail: self.runtime.mail.as_deref(),
            gate: &gate,
            config,
            delivery: settings.mail.delivery,
            redirect_url: &settings.redirect_url,
            probe_after: settings.circuit_probe_after,
            now: settings.clock.now(),
            deadline,
        }
        .run()
        .await;
        summary.ends = Offboarding {
            directory: directory.as_ref(),
            ledger: self.runtime.ledger.as_ref(),
            now: settings.clock.now(),
        }
        .carry_out_due(config.dry_run, config.offboard_max_per_run)
        .await;
        summary
    }
}

/// The summary's counts as metrics (dimension `Function`), and the circuit's state without
/// dimensions: the metric the circuit alarm watches.
pub fn summary_metrics(summary: &Summary) -> Emf {
    let mut record = Emf::new(METRICS_NAMESPACE);
    let group = record.group(&[("Function", FUNCTION)]);
    for (name, value) in [
        ("Scanned", summary.scanned),
        ("Reminded", summary.reminded),
        ("Expired", summary.expired),
        ("Accepted", summary.accepted),
        ("Skipped", summary.skipped),
        ("Failed", summary.failed),
    ] {
        group.metric(name, value as f64, Unit::Count);
    }
    group.metric(
        "SweepComplete",
        if summary.complete { 1.0 } else { 0.0 },
        Unit::Count,
    );
    record.group(&[]).metric(
        "InvitationCircuitOpen",
        if summary.circuit_open { 1.0 } else { 0.0 },
        Unit::Count,
    );
    record
}

#[async_trait]
impl Handler for ResendStale {
    fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    async fn handle(&self, payload: Value, deadline: Instant) -> Result<Value, InvocationError> {
        let overrides = match Trigger::recognise(payload)? {
            Trigger::Schedule(_) => Overrides::default(),
            Trigger::Direct(payload) => Overrides::parse(&payload)?,
            other => return Err(other.unsupported(FUNCTION, ACCEPTED)),
        };
        let config = overrides.apply(&self.config);
        let summary = self.sweep(&config, deadline).await;
        tracing::info!(
            scanned = summary.scanned,
            reminded = summary.reminded,
            expired = summary.expired,
            accepted = summary.accepted,
            skipped = summary.skipped,
            failed = summary.failed,
            dry_run = summary.dry_run,
            scope = ?summary.scope,
            complete = summary.complete,
            resumed = summary.resumed,
            circuit_open = summary.circuit_open,
            error = summary.error.as_deref(),
            "sweep finished"
        );
        let ends = &summary.ends;
        tracing::info!(
            due = ends.due,
            carried_out = ends.carried_out,
            guests = ends.guests,
            held_back = ends.held_back,
            failed = ends.failed,
            dry_run = summary.dry_run,
            "ends whose date came"
        );
        if summary.circuit_open {
            tracing::error!(
                metric = "InvitationCircuitOpen",
                "the invitation circuit is open: no reminder can go out"
            );
        }
        summary_metrics(&summary).emit();
        if let Some(error) = &summary.error {
            // The schedule retries a failed invocation, and the errors alarm fires.
            return Err(InvocationError::Failed(format!(
                "sweep stopped: {error} (progress is checkpointed; the next run continues)"
            )));
        }
        serde_json::to_value(&summary)
            .map_err(|e| InvocationError::Failed(format!("cannot encode the summary: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn overrides_are_validated_by_field() {
        assert_eq!(
            Overrides::parse(&json!({"dryRun": true, "scope": "all", "note": 1})).unwrap(),
            Overrides {
                dry_run: Some(true),
                scope: Some(Scope::All)
            }
        );
        assert_eq!(Overrides::parse(&json!({})).unwrap(), Overrides::default());
        let e = Overrides::parse(&json!({"dryRun": "yes"})).unwrap_err();
        assert!(e.to_string().starts_with("dryRun:"), "{e}");
        let e = Overrides::parse(&json!({"scope": "everyone"})).unwrap_err();
        assert!(e.to_string().starts_with("scope:"), "{e}");
        let e = Overrides::parse(&json!({"scope": 3})).unwrap_err();
        assert!(e.to_string().starts_with("scope:"), "{e}");
        assert!(Overrides::parse(&json!([1])).is_err());
        assert!(Overrides::parse(&json!({"detail-type": "Other", "source": "x"})).is_err());
    }

    #[test]
    fn circuit_metric_has_no_dimensions() {
        let summary = Summary {
            scanned: 4,
            reminded: 1,
            expired: 1,
            accepted: 1,
            skipped: 1,
            failed: 0,
            dry_run: false,
            scope: Scope::Managed,
            complete: true,
            resumed: false,
            circuit_open: true,
            error: None,
            actions: Vec::new(),
            actions_truncated: false,
            ends: Default::default(),
        };
        let v = summary_metrics(&summary).to_json(0).unwrap();
        assert_eq!(v["Function"], FUNCTION);
        assert_eq!(v["Reminded"], 1.0);
        assert_eq!(v["InvitationCircuitOpen"], 1.0);
        let directives = v["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives[0]["Namespace"], METRICS_NAMESPACE);
        assert_eq!(directives[1]["Dimensions"], json!([[]]));
        assert_eq!(directives[1]["Metrics"][0]["Name"], "InvitationCircuitOpen");
    }
}
