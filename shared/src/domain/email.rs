//! Email addresses: validation to RFC 5321 limits and Graph's character rules, IDNA
//! normalisation of the domain, and masking for logs.

use std::fmt;

/// Characters Graph refuses in `invitedUserEmailAddress` (reference section 1). An
/// apostrophe is allowed, which is why every OData literal is escaped.
const FORBIDDEN: &[char] = &[
    '~', '!', '#', '$', '%', '^', '&', '*', '(', ')', '+', '=', '[', ']', '{', '}', '\\', '/', '|',
    ';', ':', '"', '<', '>', '?', ',',
];

/// A validated address: ASCII local part as given, domain lower-case in its A-label form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email {
    address: String,
    at: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("is empty")]
    Empty,
    #[error("is longer than 254 characters")]
    TooLong,
    #[error("has no '@'")]
    NoAt,
    #[error("local part is empty or longer than 64 characters")]
    LocalLength,
    #[error("local part has a character Graph refuses: '{0}'")]
    ForbiddenChar(char),
    #[error("local part must be ASCII")]
    NonAsciiLocal,
    #[error("local part starts or ends with '.' or '-', or has '..'")]
    Dots,
    #[error("has white space or control characters")]
    Whitespace,
    #[error("domain {0}")]
    Domain(String),
}

impl Email {
    pub fn parse(input: &str) -> Result<Email, EmailError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(EmailError::Empty);
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EmailError::Whitespace);
        }
        let at = input.rfind('@').ok_or(EmailError::NoAt)?;
        let (local, domain) = (&input[..at], &input[at + 1..]);
        if local.is_empty() || local.len() > 64 {
            return Err(EmailError::LocalLength);
        }
        if !local.is_ascii() {
            return Err(EmailError::NonAsciiLocal);
        }
        if let Some(c) = local.chars().find(|c| FORBIDDEN.contains(c) || *c == '@') {
            return Err(EmailError::ForbiddenChar(c));
        }
        if local.starts_with(['.', '-']) || local.ends_with(['.', '-']) || local.contains("..") {
            return Err(EmailError::Dots);
        }
        let domain = normalise_domain(domain).map_err(EmailError::Domain)?;
        let address = format!("{local}@{domain}");
        if address.len() > 254 {
            return Err(EmailError::TooLong);
        }
        Ok(Email {
            at: local.len(),
            address,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.address
    }

    pub fn local(&self) -> &str {
        &self.address[..self.at]
    }

    pub fn domain(&self) -> &str {
        &self.address[self.at + 1..]
    }

    /// The ledger key: the whole address lower-case (Entra matches addresses without case).
    pub fn key(&self) -> String {
        self.address.to_lowercase()
    }

    /// Whether the address is in `domain` or one of its subdomains.
    pub fn in_domain(&self, domain: &str) -> bool {
        let d = self.domain();
        d == domain || d.strip_suffix(domain).is_some_and(|p| p.ends_with('.'))
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

/// Lower-case A-label form of a domain, validated as a DNS host name with at least two labels.
pub fn normalise_domain(domain: &str) -> Result<String, String> {
    let domain = domain.trim().trim_end_matches('.');
    if domain.is_empty() {
        return Err("is empty".into());
    }
    let ascii = idna::domain_to_ascii(domain)
        .map_err(|_| format!("'{domain}' is not a valid domain name"))?;
    if ascii.len() > 253 {
        return Err("is longer than 253 characters".into());
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return Err(format!("'{domain}' needs at least two labels"));
    }
    for label in &labels {
        if label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(format!("'{domain}' is not a valid domain name"));
        }
    }
    Ok(ascii)
}

/// An address fit for logs: the first character of the local part, then stars, then the
/// domain (which names the organisation, not the person).
pub fn mask(address: &str) -> String {
    match address.rfind('@') {
        Some(at) if at > 0 => {
            let first = address[..at].chars().next().unwrap_or('*');
            format!("{first}***@{}", &address[at + 1..])
        }
        _ => "***".to_string(),
    }
}

/// `text` with every address in it masked as [`mask`] does; addresses already masked stay
/// as they are. Logs pass through this, so an address that reached a message (a refusal
/// naming its invitee, Graph's own error text) is masked too.
pub fn mask_addresses(text: &str) -> std::borrow::Cow<'_, str> {
    // Wider than an address's own rules where that costs nothing: a wider match masks more.
    fn local_char(c: char) -> bool {
        c.is_alphanumeric() || "._%+-'#!$&*?^`~".contains(c)
    }
    fn domain_char(c: char) -> bool {
        c.is_alphanumeric() || c == '.' || c == '-'
    }
    if !text.contains('@') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (at, _) in text.match_indices('@') {
        if at < copied {
            continue;
        }
        let start = text[copied..at]
            .char_indices()
            .rev()
            .take_while(|&(_, c)| local_char(c))
            .last()
            .map_or(at, |(i, _)| copied + i);
        let domain = text[at + 1..]
            .split(|c: char| !domain_char(c))
            .next()
            .unwrap_or("")
            .trim_end_matches(['.', '-']);
        let local = &text[start..at];
        if local.is_empty() || !domain.contains('.') || is_masked(local) {
            continue;
        }
        out.push_str(&text[copied..start]);
        out.push(local.chars().next().unwrap_or('*'));
        out.push_str("***");
        copied = at;
    }
    out.push_str(&text[copied..]);
    std::borrow::Cow::Owned(out)
}

/// A local part as [`mask`] leaves it: one character, then three stars.
fn is_masked(local: &str) -> bool {
    let mut chars = local.chars();
    chars.next().is_some() && chars.as_str() == "***"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_address_in_a_text() {
        assert_eq!(
            mask_addresses(
                r#"{"reason":"sam.lee@litware.com: domain not allowed","by":"o'brien@bücher.example"}"#
            ),
            r#"{"reason":"s***@litware.com: domain not allowed","by":"o***@bücher.example"}"#
        );
        assert_eq!(
            mask_addresses(
                "invitee=kim@litware.com, guest ann_litware.com#EXT#@contoso.onmicrosoft.com."
            ),
            "invitee=k***@litware.com, guest a***@contoso.onmicrosoft.com."
        );
        assert_eq!(
            mask_addresses("already s***@litware.com"),
            "already s***@litware.com"
        );
        assert_eq!(
            mask_addresses("no address @ here, root@localhost"),
            "no address @ here, root@localhost"
        );
        assert!(matches!(
            mask_addresses("nothing to do"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn accepts_and_normalises() {
        let e = Email::parse(" Sam.Lee@LitWare.COM ").unwrap();
        assert_eq!(e.as_str(), "Sam.Lee@litware.com");
        assert_eq!(e.key(), "sam.lee@litware.com");
        assert_eq!(e.domain(), "litware.com");
        let e = Email::parse("o'brien@bücher.example").unwrap();
        assert_eq!(e.domain(), "xn--bcher-kva.example");
        assert!(Email::parse("a_b@x.com").is_ok());
    }

    #[test]
    fn refuses_with_a_reason() {
        assert_eq!(Email::parse(""), Err(EmailError::Empty));
        assert_eq!(Email::parse("nobody"), Err(EmailError::NoAt));
        assert_eq!(
            Email::parse("a%b@x.com"),
            Err(EmailError::ForbiddenChar('%'))
        );
        assert_eq!(
            Email::parse("a+tag@x.com"),
            Err(EmailError::ForbiddenChar('+'))
        );
        assert_eq!(Email::parse(".a@x.com"), Err(EmailError::Dots));
        assert_eq!(Email::parse("a b@x.com"), Err(EmailError::Whitespace));
        assert_eq!(Email::parse("jö@x.com"), Err(EmailError::NonAsciiLocal));
        assert!(matches!(
            Email::parse("a@localhost"),
            Err(EmailError::Domain(_))
        ));
        assert!(matches!(
            Email::parse("a@-x.com"),
            Err(EmailError::Domain(_))
        ));
        let long = format!("{}@{}.com", "a".repeat(64), "b".repeat(250));
        assert!(Email::parse(&long).is_err());
        assert_eq!(
            Email::parse(&format!("{}@x.com", "a".repeat(65))),
            Err(EmailError::LocalLength)
        );
    }

    #[test]
    fn subdomains_count_as_the_domain() {
        let e = Email::parse("a@eu.litware.com").unwrap();
        assert!(e.in_domain("litware.com"));
        assert!(!e.in_domain("ware.com"));
    }

    #[test]
    fn masks() {
        assert_eq!(mask("sam@litware.com"), "s***@litware.com");
        assert_eq!(mask("bogus"), "***");
    }
}
