//! The soak's events, drawn from a seed: which function takes each, its body, what it must
//! leave in the tenant, and whether it is poison or delivered twice.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::events::cloud_event;

pub const PARTNER_SOURCE: &str = "urn:contracts:soak";
pub const HR_SOURCE: &str = "https://hr.contoso.com/soak";
pub const PORTAL_SOURCE: &str = "urn:partner-portal:soak";
/// Every contact and self-service invitee is sponsored by her.
pub const SPONSOR: &str = "megan.bowen@contoso.com";
pub const MANAGERS: [&str; 2] = ["alex.wilber@contoso.com", "megan.bowen@contoso.com"];
/// `BLOCKED_DOMAINS` of the soak: an address there is refused whole.
pub const BLOCKED_DOMAIN: &str = "blocked.example";
/// HR records of this department get the Project Falcon group (`ACCESS_RULES`).
pub const ENGINEERING: &str = "Engineering";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    PartnerSigned,
    HrRecordAdded,
    GuestInviterRequest,
}

impl Route {
    pub fn function(self) -> &'static str {
        match self {
            Route::PartnerSigned => "partner-signed",
            Route::HrRecordAdded => "hr-record-added",
            Route::GuestInviterRequest => "guest-inviter-request",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Poison {
    InvalidJson,
    WrongType,
    BadAddress,
    ForbiddenDomain,
}

/// How a self-service request proves who asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// The inviter's own Entra token.
    Token { inviter_email: String },
    /// Signed by a trusted system on the inviter's behalf.
    Signed,
}

/// The access a group id stands for, resolved in the tenant at the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Partners,
    Falcon,
}

/// One guest an event must leave behind.
#[derive(Debug, Clone, PartialEq)]
pub struct Invitee {
    pub email: String,
    pub groups: Vec<Group>,
    /// The sponsor's address, where the event names one.
    pub sponsor: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PlannedEvent {
    pub index: usize,
    pub route: Route,
    /// `(source, id)`; `None` for a body too broken to name one.
    pub key: Option<(String, String)>,
    pub body: String,
    pub poison: Option<Poison>,
    pub invitees: Vec<Invitee>,
    pub auth: Option<Auth>,
    /// Delivered twice: a second message (or request) with the same body.
    pub duplicate: bool,
    /// The second copy goes out at once, likely into another environment's batch.
    pub concurrent_duplicate: bool,
}

/// A partner registered before the soak, with an inviter for its self-service requests.
#[derive(Debug, Clone)]
pub struct Partner {
    pub id: String,
    pub domain: String,
    pub inviter: String,
}

pub fn partners(count: usize) -> Vec<Partner> {
    (0..count)
        .map(|k| Partner {
            id: format!("soak-partner-{k}"),
            domain: format!("partner{k}.example"),
            inviter: format!("inviter@partner{k}.example"),
        })
        .collect()
}

/// The `partner.signed` that registers `partner` (and, in the soak, adds contacts).
pub fn partner_signed(
    partner: &Partner,
    id: &str,
    partners_group: &str,
    contacts: &[String],
    own_delivery: bool,
) -> String {
    let mut people =
        vec![json!({ "email": partner.inviter, "displayName": "Inviter", "inviter": true })];
    people.extend(contacts.iter().map(|c| json!({ "email": c })));
    let mut data = json!({
        "partner": { "id": partner.id, "name": format!("{} Ltd", partner.id), "domains": [partner.domain] },
        "contacts": people,
        "access": { "groups": [partners_group] },
        "sponsors": [SPONSOR],
    });
    if own_delivery {
        data["delivery"] = json!("own");
    }
    cloud_event("partner.signed", PARTNER_SOURCE, id, data)
}

/// The soak's events: `count` of them, drawn from `seed`.
pub fn events(
    seed: u64,
    count: usize,
    partners: &[Partner],
    partners_group: &str,
) -> Vec<PlannedEvent> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|index| {
            let roll: f64 = rng.random();
            let route = if roll < 0.55 {
                Route::HrRecordAdded
            } else if roll < 0.80 {
                Route::PartnerSigned
            } else {
                Route::GuestInviterRequest
            };
            let poison = rng.random_bool(0.02).then(|| match rng.random_range(0..4) {
                0 => Poison::InvalidJson,
                1 => Poison::WrongType,
                2 => Poison::BadAddress,
                _ => Poison::ForbiddenDomain,
            });
            let duplicate = poison.is_none() && rng.random_bool(0.10);
            let concurrent_duplicate = duplicate && rng.random_bool(0.5);
            let partner = &partners[rng.random_range(0..partners.len())];
            let mut event = match route {
                Route::HrRecordAdded => hr_record(index, &mut rng),
                Route::PartnerSigned => partner_contract(index, &mut rng, partner, partners_group),
                Route::GuestInviterRequest => self_service(index, &mut rng, partner),
            };
            event.duplicate = duplicate;
            event.concurrent_duplicate = concurrent_duplicate;
            if let Some(poison) = poison {
                poison_it(&mut event, poison);
            }
            event
        })
        .collect()
}

fn hr_record(index: usize, rng: &mut StdRng) -> PlannedEvent {
    let email = format!("worker{index}@contractor{}.example", index % 7);
    let manager = MANAGERS[rng.random_range(0..MANAGERS.len())];
    let engineering = rng.random_bool(0.5);
    let id = format!("hr-{index}");
    let body = cloud_event(
        "hr.record.added",
        HR_SOURCE,
        &id,
        json!({
            "employeeId": format!("S-{index}"),
            "email": email,
            "displayName": format!("Worker {index}"),
            "manager": manager,
            "department": if engineering { ENGINEERING } else { "Sales" },
        }),
    );
    PlannedEvent {
        index,
        route: Route::HrRecordAdded,
        key: Some((HR_SOURCE.into(), id)),
        body,
        poison: None,
        invitees: vec![Invitee {
            email,
            groups: if engineering {
                vec![Group::Falcon]
            } else {
                vec![]
            },
            sponsor: Some(manager.to_string()),
        }],
        auth: None,
        duplicate: false,
        concurrent_duplicate: false,
    }
}

fn partner_contract(
    index: usize,
    rng: &mut StdRng,
    partner: &Partner,
    partners_group: &str,
) -> PlannedEvent {
    let contacts: Vec<String> = (0..rng.random_range(1..=3))
        .map(|j| format!("contact{index}-{j}@{}", partner.domain))
        .collect();
    let id = format!("contract-{index}");
    let own = rng.random_bool(0.2);
    PlannedEvent {
        index,
        route: Route::PartnerSigned,
        key: Some((PARTNER_SOURCE.into(), id.clone())),
        body: partner_signed(partner, &id, partners_group, &contacts, own),
        poison: None,
        invitees: contacts
            .into_iter()
            .map(|email| Invitee {
                email,
                groups: vec![Group::Partners],
                sponsor: Some(SPONSOR.into()),
            })
            .collect(),
        auth: None,
        duplicate: false,
        concurrent_duplicate: false,
    }
}

fn self_service(index: usize, rng: &mut StdRng, partner: &Partner) -> PlannedEvent {
    let invitees: Vec<String> = (0..rng.random_range(1..=2))
        .map(|j| format!("colleague{index}-{j}@{}", partner.domain))
        .collect();
    let id = format!("request-{index}");
    let auth = if rng.random_bool(0.5) {
        Auth::Token {
            inviter_email: partner.inviter.clone(),
        }
    } else {
        Auth::Signed
    };
    let body = cloud_event(
        "guest.invite.requested",
        PORTAL_SOURCE,
        &id,
        json!({
            "requestedBy": partner.inviter,
            "invitees": invitees.iter().map(|e| json!({ "email": e })).collect::<Vec<_>>(),
        }),
    );
    PlannedEvent {
        index,
        route: Route::GuestInviterRequest,
        key: Some((PORTAL_SOURCE.into(), id)),
        body,
        poison: None,
        invitees: invitees
            .into_iter()
            .map(|email| Invitee {
                email,
                groups: vec![Group::Partners],
                sponsor: None,
            })
            .collect(),
        auth: Some(auth),
        duplicate: false,
        concurrent_duplicate: false,
    }
}

/// Spoils the event the way `poison` says; it must then be refused and recorded as such.
fn poison_it(event: &mut PlannedEvent, poison: Poison) {
    event.poison = Some(poison);
    event.invitees.clear();
    match poison {
        Poison::InvalidJson => {
            event.key = None;
            event.body = format!(
                "{{\"specversion\": \"1.0\", \"id\": \"broken-{}\"",
                event.index
            );
        }
        Poison::WrongType => {
            let mut body: Value = serde_json::from_str(&event.body).expect("planned JSON");
            body["type"] = json!("partner.renamed");
            event.body = body.to_string();
        }
        Poison::BadAddress | Poison::ForbiddenDomain => {
            let address = if poison == Poison::BadAddress {
                format!("not-an-address-{}", event.index)
            } else {
                format!("someone{}@{BLOCKED_DOMAIN}", event.index)
            };
            let mut body: Value = serde_json::from_str(&event.body).expect("planned JSON");
            match event.route {
                Route::HrRecordAdded => body["data"]["email"] = json!(address),
                Route::PartnerSigned => body["data"]["contacts"][1] = json!({ "email": address }),
                Route::GuestInviterRequest => {
                    body["data"]["invitees"][0] = json!({ "email": address })
                }
            }
            event.body = body.to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_plans_the_same_soak() {
        let p = partners(3);
        let a = events(7, 300, &p, "g");
        let b = events(7, 300, &p, "g");
        assert_eq!(
            a.iter().map(|e| &e.body).collect::<Vec<_>>(),
            b.iter().map(|e| &e.body).collect::<Vec<_>>()
        );
        let poison = a.iter().filter(|e| e.poison.is_some()).count();
        let duplicates = a.iter().filter(|e| e.duplicate).count();
        assert!((1..=20).contains(&poison), "{poison}");
        assert!((15..=50).contains(&duplicates), "{duplicates}");
        for e in a.iter().filter(|e| e.poison == Some(Poison::InvalidJson)) {
            assert!(serde_json::from_str::<Value>(&e.body).is_err());
        }
    }
}
