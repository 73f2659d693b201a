//! `hr.record.added` (SPEC section 2): an external worker from the HR system.

use serde_json::Value;
use time::Date;

use crate::config::AccessRule;
use crate::domain::access::Access;
use crate::domain::email::Email;
use crate::domain::event::EventError;
use crate::domain::fields::{MAX_DISPLAY_NAME, Obj, invalid, opt_date};

pub const EVENT_TYPE: &str = "hr.record.added";

/// Graph's limits on the properties the record is copied to.
const MAX_EMPLOYEE_ID: usize = 16;
const MAX_COMPANY: usize = 64;
const MAX_DEPARTMENT: usize = 64;
const MAX_JOB_TITLE: usize = 128;

#[derive(Debug, Clone, PartialEq)]
pub struct HrRecordAdded {
    pub employee_id: String,
    pub email: Email,
    pub display_name: Option<String>,
    pub company: Option<String>,
    pub department: Option<String>,
    pub job_title: Option<String>,
    /// The sponsor: an object id (canonical form) or a user principal name.
    pub manager: String,
    pub start_date: Option<Date>,
    /// Never before `start_date`.
    pub end_date: Option<Date>,
    /// The record's own access, before the configured rules add theirs.
    pub access: Access,
}

impl HrRecordAdded {
    pub fn from_data(data: &Value) -> Result<HrRecordAdded, EventError> {
        let data = Obj::new(data, "data")?;
        let employee_id = data.text("employeeId", MAX_EMPLOYEE_ID)?;
        let email = data.email("email")?;
        let display_name = data.opt_text("displayName", MAX_DISPLAY_NAME)?;
        let company = data.opt_text("company", MAX_COMPANY)?;
        let department = data.opt_text("department", MAX_DEPARTMENT)?;
        let job_title = data.opt_text("jobTitle", MAX_JOB_TITLE)?;
        let manager = data.user_ref("manager")?;
        let start_date = opt_date(&data, "startDate")?;
        let end_date = opt_date(&data, "endDate")?;
        if let (Some(start), Some(end)) = (start_date, end_date)
            && end < start
        {
            return Err(invalid(
                data.path("endDate"),
                format!("{end} is before startDate {start}"),
            ));
        }
        Ok(HrRecordAdded {
            employee_id,
            email,
            display_name,
            company,
            department,
            job_title,
            manager,
            start_date,
            end_date,
            access: data.opt_access("access")?.unwrap_or_default(),
        })
    }
}

/// The access the configured rules give this record: the union of every rule whose given
/// keys all match, without regard to case. A rule that gives no key matches nothing (the
/// configuration loader refuses such rules; this keeps a slip from granting to everyone).
pub fn rule_access(record: &HrRecordAdded, rules: &[AccessRule]) -> Access {
    let mut access = Access::default();
    for rule in rules {
        let m = &rule.matches;
        if m.company.is_none() && m.department.is_none() {
            continue;
        }
        if matches_key(m.company.as_deref(), record.company.as_deref())
            && matches_key(m.department.as_deref(), record.department.as_deref())
        {
            access.merge(&rule.access);
        }
    }
    access
}

/// A key the rule does not give matches anything; a given key needs an equal value.
fn matches_key(wanted: Option<&str>, actual: Option<&str>) -> bool {
    match (wanted, actual) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(w), Some(a)) => w.trim().to_lowercase() == a.trim().to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RuleMatch;
    use serde_json::json;
    use time::macros::date;

    fn sample() -> Value {
        json!({ "employeeId": "E-1042", "email": "jo@contractor.example", "displayName": "Jo Park",
          "company": "Contractor Ltd", "department": "Engineering", "jobTitle": "Engineer",
          "manager": "Pat@Contoso.com", "startDate": "2026-12-01", "endDate": "2027-06-30",
          "access": { "groups": [], "appRoles": [] } })
    }

    fn err(patch: impl FnOnce(&mut Value)) -> String {
        let mut v = sample();
        patch(&mut v);
        HrRecordAdded::from_data(&v).unwrap_err().to_string()
    }

    #[test]
    fn parses_the_spec_example() {
        let r = HrRecordAdded::from_data(&sample()).unwrap();
        assert_eq!(r.employee_id, "E-1042");
        assert_eq!(r.email.as_str(), "jo@contractor.example");
        assert_eq!(r.company.as_deref(), Some("Contractor Ltd"));
        assert_eq!(r.manager, "Pat@contoso.com");
        assert_eq!(r.start_date, Some(date!(2026 - 12 - 01)));
        assert_eq!(r.end_date, Some(date!(2027 - 06 - 30)));
        assert!(r.access.is_empty());
        let minimal = HrRecordAdded::from_data(&json!({
            "employeeId": "E-1", "email": "a@b.example", "manager": "8d0e1c5a-0b5b-4c59-9f3a-2d7e0f4b6a11"
        }))
        .unwrap();
        assert_eq!(minimal.start_date, None);
        assert_eq!(minimal.company, None);
    }

    #[test]
    fn faults_name_their_field() {
        assert_eq!(
            err(|v| v["employeeId"] = json!(1042)),
            "data.employeeId: expected a string, found a number"
        );
        assert_eq!(
            err(|v| v["employeeId"] = json!("E-0000000000000001")),
            "data.employeeId: is 18 characters long; at most 16 are accepted"
        );
        assert_eq!(
            err(|v| v
                .as_object_mut()
                .unwrap()
                .remove("manager")
                .map(drop)
                .unwrap()),
            "data.manager: is required"
        );
        assert_eq!(
            err(|v| v["startDate"] = json!("01/12/2026")),
            "data.startDate: '01/12/2026' is not a date written YYYY-MM-DD"
        );
        assert_eq!(
            err(|v| v["endDate"] = json!("2026-11-30")),
            "data.endDate: 2026-11-30 is before startDate 2026-12-01"
        );
        assert_eq!(err(|v| v["email"] = json!("")), "data.email: is empty");
        assert_eq!(
            err(|v| v["department"] = json!("d".repeat(65))),
            "data.department: is 65 characters long; at most 64 are accepted"
        );
    }

    fn rule(company: Option<&str>, department: Option<&str>, group: &str) -> AccessRule {
        let mut access = Access::default();
        access.groups.insert(group.into());
        AccessRule {
            matches: RuleMatch {
                company: company.map(String::from),
                department: department.map(String::from),
            },
            access,
        }
    }

    #[test]
    fn rules_match_all_given_keys_without_case() {
        let r = HrRecordAdded::from_data(&sample()).unwrap();
        let rules = vec![
            rule(None, Some("engineering"), "eng"),
            rule(Some("CONTRACTOR LTD"), Some("Engineering"), "both"),
            rule(Some("Contractor Ltd"), Some("Sales"), "sales"),
            rule(Some("Other"), None, "other"),
            rule(None, None, "everyone"),
        ];
        let got = rule_access(&r, &rules);
        assert_eq!(
            got.groups.iter().map(String::as_str).collect::<Vec<_>>(),
            vec!["both", "eng"]
        );
        let mut no_dept = r.clone();
        no_dept.department = None;
        assert!(rule_access(&no_dept, &rules).is_empty());
    }
}
