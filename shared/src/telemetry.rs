//! Structured logs: JSON in Lambda, readable text locally. Every line passes through
//! [`mask_addresses`], so no email address reaches the logs in full, whichever message or
//! field it travelled in.

use std::io;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::domain::email::mask_addresses;

/// Installs the global subscriber once. JSON when running in Lambda, so CloudWatch Logs
/// Insights can query fields; text otherwise.
pub fn init() {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = if in_lambda {
        builder
            .json()
            .flatten_event(true)
            .without_time()
            .with_current_span(false)
            .with_writer(Masking(io::stdout))
            .try_init()
    } else {
        // Colours only for a person at a terminal, never into files or pipes.
        builder
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
            .with_writer(Masking(io::stderr))
            .try_init()
    };
    // A second init (tests, the CLI calling into a function) keeps the first subscriber.
    let _ = result;
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
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

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
}
