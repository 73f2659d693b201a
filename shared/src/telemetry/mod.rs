//! Structured logs: JSON by Lambda's convention in Lambda, readable text locally. Every line
//! passes through [`mask_addresses`], so no email address reaches the logs in full, whichever
//! message or field it travelled in.

mod lambda_json;

use std::io;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::JsonFields;

use crate::domain::email::mask_addresses;

pub use lambda_json::{in_cold_start, invocation_started};

/// Installs the global subscriber once. In Lambda: JSON lines ([`lambda_json`]) unless the
/// function's log format is Text, at the level Lambda's `ApplicationLogLevel` sets
/// (`AWS_LAMBDA_LOG_LEVEL`, which wins over `RUST_LOG`). Elsewhere: text on stderr.
pub fn init() {
    let filter = level_filter(
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
        std::env::var("RUST_LOG").ok().as_deref(),
    );
    let function_name = std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok();
    let text_format =
        std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("text"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = match function_name {
        Some(function_name) if !text_format => builder
            .fmt_fields(JsonFields::new())
            .event_format(lambda_json::LambdaJson { function_name })
            .with_writer(Masking(io::stdout))
            .try_init(),
        // CloudWatch stamps each line itself.
        Some(_) => builder
            .without_time()
            .with_ansi(false)
            .with_writer(Masking(io::stdout))
            .try_init(),
        // Colours only for a person at a terminal, never into files or pipes.
        None => builder
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
            .with_writer(Masking(io::stderr))
            .try_init(),
    };
    // A second init (tests, the CLI calling into a function) keeps the first subscriber.
    let _ = result;
}

/// Lambda's level names (`FATAL` has no tracing level: it keeps errors), else `RUST_LOG`'s
/// directives, else `info`.
fn level_filter(lambda_level: Option<&str>, rust_log: Option<&str>) -> EnvFilter {
    match lambda_level.map(str::trim).filter(|l| !l.is_empty()) {
        Some(level) => {
            let level = level.to_ascii_lowercase();
            EnvFilter::new(if level == "fatal" { "error" } else { &level })
        }
        None => rust_log
            .and_then(|directives| EnvFilter::try_new(directives).ok())
            .unwrap_or_else(|| EnvFilter::new("info")),
    }
}

/// Makes writers that mask addresses on their way out.
pub struct Masking<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Masking<M> {
    type Writer = MaskingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        MaskingWriter(self.0.make_writer())
    }
}

/// The formatter hands each event over in one write, so an address is never split between
/// two calls.
pub struct MaskingWriter<W>(W);

impl<W: io::Write> io::Write for MaskingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(mask_addresses(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    pub(crate) struct Captured(pub Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn log_lines_carry_no_address_in_full() {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(Masking(move || sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let reason = "kim@litware.com: domain litware.com is not allowed";
            tracing::warn!(
                invitee = "kim@litware.com",
                reason,
                "event rejected for sam@litware.com"
            );
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("k***@litware.com"), "{text}");
        assert!(!text.contains("kim@") && !text.contains("sam@"), "{text}");
    }

    #[test]
    fn lambdas_log_level_wins_over_rust_log() {
        let filter = level_filter(Some("WARN"), Some("debug"));
        assert_eq!(
            filter.max_level_hint(),
            Some(tracing::level_filters::LevelFilter::WARN)
        );
        let filter = level_filter(Some("FATAL"), None);
        assert_eq!(
            filter.max_level_hint(),
            Some(tracing::level_filters::LevelFilter::ERROR)
        );
        let filter = level_filter(None, Some("debug"));
        assert_eq!(
            filter.max_level_hint(),
            Some(tracing::level_filters::LevelFilter::DEBUG)
        );
        let filter = level_filter(None, None);
        assert_eq!(
            filter.max_level_hint(),
            Some(tracing::level_filters::LevelFilter::INFO)
        );
    }
}
