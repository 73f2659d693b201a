//! `guest.invite.requested` (SPEC section 2): a partner's inviter asks for guests.

use serde_json::Value;

use crate::domain::access::Access;
use crate::domain::email::Email;
use crate::domain::event::{EventError, EventErrorKind};
use crate::domain::fields::{MAX_DISPLAY_NAME, Obj, invalid};
use crate::ports::directory::Delivery;

pub const EVENT_TYPE: &str = "guest.invite.requested";
/// Invitees one request may name.
pub const MAX_INVITEES: usize = 500;

#[derive(Debug, Clone, PartialEq)]
pub struct InviteRequest {
    /// An object id (canonical form) or a user principal name.
    pub requested_by: String,
    /// Unique by [`Email::key`], in the order first given.
    pub invitees: Vec<Invitee>,
    /// `None` when absent or empty: the partner's default access.
    pub access: Option<Access>,
    /// `None`: the configured default.
    pub delivery: Option<Delivery>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitee {
    pub email: Email,
    pub display_name: Option<String>,
}

impl InviteRequest {
    pub fn from_data(data: &Value) -> Result<InviteRequest, EventError> {
        let data = Obj::new(data, "data")?;
        let requested_by = data.user_ref("requestedBy")?;
        let items = data.array("invitees")?;
        if items.is_empty() {
            return Err(invalid(
                data.path("invitees"),
                "must name at least one invitee",
            ));
        }
        if items.len() > MAX_INVITEES {
            return Err(EventError::new(
                EventErrorKind::TooLarge,
                data.path("invitees"),
                format!(
                    "has {} invitees; at most {MAX_INVITEES} are accepted",
                    items.len()
                ),
            ));
        }
        let mut invitees: Vec<Invitee> = Vec::with_capacity(items.len());
        for (path, value) in items {
            let i = Obj::new(value, &path)?;
            let email = i.email("email")?;
            let display_name = i.opt_text("displayName", MAX_DISPLAY_NAME)?;
            match invitees.iter_mut().find(|x| x.email.key() == email.key()) {
                Some(existing) => {
                    if existing.display_name.is_none() {
                        existing.display_name = display_name;
                    }
                }
                None => invitees.push(Invitee {
                    email,
                    display_name,
                }),
            }
        }
        Ok(InviteRequest {
            requested_by,
            invitees,
            access: data.opt_access("access")?.filter(|a| !a.is_empty()),
            delivery: data.opt_delivery("delivery")?,
            message: data.opt_message("message")?,
        })
    }

    pub fn emails(&self) -> Vec<Email> {
        self.invitees.iter().map(|i| i.email.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const G: &str = "8d0e1c5a-0b5b-4c59-9f3a-2d7e0f4b6a11";

    #[test]
    fn parses_the_spec_example() {
        let r = InviteRequest::from_data(&json!({
            "requestedBy": G.to_uppercase(),
            "invitees": [ { "email": "ann@litware.com", "displayName": "Ann Ho" },
                          { "email": "ANN@litware.com" } ],
            "access": { "groups": [G] }, "delivery": "own", "message": "hi"
        }))
        .unwrap();
        assert_eq!(r.requested_by, G);
        assert_eq!(r.invitees.len(), 1);
        assert_eq!(r.invitees[0].display_name.as_deref(), Some("Ann Ho"));
        assert!(r.access.unwrap().groups.contains(G));
        assert_eq!(r.delivery, Some(Delivery::Own));
    }

    #[test]
    fn empty_access_means_the_partner_default() {
        let r = InviteRequest::from_data(&json!({
            "requestedBy": "sam@litware.com", "invitees": [{"email": "a@litware.com"}],
            "access": {"groups": [], "appRoles": []}
        }))
        .unwrap();
        assert_eq!(r.access, None);
    }

    #[test]
    fn limits_and_faults() {
        let many: Vec<Value> = (0..=MAX_INVITEES)
            .map(|i| json!({"email": format!("u{i}@litware.com")}))
            .collect();
        let e = InviteRequest::from_data(&json!({"requestedBy": G, "invitees": many})).unwrap_err();
        assert_eq!(e.kind, EventErrorKind::TooLarge);
        assert_eq!(e.field, "data.invitees");
        let e = InviteRequest::from_data(&json!({"requestedBy": G, "invitees": []})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "data.invitees: must name at least one invitee"
        );
        let e = InviteRequest::from_data(&json!({"requestedBy": G,
            "invitees": [{"email": "a@litware.com"}, {"email": "b+x@litware.com"}]}))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "data.invitees[1].email: local part has a character Graph refuses: '+'"
        );
        let e = InviteRequest::from_data(&json!({"invitees": [{"email": "a@litware.com"}]}))
            .unwrap_err();
        assert_eq!(e.to_string(), "data.requestedBy: is required");
        let e = InviteRequest::from_data(&json!({"requestedBy": G,
            "invitees": [{"email": "a@litware.com"}], "access": ["g"]}))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "data.access: expected an object, found an array"
        );
    }
}
