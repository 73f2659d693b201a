//! Planning: from a validated event, the configuration and what the ledger knows, to what
//! should be done for each invitee. Pure; the use cases carry plans out.
//!
//! `partner.signed` is all or nothing (SPEC: one invalid contact rejects the event), so
//! [`plan_partner_signed`] answers `Err(Refusal)` when any contact or partner domain falls
//! foul of the domain policy, and its plan never refuses individual invitees. HR records and
//! self-service requests are planned per invitee: refusals land in [`Plan::refused`] and the
//! rest go ahead.

use time::{OffsetDateTime, UtcOffset};

use crate::config::{AccessRule, DomainPolicy};
use crate::domain::access::Access;
use crate::domain::email::{Email, normalise_domain};
use crate::domain::hr::{HrRecordAdded, rule_access};
use crate::domain::partner::PartnerSigned;
use crate::domain::policy::{Refusal, Requester, check_invitee};
use crate::domain::request::InviteRequest;
use crate::ports::directory::{Delivery, UserPatch};
use crate::ports::ledger::{Inviter, Origin, PartnerRecord};

/// The configuration a plan depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSettings {
    pub default_delivery: Delivery,
    pub redirect_url: String,
    /// The tenant's verified domains, as the directory lists them.
    pub verified_domains: Vec<String>,
    pub policy: DomainPolicy,
}

/// Everything to do for one invitee.
#[derive(Debug, Clone, PartialEq)]
pub struct InviteePlan {
    pub email: Email,
    pub display_name: Option<String>,
    pub access: Access,
    /// Object ids or user principal names.
    pub sponsors: Vec<String>,
    /// Assign the Guest Inviter directory role.
    pub guest_inviter: bool,
    /// Properties to write onto the guest once it exists.
    pub patch: UserPatch,
    pub delivery: Delivery,
    pub message: Option<String>,
    pub redirect_url: String,
    pub origin: Origin,
    pub partner_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// The partner record to store: the event's registration merged with the existing one.
    pub partner: Option<PartnerRecord>,
    pub invitees: Vec<InviteePlan>,
    /// Invitees refused by policy; nothing is done for them.
    pub refused: Vec<(Email, Refusal)>,
}

impl Plan {
    /// Graph writes the plan needs at most: the invitation, properties, sponsors, grants,
    /// roles (group grants shared by several invitees take fewer).
    pub fn estimated_writes(&self) -> u64 {
        self.invitees
            .iter()
            .map(|p| {
                1 + u64::from(!p.patch.is_empty())
                    + p.sponsors.len() as u64
                    + p.access.groups.len() as u64
                    + p.access.app_roles.len() as u64
                    + u64::from(p.guest_inviter)
            })
            .sum()
    }
}

/// Whether `domain` is `parent` or one of its subdomains.
fn domain_within(domain: &str, parent: &str) -> bool {
    domain == parent
        || domain
            .strip_suffix(parent)
            .is_some_and(|p| p.ends_with('.'))
}

fn canonical(domain: &str) -> String {
    normalise_domain(domain).unwrap_or_else(|_| domain.trim().trim_end_matches('.').to_lowercase())
}

/// A partner domain the policy would refuse every address of, or one inside the tenant's own.
fn check_partner_domain(
    domain: &str,
    verified: &[String],
    policy: &DomainPolicy,
) -> Result<(), Refusal> {
    let refuse = |reason: String| Err(Refusal::new(domain, reason));
    if let Some(v) = verified
        .iter()
        .map(|v| canonical(v))
        .find(|v| domain_within(domain, v))
    {
        return refuse(format!(
            "is within {v}, a verified domain of this tenant: its people are members, not guests"
        ));
    }
    if let Some(b) = policy
        .blocked
        .iter()
        .map(|b| canonical(b))
        .find(|b| domain_within(domain, b))
    {
        return refuse(format!("domain {b} is blocked (BLOCKED_DOMAINS)"));
    }
    if !policy.allowed.is_empty()
        && !policy
            .allowed
            .iter()
            .any(|a| domain_within(domain, &canonical(a)))
    {
        return refuse("is not in ALLOWED_DOMAINS".to_string());
    }
    Ok(())
}

fn push_unique_ci(list: &mut Vec<String>, value: &str) {
    if !list.iter().any(|x| x.eq_ignore_ascii_case(value)) {
        list.push(value.to_string());
    }
}

/// The partner as registered after this event: the existing record's domains, inviters,
/// access and sponsors, plus the event's. Nothing registered is taken away: removing a
/// domain, an inviter or access is an operator's decision, not a contract event's.
fn merged_partner(
    ev: &PartnerSigned,
    existing: Option<&PartnerRecord>,
    now: OffsetDateTime,
) -> PartnerRecord {
    let existing = existing.filter(|p| p.id == ev.partner.id);
    let mut record = match existing {
        Some(p) => p.clone(),
        None => PartnerRecord {
            id: ev.partner.id.clone(),
            name: ev.partner.name.clone(),
            domains: Vec::new(),
            inviters: Vec::new(),
            access: Access::default(),
            sponsors: Vec::new(),
            trust: None,
            updated_at: now,
            ended_at: None,
        },
    };
    record.name = ev.partner.name.clone();
    // Signed again: registered again.
    record.ended_at = None;
    for d in &ev.partner.domains {
        if !record.domains.iter().any(|x| canonical(x) == *d) {
            record.domains.push(d.clone());
        }
    }
    for c in ev.contacts.iter().filter(|c| c.inviter) {
        let key = c.email.key();
        if !record
            .inviters
            .iter()
            .any(|i| i.email.to_lowercase() == key)
        {
            record.inviters.push(Inviter {
                email: key,
                user_id: None,
            });
        }
    }
    record.access.merge(&ev.access);
    for s in &ev.sponsors {
        push_unique_ci(&mut record.sponsors, s);
    }
    record.updated_at = now;
    record
}

/// Plans a signed contract: registers or updates the partner and invites every contact.
/// Any contact or partner domain the domain policy refuses rejects the whole event.
///
/// Contacts are granted the event's access and sponsored by the event's sponsors, or by the
/// partner's registered sponsors when the event names none.
pub fn plan_partner_signed(
    ev: &PartnerSigned,
    existing: Option<&PartnerRecord>,
    settings: &PlanSettings,
    now: OffsetDateTime,
) -> Result<Plan, Refusal> {
    for d in &ev.partner.domains {
        check_partner_domain(d, &settings.verified_domains, &settings.policy)?;
    }
    for c in &ev.contacts {
        check_invitee(&c.email, &settings.verified_domains, &settings.policy)?;
    }
    let partner = merged_partner(ev, existing, now);
    let sponsors = if ev.sponsors.is_empty() {
        partner.sponsors.clone()
    } else {
        ev.sponsors.clone()
    };
    let invitees = ev
        .contacts
        .iter()
        .map(|c| InviteePlan {
            email: c.email.clone(),
            display_name: c.display_name.clone(),
            access: ev.access.clone(),
            sponsors: sponsors.clone(),
            guest_inviter: c.inviter,
            patch: UserPatch {
                display_name: c.display_name.clone(),
                ..UserPatch::default()
            },
            delivery: ev.delivery.unwrap_or(settings.default_delivery),
            message: ev.message.clone(),
            redirect_url: ev
                .redirect_url
                .clone()
                .unwrap_or_else(|| settings.redirect_url.clone()),
            origin: Origin::Partner(ev.partner.id.clone()),
            partner_id: Some(ev.partner.id.clone()),
        })
        .collect();
    Ok(Plan {
        partner: Some(partner),
        invitees,
        refused: Vec::new(),
    })
}

/// Plans an HR record: one invitee, sponsored by the manager, with the record's details
/// copied onto the guest and the record's access plus what the rules give. A worker whose
/// `endDate` has passed (as of `now`, UTC) is refused rather than invited.
pub fn plan_hr_record(
    ev: &HrRecordAdded,
    rules: &[AccessRule],
    settings: &PlanSettings,
    now: OffsetDateTime,
) -> Plan {
    let mut plan = Plan::default();
    let today = now.to_offset(UtcOffset::UTC).date();
    if let Some(end) = ev.end_date
        && end < today
    {
        plan.refused.push((
            ev.email.clone(),
            Refusal::new(
                ev.email.as_str(),
                format!("the engagement ended on {end} (endDate)"),
            ),
        ));
        return plan;
    }
    if let Err(r) = check_invitee(&ev.email, &settings.verified_domains, &settings.policy) {
        plan.refused.push((ev.email.clone(), r));
        return plan;
    }
    let mut access = ev.access.clone();
    access.merge(&rule_access(ev, rules));
    plan.invitees.push(InviteePlan {
        email: ev.email.clone(),
        display_name: ev.display_name.clone(),
        access,
        sponsors: vec![ev.manager.clone()],
        guest_inviter: false,
        patch: UserPatch {
            display_name: ev.display_name.clone(),
            company_name: ev.company.clone(),
            department: ev.department.clone(),
            job_title: ev.job_title.clone(),
            employee_id: Some(ev.employee_id.clone()),
            account_enabled: None,
        },
        delivery: settings.default_delivery,
        message: None,
        redirect_url: settings.redirect_url.clone(),
        origin: Origin::Hr(ev.employee_id.clone()),
        partner_id: None,
    });
    plan
}

/// Plans an authorised self-service request (see `policy::authorise_request`) for
/// `partner`. Invitees are granted the requested access, or the partner's default, and
/// sponsored by the partner's sponsors, or by the requester when the partner has none.
///
/// The partner's domains and allowed access are checked again here, so that a plan can
/// never exceed the partner whatever the caller did before.
pub fn plan_request(
    req: &InviteRequest,
    partner: &PartnerRecord,
    requester: &Requester,
    settings: &PlanSettings,
) -> Plan {
    let mut plan = Plan::default();
    let access = req.access.clone().unwrap_or_else(|| partner.access.clone());
    let beyond = access.first_outside(&partner.access);
    let sponsors = if partner.sponsors.is_empty() {
        vec![requester.user_id.clone()]
    } else {
        partner.sponsors.clone()
    };
    let domains: Vec<String> = partner.domains.iter().map(|d| canonical(d)).collect();
    for invitee in &req.invitees {
        let email = &invitee.email;
        let refusal = if let Some(grant) = &beyond {
            Some(Refusal::new(
                email.as_str(),
                format!(
                    "{grant} is not within the access partner {} may grant",
                    partner.id
                ),
            ))
        } else if !domains.iter().any(|d| email.in_domain(d)) {
            Some(Refusal::new(
                email.as_str(),
                format!(
                    "domain {} is not one of partner {}'s domains",
                    email.domain(),
                    partner.id
                ),
            ))
        } else {
            check_invitee(email, &settings.verified_domains, &settings.policy).err()
        };
        if let Some(r) = refusal {
            plan.refused.push((email.clone(), r));
            continue;
        }
        plan.invitees.push(InviteePlan {
            email: email.clone(),
            display_name: invitee.display_name.clone(),
            access: access.clone(),
            sponsors: sponsors.clone(),
            guest_inviter: false,
            patch: UserPatch {
                display_name: invitee.display_name.clone(),
                ..UserPatch::default()
            },
            delivery: req.delivery.unwrap_or(settings.default_delivery),
            message: req.message.clone(),
            redirect_url: settings.redirect_url.clone(),
            origin: Origin::Request(requester.user_id.clone()),
            partner_id: Some(partner.id.clone()),
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RuleMatch;
    use crate::domain::request::Invitee;
    use serde_json::json;
    use time::macros::datetime;

    const G1: &str = "11111111-1111-1111-1111-111111111111";
    const G2: &str = "22222222-2222-2222-2222-222222222222";
    const NOW: OffsetDateTime = datetime!(2026-05-01 10:00 UTC);

    fn settings() -> PlanSettings {
        PlanSettings {
            default_delivery: Delivery::Own,
            redirect_url: "https://myapplications.microsoft.com".into(),
            verified_domains: vec!["contoso.com".into()],
            policy: DomainPolicy {
                allowed: vec![],
                blocked: vec!["gmail.com".into()],
            },
        }
    }

    fn signed(v: serde_json::Value) -> PartnerSigned {
        PartnerSigned::from_data(&v).unwrap()
    }

    fn litware() -> PartnerSigned {
        signed(json!({
            "partner": {"id": "litware", "name": "Litware Inc.", "domains": ["litware.com"]},
            "contacts": [
                {"email": "sam@litware.com", "displayName": "Sam Lee", "inviter": true},
                {"email": "kim@litware.com", "displayName": "Kim Wu"}
            ],
            "access": {"groups": [G1]},
            "sponsors": ["pat@contoso.com"],
            "delivery": "microsoft"
        }))
    }

    #[test]
    fn partner_signed_registers_and_invites_everyone() {
        let plan = plan_partner_signed(&litware(), None, &settings(), NOW).unwrap();
        let p = plan.partner.unwrap();
        assert_eq!(p.id, "litware");
        assert_eq!(p.domains, vec!["litware.com"]);
        assert_eq!(p.inviters.len(), 1);
        assert_eq!(p.inviters[0].email, "sam@litware.com");
        assert!(p.access.groups.contains(G1));
        assert_eq!(p.sponsors, vec!["pat@contoso.com"]);
        assert_eq!(p.updated_at, NOW);
        assert_eq!(plan.invitees.len(), 2);
        let sam = &plan.invitees[0];
        assert!(sam.guest_inviter);
        assert!(!plan.invitees[1].guest_inviter);
        assert_eq!(sam.delivery, Delivery::Microsoft);
        assert_eq!(sam.redirect_url, "https://myapplications.microsoft.com");
        assert_eq!(sam.sponsors, vec!["pat@contoso.com"]);
        assert_eq!(sam.origin, Origin::Partner("litware".into()));
        assert_eq!(sam.partner_id.as_deref(), Some("litware"));
        assert_eq!(sam.patch.display_name.as_deref(), Some("Sam Lee"));
        assert!(plan.refused.is_empty());
    }

    #[test]
    fn partner_signed_merges_with_the_registered_partner() {
        let mut access = Access::default();
        access.groups.insert(G2.into());
        let existing = PartnerRecord {
            id: "litware".into(),
            name: "Litware".into(),
            domains: vec!["litware.net".into(), "litware.com".into()],
            inviters: vec![Inviter {
                email: "SAM@litware.com".into(),
                user_id: Some("u-sam".into()),
            }],
            access,
            sponsors: vec!["PAT@contoso.com".into(), "lee@contoso.com".into()],
            trust: None,
            updated_at: datetime!(2025-01-01 0:00 UTC),
            ended_at: None,
        };
        let mut ev = litware();
        ev.contacts[1].inviter = true;
        let plan = plan_partner_signed(&ev, Some(&existing), &settings(), NOW).unwrap();
        let p = plan.partner.unwrap();
        assert_eq!(p.name, "Litware Inc.");
        assert_eq!(p.domains, vec!["litware.net", "litware.com"]);
        assert_eq!(p.inviters.len(), 2);
        assert_eq!(p.inviters[0].user_id.as_deref(), Some("u-sam"));
        assert_eq!(p.inviters[1].email, "kim@litware.com");
        assert!(p.access.groups.contains(G1) && p.access.groups.contains(G2));
        assert_eq!(p.sponsors, vec!["PAT@contoso.com", "lee@contoso.com"]);
        // The contacts get the event's access, not everything the partner may grant.
        assert!(!plan.invitees[0].access.groups.contains(G2));

        ev.sponsors.clear();
        let plan = plan_partner_signed(&ev, Some(&existing), &settings(), NOW).unwrap();
        assert_eq!(
            plan.invitees[0].sponsors,
            vec!["PAT@contoso.com", "lee@contoso.com"]
        );
    }

    #[test]
    fn partner_signed_is_rejected_whole_by_policy() {
        let ev = signed(json!({
            "partner": {"id": "mixed", "name": "Mixed", "domains": ["litware.com", "gmail.com"]},
            "contacts": [{"email": "sam@litware.com"}]
        }));
        let r = plan_partner_signed(&ev, None, &settings(), NOW).unwrap_err();
        assert_eq!(r.subject, "gmail.com");
        let ev = signed(json!({
            "partner": {"id": "own", "name": "Own", "domains": ["eu.contoso.com"]},
            "contacts": [{"email": "a@eu.contoso.com"}]
        }));
        let r = plan_partner_signed(&ev, None, &settings(), NOW).unwrap_err();
        assert!(r.reason.contains("verified domain"));
        let mut s = settings();
        s.policy.blocked = vec!["eu.litware.com".into()];
        let ev = signed(json!({
            "partner": {"id": "litware", "name": "L", "domains": ["litware.com"]},
            "contacts": [{"email": "a@litware.com"}, {"email": "b@eu.litware.com"}]
        }));
        let r = plan_partner_signed(&ev, None, &s, NOW).unwrap_err();
        assert_eq!(r.subject, "b@eu.litware.com");
    }

    fn hr(end: &str) -> HrRecordAdded {
        HrRecordAdded::from_data(&json!({
            "employeeId": "E-1042", "email": "jo@contractor.example", "displayName": "Jo Park",
            "company": "Contractor Ltd", "department": "Engineering", "jobTitle": "Engineer",
            "manager": "pat@contoso.com", "startDate": "2026-04-01", "endDate": end,
            "access": {"groups": [G1]}
        }))
        .unwrap()
    }

    #[test]
    fn hr_record_copies_details_and_adds_rule_access() {
        let mut eng = Access::default();
        eng.groups.insert(G2.into());
        let rules = vec![AccessRule {
            matches: RuleMatch {
                company: None,
                department: Some("engineering".into()),
            },
            access: eng,
        }];
        let plan = plan_hr_record(&hr("2027-06-30"), &rules, &settings(), NOW);
        assert!(plan.partner.is_none());
        assert!(plan.refused.is_empty());
        let jo = &plan.invitees[0];
        assert_eq!(jo.sponsors, vec!["pat@contoso.com"]);
        assert_eq!(jo.access.groups.len(), 2);
        assert_eq!(jo.patch.company_name.as_deref(), Some("Contractor Ltd"));
        assert_eq!(jo.patch.department.as_deref(), Some("Engineering"));
        assert_eq!(jo.patch.job_title.as_deref(), Some("Engineer"));
        assert_eq!(jo.patch.employee_id.as_deref(), Some("E-1042"));
        assert_eq!(jo.patch.display_name.as_deref(), Some("Jo Park"));
        assert_eq!(jo.origin, Origin::Hr("E-1042".into()));
        assert_eq!(jo.delivery, Delivery::Own);
        assert!(!jo.guest_inviter);
    }

    #[test]
    fn hr_record_refusals() {
        let plan = plan_hr_record(&hr("2026-04-30"), &[], &settings(), NOW);
        assert!(plan.invitees.is_empty());
        assert!(plan.refused[0].1.reason.contains("ended on 2026-04-30"));
        // The last day still counts.
        assert_eq!(
            plan_hr_record(&hr("2026-05-01"), &[], &settings(), NOW)
                .invitees
                .len(),
            1
        );
        let mut s = settings();
        s.verified_domains.push("contractor.example".into());
        let plan = plan_hr_record(&hr("2027-01-01"), &[], &s, NOW);
        assert_eq!(plan.refused[0].0.as_str(), "jo@contractor.example");
    }

    fn record(sponsors: &[&str]) -> PartnerRecord {
        let mut access = Access::default();
        access.groups.insert(G1.into());
        access.groups.insert(G2.into());
        PartnerRecord {
            id: "litware".into(),
            name: "Litware".into(),
            domains: vec!["litware.com".into()],
            inviters: vec![],
            access,
            sponsors: sponsors.iter().map(|s| s.to_string()).collect(),
            trust: None,
            updated_at: NOW,
            ended_at: None,
        }
    }

    fn req(emails: &[&str], access: Option<Access>) -> InviteRequest {
        InviteRequest {
            requested_by: "u-sam".into(),
            invitees: emails
                .iter()
                .map(|e| Invitee {
                    email: Email::parse(e).unwrap(),
                    display_name: None,
                })
                .collect(),
            access,
            delivery: None,
            message: Some("hello".into()),
        }
    }

    fn sam() -> Requester {
        Requester {
            user_id: "u-sam".into(),
            addresses: vec![Email::parse("sam@litware.com").unwrap()],
            guest_inviter: false,
        }
    }

    #[test]
    fn request_defaults_and_sponsors() {
        let plan = plan_request(
            &req(&["ann@litware.com"], None),
            &record(&[]),
            &sam(),
            &settings(),
        );
        let ann = &plan.invitees[0];
        assert_eq!(ann.access.groups.len(), 2);
        assert_eq!(ann.sponsors, vec!["u-sam"]);
        assert_eq!(ann.origin, Origin::Request("u-sam".into()));
        assert_eq!(ann.message.as_deref(), Some("hello"));
        let mut only = Access::default();
        only.groups.insert(G1.into());
        let plan = plan_request(
            &req(&["ann@litware.com"], Some(only.clone())),
            &record(&["pat@contoso.com"]),
            &sam(),
            &settings(),
        );
        assert_eq!(plan.invitees[0].access, only);
        assert_eq!(plan.invitees[0].sponsors, vec!["pat@contoso.com"]);
    }

    #[test]
    fn request_refuses_per_invitee() {
        let mut s = settings();
        s.policy.blocked = vec!["eu.litware.com".into()];
        let plan = plan_request(
            &req(
                &["a@litware.com", "b@eu.litware.com", "c@fabrikam.com"],
                None,
            ),
            &record(&[]),
            &sam(),
            &s,
        );
        assert_eq!(plan.invitees.len(), 1);
        assert_eq!(plan.refused.len(), 2);
        assert!(plan.refused[0].1.reason.contains("blocked"));
        assert!(
            plan.refused[1]
                .1
                .reason
                .contains("not one of partner litware's domains")
        );
        let mut beyond = Access::default();
        beyond
            .groups
            .insert("33333333-3333-3333-3333-333333333333".into());
        let plan = plan_request(
            &req(&["a@litware.com"], Some(beyond)),
            &record(&[]),
            &sam(),
            &s,
        );
        assert!(plan.invitees.is_empty());
        assert!(plan.refused[0].1.reason.contains("not within the access"));
    }
}
