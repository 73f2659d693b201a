//! Cross-tenant access: finding the tenant behind a domain
//! (`tenantRelationships/findTenantInformationByDomainName`) and our cross-tenant access
//! policy's partner configurations (`policies/crossTenantAccessPolicy/partners`).
//! Partner configurations are kept as Graph's JSON rather than typed: clients must send
//! complex properties back whole, so what matters is exactly the JSON Graph would hold.
//! They are stored and served, not enforced: invitations are refused only by the
//! cross-tenant block switch of `realities`.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::control::{Control, Inner};
use crate::directory::{Directory, new_id};
use crate::error::{GraphError, GraphResult};
use crate::graph::{METADATA, collection, json_body};
use crate::server::decode_component;

/// The tenant `Seed::Demo` finds behind litware.com ("Litware Inc.").
pub const LITWARE_TENANT_ID: &str = "3f0b6a2c-8d41-4e7a-b5c9-1a2d3e4f5a6b";
/// The tenant `Seed::Demo` finds behind fabrikam.com ("Fabrikam, Inc.").
pub const FABRIKAM_TENANT_ID: &str = "9c7e2d14-5b3a-4f86-a0d1-7e6f5c4b3a29";

const DEFAULT_DISPLAY_NAME: &str = "b2b-invites dev tenant";
const PARTNERS: &str = "/policies/crossTenantAccessPolicy/partners";
const FIND_TENANT: &str = "findTenantInformationByDomainName";

/// Another organization's Entra tenant, known only by what the lookup returns.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExternalTenant {
    pub tenant_id: String,
    pub display_name: String,
    /// Lowercased; the first is the tenant's default domain.
    pub domains: Vec<String>,
}

/// Kept in the directory (and `state.json`) so a restarted tenant keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct CrossTenant {
    /// The organization name the lookup reports for this tenant's own domains.
    pub own_display_name: String,
    pub external_tenants: Vec<ExternalTenant>,
    /// Lowercased tenant id -> the configuration as Graph returns it (every property).
    pub partners: BTreeMap<String, Value>,
}

impl Default for CrossTenant {
    fn default() -> Self {
        CrossTenant {
            own_display_name: DEFAULT_DISPLAY_NAME.to_string(),
            external_tenants: Vec::new(),
            partners: BTreeMap::new(),
        }
    }
}

impl CrossTenant {
    /// A domain is verified in one tenant only, so registering it again moves it.
    fn add_tenant(&mut self, tenant_id: &str, domain: &str, display_name: &str) {
        let domain = domain.trim().to_lowercase();
        for t in &mut self.external_tenants {
            t.domains.retain(|d| *d != domain);
        }
        self.external_tenants.retain(|t| !t.domains.is_empty());
        self.external_tenants.push(ExternalTenant {
            tenant_id: tenant_id.to_string(),
            display_name: display_name.to_string(),
            domains: vec![domain],
        });
    }
}

pub(crate) fn seed_demo(dir: &mut Directory) {
    let ct = &mut dir.cross_tenant;
    ct.own_display_name = "Contoso".to_string();
    ct.add_tenant(LITWARE_TENANT_ID, "litware.com", "Litware Inc.");
    ct.add_tenant(FABRIKAM_TENANT_ID, "fabrikam.com", "Fabrikam, Inc.");
}

pub(crate) fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route("/tenantRelationships/{call}", get(find_tenant))
        .route(PARTNERS, get(list_partners).post(create_partner))
        .route(
            &format!("{PARTNERS}/{{id}}"),
            get(get_partner).patch(patch_partner).delete(delete_partner),
        )
}

// ---- tenant lookup ----

/// The domain named by `findTenantInformationByDomainName(domainName='…')`, from the path
/// segment as sent (percent-encoded or not); `None` when the call is malformed.
fn domain_argument(segment: &str) -> Option<String> {
    // A path, unlike a query, keeps '+' literal.
    let call = decode_component(&segment.replace('+', "%2B")).ok()?;
    let call = strip_prefix_ci(&call, "microsoft.graph.").unwrap_or(&call);
    let args = strip_prefix_ci(call, FIND_TENANT)?
        .trim()
        .strip_prefix('(')?
        .strip_suffix(')')?;
    let (name, value) = args.split_once('=')?;
    if !name.trim().eq_ignore_ascii_case("domainName") {
        return None;
    }
    string_literal(value.trim()).filter(|d| !d.is_empty())
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// An OData string literal: single-quoted, a quote inside written twice.
fn string_literal(s: &str) -> Option<String> {
    let inner = s.strip_prefix('\'')?.strip_suffix('\'')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\'' && chars.next() != Some('\'') {
            return None;
        }
        out.push(c);
    }
    Some(out)
}

fn tenant_information(dir: &Directory, domain: &str) -> Option<Value> {
    let info = |tenant_id: &str, display_name: &str, default_domain: &str| {
        json!({
            "@odata.context": format!("{METADATA}#microsoft.graph.tenantInformation"),
            "tenantId": tenant_id,
            "displayName": display_name,
            "defaultDomainName": default_domain,
            "federationBrandName": null,
        })
    };
    // An unverified domain proves nothing about who owns it, so Graph does not resolve it.
    let ours = dir
        .domains
        .iter()
        .any(|d| d.is_verified && d.id.eq_ignore_ascii_case(domain));
    if ours {
        let default = dir
            .domains
            .iter()
            .find(|d| d.is_default)
            .map_or(dir.initial_domain.as_str(), |d| d.id.as_str());
        return Some(info(
            &dir.tenant_id,
            &dir.cross_tenant.own_display_name,
            default,
        ));
    }
    dir.cross_tenant
        .external_tenants
        .iter()
        .find(|t| t.domains.iter().any(|d| d.eq_ignore_ascii_case(domain)))
        .map(|t| info(&t.tenant_id, &t.display_name, &t.domains[0]))
}

// The segment comes from the raw URI: axum's `Path` would answer a bad percent-encoding
// itself, without Graph's error body.
async fn find_tenant(State(inner): State<Arc<Inner>>, uri: Uri) -> GraphResult<Json<Value>> {
    let segment = uri.path().rsplit('/').next().unwrap_or("");
    let domain = domain_argument(segment).ok_or_else(|| {
        let named = strip_prefix_ci(segment, FIND_TENANT).is_some()
            || strip_prefix_ci(segment, "microsoft.graph.").is_some();
        if named {
            GraphError::invalid(format!(
                "The function call '{segment}' is malformed: expected {FIND_TENANT}(domainName='<domain>')."
            ))
        } else {
            GraphError::invalid(format!("Resource not found for the segment '{segment}'."))
        }
    })?;
    let dir = inner.dir();
    tenant_information(&dir, &domain)
        .map(Json)
        .ok_or_else(|| GraphError::not_found(&domain))
}

// ---- the partner configuration's schema ----

/// How Graph's v1.0 schema types a property, as far as a request body can be checked.
#[derive(Clone, Copy)]
enum Shape {
    Bool,
    Str,
    /// An enum type's name and members.
    Enum(&'static str, &'static [&'static str]),
    /// A complex type's name and properties.
    Complex(&'static str, &'static [(&'static str, Shape)]),
    Collection(&'static Shape),
}

const TARGET: Shape = Shape::Complex(
    "microsoft.graph.crossTenantAccessPolicyTarget",
    &[
        ("target", Shape::Str),
        (
            "targetType",
            Shape::Enum(
                "microsoft.graph.crossTenantAccessPolicyTargetType",
                &["user", "group", "application", "unknownFutureValue"],
            ),
        ),
    ],
);

const TARGET_CONFIGURATION: Shape = Shape::Complex(
    "microsoft.graph.crossTenantAccessPolicyTargetConfiguration",
    &[
        (
            "accessType",
            Shape::Enum(
                "microsoft.graph.crossTenantAccessPolicyTargetConfigurationAccessType",
                &["allowed", "blocked", "unknownFutureValue"],
            ),
        ),
        ("targets", Shape::Collection(&TARGET)),
    ],
);

const B2B_SETTING: Shape = Shape::Complex(
    "microsoft.graph.crossTenantAccessPolicyB2BSetting",
    &[
        ("usersAndGroups", TARGET_CONFIGURATION),
        ("applications", TARGET_CONFIGURATION),
    ],
);

const PARTNER_TYPE: &str = "microsoft.graph.crossTenantAccessPolicyConfigurationPartner";

const PARTNER: &[(&str, Shape)] = &[
    ("tenantId", Shape::Str),
    (
        "inboundTrust",
        Shape::Complex(
            "microsoft.graph.crossTenantAccessPolicyInboundTrust",
            &[
                ("isMfaAccepted", Shape::Bool),
                ("isCompliantDeviceAccepted", Shape::Bool),
                ("isHybridAzureADJoinedDeviceAccepted", Shape::Bool),
            ],
        ),
    ),
    (
        "automaticUserConsentSettings",
        Shape::Complex(
            "microsoft.graph.inboundOutboundPolicyConfiguration",
            &[
                ("inboundAllowed", Shape::Bool),
                ("outboundAllowed", Shape::Bool),
            ],
        ),
    ),
    ("b2bCollaborationInbound", B2B_SETTING),
    ("b2bCollaborationOutbound", B2B_SETTING),
    ("b2bDirectConnectInbound", B2B_SETTING),
    ("b2bDirectConnectOutbound", B2B_SETTING),
    ("isServiceProvider", Shape::Bool),
    ("isInMultiTenantOrganization", Shape::Bool),
];

/// `value` as Graph stores it: enum members in their canonical case, and a complex value's
/// unsent properties null, which is why a partial complex value in a PATCH resets the rest.
fn conform(shape: Shape, value: &Value, property: &str) -> GraphResult<Value> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let mismatch = |ty: &str| {
        GraphError::invalid(format!(
            "Cannot convert the literal '{value}' to the expected type '{ty}' of property '{property}'."
        ))
    };
    match shape {
        Shape::Bool => value
            .as_bool()
            .map(Value::Bool)
            .ok_or_else(|| mismatch("Edm.Boolean")),
        Shape::Str => value
            .as_str()
            .map(|s| json!(s))
            .ok_or_else(|| mismatch("Edm.String")),
        Shape::Enum(ty, members) => value
            .as_str()
            .and_then(|s| members.iter().find(|m| m.eq_ignore_ascii_case(s)))
            .map(|m| json!(m))
            .ok_or_else(|| mismatch(ty)),
        Shape::Collection(item) => value
            .as_array()
            .ok_or_else(|| mismatch("Collection"))?
            .iter()
            .map(|v| conform(*item, v, property))
            .collect::<GraphResult<Vec<_>>>()
            .map(Value::Array),
        Shape::Complex(ty, props) => {
            let given = value.as_object().ok_or_else(|| mismatch(ty))?;
            let mut out = checked(ty, props, given)?;
            for (name, _) in props {
                out.entry(*name).or_insert(Value::Null);
            }
            Ok(Value::Object(out))
        }
    }
}

/// The properties sent, each checked against `props`; annotations (`@odata.type`) dropped.
fn checked(
    ty: &str,
    props: &[(&str, Shape)],
    given: &Map<String, Value>,
) -> GraphResult<Map<String, Value>> {
    let mut out = Map::new();
    for (name, value) in given.iter().filter(|(name, _)| !name.contains('@')) {
        let (_, shape) = props.iter().find(|(p, _)| p == name).ok_or_else(|| {
            GraphError::invalid(format!(
                "The property '{name}' does not exist on type '{ty}'. Make sure to only use property names that are defined by the type or mark the type as open type."
            ))
        })?;
        out.insert(name.clone(), conform(*shape, value, name)?);
    }
    Ok(out)
}

/// A configuration with every property present, as Graph returns one.
fn complete(mut config: Map<String, Value>) -> Value {
    for (name, _) in PARTNER {
        config.entry(*name).or_insert(Value::Null);
    }
    Value::Object(config)
}

/// A tenant id in Graph's form: a lowercase hyphenated GUID.
fn guid(s: &str) -> Option<String> {
    uuid::Uuid::try_parse(s)
        .ok()
        .map(|u| u.hyphenated().to_string())
}

fn partner_key(id: &str) -> String {
    guid(id.trim()).unwrap_or_else(|| id.trim().to_lowercase())
}

fn entity(config: Value) -> Value {
    let mut v = config;
    if let Value::Object(m) = &mut v {
        m.insert(
            "@odata.context".into(),
            json!(format!(
                "{METADATA}#policies/crossTenantAccessPolicy/partners/$entity"
            )),
        );
    }
    v
}

// ---- partner configurations ----

async fn list_partners(State(inner): State<Arc<Inner>>) -> Response {
    let values = inner
        .dir()
        .cross_tenant
        .partners
        .values()
        .cloned()
        .collect();
    collection(
        format!("{METADATA}#policies/crossTenantAccessPolicy/partners"),
        values,
        None,
        None,
    )
}

async fn create_partner(State(inner): State<Arc<Inner>>, body: Bytes) -> GraphResult<Response> {
    let body = json_body(&body)?;
    let mut config = checked(PARTNER_TYPE, PARTNER, &body)?;
    let tenant_id = match config.get("tenantId") {
        Some(Value::String(s)) => guid(s).ok_or_else(|| {
            GraphError::bad_request(format!(
                "Invalid value '{s}' for property 'tenantId': a tenant id is a GUID."
            ))
        })?,
        _ => {
            return Err(GraphError::bad_request(
                "The property 'tenantId' is required to create a partner configuration.",
            ));
        }
    };
    config.insert("tenantId".into(), json!(tenant_id));
    let config = complete(config);
    match inner.dir().cross_tenant.partners.entry(tenant_id) {
        Entry::Occupied(e) => Err(GraphError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "A partner configuration for tenant '{}' already exists.",
                e.key()
            ),
        )),
        Entry::Vacant(e) => {
            e.insert(config.clone());
            Ok((StatusCode::CREATED, Json(entity(config))).into_response())
        }
    }
}

async fn get_partner(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
) -> GraphResult<Json<Value>> {
    inner
        .dir()
        .cross_tenant
        .partners
        .get(&partner_key(&id))
        .map(|c| Json(entity(c.clone())))
        .ok_or_else(|| GraphError::not_found(&id))
}

async fn patch_partner(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    body: Bytes,
) -> GraphResult<StatusCode> {
    let body = json_body(&body)?;
    let changes = checked(PARTNER_TYPE, PARTNER, &body)?;
    let key = partner_key(&id);
    let mut dir = inner.dir();
    let config = dir
        .cross_tenant
        .partners
        .get_mut(&key)
        .and_then(Value::as_object_mut)
        .ok_or_else(|| GraphError::not_found(&id))?;
    for (name, value) in changes {
        if name == "tenantId" {
            if value.as_str().and_then(guid).as_deref() != Some(key.as_str()) {
                return Err(GraphError::bad_request(
                    "The tenantId of a partner configuration cannot be changed.",
                ));
            }
            continue;
        }
        config.insert(name, value);
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_partner(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
) -> GraphResult<StatusCode> {
    inner
        .dir()
        .cross_tenant
        .partners
        .remove(&partner_key(&id))
        .map(|_| StatusCode::NO_CONTENT)
        .ok_or_else(|| GraphError::not_found(&id))
}

// ---- seeding from tests ----

impl Control {
    /// Registers another organization's tenant, found by
    /// `findTenantInformationByDomainName` under `domain`, and returns its new tenant id.
    /// A domain already registered to another external tenant moves to the new one; this
    /// tenant's own verified domains always resolve to itself.
    pub fn add_external_tenant(&self, domain: &str, display_name: &str) -> String {
        let tenant_id = new_id();
        self.inner
            .dir()
            .cross_tenant
            .add_tenant(&tenant_id, domain, display_name);
        tenant_id
    }

    /// Our partner configuration for `tenant_id`, as `GET
    /// /policies/crossTenantAccessPolicy/partners/{id}` returns it (without `@odata.context`).
    pub fn cross_tenant_partner(&self, tenant_id: &str) -> Option<serde_json::Value> {
        self.inner
            .dir()
            .cross_tenant
            .partners
            .get(&partner_key(tenant_id))
            .cloned()
    }

    /// Creates or replaces our partner configuration for `tenant_id`, outside Graph's request
    /// log and limits. `value`'s properties are stored unchecked (to seed shapes Graph's
    /// validation would refuse); missing ones are null and `tenantId` is set from `tenant_id`.
    ///
    /// # Panics
    ///
    /// When `value` is not a JSON object.
    pub fn set_cross_tenant_partner(&self, tenant_id: &str, value: serde_json::Value) {
        let Value::Object(mut config) = value else {
            panic!("a partner configuration is a JSON object, not {value}");
        };
        let key = partner_key(tenant_id);
        config.insert("tenantId".into(), json!(key));
        self.inner
            .dir()
            .cross_tenant
            .partners
            .insert(key, complete(config));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domain_argument_is_an_odata_string_literal() {
        let arg = |s: &str| domain_argument(s);
        assert_eq!(
            arg("findTenantInformationByDomainName(domainName='litware.com')").as_deref(),
            Some("litware.com")
        );
        assert_eq!(
            arg("findTenantInformationByDomainName(domainName=%27Litware.COM%27)").as_deref(),
            Some("Litware.COM")
        );
        assert_eq!(
            arg("FindTenantInformationByDomainName( domainName = 'a''b.com' )").as_deref(),
            Some("a'b.com")
        );
        assert_eq!(
            arg("microsoft.graph.findTenantInformationByDomainName(domainName='x.com')").as_deref(),
            Some("x.com")
        );
        for bad in [
            "findTenantInformationByDomainName(domainName=litware.com)",
            "findTenantInformationByDomainName(domainName='a'b.com')",
            "findTenantInformationByDomainName(domainName='')",
            "findTenantInformationByDomainName(domain='litware.com')",
            "findTenantInformationByDomainName(domainName='litware.com'",
            "findTenantInformationByDomainName",
            "findTenantInformationByDomainName(domainName='%ZZ')",
            "multiTenantOrganization",
        ] {
            assert_eq!(arg(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_complex_value_is_stored_whole_with_unsent_properties_null() {
        let body = json!({
            "tenantId": "3F0B6A2C-8D41-4E7A-B5C9-1A2D3E4F5A6B",
            "inboundTrust": {"isMfaAccepted": true},
            "b2bCollaborationInbound": {
                "usersAndGroups": {"accessType": "Blocked", "targets": [{"target": "AllUsers", "targetType": "user"}]}
            },
        });
        let m = checked(PARTNER_TYPE, PARTNER, body.as_object().unwrap()).unwrap();
        assert_eq!(
            m["inboundTrust"],
            json!({"isMfaAccepted": true, "isCompliantDeviceAccepted": null, "isHybridAzureADJoinedDeviceAccepted": null})
        );
        assert_eq!(
            m["b2bCollaborationInbound"]["usersAndGroups"]["accessType"],
            "blocked"
        );
        assert!(m["b2bCollaborationInbound"]["applications"].is_null());
        assert_eq!(m.len(), 3, "top-level properties are not filled in: {m:?}");
        assert_eq!(
            guid("3F0B6A2C-8D41-4E7A-B5C9-1A2D3E4F5A6B").as_deref(),
            Some(LITWARE_TENANT_ID)
        );
    }

    #[test]
    fn unknown_properties_and_wrong_types_are_refused() {
        for body in [
            json!({"tenantId": LITWARE_TENANT_ID, "tenantRestrictions": {}}),
            json!({"inboundTrust": {"isMFAAccepted": true}}),
            json!({"inboundTrust": true}),
            json!({"isServiceProvider": "yes"}),
            json!({"b2bCollaborationInbound": {"usersAndGroups": {"accessType": "maybe"}}}),
            json!({"b2bCollaborationInbound": {"usersAndGroups": {"targets": {}}}}),
        ] {
            let e = checked(PARTNER_TYPE, PARTNER, body.as_object().unwrap()).unwrap_err();
            assert_eq!(
                (e.status, e.code.as_str()),
                (StatusCode::BAD_REQUEST, "BadRequest")
            );
        }
    }
}
