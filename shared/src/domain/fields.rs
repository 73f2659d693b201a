//! Reading hostile JSON field by field, so that every refusal names the JSON path of the
//! value at fault (`data.contacts[1].email`) and says what was wrong with it in words an
//! operator can act on. serde's own messages name neither the path nor the rule.

use serde_json::{Map, Value};
use std::collections::BTreeSet;

use crate::domain::access::Access;
use crate::domain::email::{Email, normalise_domain};
use crate::domain::event::{EventError, EventErrorKind};
use crate::ports::directory::{AppRoleRef, Delivery};

/// Groups or app roles one event may grant: each is a Graph write per invitee, so the bound
/// keeps a 500-invitee event within minutes of Graph's write budget.
pub(crate) const MAX_GRANTS: usize = 100;
/// Sponsors one event may name.
pub(crate) const MAX_SPONSORS: usize = 50;
/// Graph's limit on `displayName`.
pub(crate) const MAX_DISPLAY_NAME: usize = 256;
/// The longest invitation message accepted.
pub(crate) const MAX_MESSAGE: usize = 4000;
/// The longest redirect URL accepted.
pub(crate) const MAX_URL: usize = 2048;

pub(crate) fn invalid(field: impl Into<String>, problem: impl Into<String>) -> EventError {
    EventError::new(EventErrorKind::Invalid, field, problem)
}

/// What a JSON value is, in an error message.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn expected(path: &str, what: &str, found: &Value) -> EventError {
    invalid(path, format!("expected {what}, found {}", kind_of(found)))
}

/// A JSON object and where it sits in the document.
#[derive(Clone)]
pub(crate) struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    pub(crate) fn new(value: &'a Value, path: &str) -> Result<Obj<'a>, EventError> {
        match value {
            Value::Object(map) => Ok(Obj {
                map,
                path: path.to_string(),
            }),
            other => Err(expected(path, "an object", other)),
        }
    }

    pub(crate) fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The value under `key`; an explicit `null` counts as absent.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub(crate) fn required(&self, key: &str) -> Result<&'a Value, EventError> {
        self.get(key)
            .ok_or_else(|| invalid(self.path(key), "is required"))
    }

    /// A required string, trimmed, not empty.
    pub(crate) fn string(&self, key: &str) -> Result<&'a str, EventError> {
        let path = self.path(key);
        let s = as_str(self.required(key)?, &path)?.trim();
        if s.is_empty() {
            return Err(invalid(path, "must not be empty"));
        }
        Ok(s)
    }

    /// An optional string, trimmed; empty counts as absent.
    pub(crate) fn opt_string(&self, key: &str) -> Result<Option<&'a str>, EventError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                let s = as_str(v, &self.path(key))?.trim();
                Ok((!s.is_empty()).then_some(s))
            }
        }
    }

    /// A required single-line text of at most `max` characters.
    pub(crate) fn text(&self, key: &str, max: usize) -> Result<String, EventError> {
        let s = self.string(key)?;
        check_text(s, &self.path(key), max, false)?;
        Ok(s.to_string())
    }

    /// An optional single-line text of at most `max` characters.
    pub(crate) fn opt_text(&self, key: &str, max: usize) -> Result<Option<String>, EventError> {
        self.opt_string(key)?
            .map(|s| check_text(s, &self.path(key), max, false).map(|()| s.to_string()))
            .transpose()
    }

    /// An optional message: several lines allowed.
    pub(crate) fn opt_message(&self, key: &str) -> Result<Option<String>, EventError> {
        self.opt_string(key)?
            .map(|s| check_text(s, &self.path(key), MAX_MESSAGE, true).map(|()| s.to_string()))
            .transpose()
    }

    pub(crate) fn bool_or(&self, key: &str, default: bool) -> Result<bool, EventError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(expected(&self.path(key), "true or false", other)),
        }
    }

    pub(crate) fn object(&self, key: &str) -> Result<Obj<'a>, EventError> {
        Obj::new(self.required(key)?, &self.path(key))
    }

    /// The elements of a required array with the path of each.
    pub(crate) fn array(&self, key: &str) -> Result<Vec<(String, &'a Value)>, EventError> {
        let path = self.path(key);
        match self.required(key)? {
            Value::Array(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{path}[{i}]"), v))
                .collect()),
            other => Err(expected(&path, "an array", other)),
        }
    }

    /// The elements of an optional array; absent is empty.
    pub(crate) fn opt_array(&self, key: &str) -> Result<Vec<(String, &'a Value)>, EventError> {
        if self.has(key) {
            self.array(key)
        } else {
            Ok(Vec::new())
        }
    }

    pub(crate) fn email(&self, key: &str) -> Result<Email, EventError> {
        let path = self.path(key);
        let s = as_str(self.required(key)?, &path)?;
        Email::parse(s).map_err(|e| invalid(path, e.to_string()))
    }

    pub(crate) fn opt_delivery(&self, key: &str) -> Result<Option<Delivery>, EventError> {
        self.opt_string(key)?
            .map(|s| {
                s.parse::<Delivery>()
                    .map_err(|e| invalid(self.path(key), e))
            })
            .transpose()
    }

    pub(crate) fn opt_https_url(&self, key: &str) -> Result<Option<String>, EventError> {
        self.opt_string(key)?
            .map(|s| https_url(s, &self.path(key)))
            .transpose()
    }

    /// A required user reference: an object id or a user principal name.
    pub(crate) fn user_ref(&self, key: &str) -> Result<String, EventError> {
        let path = self.path(key);
        user_ref(self.string(key)?, &path)
    }

    /// Optional `access`: `{"groups":[...],"appRoles":[{resourceId, appRoleId}]}`.
    pub(crate) fn opt_access(&self, key: &str) -> Result<Option<Access>, EventError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                let path = self.path(key);
                access(v, &path).map(Some)
            }
        }
    }

    /// Optional list of user references, deduplicated without regard to case.
    pub(crate) fn opt_user_refs(&self, key: &str, max: usize) -> Result<Vec<String>, EventError> {
        let items = self.opt_array(key)?;
        if items.len() > max {
            return Err(invalid(
                self.path(key),
                format!("has {} entries; at most {max} are accepted", items.len()),
            ));
        }
        let mut refs: Vec<String> = Vec::with_capacity(items.len());
        for (path, v) in items {
            let r = user_ref(as_str(v, &path)?, &path)?;
            if !refs.iter().any(|x| x.eq_ignore_ascii_case(&r)) {
                refs.push(r);
            }
        }
        Ok(refs)
    }
}

pub(crate) fn as_str<'a>(value: &'a Value, path: &str) -> Result<&'a str, EventError> {
    value
        .as_str()
        .ok_or_else(|| expected(path, "a string", value))
}

/// Refuses control characters (line breaks only where `multiline`) and overlong text.
pub(crate) fn check_text(
    s: &str,
    path: &str,
    max: usize,
    multiline: bool,
) -> Result<(), EventError> {
    let count = s.chars().count();
    if count > max {
        return Err(invalid(
            path,
            format!("is {count} characters long; at most {max} are accepted"),
        ));
    }
    if s.chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
    {
        return Err(invalid(path, "has control characters"));
    }
    Ok(())
}

/// A directory object id in its canonical form: hyphenated lower-case.
pub(crate) fn guid(s: &str, path: &str) -> Result<String, EventError> {
    let s = s.trim();
    // uuid also takes braced, URN and unhyphenated forms; Graph ids are only ever written
    // hyphenated, so anything else is more likely a mistake than an id.
    if s.len() != 36 {
        return Err(invalid(
            path,
            format!("'{}' is not an object id (GUID)", shorten(s)),
        ));
    }
    uuid::Uuid::try_parse(s)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| invalid(path, format!("'{}' is not an object id (GUID)", shorten(s))))
}

pub(crate) fn is_guid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

/// Characters Entra allows in the local part of a user principal name.
fn upn_local_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '\'' | '.' | '-' | '_' | '!' | '#' | '^' | '~')
}

/// An object id (canonical form) or a user principal name (domain normalised).
pub(crate) fn user_ref(s: &str, path: &str) -> Result<String, EventError> {
    let s = s.trim();
    if is_guid(s) {
        return guid(s, path);
    }
    let not_a_user = || {
        invalid(
            path,
            format!(
                "'{}' is neither an object id (GUID) nor a user principal name",
                shorten(s)
            ),
        )
    };
    let (local, domain) = s.rsplit_once('@').ok_or_else(not_a_user)?;
    // Entra caps the part before '@' at 113 characters.
    if local.is_empty()
        || local.len() > 113
        || !local.chars().all(upn_local_char)
        || local.starts_with('.')
        || local.ends_with('.')
    {
        return Err(not_a_user());
    }
    let domain = normalise_domain(domain).map_err(|e| invalid(path, format!("domain {e}")))?;
    Ok(format!("{local}@{domain}"))
}

pub(crate) fn https_url(s: &str, path: &str) -> Result<String, EventError> {
    if s.len() > MAX_URL {
        return Err(invalid(
            path,
            format!("is longer than {MAX_URL} characters"),
        ));
    }
    let url = url::Url::parse(s).map_err(|e| invalid(path, format!("is not a URL: {e}")))?;
    if url.scheme() != "https" || url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(path, "must be an https URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(path, "must not carry credentials"));
    }
    Ok(s.to_string())
}

pub(crate) fn access(value: &Value, path: &str) -> Result<Access, EventError> {
    let obj = Obj::new(value, path)?;
    let mut access = Access::default();
    let groups = obj.opt_array("groups")?;
    if groups.len() > MAX_GRANTS {
        return Err(invalid(
            obj.path("groups"),
            format!(
                "has {} groups; at most {MAX_GRANTS} are accepted",
                groups.len()
            ),
        ));
    }
    for (p, v) in groups {
        access.groups.insert(guid(as_str(v, &p)?, &p)?);
    }
    let roles = obj.opt_array("appRoles")?;
    if roles.len() > MAX_GRANTS {
        return Err(invalid(
            obj.path("appRoles"),
            format!(
                "has {} app roles; at most {MAX_GRANTS} are accepted",
                roles.len()
            ),
        ));
    }
    let mut app_roles = BTreeSet::new();
    for (p, v) in roles {
        let role = Obj::new(v, &p)?;
        let resource_id = guid(role.string("resourceId")?, &role.path("resourceId"))?;
        let app_role_id = guid(role.string("appRoleId")?, &role.path("appRoleId"))?;
        app_roles.insert(AppRoleRef {
            resource_id,
            app_role_id,
        });
    }
    access.app_roles = app_roles;
    Ok(access)
}

/// Quotes hostile input back at most in part, so an error message stays one short line.
pub(crate) fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect()
    } else {
        let head: String = s
            .chars()
            .take(MAX)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        format!("{head}...")
    }
}

/// An optional `YYYY-MM-DD` date.
pub(crate) fn opt_date(data: &Obj<'_>, key: &str) -> Result<Option<time::Date>, EventError> {
    data.opt_string(key)?
        .map(|s| {
            time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).map_err(
                |_| {
                    invalid(
                        data.path(key),
                        format!("'{}' is not a date written YYYY-MM-DD", shorten(s)),
                    )
                },
            )
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_and_types_are_named() {
        let v = json!({"a": {"b": [1, "x"]}, "n": null, "s": "  ", "t": 5});
        let root = Obj::new(&v, "data").unwrap();
        assert_eq!(
            root.required("n").unwrap_err().to_string(),
            "data.n: is required"
        );
        assert_eq!(
            root.string("s").unwrap_err().to_string(),
            "data.s: must not be empty"
        );
        assert_eq!(root.opt_string("s").unwrap(), None);
        assert_eq!(
            root.string("t").unwrap_err().to_string(),
            "data.t: expected a string, found a number"
        );
        let a = root.object("a").unwrap();
        let items = a.array("b").unwrap();
        assert_eq!(items[1].0, "data.a.b[1]");
        assert_eq!(
            as_str(items[0].1, &items[0].0).unwrap_err().to_string(),
            "data.a.b[0]: expected a string, found a number"
        );
        assert!(Obj::new(&json!([]), "data").is_err());
    }

    #[test]
    fn guids_and_user_refs() {
        assert_eq!(
            guid("8D0E1C5A-0B5B-4C59-9F3A-2D7E0F4B6A11", "x").unwrap(),
            "8d0e1c5a-0b5b-4c59-9f3a-2d7e0f4b6a11"
        );
        assert!(guid("{8d0e1c5a-0b5b-4c59-9f3a-2d7e0f4b6a11}", "x").is_err());
        assert!(guid("8d0e1c5a0b5b4c599f3a2d7e0f4b6a11", "x").is_err());
        assert_eq!(
            user_ref("Pat.Lee@Contoso.COM", "x").unwrap(),
            "Pat.Lee@contoso.com"
        );
        assert_eq!(
            user_ref("sam_litware.com#EXT#@contoso.onmicrosoft.com", "x").unwrap(),
            "sam_litware.com#EXT#@contoso.onmicrosoft.com"
        );
        let e = user_ref("pat lee", "data.manager").unwrap_err();
        assert_eq!(
            e.to_string(),
            "data.manager: 'pat lee' is neither an object id (GUID) nor a user principal name"
        );
        assert!(user_ref("a(b)@contoso.com", "x").is_err());
    }

    #[test]
    fn text_and_urls() {
        assert!(check_text("a\nb", "m", 10, true).is_ok());
        assert!(check_text("a\nb", "m", 10, false).is_err());
        assert!(check_text("abcdef", "m", 5, false).is_err());
        assert!(https_url("https://app.contoso.com/x", "u").is_ok());
        assert!(https_url("http://app.contoso.com", "u").is_err());
        assert!(https_url("https://user:pw@app.contoso.com", "u").is_err());
        assert!(https_url("not a url", "u").is_err());
    }

    #[test]
    fn access_is_validated() {
        let g = "8d0e1c5a-0b5b-4c59-9f3a-2d7e0f4b6a11";
        let a = access(
            &json!({"groups": [g, g.to_uppercase()], "appRoles": [{"resourceId": g, "appRoleId": g}]}),
            "data.access",
        )
        .unwrap();
        assert_eq!(a.groups.len(), 1);
        assert_eq!(a.app_roles.len(), 1);
        let e = access(&json!({"groups": ["sales"]}), "data.access").unwrap_err();
        assert_eq!(e.field, "data.access.groups[0]");
        let e = access(&json!({"appRoles": [{"resourceId": g}]}), "data.access").unwrap_err();
        assert_eq!(
            e.to_string(),
            "data.access.appRoles[0].appRoleId: is required"
        );
    }
}
