//! Building OData queries so that no input can change their meaning.
//!
//! Values go into string literals with quotes doubled (Graph's rule), and the whole query
//! is percent-encoded with nothing but RFC 3986 unreserved characters left bare, so `#`,
//! `&`, `+`, `%` and non-ASCII text reach Graph as data.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but `A-Z a-z 0-9 - . _ ~` is encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `value` as an OData string literal: `o'brien` becomes `'o''brien'`.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Percent-encodes one query value or one path segment.
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, UNRESERVED).to_string()
}

/// `?name=value&...` with every name and value encoded.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(&encode(name));
        out.push('=');
        out.push_str(&encode(value));
    }
    out
}

/// The filter that finds the user an address belongs to: its `mail`, or the user principal
/// name Entra gives the guest invited with it (`local_domain#EXT#@…`). Never `otherMails` or
/// `proxyAddresses`: users may add addresses there themselves, and a member who lists a
/// partner's address must not be taken for that partner's guest.
pub fn user_by_email_filter(email: &str) -> String {
    let e = literal(email);
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            let upn = literal(&format!("{local}_{domain}#EXT#@"));
            format!("mail eq {e} or startswith(userPrincipalName,{upn})")
        }
        None => format!("mail eq {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_matched_by_mail_or_guest_name_only() {
        assert_eq!(
            user_by_email_filter("o'brien@litware.com"),
            "mail eq 'o''brien@litware.com' or \
             startswith(userPrincipalName,'o''brien_litware.com#EXT#@')"
        );
        assert_eq!(user_by_email_filter("no-at-sign"), "mail eq 'no-at-sign'");
    }

    #[test]
    fn quotes_are_doubled() {
        assert_eq!(literal("o'brien@x.com"), "'o''brien@x.com'");
        assert_eq!(literal("''"), "''''''");
    }

    #[test]
    fn query_values_cannot_escape() {
        let q = query(&[("$filter", "mail eq 'a&b=c#d+e%f'")]);
        assert_eq!(q, "?%24filter=mail%20eq%20%27a%26b%3Dc%23d%2Be%25f%27");
        assert_eq!(encode("jö"), "j%C3%B6");
    }
}
