//! What an operator sees of a run (issue 16): the Embedded Metric Format records each function
//! writes, and its log lines by Lambda's JSON convention, read from the stdout of the compiled
//! hr-record-added binary while it invites, rejects, and puts events back for every cause.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, ensure};
use b2b_dev_tenant::{Fault, FaultKind};
use b2b_e2e::FunctionProcess;
use b2b_e2e::TestEnv;
use b2b_e2e::checks::batch_failures;
use b2b_e2e::events::{cloud_event, sqs_event};
use serde_json::{Value, json};

const SOURCE: &str = "https://hr.contoso.com";

fn hr_record(n: u32) -> String {
    cloud_event(
        "hr.record.added",
        SOURCE,
        &format!("hr-{n}"),
        json!({
            "employeeId": format!("E-{n}"),
            "email": format!("worker{n}@contractor.example"),
            "manager": "alex.wilber@contoso.com",
        }),
    )
}

/// Delivers one message and returns the ids SQS would redeliver.
async fn deliver(
    function: &FunctionProcess,
    messages: &[(&str, &str)],
    timeout: Duration,
) -> anyhow::Result<Vec<String>> {
    let answer = function.invoke(sqs_event(messages), timeout).await?;
    batch_failures(&answer)
}

/// One metric of an EMF record: its name, value and the dimension sets it is published under.
type Published = (String, Value, Vec<Vec<String>>);

/// Each metric the EMF records of `stdout` publish.
fn published(stdout: &[String]) -> anyhow::Result<Vec<Published>> {
    let mut found = Vec::new();
    for line in stdout {
        let Ok(record) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(directives) = record.pointer("/_aws/CloudWatchMetrics") else {
            continue;
        };
        for directive in directives.as_array().context("CloudWatchMetrics")? {
            ensure!(directive["Namespace"] == "B2BInvites", "{line}");
            let sets: Vec<Vec<String>> = serde_json::from_value(directive["Dimensions"].clone())?;
            for metric in directive["Metrics"].as_array().context("Metrics")? {
                let name = metric["Name"].as_str().context("Name")?.to_string();
                ensure!(metric["Unit"] == "Count", "{line}");
                found.push((name.clone(), record[&name].clone(), sets.clone()));
            }
            ensure!(
                sets == [Vec::<String>::new()] || record["Function"] == "hr-record-added",
                "the Function dimension names the function: {line}"
            );
        }
    }
    Ok(found)
}

#[tokio::test]
async fn every_metric_is_published_and_every_log_line_is_lambda_json() -> anyhow::Result<()> {
    let env = TestEnv::builder().start().await?;
    let control = env.control();
    let function = env.spawn("hr-record-added").await?;
    let quick = Duration::from_secs(30);

    // Invited, and a poison message rejected.
    let first = hr_record(1);
    ensure!(
        deliver(&function, &[("m-1", &first), ("m-2", "{not json")], quick)
            .await?
            .is_empty(),
        "{}",
        function.output().text()
    );
    // Graph fails for longer than the client retries within the message's time.
    control.inject(
        Fault::new(FaultKind::ServerError(503))
            .on("POST", "/v1.0/invitations")
            .times(u32::MAX),
    );
    ensure!(
        deliver(&function, &[("m-4", &hr_record(4))], Duration::from_secs(6)).await? == ["m-4"]
    );
    control.clear_faults();
    // Our own permission refused: an outage, retried.
    control.inject(
        Fault::new(FaultKind::PermissionDenied)
            .on("POST", "/v1.0/invitations")
            .times(u32::MAX),
    );
    ensure!(deliver(&function, &[("m-5", &hr_record(5))], quick).await? == ["m-5"]);
    control.clear_faults();
    // Graph throttles past the message's time: put back as throttled.
    control.inject(
        Fault::new(FaultKind::TooManyRequests {
            retry_after: Some(600.0),
        })
        .on("POST", "/v1.0/invitations")
        .times(u32::MAX),
    );
    ensure!(deliver(&function, &[("m-3", &hr_record(3))], quick).await? == ["m-3"]);
    let first_process = function.stop().await;
    control.clear_faults();
    // The client keeps Graph's Retry-After for the process; a new one starts afresh.
    let function = env
        .spawn_with("hr-record-added", &[("CIRCUIT_PROBE_AFTER", "1s")])
        .await?;
    // The tenant blocked: the circuit opens, and stays open for the next message; once the
    // block is lifted, the probe closes it.
    control.inject(Fault::new(FaultKind::AbuseBlock));
    ensure!(deliver(&function, &[("m-6", &hr_record(6))], quick).await? == ["m-6"]);
    ensure!(deliver(&function, &[("m-7", &hr_record(7))], quick).await? == ["m-7"]);
    control.clear_abuse_block();
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(
        deliver(&function, &[("m-8", &hr_record(8))], quick)
            .await?
            .is_empty()
    );
    let mut output = function.stop().await;
    output.stdout.splice(0..0, first_process.stdout);
    output.stderr.splice(0..0, first_process.stderr);

    let metrics = published(&output.stdout)?;
    let names: BTreeSet<&str> = metrics.iter().map(|(n, ..)| n.as_str()).collect();
    for expected in [
        "ColdStart",
        "Invited",
        "Rejected",
        "Throttled",
        "Retried",
        "OutageRetried",
        "CircuitOpen",
    ] {
        ensure!(
            names.contains(expected),
            "no {expected} metric among {names:?}\n{}",
            output.text()
        );
    }
    let count = |name: &str| -> f64 {
        metrics
            .iter()
            .filter(|(n, ..)| n == name)
            .filter_map(|(_, v, _)| v.as_f64())
            .sum()
    };
    ensure!(count("ColdStart") == 2.0, "one cold start per process");
    ensure!(count("Invited") == 2.0, "two guests invited");
    ensure!(count("CircuitOpen") == 2.0, "both blocked messages counted");
    // The alarm's metric, without dimensions: open while refused, then closed by the probe.
    let circuit: Vec<f64> = metrics
        .iter()
        .filter(|(n, ..)| n == "InvitationCircuitOpen")
        .filter_map(|(_, v, _)| v.as_f64())
        .collect();
    ensure!(
        circuit.first() == Some(&1.0) && circuit.last() == Some(&0.0),
        "the circuit's state as published: {circuit:?}"
    );
    for (name, _, sets) in metrics
        .iter()
        .filter(|(n, ..)| n != "InvitationCircuitOpen")
    {
        ensure!(
            sets == &[vec!["Function".to_string()]],
            "{name}: an HR record names no partner, so only the Function dimension"
        );
    }

    // Every line is one JSON object; log lines carry Lambda's fields at the top level.
    let mut correlated = BTreeSet::new();
    for line in &output.stdout {
        let value: Value =
            serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?;
        if value.get("_aws").is_some() {
            continue;
        }
        for field in [
            "timestamp",
            "level",
            "message",
            "function_name",
            "cold_start",
        ] {
            ensure!(value.get(field).is_some(), "no {field}: {line}");
        }
        time::OffsetDateTime::parse(
            value["timestamp"].as_str().context("timestamp")?,
            &time::format_description::well_known::Rfc3339,
        )
        .with_context(|| format!("timestamp: {line}"))?;
        ensure!(value["function_name"] == "hr-record-added", "{line}");
        if value.get("request_id").is_some() {
            ensure!(value.get("xray_trace_id").is_some(), "{line}");
        }
        if let Some(id) = value.get("correlation_id").and_then(Value::as_str) {
            ensure!(value.get("request_id").is_some(), "{line}");
            correlated.insert(id.to_string());
        }
    }
    ensure!(
        correlated.contains(&format!("{SOURCE}#hr-1"))
            && correlated.contains(&format!("{SOURCE}#hr-4")),
        "events' lines carry their (source, id): {correlated:?}"
    );
    ensure!(
        output
            .stdout
            .iter()
            .any(|l| l.contains("\"cold_start\":false")),
        "later invocations are not cold starts"
    );
    Ok(())
}

#[tokio::test]
async fn lambdas_log_level_wins_over_rust_log() -> anyhow::Result<()> {
    let env = TestEnv::builder().start().await?;
    let function = env
        .spawn_with(
            "hr-record-added",
            &[("RUST_LOG", "debug"), ("AWS_LAMBDA_LOG_LEVEL", "ERROR")],
        )
        .await?;
    ensure!(
        deliver(
            &function,
            &[("m-1", &hr_record(1))],
            Duration::from_secs(30)
        )
        .await?
        .is_empty()
    );
    let output = function.stop().await;
    let levels: BTreeSet<String> = output
        .stdout
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["level"].as_str().map(str::to_string))
        .collect();
    ensure!(
        levels.iter().all(|l| l == "ERROR"),
        "lines below ERROR: {levels:?}"
    );
    ensure!(
        output.stdout.iter().any(|l| l.contains("\"Invited\"")),
        "the metrics are written whatever the level"
    );
    Ok(())
}
