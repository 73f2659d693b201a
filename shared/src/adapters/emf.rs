//! CloudWatch metrics in Embedded Metric Format: one JSON line on stdout, which Lambda sends to
//! CloudWatch Logs, where CloudWatch extracts the metrics. No API call, no extra permission.
//!
//! ```
//! use b2b::adapters::emf::{Emf, Unit};
//! let mut record = Emf::new("B2BInvites");
//! record
//!     .group(&[("Function", "resend-stale")])
//!     .metric("Reminded", 3.0, Unit::Count);
//! // The alarm's metric has no dimensions.
//! record.group(&[]).metric("InvitationCircuitOpen", 0.0, Unit::Count);
//! let line = record.to_json(1_700_000_000_000).unwrap().to_string();
//! assert!(line.contains(r#""Reminded":3.0"#));
//! ```

use serde_json::{Map, Value, json};
use std::io::Write;

use crate::ports::metrics::{Counts, Metrics};

/// Units CloudWatch accepts that the product uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Seconds,
    None,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Seconds => "Seconds",
            Unit::None => "None",
        }
    }
}

/// The product's one namespace.
pub const NAMESPACE: &str = "B2BInvites";

/// Metrics that share one set of dimensions.
#[derive(Debug, Clone, Default)]
pub struct Group {
    dimensions: Vec<(String, String)>,
    /// Further dimension sets the same values are published under, each a subset of
    /// `dimensions`' names (e.g. per function as well as per function and partner).
    rollups: Vec<Vec<String>>,
    metrics: Vec<(String, f64, Unit)>,
}

impl Group {
    pub fn metric(&mut self, name: &str, value: f64, unit: Unit) -> &mut Group {
        self.metrics.push((name.to_string(), value, unit));
        self
    }

    /// Publishes the group's metrics under these of its dimensions as well.
    pub fn rollup(&mut self, names: &[&str]) -> &mut Group {
        self.rollups
            .push(names.iter().map(|n| n.to_string()).collect());
        self
    }
}

/// A record the EMF format cannot express.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("embedded metric record: {0}")]
pub struct EmfError(String);

/// One EMF record: a namespace and groups of metrics.
#[derive(Debug, Clone)]
pub struct Emf {
    namespace: String,
    groups: Vec<Group>,
}

/// EMF's limits per directive.
const MAX_METRICS: usize = 100;
const MAX_DIMENSIONS: usize = 30;

impl Emf {
    pub fn new(namespace: &str) -> Emf {
        Emf {
            namespace: namespace.to_string(),
            groups: Vec::new(),
        }
    }

    /// A new group of metrics published with these dimensions (none: the metric alone).
    pub fn group(&mut self, dimensions: &[(&str, &str)]) -> &mut Group {
        self.groups.push(Group {
            dimensions: dimensions
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            rollups: Vec::new(),
            metrics: Vec::new(),
        });
        self.groups.last_mut().expect("just pushed")
    }

    /// The record at `timestamp_ms` (ms since the epoch). Metric values and dimension values
    /// share the record's top level, so a name may carry one value only.
    pub fn to_json(&self, timestamp_ms: i64) -> Result<Value, EmfError> {
        let mut root = Map::new();
        let mut directives = Vec::new();
        let put = |root: &mut Map<String, Value>, key: &str, value: Value| {
            if key == "_aws" {
                return Err(EmfError("'_aws' is reserved".into()));
            }
            match root.get(key) {
                Some(existing) if *existing != value => Err(EmfError(format!(
                    "'{key}' is given two values ({existing} and {value})"
                ))),
                _ => {
                    root.insert(key.to_string(), value);
                    Ok(())
                }
            }
        };
        for group in &self.groups {
            if group.metrics.is_empty() {
                continue;
            }
            if group.metrics.len() > MAX_METRICS || group.dimensions.len() > MAX_DIMENSIONS {
                return Err(EmfError(format!(
                    "a group holds at most {MAX_METRICS} metrics and {MAX_DIMENSIONS} dimensions"
                )));
            }
            for (key, value) in &group.dimensions {
                put(&mut root, key, Value::String(value.clone()))?;
            }
            let mut metrics = Vec::new();
            for (name, value, unit) in &group.metrics {
                if !value.is_finite() {
                    return Err(EmfError(format!("'{name}' is not a finite number")));
                }
                put(&mut root, name, json!(value))?;
                metrics.push(json!({ "Name": name, "Unit": unit.name() }));
            }
            let dimension_names: Vec<&str> =
                group.dimensions.iter().map(|(k, _)| k.as_str()).collect();
            let mut sets = vec![dimension_names.clone()];
            for rollup in &group.rollups {
                if let Some(unknown) = rollup
                    .iter()
                    .find(|n| !dimension_names.contains(&n.as_str()))
                {
                    return Err(EmfError(format!(
                        "'{unknown}' is not a dimension of the group"
                    )));
                }
                sets.push(rollup.iter().map(String::as_str).collect());
            }
            directives.push(json!({
                "Namespace": self.namespace,
                "Dimensions": sets,
                "Metrics": metrics,
            }));
        }
        root.insert(
            "_aws".into(),
            json!({ "Timestamp": timestamp_ms, "CloudWatchMetrics": directives }),
        );
        Ok(Value::Object(root))
    }

    /// Writes the record as one line to stdout, stamped with the system clock (CloudWatch
    /// refuses metrics far from the present, so never `B2B_NOW`).
    pub fn emit(&self) {
        let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        match self.to_json(now_ms) {
            Ok(record) => {
                let mut out = std::io::stdout().lock();
                // One write of one line, so that log lines of other tasks cannot split it.
                let line = format!("{record}\n");
                if let Err(e) = out.write_all(line.as_bytes()).and_then(|_| out.flush()) {
                    tracing::warn!(error = %e, "could not write the metrics record");
                }
            }
            Err(e) => tracing::error!(error = %e, "metrics not published"),
        }
    }
}

/// Counts published as EMF lines, under [`NAMESPACE`], per function and, where there is a
/// partner, per function and partner.
pub struct EmfMetrics;

impl Metrics for EmfMetrics {
    fn publish(&self, function: &str, counts: &Counts) {
        if counts.is_empty() {
            return;
        }
        let mut record = Emf::new(NAMESPACE);
        let group = match &counts.partner {
            Some(partner) => record
                .group(&[("Function", function), ("Partner", partner)])
                .rollup(&["Function"]),
            None => record.group(&[("Function", function)]),
        };
        for (measure, n) in counts.iter() {
            group.metric(measure.name(), n as f64, Unit::Count);
        }
        record.emit();
    }

    fn circuit(&self, open: bool) {
        let mut record = Emf::new(NAMESPACE);
        // No dimensions: the one metric the circuit alarm watches, whichever function saw it.
        record
            .group(&[])
            .metric(CIRCUIT_METRIC, if open { 1.0 } else { 0.0 }, Unit::Count);
        record.emit();
    }
}

/// The tenant-wide circuit's state, 1 open and 0 closed.
pub const CIRCUIT_METRIC: &str = "InvitationCircuitOpen";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_has_the_documented_shape() {
        let mut record = Emf::new("B2BInvites");
        record
            .group(&[("Function", "resend-stale")])
            .metric("Reminded", 3.0, Unit::Count)
            .metric("Failed", 0.0, Unit::Count);
        record
            .group(&[])
            .metric("InvitationCircuitOpen", 1.0, Unit::Count);
        let v = record.to_json(1_700_000_000_000).unwrap();
        assert_eq!(v["Function"], "resend-stale");
        assert_eq!(v["Reminded"], 3.0);
        assert_eq!(v["InvitationCircuitOpen"], 1.0);
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000i64);
        let directives = v["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 2);
        assert_eq!(directives[0]["Namespace"], "B2BInvites");
        assert_eq!(directives[0]["Dimensions"], json!([["Function"]]));
        assert_eq!(
            directives[0]["Metrics"][0],
            json!({"Name": "Reminded", "Unit": "Count"})
        );
        assert_eq!(directives[1]["Dimensions"], json!([[]]));
    }

    #[test]
    fn conflicting_values_and_bad_numbers_are_refused() {
        let mut record = Emf::new("B2BInvites");
        record
            .group(&[("Function", "a")])
            .metric("X", 1.0, Unit::Count);
        record
            .group(&[("Function", "b")])
            .metric("Y", 1.0, Unit::Count);
        assert!(
            record
                .to_json(0)
                .unwrap_err()
                .to_string()
                .contains("Function")
        );
        let mut record = Emf::new("B2BInvites");
        record.group(&[]).metric("X", f64::NAN, Unit::Count);
        assert!(record.to_json(0).is_err());
    }

    #[test]
    fn a_rollup_publishes_the_same_values_under_fewer_dimensions() {
        let mut record = Emf::new(NAMESPACE);
        record
            .group(&[("Function", "partner-signed"), ("Partner", "litware")])
            .rollup(&["Function"])
            .metric("Invited", 2.0, Unit::Count);
        let v = record.to_json(0).unwrap();
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function", "Partner"], ["Function"]])
        );
        assert_eq!(v["Partner"], "litware");
        let mut record = Emf::new(NAMESPACE);
        record
            .group(&[("Function", "x")])
            .rollup(&["Partner"])
            .metric("Invited", 1.0, Unit::Count);
        assert!(record.to_json(0).is_err());
    }
}
