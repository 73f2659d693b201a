//! The `$filter` parser over HTTP: escaped quotes, hostile addresses and malformed input.

mod common;

use b2b_dev_tenant::{NewUser, UserType};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Percent-encodes per RFC 3986 (unreserved characters stay; a space becomes %20).
fn rfc3986(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

async fn ids_for(env: &common::Env, token: &str, filter: &str) -> (StatusCode, Vec<String>, Value) {
    // Two encodings a client may use: reqwest's form serializer (space as '+') and RFC 3986.
    let url = format!("{}/users", env.tenant.graph_base_url());
    let r = env
        .http
        .get(&url)
        .bearer_auth(token)
        .query(&[("$filter", filter), ("$select", "id,mail")])
        .send()
        .await
        .unwrap();
    let s1 = r.status();
    let v1: Value = r.json().await.unwrap();
    let (s2, _, v2) = env
        .graph(
            token,
            Method::GET,
            &format!("/users?$filter={}&$select=id,mail", rfc3986(filter)),
            None,
        )
        .await;
    assert_eq!(s1, s2, "both encodings agree for {filter}");
    assert_eq!(
        v1["value"], v2["value"],
        "both encodings agree for {filter}"
    );
    let ids = v1["value"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|u| u["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    (s1, ids, v1)
}

#[tokio::test]
async fn hostile_addresses_match_exactly_their_literal() {
    let env = common::start_with(b2b_dev_tenant::Seed::Empty, None).await;
    let c = env.tenant.control();
    let token = env.token().await;
    // The longest address RFC 5321 allows: a 64-character local part and a 255-character domain.
    let long = format!("{}@{}.example", "l".repeat(64), "d".repeat(255 - 8));
    assert_eq!(long.len(), 320);
    let hostile = [
        "o'brien@x.com",
        "a%b@x.com",
        "a&b@x.com",
        "a+b@x.com",
        "a#b@x.com",
        "a b@x.com",
        "o''neil@x.com",
        "jürgen.müller@bücher.example",
        "名前@例え.jp",
        "a)or(mail@x.com",
        long.as_str(),
    ];
    // Decoys that a sloppy parser would match instead.
    for decoy in [
        "obrien@x.com",
        "o@x.com",
        "a@x.com",
        "b@x.com",
        "ab@x.com",
        "a%25b@x.com",
        "o'neil@x.com",
    ] {
        c.add_user(NewUser {
            display_name: "Decoy".into(),
            mail: decoy.into(),
            ..NewUser::default()
        });
    }
    for addr in hostile {
        let u = c.add_user(NewUser {
            display_name: "Target".into(),
            mail: addr.into(),
            user_type: UserType::Guest,
            ..NewUser::default()
        });
        let lit = literal(addr);
        for filter in [
            format!("mail eq {lit}"),
            format!("otherMails/any(x:x eq {lit})"),
            format!(
                "proxyAddresses/any(x:x eq {})",
                literal(&format!("SMTP:{addr}"))
            ),
            format!(
                "(userPrincipalName eq {lit}) or (mail eq {lit}) or proxyAddresses/any(x:x eq {}) or otherMails/any(x:x eq {lit})",
                literal(&format!("SMTP:{addr}"))
            ),
            format!(
                "mail eq {} and userType eq 'Guest'",
                literal(&addr.to_uppercase())
            ),
        ] {
            let (s, ids, v) = ids_for(&env, &token, &filter).await;
            assert_eq!(s, StatusCode::OK, "{filter}: {v}");
            assert_eq!(ids, vec![u.id.clone()], "{filter}: {v}");
        }
    }
}

#[tokio::test]
async fn a_raw_plus_is_a_space_as_in_graph() {
    let env = common::start_with(b2b_dev_tenant::Seed::Empty, None).await;
    let c = env.tenant.control();
    let token = env.token().await;
    let u = c.add_user(NewUser {
        display_name: "Plus".into(),
        mail: "a+b@x.com".into(),
        ..NewUser::default()
    });
    let (s, _, v) = env
        .graph(
            &token,
            Method::GET,
            "/users?$filter=mail+eq+'a+b@x.com'",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["value"].as_array().unwrap().len(),
        0,
        "'+' decoded as a space: {v}"
    );
    let (_, _, v) = env
        .graph(
            &token,
            Method::GET,
            "/users?$filter=mail+eq+'a%2Bb@x.com'",
            None,
        )
        .await;
    assert_eq!(v["value"][0]["id"], u.id);
}

#[tokio::test]
async fn malformed_and_unsupported_filters_are_400() {
    let env = common::start().await;
    let token = env.token().await;
    let bad_request = [
        "mail eq 'o'brien@x.com'",
        "mail eq 'unterminated",
        "mail eq",
        "(mail eq 'a@x.com'",
        "mail eq 'a@x.com')",
        "mail eq 'a@x.com' and",
        "mail eq 'a@x.com' mail",
        "otherMails/any(x:x eq 'a@x.com'",
        "otherMails/any(x:y eq 'a@x.com')",
        "mail startswith 'a'",
        "nosuchProperty eq 'a'",
        "signInNames/any(x:x eq 'a@x.com')",
        "accountEnabled eq 'yes'",
        "",
        "mail eq \"a@x.com\"",
    ];
    for f in bad_request {
        let (s, _, v) = ids_for(&env, &token, f).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{f}: {v}");
        common::assert_graph_error(&v, "Request_BadRequest");
    }
    for f in [
        "mail ne 'a@x.com'",
        "not(mail eq 'a@x.com')",
        "endswith(mail,'x.com')",
        "externalUserState eq null",
        "otherMails/all(x:x eq 'a')",
    ] {
        let (s, _, v) = ids_for(&env, &token, f).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{f}: {v}");
        common::assert_graph_error(&v, "Request_UnsupportedQuery");
    }
    // A broken percent escape is refused too.
    let (s, _, _) = env
        .graph(&token, Method::GET, "/users?$filter=mail%2", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Supported extras: in(...), startswith, booleans.
    let (s, _, v) = ids_for(
        &env,
        &token,
        "mail in ('megan.bowen@contoso.com','alex.wilber@contoso.com') and accountEnabled eq true",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["value"].as_array().unwrap().len(), 2);
    let (_, ids, _) = ids_for(&env, &token, "startswith(mail,'MEGAN')").await;
    assert_eq!(ids.len(), 1);
}
