//! The mailer port: our own invitation emails (`own` delivery).

use async_trait::async_trait;

use crate::error::{Classify, FailureClass};

#[derive(Debug, Clone, thiserror::Error)]
pub enum MailerError {
    #[error("mail service temporarily unavailable: {0}")]
    Transient(String),
    #[error("mail service throttled the request: {0}")]
    Throttled(String),
    #[error("mail refused: {0}")]
    Rejected(String),
}

impl Classify for MailerError {
    fn class(&self) -> FailureClass {
        match self {
            MailerError::Transient(_) => FailureClass::Transient,
            MailerError::Throttled(_) => FailureClass::Throttled,
            MailerError::Rejected(_) => FailureClass::Permanent,
        }
    }
}

/// A rendered message, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Mail {
    pub from: String,
    pub to: String,
    pub to_name: Option<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends the message and returns the message id.
    async fn send(&self, mail: &Mail) -> Result<String, MailerError>;
}
