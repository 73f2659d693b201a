//! Amazon SES v2: `SendEmail` with simple content (subject, text and HTML).

use async_trait::async_trait;
use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};

use super::{envelope, format_mailbox};
use crate::domain::email::mask;
use crate::ports::mailer::{Mail, Mailer, MailerError};

/// Sends through SES. `from` (`MAIL_FROM`, an identity verified in SES) is the sender of
/// messages whose own `from` is empty.
#[derive(Debug, Clone)]
pub struct SesMailer {
    client: Client,
    from: String,
}

impl SesMailer {
    pub fn new(client: Client, from: String) -> Self {
        SesMailer { client, from }
    }
}

fn utf8(data: &str, field: &str) -> Result<Content, MailerError> {
    Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .map_err(|e| MailerError::Rejected(format!("{field}: {e}")))
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, mail: &Mail) -> Result<String, MailerError> {
        let envelope = envelope(mail, &self.from)?;
        let from = format_mailbox(envelope.from_name.as_deref(), envelope.from.as_str());
        let to = format_mailbox(envelope.to_name.as_deref(), envelope.to.as_str());
        let message = Message::builder()
            .subject(utf8(&mail.subject, "subject")?)
            .body(
                Body::builder()
                    .text(utf8(&mail.text, "text")?)
                    .html(utf8(&mail.html, "html")?)
                    .build(),
            )
            .build();
        let sent = self
            .client
            .send_email()
            .from_email_address(from)
            .destination(Destination::builder().to_addresses(to).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(|e| classify(&e, &mask(envelope.to.as_str())))?;
        match sent.message_id() {
            Some(id) => Ok(id.to_string()),
            // SES accepted the message; failing now would only send it twice on retry.
            None => {
                tracing::warn!(
                    to = %mask(envelope.to.as_str()),
                    "SES accepted a message without returning its id"
                );
                Ok(String::new())
            }
        }
    }
}

/// Codes that mean "slow down": the per-second rate or the daily quota.
const THROTTLING: &[&str] = &[
    "TooManyRequestsException",
    "LimitExceededException",
    "ThrottlingException",
    "Throttling",
];

/// Codes that mean this message can never be sent as it is.
const REJECTED: &[&str] = &[
    "MessageRejected",
    "MailFromDomainNotVerifiedException",
    "BadRequestException",
    "ValidationException",
    "InvalidParameterValue",
];

/// Classifies a failed send. Anything not known to be about the message itself (paused
/// sending, a suspended account, missing permissions, 5xx, network) is transient: the
/// invitation stays queued until an operator or the service recovers.
fn classify(
    e: &SdkError<SendEmailError, aws_sdk_sesv2::config::http::HttpResponse>,
    to: &str,
) -> MailerError {
    let code = e.code().unwrap_or_default();
    let status = e.raw_response().map(|r| r.status().as_u16());
    let detail = match (e.code(), status) {
        (Some(code), Some(status)) => format!(
            "SES {code} (HTTP {status}) sending to {to}: {}",
            e.message().unwrap_or("no message")
        ),
        _ => format!("SES sending to {to}: {}", DisplayErrorContext(e)),
    };
    if THROTTLING.contains(&code) || status == Some(429) {
        MailerError::Throttled(detail)
    } else if REJECTED.contains(&code) {
        MailerError::Rejected(detail)
    } else {
        MailerError::Transient(detail)
    }
}
