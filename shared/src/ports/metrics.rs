//! What the functions did, counted for dashboards and alarms.

use std::collections::BTreeMap;

/// One thing counted. The names are the published metric names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Measure {
    /// A guest invited (a new invitation; an existing guest is not counted).
    Invited,
    /// An invitee refused by policy or by Graph, within an event that was processed.
    Refused,
    /// An event refused as a whole: invalid, or not allowed.
    Rejected,
    /// An event delivered again after it was done: nothing was done again.
    Duplicate,
    /// An event put back for a transient failure.
    Retried,
    /// An event put back because Graph throttled us.
    Throttled,
    /// An event put back because our own access to Graph was refused (credentials, consent).
    OutageRetried,
    /// An event put back because the invitation circuit is open.
    CircuitOpen,
    /// An invocation that started a new execution environment.
    ColdStart,
}

impl Measure {
    pub const ALL: [Measure; 9] = [
        Measure::Invited,
        Measure::Refused,
        Measure::Rejected,
        Measure::Duplicate,
        Measure::Retried,
        Measure::Throttled,
        Measure::OutageRetried,
        Measure::CircuitOpen,
        Measure::ColdStart,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Measure::Invited => "Invited",
            Measure::Refused => "Refused",
            Measure::Rejected => "Rejected",
            Measure::Duplicate => "Duplicate",
            Measure::Retried => "Retried",
            Measure::Throttled => "Throttled",
            Measure::OutageRetried => "OutageRetried",
            Measure::CircuitOpen => "CircuitOpen",
            Measure::ColdStart => "ColdStart",
        }
    }
}

/// Counts of one piece of work, with the partner it was for where there is one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub partner: Option<String>,
    values: BTreeMap<Measure, u64>,
}

impl Counts {
    pub fn one(measure: Measure) -> Counts {
        let mut counts = Counts::default();
        counts.add(measure, 1);
        counts
    }

    pub fn add(&mut self, measure: Measure, n: u64) {
        if n > 0 {
            *self.values.entry(measure).or_default() += n;
        }
    }

    pub fn get(&self, measure: Measure) -> u64 {
        self.values.get(&measure).copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The measures counted, each with its count.
    pub fn iter(&self) -> impl Iterator<Item = (Measure, u64)> + '_ {
        self.values.iter().map(|(m, n)| (*m, *n))
    }
}

/// Where counts go.
pub trait Metrics: Send + Sync {
    /// Publishes `counts` for `function` (the function's own name, e.g. `partner-signed`).
    fn publish(&self, function: &str, counts: &Counts);

    /// Publishes the tenant-wide invitation circuit's state (the metric its alarm watches).
    fn circuit(&self, open: bool);
}

/// Counts nothing: local runs, whose summary says what happened.
pub struct NoMetrics;

impl Metrics for NoMetrics {
    fn publish(&self, _: &str, _: &Counts) {}
    fn circuit(&self, _: bool) {}
}
