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

/// The filter that finds a user by any of the addresses Entra keeps for them.
pub fn user_by_email_filter(email: &str) -> String {
    let e = literal(email);
    let smtp = literal(&format!("SMTP:{email}"));
    format!("mail eq {e} or otherMails/any(x:x eq {e}) or proxyAddresses/any(x:x eq {smtp})")
}

#[cfg(test)]
mod tests {
    use super::*;

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
