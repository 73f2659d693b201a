//! Partner trust (SPEC section 2, `partner.signed` `trust`): our cross-tenant access
//! settings for the partner's Entra tenant, so that its people are added without a consent
//! prompt (inbound automatic redemption) and, when asked, their home MFA and compliant
//! devices count here. Pure: what the event asks and what the tenant has in, what to change
//! out.
//!
//! Only ever towards what was asked: a setting asked `true` is turned on when it is not;
//! nothing asked is turned off, and a partner whose B2B collaboration inbound is blocked is
//! left blocked and its trust is not set at all (trusting a tenant we block would be
//! meaningless and, once the block is lifted, more than anyone decided).

use serde::{Deserialize, Serialize};

use crate::domain::event::EventError;
use crate::domain::fields::Obj;

/// What a `partner.signed` asks to trust.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustRequest {
    /// Inbound automatic redemption: the partner's users are added without a consent prompt.
    pub automatic_redemption: bool,
    /// Accept MFA done in the partner's tenant.
    pub mfa: bool,
    /// Accept the partner tenant's compliant devices.
    pub compliant_device: bool,
}

impl TrustRequest {
    pub(crate) fn parse(o: &Obj<'_>) -> Result<TrustRequest, EventError> {
        Ok(TrustRequest {
            automatic_redemption: o.bool_or("automaticRedemption", false)?,
            mfa: o.bool_or("mfa", false)?,
            compliant_device: o.bool_or("compliantDevice", false)?,
        })
    }

    pub fn asks_nothing(&self) -> bool {
        !(self.automatic_redemption || self.mfa || self.compliant_device)
    }
}

/// The settings of one partner configuration that trust is about, as Graph has them.
/// `None`: not set on the partner (inherited from the default configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automatic_redemption: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_accepted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliant_device_accepted: Option<bool>,
}

/// A partner configuration in our cross-tenant access settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrossTenantPartner {
    pub tenant_id: String,
    pub settings: TrustSettings,
    /// B2B collaboration inbound blocks every user of the partner tenant.
    pub inbound_blocked: bool,
}

/// What to do about a partner's trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustPlan {
    /// Everything asked is already in place.
    Unchanged,
    /// No partner configuration yet: create one with these settings.
    Create(TrustSettings),
    /// Change these settings of the existing configuration (the others stay as they are).
    Update(TrustSettings),
    /// Nothing is changed, and why.
    Refused(String),
}

/// What to change so that `asked` holds for the partner configuration `existing`.
pub fn plan_trust(asked: &TrustRequest, existing: Option<&CrossTenantPartner>) -> TrustPlan {
    if let Some(p) = existing
        && p.inbound_blocked
    {
        return TrustPlan::Refused(format!(
            "our cross-tenant access settings block B2B collaboration inbound from tenant {}: \
             left blocked, trust not set (an administrator decides whether to allow it)",
            p.tenant_id
        ));
    }
    let current = existing.map(|p| p.settings.clone()).unwrap_or_default();
    let turn_on = |asked: bool, now: Option<bool>| (asked && now != Some(true)).then_some(true);
    let change = TrustSettings {
        automatic_redemption: turn_on(asked.automatic_redemption, current.automatic_redemption),
        mfa_accepted: turn_on(asked.mfa, current.mfa_accepted),
        compliant_device_accepted: turn_on(
            asked.compliant_device,
            current.compliant_device_accepted,
        ),
    };
    match existing {
        _ if change == TrustSettings::default() => TrustPlan::Unchanged,
        None => TrustPlan::Create(change),
        Some(_) => TrustPlan::Update(change),
    }
}

/// Where a partner's trust stands, as the ledger keeps it: what we set and what was there
/// before, so the end of the contract can put it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum TrustState {
    /// Set (or found already set): `set` is what we changed, `before` what it was then
    /// (`created`: there was no partner configuration).
    Trusted {
        tenant_id: String,
        set: TrustSettings,
        before: TrustSettings,
        created: bool,
    },
    /// Not set: our settings block the tenant, or the domain has no Entra tenant.
    NotSet {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant_id: Option<String>,
        reason: String,
    },
}

impl TrustState {
    /// Whether the partner's users are redeemed automatically here (by us or before us).
    pub fn redemption_trusted(&self) -> bool {
        matches!(self, TrustState::Trusted { set, before, .. }
            if set.automatic_redemption == Some(true) || before.automatic_redemption == Some(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(automatic_redemption: bool, mfa: bool, compliant_device: bool) -> TrustRequest {
        TrustRequest {
            automatic_redemption,
            mfa,
            compliant_device,
        }
    }

    fn partner(settings: TrustSettings, inbound_blocked: bool) -> CrossTenantPartner {
        CrossTenantPartner {
            tenant_id: "t-1".into(),
            settings,
            inbound_blocked,
        }
    }

    #[test]
    fn a_new_partner_is_created_with_what_was_asked() {
        assert_eq!(
            plan_trust(&ask(true, true, false), None),
            TrustPlan::Create(TrustSettings {
                automatic_redemption: Some(true),
                mfa_accepted: Some(true),
                compliant_device_accepted: None,
            })
        );
    }

    #[test]
    fn only_what_differs_is_changed_and_nothing_is_turned_off() {
        let existing = partner(
            TrustSettings {
                automatic_redemption: Some(true),
                mfa_accepted: Some(false),
                compliant_device_accepted: Some(true),
            },
            false,
        );
        assert_eq!(
            plan_trust(&ask(true, true, false), Some(&existing)),
            TrustPlan::Update(TrustSettings {
                mfa_accepted: Some(true),
                ..TrustSettings::default()
            })
        );
        assert_eq!(
            plan_trust(&ask(true, false, true), Some(&existing)),
            TrustPlan::Unchanged
        );
    }

    #[test]
    fn a_blocked_partner_stays_blocked() {
        let existing = partner(TrustSettings::default(), true);
        assert!(matches!(
            plan_trust(&ask(true, false, false), Some(&existing)),
            TrustPlan::Refused(reason) if reason.contains("block")
        ));
    }
}
