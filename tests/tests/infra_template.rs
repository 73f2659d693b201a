//! Cross-checks `infra/template.yaml` against the workspace: every function's binary exists,
//! every environment variable the template sets is one the configuration loader reads
//! (`b2b::config::VARIABLES`), every variable a function needs is set under every parameter
//! combination the template's Rules accept, the Graph write budget stays under Graph's limit,
//! the queues are wired for partial batch failures, the ledger table matches the DynamoDB
//! adapter, and the IAM policies stay least-privilege.
//!
//! The configuration loader has no per-function list of required variables, so the table
//! below ([`FUNCTIONS`], [`REQUIRED_BY_EVERY_FUNCTION`]) restates what `shared/src/config.rs`
//! and the function start-up require. The tests at the end prove the check fails when a
//! variable is renamed on either side.

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each function's binary and the variables it needs beyond [`REQUIRED_BY_EVERY_FUNCTION`].
const FUNCTIONS: &[(&str, &[&str])] = &[
    ("partner-signed", &["WEBHOOK_SECRETS_ARN", "WORK_QUEUE_URL"]),
    ("hr-record-added", &[]),
    (
        "guest-inviter-request",
        &["WEBHOOK_SECRETS_ARN", "API_AUDIENCE", "WORK_QUEUE_URL"],
    ),
    ("guest-offboard", &["WEBHOOK_SECRETS_ARN"]),
    ("resend-stale", &[]),
];

/// Each function's triggers (SPEC section 1): its SAM event types, and whether it has a
/// function URL for webhooks.
const TRIGGERS: &[(&str, &[&str], bool)] = &[
    ("partner-signed", &["SQS"], true),
    ("hr-record-added", &["SQS"], false),
    ("guest-inviter-request", &["SQS"], true),
    ("guest-offboard", &["SQS"], true),
    ("resend-stale", &["Schedule"], false),
];

/// Needed by every function in the cloud. `GRAPH_MAX_WRITES_PER_SECOND` has a default in the
/// loader, but the template's write budget depends on each function setting it explicitly.
const REQUIRED_BY_EVERY_FUNCTION: &[&str] = &[
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "LEDGER_TABLE",
    "GRAPH_MAX_WRITES_PER_SECOND",
];

/// Exactly one of these must be set (`AzureConfig::from_env` takes the first it finds).
const CREDENTIAL_VARIABLES: &[&str] = &[
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_SECRET_ARN",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_FEDERATED_TOKEN_SOURCE",
];

/// Plaintext secrets and local-only settings: never in a deployed function's environment.
const NEVER_IN_THE_CLOUD: &[&str] = &[
    "AZURE_CLIENT_SECRET",
    "WEBHOOK_SECRETS",
    "LEDGER_PATH",
    "OUTBOX_DIR",
    "B2B_NOW",
    "B2B_ALLOW_CLOCK_OVERRIDE",
    "B2B_EXTRA_CA_CERTS",
];

/// Graph allows 20 writes per second per app per tenant.
const GRAPH_WRITES_PER_SECOND_LIMIT: u64 = 20;

/// Actions that AWS offers on no resource type, where `Resource: "*"` is the only choice.
const STAR_RESOURCE_ALLOWED: &[&str] = &[
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "sts:GetWebIdentityToken",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

fn template_text() -> String {
    let path = workspace().join("infra/template.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ------------------------------------------------------------------ YAML with CloudFormation tags

/// Parses a template, turning the short intrinsic tags (`!Ref`, `!GetAtt a.b`, `!Sub`, ...)
/// into their long JSON forms so the rest of the check sees one shape.
fn parse_template(text: &str) -> Value {
    let yaml: serde_norway::Value =
        serde_norway::from_str(text).unwrap_or_else(|e| panic!("infra/template.yaml: {e}"));
    to_json(yaml)
}

fn to_json(yaml: serde_norway::Value) -> Value {
    use serde_norway::Value as Y;
    match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(i)
            } else if let Some(u) = n.as_u64() {
                json!(u)
            } else {
                json!(n.as_f64())
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let value = to_json(tagged.value);
            match name {
                "Ref" | "Condition" => json!({ name: value }),
                "GetAtt" => match value {
                    Value::String(s) => {
                        let (resource, attribute) = s.split_once('.').unwrap_or((s.as_str(), ""));
                        json!({ "Fn::GetAtt": [resource, attribute] })
                    }
                    other => json!({ "Fn::GetAtt": other }),
                },
                _ => json!({ format!("Fn::{name}"): value }),
            }
        }
    }
}

// ------------------------------------------------------------------ a small intrinsic evaluator

/// Parameter values of one deployment, defaults included.
type Parameters = BTreeMap<String, Value>;

/// What a value resolves to: `None` is `AWS::NoValue`; references to resources and attributes
/// become opaque non-empty strings (they always have a value once deployed).
struct Eval<'a> {
    template: &'a Value,
    parameters: &'a Parameters,
}

impl Eval<'_> {
    fn resolve(&self, value: &Value) -> Result<Option<Value>, String> {
        let Value::Object(map) = value else {
            return Ok(Some(value.clone()));
        };
        if map.len() != 1 {
            return Ok(Some(value.clone()));
        }
        let (key, arg) = map.iter().next().expect("one entry");
        match key.as_str() {
            "Ref" => {
                let name = arg.as_str().ok_or("Ref of a non-string")?;
                if name == "AWS::NoValue" {
                    Ok(None)
                } else if let Some(v) = self.parameters.get(name) {
                    Ok(Some(v.clone()))
                } else if name.starts_with("AWS::")
                    || self.template["Resources"].get(name).is_some()
                {
                    Ok(Some(Value::String(format!("<{name}>"))))
                } else {
                    Err(format!("Ref to unknown {name}"))
                }
            }
            "Fn::GetAtt" | "Fn::Sub" | "Fn::ImportValue" => {
                Ok(Some(Value::String(format!("<{key}>"))))
            }
            "Fn::If" => {
                let args = arg
                    .as_array()
                    .filter(|a| a.len() == 3)
                    .ok_or("Fn::If needs 3")?;
                let name = args[0].as_str().ok_or("Fn::If condition name")?;
                if self.condition(name)? {
                    self.resolve(&args[1])
                } else {
                    self.resolve(&args[2])
                }
            }
            "Fn::Join" => {
                let args = arg
                    .as_array()
                    .filter(|a| a.len() == 2)
                    .ok_or("Fn::Join needs 2")?;
                let separator = args[0].as_str().ok_or("Fn::Join separator")?;
                let items = match self.resolve(&args[1])? {
                    Some(Value::Array(items)) => items,
                    other => return Err(format!("Fn::Join of {other:?}")),
                };
                let parts = items
                    .iter()
                    .map(|item| match self.resolve(item)? {
                        Some(Value::String(s)) => Ok(s),
                        other => Err(format!("Fn::Join item {other:?}")),
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                Ok(Some(Value::String(parts.join(separator))))
            }
            "Fn::Equals" | "Fn::Not" | "Fn::And" | "Fn::Or" | "Condition" => {
                Ok(Some(Value::Bool(self.boolean(value)?)))
            }
            _ => Ok(Some(value.clone())),
        }
    }

    fn condition(&self, name: &str) -> Result<bool, String> {
        let body = self.template["Conditions"]
            .get(name)
            .ok_or_else(|| format!("unknown condition {name}"))?;
        self.boolean(body)
    }

    fn boolean(&self, value: &Value) -> Result<bool, String> {
        let map = value.as_object().filter(|m| m.len() == 1);
        let Some((key, arg)) = map.and_then(|m| m.iter().next()) else {
            return Err(format!("not a condition: {value}"));
        };
        let args = || arg.as_array().ok_or_else(|| format!("{key} needs a list"));
        match key.as_str() {
            "Condition" => self.condition(arg.as_str().ok_or("Condition name")?),
            "Fn::Equals" => {
                let a = args()?;
                if a.len() != 2 {
                    return Err("Fn::Equals needs 2".into());
                }
                Ok(self.resolve(&a[0])? == self.resolve(&a[1])?)
            }
            "Fn::Not" => Ok(!self.boolean(args()?.first().ok_or("Fn::Not needs 1")?)?),
            "Fn::And" => args()?
                .iter()
                .try_fold(true, |acc, c| Ok(acc & self.boolean(c)?)),
            "Fn::Or" => args()?
                .iter()
                .try_fold(false, |acc, c| Ok(acc | self.boolean(c)?)),
            _ => Err(format!("not a condition function: {key}")),
        }
    }

    /// Whether the template's Rules accept these parameters (CloudFormation refuses to deploy
    /// otherwise).
    fn rules_accept(&self) -> Result<bool, String> {
        let Some(rules) = self.template.get("Rules").and_then(Value::as_object) else {
            return Ok(true);
        };
        for rule in rules.values() {
            if let Some(condition) = rule.get("RuleCondition")
                && !self.boolean(condition)?
            {
                continue;
            }
            for assertion in rule["Assertions"].as_array().ok_or("Assertions list")? {
                if !self.boolean(&assertion["Assert"])? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}

/// Parameter defaults; parameters without one get a placeholder, as a deployer must give one.
fn default_parameters(template: &Value) -> Parameters {
    let mut parameters = Parameters::new();
    for (name, spec) in template["Parameters"].as_object().into_iter().flatten() {
        let default = spec
            .get("Default")
            .cloned()
            .unwrap_or_else(|| json!("deployer-given"));
        let value = match (spec["Type"].as_str(), default) {
            (Some("CommaDelimitedList"), Value::String(s)) => {
                Value::Array(s.split(',').map(|p| json!(p.trim())).collect())
            }
            (_, Value::Number(n)) => Value::String(n.to_string()),
            (_, other) => other,
        };
        parameters.insert(name.clone(), value);
    }
    parameters
}

/// The deployments checked: every delivery and credential choice, with and without a sender
/// and a configuration layer. The Rules decide which of them CloudFormation would accept.
fn scenarios(template: &Value) -> Vec<(String, Parameters)> {
    let mut out = Vec::new();
    for delivery in ["own", "microsoft", "none"] {
        for credential in ["secret", "certificate", "federated"] {
            for sender in [false, true] {
                for layer in [false, true] {
                    let mut p = default_parameters(template);
                    let mut set = |k: &str, v: &str| {
                        p.insert(k.into(), json!(v));
                    };
                    set("Delivery", delivery);
                    set("AzureCredential", credential);
                    if sender {
                        set("MailFrom", "Contoso Invitations <invites@contoso.example>");
                        set("SesIdentity", "contoso.example");
                    } else {
                        set("MailFrom", "");
                        set("SesIdentity", "");
                    }
                    set(
                        "ConfigLayerArn",
                        if layer {
                            "arn:aws:lambda:eu-west-1:123456789012:layer:b2b-config:1"
                        } else {
                            ""
                        },
                    );
                    let name = format!(
                        "Delivery={delivery} AzureCredential={credential} sender={sender} layer={layer}"
                    );
                    out.push((name, p));
                }
            }
        }
    }
    out
}

// ------------------------------------------------------------------ the check

fn resources(template: &Value) -> &Map<String, Value> {
    template["Resources"].as_object().expect("Resources")
}

/// The serverless function whose cargo-lambda binary is `binary`.
fn function_by_binary<'a>(template: &'a Value, binary: &str) -> Option<(&'a String, &'a Value)> {
    resources(template).iter().find(|(_, r)| {
        r["Type"] == "AWS::Serverless::Function"
            && r["Metadata"]["BuildProperties"]["Binary"] == binary
    })
}

/// Environment entries of a function: Globals first, the function's own override them.
fn environment<'a>(template: &'a Value, function: &'a Value) -> BTreeMap<&'a str, &'a Value> {
    let mut env = BTreeMap::new();
    for source in [
        &template["Globals"]["Function"]["Environment"]["Variables"],
        &function["Properties"]["Environment"]["Variables"],
    ] {
        for (k, v) in source.as_object().into_iter().flatten() {
            env.insert(k.as_str(), v);
        }
    }
    env
}

/// A property of a function, falling back to the Globals.
fn function_property<'a>(template: &'a Value, function: &'a Value, name: &str) -> &'a Value {
    match function["Properties"].get(name) {
        Some(v) => v,
        None => &template["Globals"]["Function"][name],
    }
}

/// The bins of each workspace package, keyed by the package's directory.
fn workspace_bins() -> BTreeMap<PathBuf, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(workspace())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");
    let mut bins = BTreeMap::new();
    for package in metadata["packages"].as_array().expect("packages") {
        let manifest = PathBuf::from(package["manifest_path"].as_str().expect("manifest_path"));
        let dir = manifest.parent().expect("manifest dir").to_path_buf();
        let names = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "bin"))
            })
            .filter_map(|t| t["name"].as_str().map(String::from))
            .collect();
        bins.insert(dir, names);
    }
    bins
}

/// `.method()` calls of the DynamoDB client in the ledger adapter, as IAM action names. The
/// table provisioning calls (`create_table` and friends, for tests and local runs) are not
/// listed: deployed functions never make them.
fn ledger_dynamodb_actions(source: &str) -> BTreeSet<String> {
    const CALLS: &[(&str, &str)] = &[
        ("get_item", "dynamodb:GetItem"),
        ("put_item", "dynamodb:PutItem"),
        ("update_item", "dynamodb:UpdateItem"),
        ("delete_item", "dynamodb:DeleteItem"),
        ("query", "dynamodb:Query"),
        ("scan", "dynamodb:Scan"),
        ("batch_get_item", "dynamodb:BatchGetItem"),
        ("batch_write_item", "dynamodb:BatchWriteItem"),
        ("transact_get_items", "dynamodb:GetItem"),
        ("transact_write_items", "dynamodb:PutItem"),
    ];
    let mut actions = BTreeSet::new();
    for (call, action) in CALLS {
        if source.contains(&format!(".{call}()")) {
            actions.insert((*action).to_string());
        }
    }
    actions
}

/// The string a `const NAME: &str = "...";` in the source holds.
fn source_const<'a>(source: &'a str, name: &str) -> Option<&'a str> {
    let start = source.find(&format!("const {name}: &str = \""))? + name.len() + 16;
    let rest = &source[start..];
    Some(&rest[..rest.find('"')?])
}

/// Every problem found, each naming the function, variable or resource. Empty = consistent.
fn check(template_text: &str, variables: &[&str], ledger_source: &str) -> Vec<String> {
    let template = parse_template(template_text);
    let known: BTreeSet<&str> = variables.iter().copied().collect();
    let mut problems = Vec::new();

    // Functions, binaries and runtime.
    let bins = workspace_bins();
    let infra = workspace().join("infra");
    let mut expected_ids = BTreeSet::new();
    for (binary, _) in FUNCTIONS {
        let Some((id, function)) = function_by_binary(&template, binary) else {
            problems.push(format!(
                "{binary}: no AWS::Serverless::Function builds this binary"
            ));
            continue;
        };
        expected_ids.insert(id.clone());
        if function["Metadata"]["BuildMethod"] != "rust-cargolambda" {
            problems.push(format!(
                "{id}: Metadata.BuildMethod is not rust-cargolambda"
            ));
        }
        if function_property(&template, function, "Runtime") != "provided.al2023" {
            problems.push(format!("{id}: Runtime is not provided.al2023"));
        }
        if function_property(&template, function, "Architectures") != &json!(["arm64"]) {
            problems.push(format!("{id}: Architectures is not [arm64]"));
        }
        match function["Properties"]["CodeUri"].as_str() {
            Some(code) => {
                let dir = infra.join(code);
                let dir = dir.canonicalize().unwrap_or(dir);
                match bins.get(&dir) {
                    Some(names) if names.contains(*binary) => {}
                    Some(names) => problems.push(format!(
                        "{id}: package at {code} has no bin {binary} (bins: {names:?})"
                    )),
                    None => problems.push(format!(
                        "{id}: CodeUri {code} is not a workspace package directory"
                    )),
                }
            }
            None => problems.push(format!("{id}: CodeUri is not a relative path")),
        }
    }
    for (binary, events, url) in TRIGGERS {
        let Some((id, function)) = function_by_binary(&template, binary) else {
            continue;
        };
        let types: BTreeSet<&str> = function["Properties"]["Events"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, e)| e["Type"].as_str())
            .collect();
        let expected: BTreeSet<&str> = events.iter().copied().collect();
        if types != expected {
            problems.push(format!("{id}: triggers {types:?}, expected {expected:?}"));
        }
        let has_url = function["Properties"].get("FunctionUrlConfig").is_some();
        if has_url != *url {
            problems.push(format!(
                "{id}: function URL present = {has_url}, expected {url}"
            ));
        }
    }
    for (id, resource) in resources(&template) {
        if resource["Type"] == "AWS::Serverless::Function" && !expected_ids.contains(id) {
            problems.push(format!("{id}: a function the workspace does not build"));
        }
    }

    // Variables the template sets are ones the loader reads.
    for (binary, _) in FUNCTIONS {
        let Some((id, function)) = function_by_binary(&template, binary) else {
            continue;
        };
        for name in environment(&template, function).keys() {
            if !known.contains(name) {
                problems.push(format!(
                    "{id}: sets {name}, which the configuration loader does not read \
                     (b2b::config::VARIABLES)"
                ));
            }
            if NEVER_IN_THE_CLOUD.contains(name) {
                problems.push(format!(
                    "{id}: sets {name}, which must not be set in the cloud"
                ));
            }
        }
    }

    // Variables the functions need are set in every deployment the Rules accept.
    let mut accepted_credentials = BTreeSet::new();
    for (scenario, parameters) in scenarios(&template) {
        let eval = Eval {
            template: &template,
            parameters: &parameters,
        };
        match eval.rules_accept() {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => {
                problems.push(format!("Rules: {e}"));
                break;
            }
        }
        accepted_credentials.insert(
            parameters["AzureCredential"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        for (binary, extra) in FUNCTIONS {
            let Some((id, function)) = function_by_binary(&template, binary) else {
                continue;
            };
            let mut set = BTreeMap::new();
            for (name, value) in environment(&template, function) {
                match eval.resolve(value) {
                    Ok(Some(Value::String(s))) if s.trim().is_empty() => {}
                    Ok(Some(v)) => {
                        set.insert(name, v);
                    }
                    Ok(None) => {}
                    Err(e) => problems.push(format!("{id}: {name}: {e}")),
                }
            }
            for name in REQUIRED_BY_EVERY_FUNCTION.iter().chain(extra.iter()) {
                if !set.contains_key(name) {
                    problems.push(format!("{id}: {name} is not set ({scenario})"));
                }
            }
            let credentials: Vec<_> = CREDENTIAL_VARIABLES
                .iter()
                .filter(|v| set.contains_key(**v))
                .collect();
            if credentials.len() != 1 {
                problems.push(format!(
                    "{id}: needs exactly one credential variable, has {credentials:?} ({scenario})"
                ));
            }
            let delivery = set.get("DELIVERY").and_then(Value::as_str).unwrap_or("own");
            if delivery == "own" && !set.contains_key("MAIL_FROM") {
                problems.push(format!(
                    "{id}: MAIL_FROM is not set with DELIVERY=own ({scenario})"
                ));
            }
        }
    }
    for credential in ["secret", "certificate", "federated"] {
        if !accepted_credentials.contains(credential) {
            problems.push(format!(
                "Rules: no deployment with AzureCredential {credential} is accepted"
            ));
        }
    }

    // Graph write budget and queue wiring. The budget is one token bucket in the ledger
    // table: every function must set the same total, under Graph's limit.
    let mut rates: Vec<(String, u64)> = Vec::new();
    for (binary, _) in FUNCTIONS {
        let Some((id, function)) = function_by_binary(&template, binary) else {
            continue;
        };
        let reserved = function["Properties"]["ReservedConcurrentExecutions"].as_u64();
        let rate = environment(&template, function)
            .get("GRAPH_MAX_WRITES_PER_SECOND")
            .and_then(|v| v.as_str())
            .and_then(|v| v.parse::<u64>().ok());
        match rate {
            Some(rate) => rates.push((id.to_string(), rate)),
            None => problems.push(format!(
                "{id}: needs a literal GRAPH_MAX_WRITES_PER_SECOND (the deployment's shared write budget)"
            )),
        }
        let timeout = function_property(&template, function, "Timeout")
            .as_u64()
            .unwrap_or(3);
        for (event_name, event) in function["Properties"]["Events"]
            .as_object()
            .into_iter()
            .flatten()
        {
            if event["Type"] != "SQS" {
                continue;
            }
            let props = &event["Properties"];
            let what = format!("{id}.Events.{event_name}");
            if !props["FunctionResponseTypes"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == "ReportBatchItemFailures"))
            {
                problems.push(format!(
                    "{what}: FunctionResponseTypes lacks ReportBatchItemFailures"
                ));
            }
            match (
                props["ScalingConfig"]["MaximumConcurrency"].as_u64(),
                reserved,
            ) {
                (Some(max), Some(reserved)) if max <= reserved => {}
                (Some(max), Some(reserved)) => problems.push(format!(
                    "{what}: MaximumConcurrency {max} exceeds the reserved concurrency {reserved}"
                )),
                _ => problems.push(format!(
                    "{what}: ScalingConfig.MaximumConcurrency is not set"
                )),
            }
            let queue_id = props["Queue"]["Fn::GetAtt"][0].as_str().unwrap_or_default();
            let Some(queue) = resources(&template).get(queue_id) else {
                problems.push(format!("{what}: Queue is not a queue of this template"));
                continue;
            };
            let visibility = queue["Properties"]["VisibilityTimeout"]
                .as_u64()
                .unwrap_or(30);
            if visibility < 6 * timeout {
                problems.push(format!(
                    "{queue_id}: VisibilityTimeout {visibility} is under 6x the {id} timeout {timeout}"
                ));
            }
            let redrive = &queue["Properties"]["RedrivePolicy"];
            if redrive["deadLetterTargetArn"].is_null() || redrive["maxReceiveCount"].is_null() {
                problems.push(format!(
                    "{queue_id}: no RedrivePolicy to a dead-letter queue"
                ));
            }
        }
    }
    if rates.windows(2).any(|w| w[0].1 != w[1].1) {
        problems.push(format!(
            "the functions share one write budget, so GRAPH_MAX_WRITES_PER_SECOND must be the \
             same in each: {rates:?}"
        ));
    }
    if let Some((_, total)) = rates.iter().max_by_key(|(_, r)| *r)
        && *total >= GRAPH_WRITES_PER_SECOND_LIMIT
    {
        problems.push(format!(
            "Graph write budget {total}/s (shared by every function and environment) is not \
             under {GRAPH_WRITES_PER_SECOND_LIMIT}/s"
        ));
    }

    // The ledger table matches the DynamoDB adapter.
    let table = resources(&template)
        .values()
        .find(|r| r["Type"] == "AWS::DynamoDB::Table")
        .map(|t| &t["Properties"]);
    match table {
        None => problems.push("no AWS::DynamoDB::Table for the ledger".into()),
        Some(table) => {
            let names = ["PK", "SK", "TTL"].map(|c| source_const(ledger_source, c));
            let [Some(pk), Some(sk), Some(ttl)] = names else {
                problems.push("ledger adapter: constants PK, SK, TTL not found".into());
                return problems;
            };
            let key = json!([
                { "AttributeName": pk, "KeyType": "HASH" },
                { "AttributeName": sk, "KeyType": "RANGE" }
            ]);
            if table["KeySchema"] != key {
                problems.push(format!("ledger table: KeySchema is not {key}"));
            }
            let attributes = json!([
                { "AttributeName": pk, "AttributeType": "S" },
                { "AttributeName": sk, "AttributeType": "S" }
            ]);
            if table["AttributeDefinitions"] != attributes {
                problems.push(format!(
                    "ledger table: AttributeDefinitions are not {attributes}"
                ));
            }
            if table["TimeToLiveSpecification"] != json!({ "AttributeName": ttl, "Enabled": true })
            {
                problems.push(format!("ledger table: TTL is not enabled on {ttl}"));
            }
            if table["BillingMode"] != "PAY_PER_REQUEST" {
                problems.push("ledger table: BillingMode is not PAY_PER_REQUEST".into());
            }
            if table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] != true {
                problems.push("ledger table: point-in-time recovery is off".into());
            }
        }
    }

    // Least privilege: no "*" action, "*" resource only where AWS offers nothing narrower,
    // and every function role may make the ledger's DynamoDB calls.
    let ledger_actions = ledger_dynamodb_actions(ledger_source);
    for (binary, _) in FUNCTIONS {
        let Some((id, function)) = function_by_binary(&template, binary) else {
            continue;
        };
        let role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
            .as_str()
            .unwrap_or_default();
        let Some(role) = resources(&template).get(role_id) else {
            problems.push(format!(
                "{id}: Role is not a role of this template (one role per function)"
            ));
            continue;
        };
        let mut granted = BTreeSet::new();
        for policy in role["Properties"]["Policies"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for statement in statements(&policy["PolicyDocument"]["Statement"]) {
                let actions = strings(&statement["Action"]);
                let resources = strings(&statement["Resource"]);
                for action in &actions {
                    if action == "*" || action.ends_with(":*") {
                        problems.push(format!("{role_id}: grants the wildcard action {action}"));
                    }
                    granted.insert(action.clone());
                }
                if resources.iter().any(|r| r == "*")
                    && let Some(a) = actions
                        .iter()
                        .find(|a| !STAR_RESOURCE_ALLOWED.contains(&a.as_str()))
                {
                    problems.push(format!("{role_id}: grants {a} on every resource"));
                }
            }
        }
        for action in &ledger_actions {
            if !granted.contains(action) {
                problems.push(format!(
                    "{role_id}: the ledger calls {action}, which is not granted"
                ));
            }
        }
    }
    let lines: Vec<&str> = template_text.lines().collect();
    for (n, line) in lines.iter().enumerate() {
        if line.trim() == "Resource: \"*\"" {
            let above = &lines[n.saturating_sub(4)..n];
            if !above.iter().any(|l| l.trim_start().starts_with('#')) {
                problems.push(format!(
                    "template line {}: Resource \"*\" without a comment why",
                    n + 1
                ));
            }
        }
    }
    problems
}

/// Every statement of a policy, both branches of an `Fn::If` included.
fn statements(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().flat_map(statements).collect(),
        Value::Object(m) if m.contains_key("Fn::If") => m["Fn::If"]
            .as_array()
            .into_iter()
            .flatten()
            .skip(1)
            .flat_map(statements)
            .collect(),
        Value::Object(m) if m.contains_key("Ref") => Vec::new(),
        Value::Object(_) => vec![value],
        _ => Vec::new(),
    }
}

/// An action or resource list as strings; intrinsics (ARNs built by the template) as text.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::Null => Vec::new(),
        other => vec![other.to_string()],
    }
}

fn ledger_source() -> String {
    let path = workspace().join("shared/src/adapters/ledger/dynamodb.rs");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ------------------------------------------------------------------ tests

#[test]
fn infra_template_matches_the_workspace() {
    let problems = check(&template_text(), b2b::config::VARIABLES, &ledger_source());
    assert!(
        problems.is_empty(),
        "infra/template.yaml:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn infra_check_fails_when_the_template_renames_a_variable() {
    let text = template_text();
    let broken = text.replace("WEBHOOK_SECRETS_ARN:", "WEBHOOK_SECRET_ARN:");
    assert_ne!(text, broken, "the template sets WEBHOOK_SECRETS_ARN");
    let problems = check(&broken, b2b::config::VARIABLES, &ledger_source());
    assert!(
        problems
            .iter()
            .any(|p| p.contains("sets WEBHOOK_SECRET_ARN")),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("WEBHOOK_SECRETS_ARN is not set")),
        "{problems:#?}"
    );
}

#[test]
fn infra_check_fails_when_the_loader_renames_a_variable() {
    let renamed: Vec<&str> = b2b::config::VARIABLES
        .iter()
        .map(|v| {
            if *v == "LEDGER_TABLE" {
                "LEDGER_TABLE_NAME"
            } else {
                v
            }
        })
        .collect();
    assert!(b2b::config::VARIABLES.contains(&"LEDGER_TABLE"));
    let problems = check(&template_text(), &renamed, &ledger_source());
    assert!(
        problems
            .iter()
            .any(|p| p.contains("sets LEDGER_TABLE, which the configuration loader")),
        "{problems:#?}"
    );
}

#[test]
fn infra_check_fails_without_the_rule_that_demands_a_sender() {
    let text = template_text();
    let broken = text.replace(
        "RuleCondition: !Equals [!Ref Delivery, own]",
        "RuleCondition: !Equals [!Ref Delivery, never]",
    );
    assert_ne!(text, broken, "the template has the own-delivery rule");
    let problems = check(&broken, b2b::config::VARIABLES, &ledger_source());
    assert!(
        problems
            .iter()
            .any(|p| p.contains("MAIL_FROM is not set with DELIVERY=own")),
        "{problems:#?}"
    );
}

#[test]
fn infra_check_fails_when_the_write_budget_reaches_graphs_limit() {
    let text = template_text();
    let broken = text.replace(
        "GRAPH_MAX_WRITES_PER_SECOND: \"18\"",
        "GRAPH_MAX_WRITES_PER_SECOND: \"20\"",
    );
    assert_ne!(
        text, broken,
        "the functions set GRAPH_MAX_WRITES_PER_SECOND 18"
    );
    let problems = check(&broken, b2b::config::VARIABLES, &ledger_source());
    assert!(
        problems
            .iter()
            .any(|p| p.contains("Graph write budget 20/s")),
        "{problems:#?}"
    );
    let split = text.replacen(
        "GRAPH_MAX_WRITES_PER_SECOND: \"18\"",
        "GRAPH_MAX_WRITES_PER_SECOND: \"6\"",
        1,
    );
    let problems = check(&split, b2b::config::VARIABLES, &ledger_source());
    assert!(
        problems
            .iter()
            .any(|p| p.contains("must be the same in each")),
        "{problems:#?}"
    );
}

#[test]
fn infra_check_fails_when_the_ledger_makes_a_call_no_role_grants() {
    let source = format!(
        "{}\nfn f(c: &Client) {{ c.batch_write_item(); }}\n",
        ledger_source()
    );
    let problems = check(&template_text(), b2b::config::VARIABLES, &source);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("dynamodb:BatchWriteItem, which is not granted")),
        "{problems:#?}"
    );
}

#[test]
fn infra_check_fails_on_a_star_resource_for_an_ordinary_action() {
    let text = template_text();
    let broken = text.replacen("Resource: !GetAtt LedgerTable.Arn", "Resource: \"*\"", 1);
    assert_ne!(text, broken);
    let problems = check(&broken, b2b::config::VARIABLES, &ledger_source());
    assert!(
        problems
            .iter()
            .any(|p| p.contains("dynamodb:GetItem on every resource")),
        "{problems:#?}"
    );
}
