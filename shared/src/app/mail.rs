//! Our own invitation email (`own` delivery): the redeem URL, rendered from the templates
//! and sent through the mailer.

use std::sync::Arc;

use crate::adapters::mailer::templates::{InvitationVars, Templates};
use crate::domain::email::{Email, mask};
use crate::ports::mailer::{Mailer, MailerError};

/// What one invitation email says.
pub struct InvitationMail<'a> {
    pub to: &'a Email,
    pub guest_name: Option<&'a str>,
    /// Never logged.
    pub redeem_url: &'a str,
    pub partner_name: Option<&'a str>,
    pub inviter_name: Option<&'a str>,
    pub message: Option<&'a str>,
    /// Our tenant id, for an inviter of a partner we trust with automatic redemption.
    pub trust_tenant_id: Option<&'a str>,
}

pub struct MailSender {
    mailer: Arc<dyn Mailer>,
    templates: Templates,
    from: String,
    organisation: String,
    language: String,
}

impl MailSender {
    pub fn new(
        mailer: Arc<dyn Mailer>,
        templates: Templates,
        from: String,
        organisation: String,
        language: String,
    ) -> Self {
        MailSender {
            mailer,
            templates,
            from,
            organisation,
            language,
        }
    }

    pub async fn send_invitation(&self, mail: &InvitationMail<'_>) -> Result<String, MailerError> {
        let vars = InvitationVars {
            guest_name: mail.guest_name.map(String::from),
            guest_email: mail.to.as_str().to_string(),
            redeem_url: mail.redeem_url.to_string(),
            partner_name: mail.partner_name.map(String::from),
            inviter_name: mail.inviter_name.map(String::from),
            organisation: self.organisation.clone(),
            message: mail.message.map(String::from),
            trust_tenant_id: mail.trust_tenant_id.map(String::from),
        };
        let rendered = self
            .templates
            .render(&self.language, &vars)
            .map_err(|e| MailerError::Rejected(format!("template: {e}")))?;
        let id = self
            .mailer
            .send(&rendered.into_mail(&self.from, mail.to.as_str(), mail.guest_name))
            .await?;
        tracing::info!(to = %mask(mail.to.as_str()), message_id = %id, "invitation email sent");
        Ok(id)
    }
}
