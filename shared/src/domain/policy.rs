//! Who may be invited, and who may ask: the global domain policy and the authorisation of
//! self-service requests (SPEC sections 2 and 6).

use std::fmt;

use crate::config::DomainPolicy;
use crate::domain::access::Access;
use crate::domain::email::{Email, normalise_domain};
use crate::ports::ledger::PartnerRecord;

/// Why someone or something was refused. `subject` may be an address: mask it before it is
/// logged (`email::mask`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The invitee's address, the requester, or the group or app role at fault.
    pub subject: String,
    pub reason: String,
}

impl Refusal {
    pub fn new(subject: impl Into<String>, reason: impl Into<String>) -> Self {
        Refusal {
            subject: subject.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.reason)
    }
}

impl std::error::Error for Refusal {}

/// Domains compared in the form [`Email`] keeps: lower-case A-labels.
fn canonical(domain: &str) -> String {
    normalise_domain(domain).unwrap_or_else(|_| domain.trim().trim_end_matches('.').to_lowercase())
}

/// Whether `email` may be invited at all: never into the tenant's own verified domains
/// (or their subdomains), never into a blocked domain, and only into an allowed domain when
/// an allow list is configured. Subdomains share the fate of their parent.
pub fn check_invitee(
    email: &Email,
    verified_domains: &[String],
    policy: &DomainPolicy,
) -> Result<(), Refusal> {
    let refuse = |reason: String| Err(Refusal::new(email.as_str(), reason));
    if let Some(d) = verified_domains
        .iter()
        .map(|d| canonical(d))
        .find(|d| email.in_domain(d))
    {
        return refuse(format!(
            "{d} is a verified domain of this tenant: its people are members, not guests"
        ));
    }
    if let Some(d) = policy
        .blocked
        .iter()
        .map(|d| canonical(d))
        .find(|d| email.in_domain(d))
    {
        return refuse(format!("domain {d} is blocked (BLOCKED_DOMAINS)"));
    }
    if !policy.allowed.is_empty()
        && !policy
            .allowed
            .iter()
            .any(|d| email.in_domain(&canonical(d)))
    {
        return refuse(format!(
            "domain {} is not in ALLOWED_DOMAINS",
            email.domain()
        ));
    }
    Ok(())
}

/// The person asking for invitations, as the directory knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    /// Object id.
    pub user_id: String,
    /// The addresses the directory vouches for (`mail`, `userPrincipalName`). Never
    /// `otherMails`: a user may be able to edit those.
    pub addresses: Vec<Email>,
    /// Holds the Guest Inviter directory role.
    pub guest_inviter: bool,
}

impl Requester {
    fn is_inviter_of(&self, partner: &PartnerRecord) -> bool {
        partner.inviters.iter().any(|inviter| {
            inviter
                .user_id
                .as_deref()
                .is_some_and(|id| id.eq_ignore_ascii_case(&self.user_id))
                || self
                    .addresses
                    .iter()
                    .any(|a| a.key() == inviter.email.to_lowercase())
        })
    }

    fn in_domains_of(&self, partner: &PartnerRecord) -> bool {
        self.addresses
            .iter()
            .any(|a| partner.domains.iter().any(|d| a.in_domain(&canonical(d))))
    }

    /// How the requester is named in a refusal: the first address, else the object id.
    fn name(&self) -> String {
        self.addresses
            .first()
            .map(|a| a.to_string())
            .unwrap_or_else(|| self.user_id.clone())
    }
}

/// A request the requester may make, on behalf of `partner`.
#[derive(Debug, Clone, PartialEq)]
pub struct Authorised<'p> {
    pub partner: &'p PartnerRecord,
    /// What every invitee is granted: the requested access, or the partner's default.
    pub access: Access,
}

/// Authorises a self-service request: the requester is a registered inviter of a partner,
/// or holds Guest Inviter and belongs to one of its domains; every invitee is in that
/// partner's domains; the requested access (none: the partner's) is within the partner's.
///
/// When the requester may act for several partners, the first (in the given order) that
/// admits the whole request is chosen. When none does, the refusal names the first
/// offending invitee or grant for the partner that came closest.
pub fn authorise_request<'p>(
    requester: &Requester,
    partners: &'p [PartnerRecord],
    invitees: &[Email],
    requested: Option<&Access>,
) -> Result<Authorised<'p>, Refusal> {
    let candidates: Vec<&PartnerRecord> = partners
        .iter()
        .filter(|p| {
            requester.is_inviter_of(p) || (requester.guest_inviter && requester.in_domains_of(p))
        })
        .collect();
    if candidates.is_empty() {
        let reason = if requester.guest_inviter {
            "holds Guest Inviter but belongs to no partner's domain, and is no partner's registered inviter"
        } else {
            "is not a registered inviter of any partner and does not hold the Guest Inviter role"
        };
        return Err(Refusal::new(requester.name(), reason));
    }

    // (invitees admitted before the first fault, the fault) for the closest partner.
    let mut closest: Option<(usize, Refusal)> = None;
    for partner in candidates {
        let domains: Vec<String> = partner.domains.iter().map(|d| canonical(d)).collect();
        let outside = invitees
            .iter()
            .position(|e| !domains.iter().any(|d| e.in_domain(d)));
        let refusal = match outside {
            Some(i) => Refusal::new(
                invitees[i].as_str(),
                format!(
                    "domain {} is not one of partner {}'s domains ({})",
                    invitees[i].domain(),
                    partner.id,
                    domains.join(", ")
                ),
            ),
            None => {
                let access = requested.cloned().unwrap_or_else(|| partner.access.clone());
                match access.first_outside(&partner.access) {
                    Some(grant) => Refusal::new(
                        grant,
                        format!("is not within the access partner {} may grant", partner.id),
                    ),
                    None => return Ok(Authorised { partner, access }),
                }
            }
        };
        let admitted = outside.unwrap_or(invitees.len());
        if closest.as_ref().is_none_or(|(best, _)| admitted > *best) {
            closest = Some((admitted, refusal));
        }
    }
    Err(closest.map_or_else(
        || Refusal::new(requester.name(), "no partner admits the request"),
        |(_, r)| r,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::directory::AppRoleRef;
    use crate::ports::ledger::Inviter;
    use time::OffsetDateTime;

    fn email(s: &str) -> Email {
        Email::parse(s).unwrap()
    }

    fn policy(allowed: &[&str], blocked: &[&str]) -> DomainPolicy {
        DomainPolicy {
            allowed: allowed.iter().map(|s| s.to_string()).collect(),
            blocked: blocked.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn own_domains_are_never_invited() {
        let verified = vec!["contoso.com".to_string(), "Contoso.onmicrosoft.com".into()];
        let p = DomainPolicy::default();
        let r = check_invitee(&email("pat@contoso.com"), &verified, &p).unwrap_err();
        assert_eq!(r.subject, "pat@contoso.com");
        assert!(r.reason.contains("verified domain"));
        assert!(check_invitee(&email("pat@eu.contoso.com"), &verified, &p).is_err());
        assert!(check_invitee(&email("x@contoso.onmicrosoft.com"), &verified, &p).is_err());
        assert!(check_invitee(&email("pat@notcontoso.com"), &verified, &p).is_ok());
    }

    #[test]
    fn blocked_and_allowed_lists() {
        let p = policy(&[], &["gmail.com"]);
        assert!(check_invitee(&email("a@gmail.com"), &[], &p).is_err());
        assert!(check_invitee(&email("a@mail.gmail.com"), &[], &p).is_err());
        assert!(check_invitee(&email("a@litware.com"), &[], &p).is_ok());
        let p = policy(&["litware.com"], &["eu.litware.com"]);
        assert!(check_invitee(&email("a@litware.com"), &[], &p).is_ok());
        assert!(check_invitee(&email("a@us.litware.com"), &[], &p).is_ok());
        let r = check_invitee(&email("a@eu.litware.com"), &[], &p).unwrap_err();
        assert!(r.reason.contains("blocked"));
        let r = check_invitee(&email("a@fabrikam.com"), &[], &p).unwrap_err();
        assert_eq!(
            r.to_string(),
            "a@fabrikam.com: domain fabrikam.com is not in ALLOWED_DOMAINS"
        );
    }

    const G1: &str = "11111111-1111-1111-1111-111111111111";
    const G2: &str = "22222222-2222-2222-2222-222222222222";

    fn partner(
        id: &str,
        domains: &[&str],
        inviters: &[(&str, Option<&str>)],
        groups: &[&str],
    ) -> PartnerRecord {
        let mut access = Access::default();
        access.groups.extend(groups.iter().map(|g| g.to_string()));
        PartnerRecord {
            id: id.into(),
            name: id.into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            inviters: inviters
                .iter()
                .map(|(e, id)| Inviter {
                    email: e.to_string(),
                    user_id: id.map(String::from),
                })
                .collect(),
            access,
            sponsors: vec![],
            trust: None,
            updated_at: OffsetDateTime::UNIX_EPOCH,
            ended_at: None,
        }
    }

    fn requester(id: &str, address: &str, guest_inviter: bool) -> Requester {
        Requester {
            user_id: id.into(),
            addresses: vec![email(address)],
            guest_inviter,
        }
    }

    fn group(g: &str) -> Access {
        let mut a = Access::default();
        a.groups.insert(g.into());
        a
    }

    #[test]
    fn registered_inviters_by_address_or_id() {
        let partners = vec![
            partner("fabrikam", &["fabrikam.com"], &[], &[G1]),
            partner(
                "litware",
                &["litware.com"],
                &[("Sam@litware.com", None)],
                &[G1, G2],
            ),
        ];
        let sam = requester("u-sam", "sam@litware.com", false);
        let ok = authorise_request(&sam, &partners, &[email("ann@litware.com")], None).unwrap();
        assert_eq!(ok.partner.id, "litware");
        assert_eq!(ok.access, partners[1].access);

        let by_id = partner(
            "litware",
            &["litware.com"],
            &[("old@litware.com", Some("U-SAM"))],
            &[G1],
        );
        let ok = authorise_request(
            &sam,
            std::slice::from_ref(&by_id),
            &[email("ann@eu.litware.com")],
            Some(&group(G1)),
        )
        .unwrap();
        assert_eq!(ok.access, group(G1));
    }

    #[test]
    fn guest_inviters_need_a_partner_domain() {
        let partners = vec![partner("litware", &["litware.com"], &[], &[G1])];
        let kim = requester("u-kim", "kim@litware.com", true);
        assert!(authorise_request(&kim, &partners, &[email("a@litware.com")], None).is_ok());
        let kim_without_role = requester("u-kim", "kim@litware.com", false);
        let r = authorise_request(
            &kim_without_role,
            &partners,
            &[email("a@litware.com")],
            None,
        )
        .unwrap_err();
        assert_eq!(r.subject, "kim@litware.com");
        assert!(r.reason.contains("not a registered inviter"));
        let outsider = requester("u-o", "o@fabrikam.com", true);
        let r =
            authorise_request(&outsider, &partners, &[email("a@litware.com")], None).unwrap_err();
        assert!(r.reason.contains("no partner's domain"));
    }

    #[test]
    fn refusals_name_the_first_offender() {
        let partners = vec![partner(
            "litware",
            &["litware.com"],
            &[("sam@litware.com", None)],
            &[G1],
        )];
        let sam = requester("u-sam", "sam@litware.com", false);
        let r = authorise_request(
            &sam,
            &partners,
            &[
                email("a@litware.com"),
                email("b@fabrikam.com"),
                email("c@evil.com"),
            ],
            None,
        )
        .unwrap_err();
        assert_eq!(r.subject, "b@fabrikam.com");
        assert!(r.reason.contains("not one of partner litware's domains"));

        let mut wanted = group(G1);
        wanted.groups.insert(G2.into());
        let r = authorise_request(&sam, &partners, &[email("a@litware.com")], Some(&wanted))
            .unwrap_err();
        assert_eq!(r.subject, format!("group {G2}"));

        let mut roles = Access::default();
        roles.app_roles.insert(AppRoleRef {
            resource_id: G1.into(),
            app_role_id: G2.into(),
        });
        let r = authorise_request(&sam, &partners, &[email("a@litware.com")], Some(&roles))
            .unwrap_err();
        assert!(r.subject.starts_with("app role"));
    }

    #[test]
    fn the_partner_that_admits_the_request_is_chosen() {
        let partners = vec![
            partner("a", &["a.example"], &[("sam@shared.example", None)], &[]),
            partner("b", &["b.example"], &[("sam@shared.example", None)], &[]),
        ];
        let sam = requester("u", "sam@shared.example", false);
        let ok = authorise_request(&sam, &partners, &[email("x@b.example")], None).unwrap();
        assert_eq!(ok.partner.id, "b");
        let r = authorise_request(
            &sam,
            &partners,
            &[
                email("x@b.example"),
                email("y@b.example"),
                email("z@a.example"),
            ],
            None,
        )
        .unwrap_err();
        assert_eq!(r.subject, "z@a.example");
    }
}
