//! Cross-tenant access settings and tenant lookup over Graph v1.0:
//! `GET /tenantRelationships/findTenantInformationByDomainName(domainName='…')` and
//! `/policies/crossTenantAccessPolicy/partners[/{tenantId}]` (create, read, update).

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::client::{Call, GraphDirectory};
use super::odata::{encode, literal};
use crate::domain::trust::{CrossTenantPartner, TrustSettings};
use crate::ports::directory::{Applied, DirectoryError, TenantInfo};

const PARTNERS: &str = "/policies/crossTenantAccessPolicy/partners";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TenantInformation {
    tenant_id: String,
    #[serde(default)]
    display_name: Option<String>,
}

impl GraphDirectory {
    pub(super) async fn tenant_by_domain(
        &self,
        domain: &str,
    ) -> Result<Option<TenantInfo>, DirectoryError> {
        // Graph answers a domain with no Entra tenant with 404 (not documented; seen in
        // practice), which get_json reads as "none".
        let found: Option<TenantInformation> = self
            .get_json(format!(
                "/tenantRelationships/findTenantInformationByDomainName(domainName={})",
                literal(domain)
            ))
            .await?;
        Ok(found.map(|t| TenantInfo {
            tenant_id: t.tenant_id,
            display_name: t.display_name,
        }))
    }

    /// The partner configuration as Graph holds it, unparsed: updates send its complex
    /// properties back whole.
    async fn partner_configuration(
        &self,
        tenant_id: &str,
    ) -> Result<Option<Value>, DirectoryError> {
        self.get_json(format!("{PARTNERS}/{}", encode(tenant_id)))
            .await
    }

    pub(super) async fn partner_trust(
        &self,
        tenant_id: &str,
    ) -> Result<Option<CrossTenantPartner>, DirectoryError> {
        Ok(self
            .partner_configuration(tenant_id)
            .await?
            .map(|v| cross_tenant_partner(tenant_id, &v)))
    }

    pub(super) async fn create_partner_trust(
        &self,
        tenant_id: &str,
        settings: &TrustSettings,
    ) -> Result<Applied, DirectoryError> {
        let mut body = Map::new();
        body.insert("tenantId".into(), json!(tenant_id));
        apply(&mut body, settings);
        match self
            .send(Call::write(
                Method::POST,
                PARTNERS.to_string(),
                Some(&Value::Object(body)),
            ))
            .await
        {
            Ok(_) => Ok(Applied::Done),
            // One exists already (created meanwhile, or ours whose answer was lost).
            Err(DirectoryError::Permanent { status: 409, .. }) => Ok(Applied::AlreadyPresent),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn update_partner_trust(
        &self,
        tenant_id: &str,
        settings: &TrustSettings,
    ) -> Result<(), DirectoryError> {
        // PATCH replaces a complex property whole: each one changed is sent back with every
        // field it had, so nothing we do not manage is reset.
        let current = self
            .partner_configuration(tenant_id)
            .await?
            .unwrap_or_else(|| json!({}));
        let mut body = Map::new();
        for key in ["automaticUserConsentSettings", "inboundTrust"] {
            if let Some(Value::Object(o)) = current.get(key) {
                body.insert(key.into(), Value::Object(o.clone()));
            }
        }
        apply(&mut body, settings);
        body.retain(|key, _| match key.as_str() {
            "automaticUserConsentSettings" => settings.automatic_redemption.is_some(),
            "inboundTrust" => {
                settings.mfa_accepted.is_some() || settings.compliant_device_accepted.is_some()
            }
            _ => false,
        });
        if body.is_empty() {
            return Ok(());
        }
        self.send(Call::write(
            Method::PATCH,
            format!("{PARTNERS}/{}", encode(tenant_id)),
            Some(&Value::Object(body)),
        ))
        .await
        .map(|_| ())
    }
}

/// Writes the settings given into a partner configuration body.
fn apply(body: &mut Map<String, Value>, settings: &TrustSettings) {
    let mut set = |property: &str, field: &str, value: Option<bool>| {
        if let Some(value) = value {
            let entry = body.entry(property).or_insert_with(|| json!({}));
            if !entry.is_object() {
                *entry = json!({});
            }
            entry[field] = json!(value);
        }
    };
    set(
        "automaticUserConsentSettings",
        "inboundAllowed",
        settings.automatic_redemption,
    );
    set("inboundTrust", "isMfaAccepted", settings.mfa_accepted);
    set(
        "inboundTrust",
        "isCompliantDeviceAccepted",
        settings.compliant_device_accepted,
    );
}

/// Our view of a partner configuration: the trust settings, and whether B2B collaboration
/// inbound blocks all of the tenant's users or all applications.
fn cross_tenant_partner(tenant_id: &str, v: &Value) -> CrossTenantPartner {
    let flag = |property: &str, field: &str| v.get(property)?.get(field)?.as_bool();
    let blocks_all = |target: &str, all: &str| {
        v.pointer(&format!("/b2bCollaborationInbound/{target}"))
            .is_some_and(|t| {
                t.get("accessType").and_then(Value::as_str) == Some("blocked")
                    && t.get("targets")
                        .and_then(Value::as_array)
                        .is_some_and(|targets| {
                            targets
                                .iter()
                                .any(|x| x.get("target").and_then(Value::as_str) == Some(all))
                        })
            })
    };
    CrossTenantPartner {
        tenant_id: tenant_id.to_string(),
        settings: TrustSettings {
            automatic_redemption: flag("automaticUserConsentSettings", "inboundAllowed"),
            mfa_accepted: flag("inboundTrust", "isMfaAccepted"),
            compliant_device_accepted: flag("inboundTrust", "isCompliantDeviceAccepted"),
        },
        inbound_blocked: blocks_all("usersAndGroups", "AllUsers")
            || blocks_all("applications", "AllApplications"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_trust_and_blocks() {
        let v = json!({
            "tenantId": "t",
            "automaticUserConsentSettings": {"inboundAllowed": true, "outboundAllowed": false},
            "inboundTrust": {"isMfaAccepted": false, "isCompliantDeviceAccepted": null},
            "b2bCollaborationInbound": {
                "usersAndGroups": {"accessType": "blocked", "targets": [{"target": "AllUsers", "targetType": "user"}]},
                "applications": {"accessType": "allowed", "targets": [{"target": "AllApplications", "targetType": "application"}]}
            }
        });
        let p = cross_tenant_partner("t", &v);
        assert_eq!(p.settings.automatic_redemption, Some(true));
        assert_eq!(p.settings.mfa_accepted, Some(false));
        assert_eq!(p.settings.compliant_device_accepted, None);
        assert!(p.inbound_blocked);
        let open = cross_tenant_partner(
            "t",
            &json!({"tenantId": "t", "b2bCollaborationInbound": null}),
        );
        assert!(!open.inbound_blocked);
        assert_eq!(open.settings, TrustSettings::default());
    }

    #[test]
    fn settings_merge_into_the_existing_properties() {
        let mut body = Map::new();
        body.insert(
            "inboundTrust".into(),
            json!({"isMfaAccepted": false, "isHybridAzureADJoinedDeviceAccepted": true}),
        );
        apply(
            &mut body,
            &TrustSettings {
                mfa_accepted: Some(true),
                ..TrustSettings::default()
            },
        );
        assert_eq!(
            Value::Object(body),
            json!({"inboundTrust": {"isMfaAccepted": true, "isHybridAzureADJoinedDeviceAccepted": true}})
        );
    }
}
