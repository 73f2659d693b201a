//! Log lines by Lambda's JSON convention: `timestamp`, `level` and `message` at the top level,
//! beside what CloudWatch Logs Insights is asked for most: `function_name`, `cold_start`, the
//! invocation's `request_id` and `xray_trace_id`, and the event's `correlation_id`. The fields
//! of the line and of every span it is inside are flattened onto the same level, so a query
//! never has to know which span set a field.

use serde_json::{Map, Value};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Invocations started by this process: the first is the cold start.
static INVOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Counts an invocation; true for the process's first (its cold start).
pub fn invocation_started() -> bool {
    INVOCATIONS.fetch_add(1, Ordering::SeqCst) == 0
}

/// Whether the process is still in its cold start: initialising, or in its first invocation.
pub fn in_cold_start() -> bool {
    INVOCATIONS.load(Ordering::SeqCst) <= 1
}

/// The span fields lambda_runtime sets, under the names Lambda's own JSON logs use.
const RENAMED: &[(&str, &str)] = &[
    ("requestId", "request_id"),
    ("xrayTraceId", "xray_trace_id"),
    ("tenantId", "tenant_id"),
];

/// Formats events as one JSON object per line.
pub struct LambdaJson {
    pub function_name: String,
}

impl<S, N> FormatEvent<S, N> for LambdaJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::String(timestamp()));
        line.insert(
            "level".into(),
            Value::String(event.metadata().level().to_string()),
        );
        line.insert(
            "function_name".into(),
            Value::String(self.function_name.clone()),
        );
        line.insert("cold_start".into(), Value::Bool(in_cold_start()));
        // Outermost span first, so an inner span's field wins over an outer one's.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<JsonFields>>() else {
                    continue;
                };
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                    for (key, value) in fields {
                        line.insert(renamed(&key), value);
                    }
                }
            }
        }
        let mut visitor = Fields(&mut line);
        event.record(&mut visitor);
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

fn renamed(key: &str) -> String {
    RENAMED
        .iter()
        .find(|(from, _)| *from == key)
        .map_or(key, |(_, to)| to)
        .to_string()
}

/// RFC 3339 in UTC with three digits of milliseconds, as Lambda writes its own lines.
fn timestamp() -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(FORMAT)
        .unwrap_or_default()
}

/// The event's own fields, typed where JSON has the type.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.into()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::Bool(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::String(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::tests::Captured;

    #[test]
    fn a_line_has_lambdas_fields_at_the_top_level() {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields::new())
            .event_format(LambdaJson {
                function_name: "partner-signed".into(),
            })
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let invoke = tracing::info_span!(
                "Lambda runtime invoke",
                requestId = "req-1",
                xrayTraceId = "Root=1-abc"
            );
            let _invoke = invoke.enter();
            let event = tracing::info_span!("event", correlation_id = tracing::field::Empty);
            let _event = event.enter();
            event.record("correlation_id", "crm#42");
            tracing::warn!(invitees = 3, retried = true, "event done");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "event done");
        assert_eq!(line["function_name"], "partner-signed");
        assert_eq!(line["request_id"], "req-1");
        assert_eq!(line["xray_trace_id"], "Root=1-abc");
        assert_eq!(line["correlation_id"], "crm#42");
        assert_eq!(line["invitees"], 3);
        assert_eq!(line["retried"], true);
        assert!(line["cold_start"].is_boolean());
        let stamp = line["timestamp"].as_str().unwrap();
        time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).unwrap();
        assert!(stamp.ends_with('Z') && stamp.len() == 24, "{stamp}");
    }
}
