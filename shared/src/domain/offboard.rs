//! `partner.ended` and `hr.record.ended` (SPEC section 2): the end of a contract or of an
//! assignment, and what to take away. Pure: parsing, and deciding per guest what goes.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::Date;

use crate::domain::email::Email;
use crate::domain::event::EventError;
use crate::domain::fields::{Obj, invalid, opt_date, shorten};

pub const PARTNER_ENDED: &str = "partner.ended";
pub const HR_RECORD_ENDED: &str = "hr.record.ended";

/// What happens to the guests once their access is taken away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EndAction {
    /// Only the access this product granted goes (groups, app roles, Guest Inviter).
    Revoke,
    /// And the account is disabled.
    Disable,
    /// And the account is deleted (restorable from deleted items for 30 days).
    Delete,
}

impl EndAction {
    pub fn as_str(self) -> &'static str {
        match self {
            EndAction::Revoke => "revoke",
            EndAction::Disable => "disable",
            EndAction::Delete => "delete",
        }
    }

    /// From a configuration value.
    pub fn from_name(name: &str) -> Option<EndAction> {
        match name {
            "revoke" => Some(EndAction::Revoke),
            "disable" => Some(EndAction::Disable),
            "delete" => Some(EndAction::Delete),
            _ => None,
        }
    }

    fn parse(o: &Obj<'_>) -> Result<EndAction, EventError> {
        match o.opt_string("action")? {
            None => Ok(EndAction::Revoke),
            Some(name) if EndAction::from_name(name).is_some() => {
                Ok(EndAction::from_name(name).unwrap_or(EndAction::Revoke))
            }
            Some(other) => Err(invalid(
                o.path("action"),
                format!("'{}' is not one of revoke, disable, delete", shorten(other)),
            )),
        }
    }
}

/// Whose access ends: the grantor of record, as the ledger keys what it granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "ref")]
pub enum Subject {
    Partner(String),
    Hr(String),
}

impl Subject {
    /// The key the ledger records grants under: `partner:<id>` or `hr:<employee id>`.
    pub fn source(&self) -> String {
        match self {
            Subject::Partner(id) => grant_source_partner(id),
            Subject::Hr(employee) => grant_source_hr(employee),
        }
    }
}

pub fn grant_source_partner(id: &str) -> String {
    format!("partner:{id}")
}

pub fn grant_source_hr(employee_id: &str) -> String {
    format!("hr:{employee_id}")
}

/// An end, as the event states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct End {
    pub subject: Subject,
    /// The worker's address (`hr.record.ended`); a partner's guests come from the ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `None`: at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective: Option<Date>,
    pub action: EndAction,
}

impl End {
    pub fn partner_ended(data: &Value) -> Result<End, EventError> {
        let data = Obj::new(data, "data")?;
        let partner = data.object("partner")?;
        let id = partner.string("id")?;
        if id.is_empty()
            || id.len() > 64
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(invalid(
                partner.path("id"),
                format!(
                    "'{}' must be 1 to 64 of the characters A-Z a-z 0-9 . _ -",
                    shorten(id)
                ),
            ));
        }
        Ok(End {
            subject: Subject::Partner(id.to_string()),
            email: None,
            effective: opt_date(&data, "effective")?,
            action: EndAction::parse(&data)?,
        })
    }

    pub fn hr_record_ended(data: &Value) -> Result<End, EventError> {
        let data = Obj::new(data, "data")?;
        let employee_id = data.text("employeeId", 16)?;
        let email: Email = data.email("email")?;
        Ok(End {
            subject: Subject::Hr(employee_id),
            email: Some(email.key()),
            effective: opt_date(&data, "effective")?,
            action: EndAction::parse(&data)?,
        })
    }

    /// Whether the end is due on `today` (UTC).
    pub fn is_due(&self, today: Date) -> bool {
        self.effective.is_none_or(|d| d <= today)
    }
}

/// A grant a source asked for and found there: not its to take away, but it stands behind it.
pub fn found_grant(what: &str) -> String {
    format!("{FOUND}{what}")
}

const FOUND: &str = "found:";

/// The access a recorded grant is about, whether added or found.
pub fn granted_access(grant: &str) -> &str {
    grant.strip_prefix(FOUND).unwrap_or(grant)
}

/// What one guest loses when a source ends: of the grants the source added (not those it
/// found there), those no other source also gave (added or found) go; the rest stay.
/// `others`: every other source's grants to the guest. Answers (remove, keep).
pub fn to_remove<'a>(ending: &'a [String], others: &[String]) -> (Vec<&'a str>, Vec<&'a str>) {
    ending
        .iter()
        .map(String::as_str)
        .filter(|g| !g.starts_with(FOUND))
        .partition(|g| !others.iter().any(|o| granted_access(o) == *g))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_both_ends() {
        let p = End::partner_ended(
            &json!({"partner": {"id": "litware"}, "effective": "2027-03-31", "action": "disable"}),
        )
        .unwrap();
        assert_eq!(p.subject, Subject::Partner("litware".into()));
        assert_eq!(p.action, EndAction::Disable);
        assert_eq!(p.subject.source(), "partner:litware");
        let h = End::hr_record_ended(
            &json!({"employeeId": "E-1042", "email": "Jo@Contractor.example"}),
        )
        .unwrap();
        assert_eq!(h.email.as_deref(), Some("jo@contractor.example"));
        assert_eq!(h.action, EndAction::Revoke);
        assert!(h.is_due(time::macros::date!(2020 - 01 - 01)));
        assert!(!p.is_due(time::macros::date!(2027 - 03 - 30)));
        assert!(p.is_due(time::macros::date!(2027 - 03 - 31)));
    }

    #[test]
    fn refuses_bad_actions_and_dates() {
        let e = End::partner_ended(&json!({"partner": {"id": "litware"}, "action": "erase"}))
            .unwrap_err();
        assert_eq!(e.field, "data.action");
        let e =
            End::partner_ended(&json!({"partner": {"id": "litware"}, "effective": "31.03.2027"}))
                .unwrap_err();
        assert_eq!(e.field, "data.effective");
        assert!(
            End::hr_record_ended(&json!({"employeeId": "E-1", "email": "not-an-address"})).is_err()
        );
    }

    #[test]
    fn what_another_source_gave_stays() {
        let ending = vec!["g-1".to_string(), "g-2".to_string(), found_grant("g-3")];
        let (remove, keep) = to_remove(&ending, &[found_grant("g-2")]);
        assert_eq!(remove, vec!["g-1"]);
        assert_eq!(keep, vec!["g-2"]);
        // Found there, never ours: neither taken away nor kept on our account.
        let only_found = [found_grant("g-3")];
        let (remove, keep) = to_remove(&only_found, &[]);
        assert!(remove.is_empty() && keep.is_empty());
    }
}
