//! `partner.signed` (SPEC section 2): a signed contract registers a partner, its domains,
//! inviters and allowed access, and invites its contacts.

use serde_json::Value;

use crate::domain::access::Access;
use crate::domain::email::{Email, normalise_domain};
use crate::domain::event::{EventError, EventErrorKind};
use crate::domain::fields::{
    MAX_DISPLAY_NAME, MAX_SPONSORS, Obj, as_str, check_text, guid, invalid, shorten,
};
use crate::domain::trust::TrustRequest;
use crate::ports::directory::Delivery;

pub const EVENT_TYPE: &str = "partner.signed";
/// Contacts one event may name.
pub const MAX_CONTACTS: usize = 500;
/// Domains one partner may register.
pub const MAX_DOMAINS: usize = 100;
/// The longest partner name accepted.
pub const MAX_PARTNER_NAME: usize = 256;

#[derive(Debug, Clone, PartialEq)]
pub struct PartnerSigned {
    pub partner: Partner,
    /// Unique by [`Email::key`], in the order first given.
    pub contacts: Vec<Contact>,
    pub access: Access,
    /// Object ids (canonical form) or user principal names.
    pub sponsors: Vec<String>,
    /// `None`: the configured default.
    pub delivery: Option<Delivery>,
    pub message: Option<String>,
    /// `None`: the configured default.
    pub redirect_url: Option<String>,
    /// Trust the partner's Entra tenant in our cross-tenant access settings.
    pub trust: Option<TrustRequest>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partner {
    /// 1 to 64 of `[A-Za-z0-9._-]`, kept as given: partner ids are case-sensitive keys.
    pub id: String,
    pub name: String,
    /// Lower-case A-labels, unique, in the order first given; never empty.
    pub domains: Vec<String>,
    /// The partner's Entra tenant, when the event names it (else found from its first
    /// domain, for trust only).
    pub tenant_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub email: Email,
    pub display_name: Option<String>,
    /// Receives the Guest Inviter directory role and becomes a registered inviter.
    pub inviter: bool,
}

impl PartnerSigned {
    /// Validates the event's `data` object in full; the first fault rejects the event.
    pub fn from_data(data: &Value) -> Result<PartnerSigned, EventError> {
        let data = Obj::new(data, "data")?;
        let partner = parse_partner(&data.object("partner")?)?;

        let items = data.array("contacts")?;
        if items.is_empty() {
            return Err(invalid(
                data.path("contacts"),
                "must name at least one contact",
            ));
        }
        if items.len() > MAX_CONTACTS {
            return Err(EventError::new(
                EventErrorKind::TooLarge,
                data.path("contacts"),
                format!(
                    "has {} contacts; at most {MAX_CONTACTS} are accepted",
                    items.len()
                ),
            ));
        }
        let mut contacts: Vec<Contact> = Vec::with_capacity(items.len());
        for (path, value) in items {
            let c = Obj::new(value, &path)?;
            let email = c.email("email")?;
            if !partner.domains.iter().any(|d| email.in_domain(d)) {
                return Err(invalid(
                    c.path("email"),
                    format!(
                        "domain {} is not one of the partner's domains ({})",
                        email.domain(),
                        partner.domains.join(", ")
                    ),
                ));
            }
            let display_name = c.opt_text("displayName", MAX_DISPLAY_NAME)?;
            let inviter = c.bool_or("inviter", false)?;
            // The same person listed twice is one contact: an inviter if either entry says so.
            match contacts.iter_mut().find(|x| x.email.key() == email.key()) {
                Some(existing) => {
                    existing.inviter |= inviter;
                    if existing.display_name.is_none() {
                        existing.display_name = display_name;
                    }
                }
                None => contacts.push(Contact {
                    email,
                    display_name,
                    inviter,
                }),
            }
        }

        Ok(PartnerSigned {
            partner,
            contacts,
            access: data.opt_access("access")?.unwrap_or_default(),
            sponsors: data.opt_user_refs("sponsors", MAX_SPONSORS)?,
            delivery: data.opt_delivery("delivery")?,
            message: data.opt_message("message")?,
            redirect_url: data.opt_https_url("redirectUrl")?,
            trust: match data.get("trust") {
                None | Some(Value::Null) => None,
                Some(_) => Some(TrustRequest::parse(&data.object("trust")?)?),
            },
        })
    }
}

fn parse_partner(p: &Obj<'_>) -> Result<Partner, EventError> {
    let id = p.string("id")?;
    if id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(invalid(
            p.path("id"),
            format!(
                "'{}' must be 1 to 64 of the characters A-Z a-z 0-9 . _ -",
                shorten(id)
            ),
        ));
    }
    let name = p.text("name", MAX_PARTNER_NAME)?;
    let items = p.array("domains")?;
    if items.is_empty() {
        return Err(invalid(p.path("domains"), "must name at least one domain"));
    }
    if items.len() > MAX_DOMAINS {
        return Err(invalid(
            p.path("domains"),
            format!(
                "has {} domains; at most {MAX_DOMAINS} are accepted",
                items.len()
            ),
        ));
    }
    let mut domains: Vec<String> = Vec::with_capacity(items.len());
    for (path, value) in items {
        let raw = as_str(value, &path)?;
        check_text(raw, &path, 253, false)?;
        let domain = normalise_domain(raw).map_err(|e| invalid(&path, e))?;
        if !domains.contains(&domain) {
            domains.push(domain);
        }
    }
    let tenant_id = match p.opt_string("tenantId")? {
        Some(t) => Some(guid(t, &p.path("tenantId"))?),
        None => None,
    };
    Ok(Partner {
        id: id.to_string(),
        name,
        domains,
        tenant_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const G: &str = "8d0e1c5a-0b5b-4c59-9f3a-2d7e0f4b6a11";

    fn sample() -> Value {
        json!({
            "partner": {"id": "litware", "name": "Litware Inc.", "domains": ["LitWare.com", "litware.com."]},
            "contacts": [
                {"email": "sam@litware.com", "displayName": "Sam Lee", "inviter": true},
                {"email": "kim@eu.litware.com", "displayName": "Kim Wu"}
            ],
            "access": {"groups": [G], "appRoles": [{"resourceId": G, "appRoleId": G}]},
            "sponsors": [G, "pat@contoso.com"],
            "delivery": "microsoft", "message": "Welcome\naboard", "redirectUrl": "https://apps.contoso.com",
            "unknown": "ignored"
        })
    }

    fn err(patch: impl FnOnce(&mut Value)) -> EventError {
        let mut v = sample();
        patch(&mut v);
        PartnerSigned::from_data(&v).unwrap_err()
    }

    #[test]
    fn parses_the_spec_example() {
        let ev = PartnerSigned::from_data(&sample()).unwrap();
        assert_eq!(ev.partner.id, "litware");
        assert_eq!(ev.partner.domains, vec!["litware.com"]);
        assert_eq!(ev.contacts.len(), 2);
        assert!(ev.contacts[0].inviter);
        assert!(!ev.contacts[1].inviter);
        assert_eq!(ev.contacts[1].display_name.as_deref(), Some("Kim Wu"));
        assert_eq!(ev.access.groups.len(), 1);
        assert_eq!(ev.access.app_roles.len(), 1);
        assert_eq!(ev.sponsors, vec![G.to_string(), "pat@contoso.com".into()]);
        assert_eq!(ev.delivery, Some(Delivery::Microsoft));
        assert_eq!(ev.message.as_deref(), Some("Welcome\naboard"));
        assert_eq!(ev.redirect_url.as_deref(), Some("https://apps.contoso.com"));
    }

    #[test]
    fn optional_parts_default() {
        let ev = PartnerSigned::from_data(&json!({
            "partner": {"id": "p", "name": "P", "domains": ["p.example"]},
            "contacts": [{"email": "a@p.example"}]
        }))
        .unwrap();
        assert!(ev.access.is_empty());
        assert!(ev.sponsors.is_empty());
        assert_eq!(ev.delivery, None);
        assert_eq!(ev.redirect_url, None);
        assert!(!ev.contacts[0].inviter);
    }

    #[test]
    fn duplicate_contacts_merge() {
        let mut v = sample();
        v["contacts"] = json!([
            {"email": "Sam@litware.com"},
            {"email": "kim@litware.com"},
            {"email": "sam@LITWARE.com", "displayName": "Sam", "inviter": true},
        ]);
        let ev = PartnerSigned::from_data(&v).unwrap();
        assert_eq!(ev.contacts.len(), 2);
        assert_eq!(ev.contacts[0].email.as_str(), "Sam@litware.com");
        assert!(ev.contacts[0].inviter);
        assert_eq!(ev.contacts[0].display_name.as_deref(), Some("Sam"));
    }

    type Patch = Box<dyn FnOnce(&mut Value)>;

    #[test]
    fn every_fault_names_its_path() {
        let cases: Vec<(Patch, &str)> = vec![
            (
                Box::new(|v| v["contacts"][1]["email"] = json!("kim.litware.com")),
                "data.contacts[1].email: has no '@'",
            ),
            (
                Box::new(|v| v["contacts"][1]["email"] = json!("kim@fabrikam.com")),
                "data.contacts[1].email: domain fabrikam.com is not one of the partner's domains (litware.com)",
            ),
            (
                Box::new(|v| v["contacts"][0]["inviter"] = json!("yes")),
                "data.contacts[0].inviter: expected true or false, found a string",
            ),
            (
                Box::new(|v| v["contacts"] = json!([])),
                "data.contacts: must name at least one contact",
            ),
            (
                Box::new(|v| v["partner"]["domains"] = json!(["ok.com", "bad_domain.com"])),
                "data.partner.domains[1]: 'bad_domain.com' is not a valid domain name",
            ),
            (
                Box::new(|v| v["partner"]["domains"] = json!([])),
                "data.partner.domains: must name at least one domain",
            ),
            (
                Box::new(|v| v["partner"]["id"] = json!("lit ware")),
                "data.partner.id: 'lit ware' must be 1 to 64 of the characters A-Z a-z 0-9 . _ -",
            ),
            (
                Box::new(|v| {
                    v["partner"]
                        .as_object_mut()
                        .unwrap()
                        .remove("name")
                        .map(drop)
                        .unwrap()
                }),
                "data.partner.name: is required",
            ),
            (
                Box::new(|v| v["access"]["groups"] = json!(["Sales"])),
                "data.access.groups[0]: 'Sales' is not an object id (GUID)",
            ),
            (
                Box::new(|v| v["sponsors"] = json!(["nobody"])),
                "data.sponsors[0]: 'nobody' is neither an object id (GUID) nor a user principal name",
            ),
            (
                Box::new(|v| v["delivery"] = json!("carrier pigeon")),
                "data.delivery: unknown delivery 'carrier pigeon': expected microsoft, own or none",
            ),
            (
                Box::new(|v| v["redirectUrl"] = json!("http://apps.contoso.com")),
                "data.redirectUrl: must be an https URL",
            ),
            (
                Box::new(|v| v["message"] = json!("x".repeat(4001))),
                "data.message: is 4001 characters long; at most 4000 are accepted",
            ),
            (
                Box::new(|v| v["contacts"][0]["displayName"] = json!("y".repeat(257))),
                "data.contacts[0].displayName: is 257 characters long; at most 256 are accepted",
            ),
            (
                Box::new(|v| {
                    v.as_object_mut()
                        .unwrap()
                        .remove("partner")
                        .map(drop)
                        .unwrap()
                }),
                "data.partner: is required",
            ),
        ];
        for (patch, expected) in cases {
            assert_eq!(err(patch).to_string(), expected);
        }
    }

    #[test]
    fn too_many_contacts_is_too_large() {
        let e = err(|v| {
            v["contacts"] = Value::Array(
                (0..=MAX_CONTACTS)
                    .map(|i| json!({"email": format!("c{i}@litware.com")}))
                    .collect(),
            )
        });
        assert_eq!(e.kind, EventErrorKind::TooLarge);
        assert_eq!(e.field, "data.contacts");
    }
}
