//! The outbox: every message becomes one RFC 5322 `.eml` file in a folder (`OUTBOX_DIR`),
//! for local runs and tests. Any mail client opens them.

use async_trait::async_trait;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;
use time::macros::format_description;

use super::envelope;
use crate::ports::mailer::{Mail, Mailer, MailerError};

/// Writes `<timestamp>-<message-id>.eml` files; a reader never sees a half-written one,
/// because each is written to a hidden temporary file first and renamed into place.
#[derive(Debug, Clone)]
pub struct OutboxMailer {
    dir: PathBuf,
}

impl OutboxMailer {
    /// The sender of messages whose `from` is empty (`OUTBOX_DIR` without `MAIL_FROM`).
    pub const DEFAULT_FROM: &'static str = "invitations@outbox.localhost";

    /// The folder is created with the first message.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        OutboxMailer { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, mail: &Mail) -> Result<String, MailerError> {
        let envelope = envelope(mail, Self::DEFAULT_FROM)?;
        let now = OffsetDateTime::now_utc();
        let message_id = format!(
            "{}@{}",
            uuid::Uuid::new_v4().simple(),
            envelope.from.domain()
        );
        let from = Address::new_address(envelope.from_name.clone(), envelope.from.as_str());
        let to = Address::new_address(envelope.to_name.clone(), envelope.to.as_str());
        let bytes = MessageBuilder::new()
            .from(from)
            .to(to)
            .subject(mail.subject.as_str())
            .message_id(message_id.as_str())
            .date(now.unix_timestamp())
            .text_body(mail.text.as_str())
            .html_body(mail.html.as_str())
            .write_to_vec()
            .map_err(|e| MailerError::Transient(format!("cannot build the message: {e}")))?;

        let stamp = now
            .format(format_description!(
                "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
            ))
            .map_err(|e| MailerError::Transient(format!("cannot format the time: {e}")))?;
        let name = format!("{stamp}-{message_id}.eml");
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || write_atomically(&dir, &name, &bytes))
            .await
            .map_err(|e| MailerError::Transient(format!("outbox task failed: {e}")))??;
        Ok(message_id)
    }
}

fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), MailerError> {
    let fail = |what: &str, path: &Path, e: std::io::Error| {
        MailerError::Transient(format!("OUTBOX_DIR: cannot {what} {}: {e}", path.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("create", dir, e))?;
    // Hidden and not ending in .eml, so that readers of the folder skip it.
    let temp = dir.join(format!(".{name}.tmp"));
    let target = dir.join(name);
    let written = (|| {
        let mut file = std::fs::File::create(&temp).map_err(|e| fail("create", &temp, e))?;
        file.write_all(bytes).map_err(|e| fail("write", &temp, e))?;
        file.sync_all().map_err(|e| fail("flush", &temp, e))?;
        std::fs::rename(&temp, &target).map_err(|e| fail("rename into", &target, e))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}
