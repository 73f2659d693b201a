//! The Microsoft Graph v1.0 routes, with Graph's response shapes.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::control::Inner;
use crate::directory::{Directory, InviteRequest, ObjectRef, payload_error};
use crate::error::{GraphError, GraphResult};
use crate::filter::{self, Expr, FilterError, Kind, Schema};
use crate::model::*;
use crate::realities;
use crate::server::{decode_component, graph_time};

pub(crate) const METADATA: &str = "https://graph.microsoft.com/v1.0/$metadata";

pub(crate) fn router() -> Router<Arc<Inner>> {
    Router::new()
        .route("/invitations", post(invite))
        .route("/users", get(list_users))
        .route(
            "/users/{id}",
            get(get_user).patch(patch_user).delete(delete_user),
        )
        .route("/users/{id}/sponsors", get(list_sponsors))
        .route("/users/{id}/sponsors/$ref", post(add_sponsor))
        .route(
            "/users/{id}/sponsors/{sid}/$ref",
            axum::routing::delete(remove_sponsor),
        )
        .route("/groups", get(list_groups))
        .route("/groups/{id}", get(get_group).patch(patch_group))
        .route("/groups/{id}/members", get(list_members))
        .route("/groups/{id}/members/$ref", post(add_member))
        .route(
            "/groups/{id}/members/{mid}/$ref",
            axum::routing::delete(remove_member),
        )
        .route("/servicePrincipals", get(list_sps))
        .route("/servicePrincipals/{id}", get(get_sp))
        .route(
            "/servicePrincipals/{id}/appRoleAssignedTo",
            get(list_assigned_to).post(assign_app_role),
        )
        .route(
            "/roleManagement/directory/roleAssignments",
            get(list_role_assignments).post(assign_role),
        )
        .route("/domains", get(domains))
        .merge(crate::cross_tenant::routes())
        .merge(crate::removals::routes())
        .fallback(unknown_segment)
}

async fn unknown_segment(uri: axum::http::Uri) -> GraphError {
    let segment = uri
        .path()
        .trim_start_matches("/v1.0")
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    GraphError::invalid(format!("Resource not found for the segment '{segment}'."))
}

// ---- query options ----

struct Query {
    pairs: Vec<(String, String)>,
}

const SYSTEM_OPTIONS: &[&str] = &[
    "$filter",
    "$select",
    "$top",
    "$skiptoken",
    "$count",
    "$orderby",
    "$search",
    "$expand",
    "$skip",
    "$format",
];

impl Query {
    fn parse(raw: Option<&str>) -> GraphResult<Query> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let bad = || GraphError::invalid("The query string is not correctly percent-encoded.");
            let k = decode_component(k).map_err(|_| bad())?;
            let v = decode_component(v).map_err(|_| bad())?;
            let k = if k.starts_with('$') {
                let lower = k.to_ascii_lowercase();
                if !SYSTEM_OPTIONS.contains(&lower.as_str()) {
                    return Err(GraphError::invalid(format!(
                        "Query option '{k}' is not allowed. To allow it, set the 'AllowedQueryOptions' property on EnableQueryAttribute or QueryValidationSettings."
                    )));
                }
                lower
            } else {
                k
            };
            if k.starts_with('$') && pairs.iter().any(|(p, _)| *p == k) {
                return Err(GraphError::invalid(format!(
                    "Query option '{k}' was specified more than once, but it must be specified at most once."
                )));
            }
            pairs.push((k, v));
        }
        Ok(Query { pairs })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn top(&self) -> GraphResult<usize> {
        match self.get("$top") {
            None => Ok(100),
            Some(t) => match t.trim().parse::<i64>() {
                Ok(n) if (1..=999).contains(&n) => Ok(n as usize),
                _ => Err(GraphError::bad_request(format!(
                    "Invalid page size specified: '{t}'. Must be between 1 and 999 inclusive."
                ))),
            },
        }
    }

    fn refuse(&self, options: &[&str]) -> GraphResult<()> {
        for o in options {
            if self.get(o).is_some() {
                return Err(GraphError::new(
                    StatusCode::BAD_REQUEST,
                    "Request_UnsupportedQuery",
                    format!(
                        "Unsupported Query. '{o}' is not supported by the dev tenant on this resource."
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The `@odata.nextLink` for this request continuing at `token`.
    fn next_link(&self, inner: &Inner, path: &str, token: &str) -> String {
        let enc = |s: &str| {
            url::form_urlencoded::byte_serialize(s.as_bytes())
                .collect::<String>()
                .replace('+', "%20")
        };
        let mut q: Vec<String> = self
            .pairs
            .iter()
            .filter(|(k, _)| k != "$skiptoken")
            .map(|(k, v)| format!("{}={}", enc(k).replace("%24", "$"), enc(v)))
            .collect();
        q.push(format!("$skiptoken={token}"));
        format!("{}/v1.0{path}?{}", inner.authority, q.join("&"))
    }

    fn cursor(&self, kind: &str) -> GraphResult<u64> {
        let Some(t) = self.get("$skiptoken") else {
            return Ok(0);
        };
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.strip_prefix(kind)
                    .and_then(|r| r.strip_prefix(':'))
                    .and_then(|n| n.parse().ok())
            })
            .ok_or_else(|| GraphError::bad_request("The specified page token value has expired or is invalid and can no longer be included in your request."))
    }

    fn consistency_checks(&self, headers: &HeaderMap) -> GraphResult<bool> {
        let eventual = headers
            .get("consistencylevel")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("eventual"));
        let count = match self.get("$count") {
            None => false,
            Some(c) if c.eq_ignore_ascii_case("true") => true,
            Some(c) if c.eq_ignore_ascii_case("false") => false,
            Some(c) => {
                return Err(GraphError::invalid(format!(
                    "'{c}' is not a valid count option."
                )));
            }
        };
        if count && !eventual {
            return Err(GraphError::bad_request(
                "$count is not currently supported without the ConsistencyLevel: eventual header.",
            ));
        }
        Ok(count)
    }
}

fn token_for(kind: &str, n: u64) -> String {
    crate::crypto::b64url(format!("{kind}:{n}").as_bytes())
}

fn filter_error(e: FilterError) -> GraphError {
    match e {
        FilterError::Syntax(m) => GraphError::bad_request(m),
        FilterError::Unsupported(m) => {
            GraphError::new(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", m)
        }
    }
}

pub(crate) fn collection(
    context: String,
    values: Vec<Value>,
    next: Option<String>,
    count: Option<usize>,
) -> Response {
    let mut m = Map::new();
    m.insert("@odata.context".into(), Value::String(context));
    if let Some(c) = count {
        m.insert("@odata.count".into(), json!(c));
    }
    if let Some(n) = next {
        m.insert("@odata.nextLink".into(), Value::String(n));
    }
    m.insert("value".into(), Value::Array(values));
    Json(Value::Object(m)).into_response()
}

pub(crate) fn json_body(body: &[u8]) -> GraphResult<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(GraphError::invalid(
            "Write requests (excluding DELETE) must contain the Content-Type header declaration.",
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(payload_error()),
    }
}

fn string_field(body: &Map<String, Value>, name: &str) -> GraphResult<Option<String>> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(GraphError::invalid(format!(
            "Cannot convert the literal '{other}' to the expected type 'Edm.String' of property '{name}'."
        ))),
    }
}

fn bool_field(body: &Map<String, Value>, name: &str) -> GraphResult<bool> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(GraphError::invalid(format!(
            "Cannot convert the literal '{other}' to the expected type 'Edm.Boolean' of property '{name}'."
        ))),
    }
}

/// The object id at the end of an `@odata.id` reference URL.
fn reference_id(body: &Map<String, Value>) -> GraphResult<String> {
    let url = body
        .get("@odata.id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            GraphError::bad_request("The request body must contain a reference '@odata.id'.")
        })?;
    let parsed = url::Url::parse(url)
        .map_err(|_| GraphError::bad_request(format!("Invalid object identifier '{url}'.")))?;
    let segments: Vec<&str> = parsed
        .path_segments()
        .map(|s| s.filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    match segments.as_slice() {
        [.., kind, id]
            if [
                "directoryObjects",
                "users",
                "groups",
                "servicePrincipals",
                "contacts",
                "devices",
            ]
            .iter()
            .any(|k| k.eq_ignore_ascii_case(kind)) =>
        {
            Ok(percent_decode(id))
        }
        _ => Err(GraphError::bad_request(format!(
            "Invalid object identifier '{url}'."
        ))),
    }
}

fn percent_decode(s: &str) -> String {
    decode_component(&s.replace('+', "%2B")).unwrap_or_else(|_| s.to_string())
}

// ---- users ----

const USER_FILTER: Schema = Schema {
    entity: "user",
    props: &[
        ("id", Kind::Str),
        ("mail", Kind::Str),
        ("userPrincipalName", Kind::Str),
        ("displayName", Kind::Str),
        ("givenName", Kind::Str),
        ("surname", Kind::Str),
        ("userType", Kind::Str),
        ("creationType", Kind::Str),
        ("externalUserState", Kind::Str),
        ("companyName", Kind::Str),
        ("department", Kind::Str),
        ("jobTitle", Kind::Str),
        ("employeeId", Kind::Str),
        ("accountEnabled", Kind::Bool),
        ("otherMails", Kind::Collection),
        ("proxyAddresses", Kind::Collection),
    ],
};

const DEFAULT_USER_PROPS: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];

/// Properties of Graph's user type the emulator knows; those it does not model are null.
const USER_PROPS: &[&str] = &[
    "id",
    "accountEnabled",
    "ageGroup",
    "businessPhones",
    "city",
    "companyName",
    "country",
    "createdDateTime",
    "creationType",
    "department",
    "displayName",
    "employeeHireDate",
    "employeeId",
    "employeeType",
    "externalUserState",
    "externalUserStateChangeDateTime",
    "givenName",
    "identities",
    "jobTitle",
    "mail",
    "mailNickname",
    "mobilePhone",
    "officeLocation",
    "onPremisesSyncEnabled",
    "otherMails",
    "postalCode",
    "preferredLanguage",
    "proxyAddresses",
    "state",
    "streetAddress",
    "surname",
    "usageLocation",
    "userPrincipalName",
    "userType",
];

fn user_prop(u: &User, prop: &str, initial_domain: &str) -> Value {
    let s = |v: &Option<String>| v.clone().map(Value::String).unwrap_or(Value::Null);
    let list = |v: &Vec<String>| Value::Array(v.iter().cloned().map(Value::String).collect());
    match prop {
        "id" => Value::String(u.id.clone()),
        "accountEnabled" => Value::Bool(u.account_enabled),
        "businessPhones" => list(&u.business_phones),
        "companyName" => s(&u.company_name),
        "createdDateTime" => Value::String(graph_time(u.created_date_time)),
        "creationType" => s(&u.creation_type),
        "department" => s(&u.department),
        "displayName" => s(&u.display_name),
        "employeeId" => s(&u.employee_id),
        "externalUserState" => u
            .external_user_state
            .map(|x| Value::String(x.as_str().into()))
            .unwrap_or(Value::Null),
        "externalUserStateChangeDateTime" => u
            .external_user_state_change_date_time
            .map(|t| Value::String(graph_time(t)))
            .unwrap_or(Value::Null),
        "givenName" => s(&u.given_name),
        "identities" => {
            let issuer = if u.user_type == UserType::Guest {
                "ExternalAzureAD".to_string()
            } else {
                initial_domain.to_string()
            };
            json!([{"signInType": "userPrincipalName", "issuer": issuer, "issuerAssignedId": u.user_principal_name}])
        }
        "jobTitle" => s(&u.job_title),
        "mail" => s(&u.mail),
        "mailNickname" => Value::String(
            u.user_principal_name
                .split('@')
                .next()
                .unwrap_or("")
                .to_string(),
        ),
        "mobilePhone" => s(&u.mobile_phone),
        "officeLocation" => s(&u.office_location),
        "onPremisesSyncEnabled" => Value::Null,
        "otherMails" => list(&u.other_mails),
        "preferredLanguage" => s(&u.preferred_language),
        "proxyAddresses" => list(&u.proxy_addresses),
        "surname" => s(&u.surname),
        "userPrincipalName" => Value::String(u.user_principal_name.clone()),
        "userType" => Value::String(u.user_type.as_str().into()),
        _ => Value::Null,
    }
}

/// `$select` resolved to canonical property names (`id` always included).
fn parse_select(
    q: &Query,
    known: &[&'static str],
    entity: &str,
) -> GraphResult<Option<Vec<&'static str>>> {
    let Some(raw) = q.get("$select") else {
        return Ok(None);
    };
    let mut out: Vec<&'static str> = Vec::new();
    for name in raw.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(GraphError::bad_request(
                "Invalid $select: an empty property name.",
            ));
        }
        let p = known
            .iter()
            .find(|k| k.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                GraphError::bad_request(format!(
                    "Could not find a property named '{name}' on type 'microsoft.graph.{entity}'."
                ))
            })?;
        if !out.contains(p) {
            out.push(p);
        }
    }
    Ok(Some(out))
}

fn render_user(u: &User, select: Option<&[&'static str]>, initial_domain: &str) -> Value {
    let mut m = Map::new();
    let props = select.unwrap_or(DEFAULT_USER_PROPS);
    for p in props {
        m.insert((*p).to_string(), user_prop(u, p, initial_domain));
    }
    m.entry("id").or_insert_with(|| Value::String(u.id.clone()));
    Value::Object(m)
}

fn select_suffix(select: &Option<Vec<&'static str>>) -> String {
    select
        .as_ref()
        .map(|s| format!("({})", s.join(",")))
        .unwrap_or_default()
}

async fn list_users(
    State(inner): State<Arc<Inner>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> GraphResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    q.refuse(&["$orderby", "$search", "$expand", "$skip"])?;
    let count = q.consistency_checks(&headers)?;
    let top = q.top()?;
    let select = parse_select(&q, USER_PROPS, "user")?;
    let filter: Option<Expr> = q
        .get("$filter")
        .map(|f| filter::parse(f, &USER_FILTER))
        .transpose()
        .map_err(filter_error)?;
    let after = q.cursor("u")?;
    let view = realities::listing_view(&inner);
    let dir = inner.dir();
    let (page, more) = dir.list_users(filter.as_ref(), after, top, &view);
    let values: Vec<Value> = page
        .iter()
        .map(|u| render_user(u, select.as_deref(), &dir.initial_domain))
        .collect();
    let total = (count && after == 0).then(|| {
        dir.users()
            .filter(|u| filter.as_ref().is_none_or(|f| f.matches(view(u).as_ref())))
            .count()
    });
    drop(dir);
    let next = more.map(|last| q.next_link(&inner, "/users", &token_for("u", last)));
    Ok(collection(
        format!("{METADATA}#users{}", select_suffix(&select)),
        values,
        next,
        total,
    ))
}

async fn get_user(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> GraphResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let select = parse_select(&q, USER_PROPS, "user")?;
    realities::replicated(&inner, &[&id])?;
    let dir = inner.dir();
    let u = dir.user(&id).ok_or_else(|| GraphError::not_found(&id))?;
    let mut v = render_user(u, select.as_deref(), &dir.initial_domain);
    if let Value::Object(m) = &mut v {
        m.insert(
            "@odata.context".into(),
            Value::String(format!(
                "{METADATA}#users{}/$entity",
                select_suffix(&select)
            )),
        );
    }
    Ok(Json(v).into_response())
}

async fn patch_user(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    body: Bytes,
) -> GraphResult<StatusCode> {
    realities::replicated(&inner, &[&id])?;
    let body = json_body(&body)?;
    inner.dir().patch_user(&id, &body)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_user(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
) -> GraphResult<StatusCode> {
    realities::replicated(&inner, &[&id])?;
    inner.dir().delete_user(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

fn render_object(dir: &Directory, obj: ObjectRef<'_>, select: Option<&[&'static str]>) -> Value {
    match obj {
        ObjectRef::User(u) => {
            let mut v = render_user(u, select, &dir.initial_domain);
            if let Value::Object(m) = &mut v {
                m.insert("@odata.type".into(), json!("#microsoft.graph.user"));
            }
            v
        }
        ObjectRef::Group(g) => {
            let mut v = render_group(g);
            if let Value::Object(m) = &mut v {
                m.insert("@odata.type".into(), json!("#microsoft.graph.group"));
            }
            v
        }
        ObjectRef::ServicePrincipal(s) => {
            let mut v = render_sp(s);
            if let Value::Object(m) = &mut v {
                m.insert(
                    "@odata.type".into(),
                    json!("#microsoft.graph.servicePrincipal"),
                );
            }
            v
        }
    }
}

/// Lists directory objects by id with `$top` paging.
fn object_page(
    inner: &Inner,
    q: &Query,
    path: &str,
    context: &str,
    ids: &[String],
) -> GraphResult<Response> {
    let top = q.top()?;
    let select = parse_select(q, USER_PROPS, "directoryObject")?;
    let start = q.cursor("o")? as usize;
    let dir = inner.dir();
    let values: Vec<Value> = ids
        .iter()
        .skip(start)
        .take(top)
        .filter_map(|id| {
            dir.object(id)
                .map(|o| render_object(&dir, o, select.as_deref()))
        })
        .collect();
    drop(dir);
    let next = (ids.len() > start + top)
        .then(|| q.next_link(inner, path, &token_for("o", (start + top) as u64)));
    Ok(collection(
        format!("{METADATA}#{context}"),
        values,
        next,
        None,
    ))
}

async fn list_sponsors(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> GraphResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let sponsors = inner
        .dir()
        .user(&id)
        .map(|u| u.sponsors.clone())
        .ok_or_else(|| GraphError::not_found(&id))?;
    object_page(
        &inner,
        &q,
        &format!("/users/{id}/sponsors"),
        "directoryObjects",
        &sponsors,
    )
}

async fn add_sponsor(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    body: Bytes,
) -> GraphResult<StatusCode> {
    let body = json_body(&body)?;
    let sponsor = reference_id(&body)?;
    realities::replicated(&inner, &[&id, &sponsor])?;
    inner.dir().add_sponsor(&id, &sponsor)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_sponsor(
    State(inner): State<Arc<Inner>>,
    Path((id, sid)): Path<(String, String)>,
) -> GraphResult<StatusCode> {
    inner.dir().remove_sponsor(&id, &sid)?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- invitations ----

const INVITATION_FIELDS: &[&str] = &[
    "@odata.type",
    "id",
    "invitedUserEmailAddress",
    "inviteRedirectUrl",
    "invitedUserDisplayName",
    "invitedUserType",
    "sendInvitationMessage",
    "invitedUserMessageInfo",
    "resetRedemption",
    "invitedUser",
    "invitedUserSponsors",
    "inviteRedeemUrl",
    "status",
];

async fn invite(State(inner): State<Arc<Inner>>, body: Bytes) -> GraphResult<Response> {
    let body = json_body(&body)?;
    if let Some(k) = body
        .keys()
        .find(|k| !INVITATION_FIELDS.contains(&k.as_str()))
    {
        return Err(GraphError::invalid(format!(
            "Property '{k}' does not exist as a declared property or extension property."
        )));
    }
    let email = string_field(&body, "invitedUserEmailAddress")?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| GraphError::invalid("The property 'invitedUserEmailAddress' is required."))?
        .trim()
        .to_string();
    let redirect = string_field(&body, "inviteRedirectUrl")?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| GraphError::invalid("The property 'inviteRedirectUrl' is required."))?;
    if url::Url::parse(&redirect).map(|u| u.scheme().starts_with("http")) != Ok(true) {
        return Err(GraphError::invalid(format!(
            "The inviteRedirectUrl '{redirect}' is not a valid absolute URL."
        )));
    }
    let user_type = match string_field(&body, "invitedUserType")?.as_deref() {
        None | Some("Guest") | Some("guest") => UserType::Guest,
        Some("Member") | Some("member") => UserType::Member,
        Some(other) => {
            return Err(GraphError::invalid(format!(
                "The invitedUserType '{other}' is invalid; use 'Guest' or 'Member'."
            )));
        }
    };
    let send = bool_field(&body, "sendInvitationMessage")?;
    let reset = bool_field(&body, "resetRedemption")?;
    let info = match body.get("invitedUserMessageInfo") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(payload_error()),
    };
    let message = string_field(&info, "customizedMessageBody")?;
    let language = string_field(&info, "messageLanguage")?;
    let cc_raw = match info.get("ccRecipients") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(payload_error()),
    };
    let cc: Vec<String> = cc_raw
        .iter()
        .filter_map(|r| r.pointer("/emailAddress/address").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    if cc.len() > 1 {
        return Err(GraphError::invalid(
            "Only one cc recipient is supported in invitedUserMessageInfo.ccRecipients.",
        ));
    }
    let invited_user_id = body
        .get("invitedUser")
        .and_then(|u| u.get("id"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let sponsors = match body.get("invitedUserSponsors") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| match s {
                Value::Object(m) => m
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .map(Ok)
                    .unwrap_or_else(|| reference_id(m)),
                _ => Err(payload_error()),
            })
            .collect::<GraphResult<Vec<String>>>()?,
        Some(_) => return Err(payload_error()),
    };
    let display_name = string_field(&body, "invitedUserDisplayName")?;
    let req = InviteRequest {
        email: email.clone(),
        display_name: display_name.clone(),
        user_type,
        send_message: send,
        message: message.clone(),
        message_language: language.clone(),
        cc: cc.clone(),
        reset_redemption: reset,
        invited_user_id,
        sponsors,
    };
    realities::cross_tenant(&inner, &email)?;
    let now = inner.now();
    let outcome = inner.dir().invite(req, now)?;
    let cc_json: Vec<Value> = cc_raw
        .iter()
        .map(|r| {
            json!({"emailAddress": {
                "name": r.pointer("/emailAddress/name").cloned().unwrap_or(Value::Null),
                "address": r.pointer("/emailAddress/address").cloned().unwrap_or(Value::Null),
            }})
        })
        .collect();
    let body = json!({
        "@odata.context": format!("{METADATA}#invitations/$entity"),
        "id": crate::directory::new_id(),
        "inviteRedeemUrl": outcome.redeem_url,
        "invitedUserDisplayName": display_name,
        "invitedUserType": user_type.as_str(),
        "invitedUserEmailAddress": email,
        "sendInvitationMessage": send,
        "resetRedemption": reset,
        "inviteRedirectUrl": redirect,
        "status": outcome.status,
        "invitedUserMessageInfo": {
            "messageLanguage": language,
            "customizedMessageBody": message,
            "ccRecipients": cc_json,
        },
        "invitedUser": {
            "id": outcome.user.id,
            "userPrincipalName": outcome.user.user_principal_name,
        },
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

// ---- groups ----

fn render_group(g: &Group) -> Value {
    let (types, rule, state, synced) = match g.kind {
        GroupKind::Assigned => (json!([]), Value::Null, Value::Null, Value::Null),
        GroupKind::Dynamic => (
            json!(["DynamicMembership"]),
            json!(g.membership_rule),
            json!("On"),
            Value::Null,
        ),
        GroupKind::Synced => (json!([]), Value::Null, Value::Null, json!(true)),
        GroupKind::Distribution | GroupKind::MailEnabledSecurity => {
            (json!([]), Value::Null, Value::Null, Value::Null)
        }
    };
    let mail_enabled = matches!(
        g.kind,
        GroupKind::Distribution | GroupKind::MailEnabledSecurity
    );
    let nickname: String = g
        .display_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    json!({
        "id": g.id,
        "createdDateTime": graph_time(g.created_date_time),
        "description": null,
        "displayName": g.display_name,
        "groupTypes": types,
        "mail": if mail_enabled { json!(format!("{}@contoso.com", nickname.to_lowercase())) } else { Value::Null },
        "mailEnabled": mail_enabled,
        "mailNickname": if nickname.is_empty() { "group".to_string() } else { nickname },
        "membershipRule": rule,
        "membershipRuleProcessingState": state,
        "onPremisesSyncEnabled": synced,
        "securityEnabled": g.kind != GroupKind::Distribution,
        "visibility": null,
    })
}

async fn list_groups(
    State(inner): State<Arc<Inner>>,
    RawQuery(raw): RawQuery,
) -> GraphResult<Response> {
    const SCHEMA: Schema = Schema {
        entity: "group",
        props: &[("id", Kind::Str), ("displayName", Kind::Str)],
    };
    let q = Query::parse(raw.as_deref())?;
    let filter = q
        .get("$filter")
        .map(|f| filter::parse(f, &SCHEMA))
        .transpose()
        .map_err(filter_error)?;
    let top = q.top()?;
    let start = q.cursor("o")? as usize;
    let matching: Vec<Value> = inner
        .dir()
        .groups
        .iter()
        .filter(|g| filter.as_ref().is_none_or(|f| f.matches(*g)))
        .map(render_group)
        .collect();
    let next = (matching.len() > start + top)
        .then(|| q.next_link(&inner, "/groups", &token_for("o", (start + top) as u64)));
    let page = matching.into_iter().skip(start).take(top).collect();
    Ok(collection(format!("{METADATA}#groups"), page, next, None))
}

async fn get_group(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
) -> GraphResult<Response> {
    let dir = inner.dir();
    let g = dir.group(&id).ok_or_else(|| GraphError::not_found(&id))?;
    let mut v = render_group(g);
    if let Value::Object(m) = &mut v {
        m.insert(
            "@odata.context".into(),
            json!(format!("{METADATA}#groups/$entity")),
        );
    }
    Ok(Json(v).into_response())
}

async fn list_members(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> GraphResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let members = inner
        .dir()
        .group(&id)
        .map(|g| g.members.clone())
        .ok_or_else(|| GraphError::not_found(&id))?;
    object_page(
        &inner,
        &q,
        &format!("/groups/{id}/members"),
        "directoryObjects",
        &members,
    )
}

async fn add_member(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    body: Bytes,
) -> GraphResult<StatusCode> {
    let body = json_body(&body)?;
    let member = reference_id(&body)?;
    realities::replicated_member(&inner, &member)?;
    inner.dir().add_group_member(&id, &member)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Graph's bulk add: `{"members@odata.bind": [<directoryObject URL>, ...]}`, at most 20,
/// all or nothing. Other group properties are not emulated.
async fn patch_group(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    body: Bytes,
) -> GraphResult<StatusCode> {
    let body = json_body(&body)?;
    if let Some(other) = body.keys().find(|k| *k != "members@odata.bind") {
        return Err(GraphError::bad_request(format!(
            "The dev tenant emulates only members@odata.bind on groups, not '{other}'."
        )));
    }
    let urls = body
        .get("members@odata.bind")
        .and_then(Value::as_array)
        .ok_or_else(|| GraphError::bad_request("members@odata.bind must be an array."))?;
    if urls.is_empty() || urls.len() > 20 {
        return Err(GraphError::bad_request(
            "members@odata.bind takes 1 to 20 references in one request.",
        ));
    }
    let mut members = Vec::with_capacity(urls.len());
    for url in urls {
        let mut reference = Map::new();
        reference.insert("@odata.id".into(), url.clone());
        let member = reference_id(&reference)?;
        realities::replicated_member(&inner, &member)?;
        members.push(member);
    }
    inner.dir().add_group_members(&id, &members)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_member(
    State(inner): State<Arc<Inner>>,
    Path((id, mid)): Path<(String, String)>,
) -> GraphResult<StatusCode> {
    inner.dir().remove_group_member(&id, &mid)?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- service principals and app roles ----

fn render_sp(s: &ServicePrincipal) -> Value {
    let roles: Vec<Value> = s
        .app_roles
        .iter()
        .map(|r| {
            json!({
                "allowedMemberTypes": ["User"],
                "description": r.display_name,
                "displayName": r.display_name,
                "id": r.id,
                "isEnabled": true,
                "origin": "Application",
                "value": r.value,
            })
        })
        .collect();
    json!({
        "id": s.id,
        "accountEnabled": true,
        "appDisplayName": s.display_name,
        "appId": s.app_id,
        "appRoleAssignmentRequired": false,
        "appRoles": roles,
        "displayName": s.display_name,
        "servicePrincipalType": "Application",
        "tags": [],
    })
}

pub(crate) fn render_assignment(a: &AppRoleAssignment) -> Value {
    json!({
        "id": a.id,
        "deletedDateTime": null,
        "appRoleId": a.app_role_id,
        "createdDateTime": graph_time(a.created_date_time),
        "principalDisplayName": a.principal_display_name,
        "principalId": a.principal_id,
        "principalType": a.principal_type,
        "resourceDisplayName": a.resource_display_name,
        "resourceId": a.resource_id,
    })
}

async fn list_sps(
    State(inner): State<Arc<Inner>>,
    RawQuery(raw): RawQuery,
) -> GraphResult<Response> {
    const SCHEMA: Schema = Schema {
        entity: "servicePrincipal",
        props: &[
            ("id", Kind::Str),
            ("appId", Kind::Str),
            ("displayName", Kind::Str),
        ],
    };
    let q = Query::parse(raw.as_deref())?;
    let filter = q
        .get("$filter")
        .map(|f| filter::parse(f, &SCHEMA))
        .transpose()
        .map_err(filter_error)?;
    let top = q.top()?;
    let start = q.cursor("o")? as usize;
    let matching: Vec<Value> = inner
        .dir()
        .service_principals
        .iter()
        .filter(|s| filter.as_ref().is_none_or(|f| f.matches(*s)))
        .map(render_sp)
        .collect();
    let next = (matching.len() > start + top).then(|| {
        q.next_link(
            &inner,
            "/servicePrincipals",
            &token_for("o", (start + top) as u64),
        )
    });
    let page = matching.into_iter().skip(start).take(top).collect();
    Ok(collection(
        format!("{METADATA}#servicePrincipals"),
        page,
        next,
        None,
    ))
}

async fn get_sp(State(inner): State<Arc<Inner>>, Path(id): Path<String>) -> GraphResult<Response> {
    let dir = inner.dir();
    let s = dir
        .service_principal(&id)
        .ok_or_else(|| GraphError::not_found(&id))?;
    let mut v = render_sp(s);
    if let Value::Object(m) = &mut v {
        m.insert(
            "@odata.context".into(),
            json!(format!("{METADATA}#servicePrincipals/$entity")),
        );
    }
    Ok(Json(v).into_response())
}

async fn list_assigned_to(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> GraphResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let top = q.top()?;
    let start = q.cursor("o")? as usize;
    let dir = inner.dir();
    let sp = dir
        .service_principal(&id)
        .ok_or_else(|| GraphError::not_found(&id))?;
    let all: Vec<Value> = dir
        .app_role_assignments
        .iter()
        .filter(|a| a.resource_id == sp.id)
        .map(render_assignment)
        .collect();
    let sp_id = sp.id.clone();
    drop(dir);
    let path = format!("/servicePrincipals/{id}/appRoleAssignedTo");
    let next = (all.len() > start + top)
        .then(|| q.next_link(&inner, &path, &token_for("o", (start + top) as u64)));
    let page = all.into_iter().skip(start).take(top).collect();
    Ok(collection(
        format!("{METADATA}#servicePrincipals('{sp_id}')/appRoleAssignedTo"),
        page,
        next,
        None,
    ))
}

async fn assign_app_role(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    body: Bytes,
) -> GraphResult<Response> {
    let body = json_body(&body)?;
    let required = |name: &str| -> GraphResult<String> {
        string_field(&body, name)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                GraphError::bad_request(format!("Missing property '{name}' in the request body."))
            })
    };
    let principal = required("principalId")?;
    let resource = required("resourceId")?;
    let role = required("appRoleId")?;
    realities::replicated(&inner, &[&principal])?;
    let now = inner.now();
    let a = inner
        .dir()
        .assign_app_role(&id, &principal, &resource, &role, now)?;
    let mut v = render_assignment(&a);
    if let Value::Object(m) = &mut v {
        m.insert(
            "@odata.context".into(),
            json!(format!(
                "{METADATA}#servicePrincipals('{}')/appRoleAssignedTo/$entity",
                a.resource_id
            )),
        );
    }
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

// ---- directory roles ----

const ROLE_ASSIGNMENT_FILTER: Schema = Schema {
    entity: "unifiedRoleAssignment",
    props: &[
        ("id", Kind::Str),
        ("principalId", Kind::Str),
        ("roleDefinitionId", Kind::Str),
        ("directoryScopeId", Kind::Str),
    ],
};

fn render_role_assignment(r: &RoleAssignment) -> Value {
    json!({
        "id": r.id,
        "roleDefinitionId": r.role_definition_id,
        "principalId": r.principal_id,
        "directoryScopeId": r.directory_scope_id,
    })
}

async fn list_role_assignments(
    State(inner): State<Arc<Inner>>,
    RawQuery(raw): RawQuery,
) -> GraphResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    q.refuse(&["$orderby", "$search", "$expand", "$skip"])?;
    let filter = q
        .get("$filter")
        .map(|f| filter::parse(f, &ROLE_ASSIGNMENT_FILTER))
        .transpose()
        .map_err(filter_error)?;
    let top = q.top()?;
    let start = q.cursor("o")? as usize;
    let matching: Vec<Value> = inner
        .dir()
        .role_assignments
        .iter()
        .filter(|r| filter.as_ref().is_none_or(|f| f.matches(*r)))
        .map(render_role_assignment)
        .collect();
    let path = "/roleManagement/directory/roleAssignments";
    let next = (matching.len() > start + top)
        .then(|| q.next_link(&inner, path, &token_for("o", (start + top) as u64)));
    let page = matching.into_iter().skip(start).take(top).collect();
    Ok(collection(
        format!("{METADATA}#roleManagement/directory/roleAssignments"),
        page,
        next,
        None,
    ))
}

async fn assign_role(State(inner): State<Arc<Inner>>, body: Bytes) -> GraphResult<Response> {
    let body = json_body(&body)?;
    let role = string_field(&body, "roleDefinitionId")?.ok_or_else(|| {
        GraphError::bad_request("Missing property 'roleDefinitionId' in the request body.")
    })?;
    let principal = string_field(&body, "principalId")?.ok_or_else(|| {
        GraphError::bad_request("Missing property 'principalId' in the request body.")
    })?;
    let scope = match (
        string_field(&body, "directoryScopeId")?,
        string_field(&body, "appScopeId")?,
    ) {
        (Some(s), _) => s,
        (None, Some(_)) => {
            return Err(GraphError::bad_request(
                "The dev tenant supports only directoryScopeId role assignments.",
            ));
        }
        (None, None) => {
            return Err(GraphError::bad_request(
                "One of directoryScopeId or appScopeId must be specified.",
            ));
        }
    };
    realities::replicated(&inner, &[&principal])?;
    let r = inner
        .dir()
        .assign_directory_role(&role, &principal, &scope)?;
    let mut v = render_role_assignment(&r);
    if let Value::Object(m) = &mut v {
        m.insert(
            "@odata.context".into(),
            json!(format!(
                "{METADATA}#roleManagement/directory/roleAssignments/$entity"
            )),
        );
    }
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

// ---- domains ----

async fn domains(State(inner): State<Arc<Inner>>) -> Response {
    let values: Vec<Value> = inner
        .dir()
        .domains
        .iter()
        .map(|d| {
            json!({
                "id": d.id,
                "authenticationType": "Managed",
                "availabilityStatus": null,
                "isAdminManaged": true,
                "isDefault": d.is_default,
                "isInitial": d.is_initial,
                "isRoot": true,
                "isVerified": d.is_verified,
                "passwordNotificationWindowInDays": null,
                "passwordValidityPeriodInDays": null,
                "supportedServices": if d.is_verified { json!(["Email", "OfficeCommunicationsOnlineService"]) } else { json!([]) },
                "state": null,
            })
        })
        .collect();
    collection(format!("{METADATA}#domains"), values, None, None)
}
