//! What the end-to-end tests look at: Graph calls the dev tenant saw, batch responses,
//! and the functions' logs.

use anyhow::{Context, bail};
use b2b_dev_tenant::{Control, RequestLogEntry};
use serde_json::Value;

use crate::process::Output;

/// The `POST /invitations` calls the dev tenant answered (or refused).
pub fn invitation_posts(control: &Control) -> Vec<RequestLogEntry> {
    control
        .requests()
        .into_iter()
        .filter(|r| r.method.eq_ignore_ascii_case("POST") && r.path.ends_with("/invitations"))
        .collect()
}

/// The message ids of an SQS partial batch response (`batchItemFailures`).
pub fn batch_failures(answer: &Value) -> anyhow::Result<Vec<String>> {
    let items = answer
        .get("batchItemFailures")
        .and_then(Value::as_array)
        .with_context(|| format!("not an SQS batch response (no batchItemFailures): {answer}"))?;
    items
        .iter()
        .map(|item| {
            item.get("itemIdentifier")
                .and_then(Value::as_str)
                .map(String::from)
                .with_context(|| format!("batch item failure without itemIdentifier: {item}"))
        })
        .collect()
}

/// The HTTP status and JSON body of a function URL response.
pub fn http_answer(answer: &Value) -> anyhow::Result<(u16, String, Value)> {
    let status = answer
        .get("statusCode")
        .and_then(Value::as_u64)
        .with_context(|| format!("not an HTTP response (no statusCode): {answer}"))?;
    let content_type = answer
        .pointer("/headers/content-type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let body = answer.get("body").and_then(Value::as_str).unwrap_or("null");
    let body = serde_json::from_str(body)
        .with_context(|| format!("the response body is not JSON: {body}"))?;
    Ok((status as u16, content_type, body))
}

/// Fails when a log line carries any of `secrets` (secrets, tokens, redeem URLs) or any of
/// `addresses` unmasked, or anything that looks like a redeem URL.
pub fn logs_are_clean(output: &Output, secrets: &[&str], addresses: &[&str]) -> anyhow::Result<()> {
    let text = output.text();
    let lower = text.to_lowercase();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if text.contains(secret) {
            bail!(
                "the logs carry a secret or redeem URL ({} characters)",
                secret.len()
            );
        }
    }
    for marker in ["redeem?rd=", "/redeem?"] {
        if lower.contains(marker) {
            bail!("the logs carry a redeem URL ('{marker}' found)");
        }
    }
    for address in addresses {
        if lower.contains(&address.to_lowercase()) {
            bail!("the logs carry the unmasked address {address}");
        }
    }
    Ok(())
}

/// The id of the dev tenant's group with this display name.
pub fn group_id(control: &Control, name: &str) -> anyhow::Result<String> {
    control
        .groups()
        .into_iter()
        .find(|g| g.display_name == name)
        .map(|g| g.id)
        .with_context(|| format!("no group '{name}' in the dev tenant"))
}

/// `(service principal id, app role id)` of an app role, by app and role value.
pub fn app_role(control: &Control, app: &str, role: &str) -> anyhow::Result<(String, String)> {
    let sp = control
        .service_principals()
        .into_iter()
        .find(|s| s.display_name == app)
        .with_context(|| format!("no service principal '{app}' in the dev tenant"))?;
    let role_id = sp
        .role_id(role)
        .with_context(|| format!("service principal '{app}' has no app role '{role}'"))?
        .to_string();
    Ok((sp.id, role_id))
}

/// The object id of the dev tenant's user with this id, UPN or address.
pub fn user_id(control: &Control, key: &str) -> anyhow::Result<String> {
    control
        .user(key)
        .map(|u| u.id)
        .with_context(|| format!("no user '{key}' in the dev tenant"))
}
