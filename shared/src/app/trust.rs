//! Trusting a partner's tenant when its contract is signed (SPEC section 2, `trust`):
//! find the tenant, read our partner configuration for it, change only what differs, and
//! keep what we set and what was there before in the partner's record.
//!
//! Safe to repeat: a redelivery reads the configuration again and finds nothing to do. A
//! refusal here is a refusal of the trust step only; the contacts are handled as the rest
//! of the event says.

use super::Abort;
use crate::domain::partner::PartnerSigned;
use crate::domain::trust::{TrustPlan, TrustRequest, TrustSettings, TrustState, plan_trust};
use crate::error::{Classify, FailureClass};
use crate::ports::directory::{Applied, Directory, DirectoryError};

/// Sets the trust `asked` for the event's partner. `earlier`: the partner's trust as
/// recorded before, so that what was there before we first changed it is never forgotten.
pub async fn establish(
    directory: &dyn Directory,
    ev: &PartnerSigned,
    asked: &TrustRequest,
    earlier: Option<&TrustState>,
) -> Result<TrustState, Abort> {
    let tenant_id = match &ev.partner.tenant_id {
        Some(id) => id.clone(),
        None => {
            let domain = &ev.partner.domains[0];
            match refusal(directory.find_tenant_by_domain(domain).await)? {
                Ok(Some(tenant)) => tenant.tenant_id,
                Ok(None) => {
                    return Ok(not_set(
                        None,
                        format!(
                            "domain {domain} has no Entra tenant (personal or unmanaged): \
                             trust skipped; its people are invited as usual"
                        ),
                    ));
                }
                Err(reason) => {
                    return Ok(not_set(
                        None,
                        format!("the tenant of {domain} could not be found: {reason}"),
                    ));
                }
            }
        }
    };
    for _ in 0..2 {
        let existing = match refusal(directory.cross_tenant_partner(&tenant_id).await)? {
            Ok(existing) => existing,
            Err(reason) => return Ok(not_set(Some(&tenant_id), reason)),
        };
        let before = existing
            .as_ref()
            .map(|p| p.settings.clone())
            .unwrap_or_default();
        let (changed, created) = match plan_trust(asked, existing.as_ref()) {
            TrustPlan::Refused(reason) => return Ok(not_set(Some(&tenant_id), reason)),
            TrustPlan::Unchanged => (TrustSettings::default(), false),
            TrustPlan::Create(settings) => {
                match refusal(
                    directory
                        .create_cross_tenant_partner(&tenant_id, &settings)
                        .await,
                )? {
                    Ok(Applied::Done) => (settings, true),
                    // Created meanwhile (or by our attempt whose answer was lost): read it
                    // again and change only what differs.
                    Ok(Applied::AlreadyPresent) => continue,
                    Err(reason) => return Ok(not_set(Some(&tenant_id), reason)),
                }
            }
            TrustPlan::Update(settings) => {
                if let Err(reason) = refusal(
                    directory
                        .update_cross_tenant_partner(&tenant_id, &settings)
                        .await,
                )? {
                    return Ok(not_set(Some(&tenant_id), reason));
                }
                (settings, false)
            }
        };
        tracing::info!(partner = %ev.partner.id, tenant = %tenant_id, created, changed = ?changed,
            "partner tenant trusted in the cross-tenant access settings");
        return Ok(remembered(earlier, tenant_id, changed, before, created));
    }
    Err(Abort::transient(format!(
        "the partner configuration for tenant {tenant_id} kept changing while it was set"
    )))
}

/// This time's change on top of what was recorded before: `before` keeps the values from
/// before our first change, so the end of the contract restores the tenant's own settings.
fn remembered(
    earlier: Option<&TrustState>,
    tenant_id: String,
    changed: TrustSettings,
    before: TrustSettings,
    created: bool,
) -> TrustState {
    let Some(TrustState::Trusted {
        tenant_id: earlier_tenant,
        set: earlier_set,
        before: earlier_before,
        created: earlier_created,
    }) = earlier
    else {
        return TrustState::Trusted {
            tenant_id,
            set: changed,
            before,
            created,
        };
    };
    if *earlier_tenant != tenant_id {
        return TrustState::Trusted {
            tenant_id,
            set: changed,
            before,
            created,
        };
    }
    // Per setting: ours since an earlier event (keep what it found), or set now.
    let merge = |field: fn(&TrustSettings) -> Option<bool>| match field(earlier_set) {
        Some(ours) => (Some(ours), field(earlier_before)),
        None => (field(&changed), field(&before)),
    };
    let (automatic_redemption, redemption_before) = merge(|s| s.automatic_redemption);
    let (mfa_accepted, mfa_before) = merge(|s| s.mfa_accepted);
    let (compliant_device_accepted, device_before) = merge(|s| s.compliant_device_accepted);
    TrustState::Trusted {
        tenant_id,
        set: TrustSettings {
            automatic_redemption,
            mfa_accepted,
            compliant_device_accepted,
        },
        before: TrustSettings {
            automatic_redemption: redemption_before,
            mfa_accepted: mfa_before,
            compliant_device_accepted: device_before,
        },
        created: *earlier_created || created,
    }
}

fn not_set(tenant_id: Option<&str>, reason: String) -> TrustState {
    tracing::warn!(
        tenant = tenant_id.unwrap_or("unknown"),
        reason,
        "partner trust not set"
    );
    TrustState::NotSet {
        tenant_id: tenant_id.map(String::from),
        reason,
    }
}

/// Graph refusing the trust step for good (`Err(reason)`), or the answer; our own outages
/// (access refused, throttling, Graph down) abort so the event is retried.
fn refusal<T>(result: Result<T, DirectoryError>) -> Result<Result<T, String>, Abort> {
    match result {
        Ok(v) => Ok(Ok(v)),
        // Our own access refused is an outage (transient), never a refusal of the partner.
        Err(e) if e.class() == FailureClass::Permanent => Ok(Err(e.to_string())),
        Err(e) => Err(e.into()),
    }
}
