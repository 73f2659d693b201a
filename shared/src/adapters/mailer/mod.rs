//! The mailers for `own` delivery (SPEC section 3): Amazon SES v2 in the cloud, a folder of
//! `.eml` files locally, and the invitation templates both send.

mod outbox;
mod ses;
pub mod templates;

pub use outbox::OutboxMailer;
pub use ses::SesMailer;
pub use templates::{InvitationVars, RenderedMail, TemplateError, Templates};

use crate::domain::email::{Email, mask};
use crate::ports::mailer::{Mail, MailerError};

/// A message's addresses, validated.
struct Envelope {
    from_name: Option<String>,
    from: Email,
    to_name: Option<String>,
    to: Email,
}

/// Checks a message before it leaves: valid addresses, and no line break in anything that
/// becomes a header (which would let a value add headers of its own). `default_from` stands
/// in for an empty `mail.from`.
fn envelope(mail: &Mail, default_from: &str) -> Result<Envelope, MailerError> {
    let from_text = if mail.from.trim().is_empty() {
        default_from
    } else {
        mail.from.as_str()
    };
    for (field, value) in [
        ("from", from_text),
        ("to", mail.to.as_str()),
        ("to_name", mail.to_name.as_deref().unwrap_or_default()),
        ("subject", mail.subject.as_str()),
    ] {
        if value.contains(['\r', '\n']) {
            return Err(MailerError::Rejected(format!(
                "{field}: contains a line break"
            )));
        }
    }
    if mail.subject.trim().is_empty() {
        return Err(MailerError::Rejected("subject: empty".into()));
    }
    let (from_name, from_address) = split_mailbox(from_text);
    let from = Email::parse(from_address)
        .map_err(|e| MailerError::Rejected(format!("from: {} {e}", mask(from_address.trim()))))?;
    let to = Email::parse(&mail.to)
        .map_err(|e| MailerError::Rejected(format!("to: {} {e}", mask(mail.to.trim()))))?;
    let to_name = mail
        .to_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    Ok(Envelope {
        from_name: from_name.map(str::to_string),
        from,
        to_name,
        to,
    })
}

/// `Name <address>`, `"Name" <address>` or a bare address: the display name and the address.
fn split_mailbox(mailbox: &str) -> (Option<&str>, &str) {
    let mailbox = mailbox.trim();
    match (mailbox.rfind('<'), mailbox.rfind('>')) {
        (Some(open), Some(close)) if open < close => {
            let name = mailbox[..open].trim().trim_matches('"').trim();
            let name = (!name.is_empty()).then_some(name);
            (name, mailbox[open + 1..close].trim())
        }
        _ => (None, mailbox),
    }
}

/// A mailbox for a header that the mail service parses itself (SES): the display name
/// quoted, or as an RFC 2047 encoded word when it is not plain ASCII.
fn format_mailbox(name: Option<&str>, address: &str) -> String {
    use base64::Engine as _;
    match name {
        None => address.to_string(),
        Some(name) if name.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) => {
            let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
            format!("\"{escaped}\" <{address}>")
        }
        Some(name) => format!(
            "=?UTF-8?B?{}?= <{address}>",
            base64::engine::general_purpose::STANDARD.encode(name.as_bytes())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail() -> Mail {
        Mail {
            from: "Contoso Invitations <invitations@contoso.com>".into(),
            to: "Ann@Litware.com".into(),
            to_name: Some("Ann Ho".into()),
            subject: "Welcome".into(),
            text: "t".into(),
            html: "<p>h</p>".into(),
        }
    }

    #[test]
    fn mailer_mailboxes_split_and_format() {
        assert_eq!(
            split_mailbox("Contoso <a@contoso.com>"),
            (Some("Contoso"), "a@contoso.com")
        );
        assert_eq!(
            split_mailbox("\"Contoso, Inc.\" <a@contoso.com>"),
            (Some("Contoso, Inc."), "a@contoso.com")
        );
        assert_eq!(split_mailbox(" a@contoso.com "), (None, "a@contoso.com"));
        assert_eq!(format_mailbox(None, "a@x.com"), "a@x.com");
        assert_eq!(
            format_mailbox(Some("Say \"hi\""), "a@x.com"),
            "\"Say \\\"hi\\\"\" <a@x.com>"
        );
        assert_eq!(
            format_mailbox(Some("Jürgen"), "a@x.com"),
            "=?UTF-8?B?SsO8cmdlbg==?= <a@x.com>"
        );
    }

    #[test]
    fn mailer_envelope_rejects_header_injection_and_bad_addresses() {
        let ok = envelope(&mail(), "unused@x.com").unwrap();
        assert_eq!(ok.from.as_str(), "invitations@contoso.com");
        assert_eq!(ok.from_name.as_deref(), Some("Contoso Invitations"));
        assert_eq!(ok.to.as_str(), "Ann@litware.com");

        let mut m = mail();
        m.subject = "Hi\r\nBcc: x@evil.example".into();
        assert_eq!(
            envelope(&m, "").err().unwrap().to_string(),
            "mail refused: subject: contains a line break"
        );
        let mut m = mail();
        m.to_name = Some("Ann\nBcc: x@evil.example".into());
        assert!(
            envelope(&m, "")
                .err()
                .unwrap()
                .to_string()
                .contains("to_name")
        );
        let mut m = mail();
        m.to = "not-an-address".into();
        let e = envelope(&m, "").err().unwrap();
        assert!(e.to_string().starts_with("mail refused: to:"), "{e}");
        let mut m = mail();
        m.from = String::new();
        assert_eq!(
            envelope(&m, "fallback@contoso.com").unwrap().from.as_str(),
            "fallback@contoso.com"
        );
    }
}
