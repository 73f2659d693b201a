//! The `b2b-invites` binary end to end: the demo, `run` over every sample event, `report`
//! against the ledger and the dev tenant, `--dry-run` without a single write, and `import`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use b2b::adapters::ledger::EmbeddedLedger;
use b2b::ports::ledger::{GuestState, Ledger, Origin};
use b2b_dev_tenant::{DevTenant, DevTenantOptions, ExternalUserState, Seed, UserType, WriteLimit};
use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

/// The binary running `args` in `state`, with none of the product's variables inherited.
fn cli<S: AsRef<std::ffi::OsStr>>(state: &Path, args: &[S]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_b2b-invites"));
    for var in b2b::config::VARIABLES {
        cmd.env_remove(var);
    }
    cmd.env_remove("RUST_LOG")
        .args(args)
        .arg("--state")
        .arg(state)
        .current_dir(repo_root());
    cmd
}

/// Runs the command off the async runtime, so a dev tenant this test serves keeps answering.
async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("the binary starts"))
        .await
        .expect("the command thread")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The command against `tenant`, as the real tenant would be configured.
fn against<S: AsRef<std::ffi::OsStr>>(tenant: &DevTenant, state: &Path, args: &[S]) -> Command {
    let mut cmd = cli(state, args);
    cmd.envs(tenant.env());
    cmd
}

async fn start_tenant(dir: &Path, seed: Seed, limit: Option<WriteLimit>) -> DevTenant {
    DevTenant::start(DevTenantOptions {
        state_dir: dir.join("tenant"),
        seed,
        write_limit: limit,
        ..DevTenantOptions::default()
    })
    .await
    .expect("dev tenant starts")
}

#[test]
fn demo_exits_zero_and_prints_the_report() {
    let state = tempfile::tempdir().unwrap();
    let o = cli(state.path(), &["demo"]).output().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "demo failed\n{out}\n{err}");
    for expected in [
        "-> partner-signed (SQS batch)",
        "-> partner-signed (function URL request)",
        "-> hr-record-added (SQS batch)",
        "-> guest-inviter-request (function URL request",
        "answer: HTTP 403",
        "-> resend-stale (scheduled event)",
        "reminded 3",
        "already processed",
        "Every guest",
        "partner:litware",
        "hr:E-1042",
    ] {
        assert!(out.contains(expected), "no '{expected}' in\n{out}");
    }
    // The redelivered contract does nothing again.
    assert!(
        out.contains("(SQS batch): 0 Graph writes"),
        "the duplicate made writes:\n{out}"
    );
    // Addresses are masked unless asked for.
    assert!(!out.contains("sam.lee@litware.com"), "{out}");
    assert!(out.contains("s***@litware.com"), "{out}");
    let summary = out
        .lines()
        .find(|l| l.contains(" guests: "))
        .expect("a summary line");
    assert!(summary.contains("3 pending, 3 accepted"), "{summary}");
}

#[test]
fn run_accepts_every_sample_event() {
    let state = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = Vec::new();
    let mut dirs = vec![repo_root().join("events")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    // Partners first: the self-service request needs the inviter a contract registers.
    files.sort_by_key(|p| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        (!name.starts_with("partner.signed"), name)
    });
    assert!(files.len() >= 8, "events/ holds {files:?}");
    for file in &files {
        let o = cli(state.path(), &[Path::new("run"), file.as_path()])
            .output()
            .unwrap();
        let (out, err) = text(&o);
        assert!(
            o.status.success(),
            "{} exited {:?}\n{out}\n{err}",
            file.display(),
            o.status
        );
        let outcome: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}):\n{out}", file.display()));
        let response = &outcome["response"];
        assert!(response.get("error").is_none(), "{}: {out}", file.display());
        if let Some(status) = response.get("statusCode").and_then(Value::as_u64) {
            assert!(status < 300, "{}: {out}", file.display());
        }
        if let Some(failures) = response.get("batchItemFailures").and_then(Value::as_array) {
            assert!(failures.is_empty(), "{}: {out}", file.display());
        }
        for event in outcome["events"].as_array().into_iter().flatten() {
            assert_eq!(event["status"], "completed", "{}: {out}", file.display());
        }
    }
    // What the samples did is in the ledger the next command opens.
    let ledger = EmbeddedLedger::open(&state.path().join("ledger")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let guests = rt.block_on(ledger.guests()).unwrap();
    for email in [
        "sam@litware.com",
        "kim@litware.com",
        "jo@contractor.example",
        "mo@contractor.example",
        "ravi@fabrikam.com",
        "lin@tailspintoys.com",
    ] {
        assert!(
            guests.iter().any(|g| g.email == email),
            "{email} not in the ledger"
        );
    }
}

#[test]
fn run_refuses_what_it_cannot_route() {
    let state = tempfile::tempdir().unwrap();
    let file = state.path().join("odd.json");
    std::fs::write(&file, r#"{"hello":"world"}"#).unwrap();
    let o = cli(state.path(), &[Path::new("run"), file.as_path()])
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("--function"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_json_matches_the_ledger_and_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = start_tenant(dir.path(), Seed::Demo, None).await;
    let state = dir.path().join("state");
    for file in [
        "events/partner.signed.json",
        "events/hr.record.added.json",
        "events/partner.signed.eventbridge.json",
    ] {
        let cmd = against(&tenant, &state, &["run", file]);
        let o = output(cmd).await;
        assert!(o.status.success(), "{file}: {:?}", text(&o));
    }
    let control = tenant.control();
    control.redeem("kim@litware.com").unwrap();
    // A guest someone else invited, still pending: listed as not ours.
    control.add_user(b2b_dev_tenant::NewUser {
        display_name: "Pat Other".into(),
        mail: "pat@elsewhere.example".into(),
        user_type: UserType::Guest,
        ..Default::default()
    });

    let cmd = against(
        &tenant,
        &state,
        &["report", "--format", "json", "--show-addresses"],
    );
    let o = output(cmd).await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let rows: Vec<Value> = serde_json::from_str(&out).expect("valid JSON");

    let ledger = EmbeddedLedger::open(&state.join("ledger")).unwrap();
    let records = ledger.guests().await.unwrap();
    let users: HashMap<String, b2b_dev_tenant::User> = control
        .users()
        .into_iter()
        .filter(|u| u.user_type == UserType::Guest)
        .map(|u| (u.id.clone(), u))
        .collect();
    assert_eq!(rows.len(), records.len() + 1, "{out}");
    assert_eq!(rows.len(), users.len(), "{out}");
    let groups = control.groups();
    for row in &rows {
        let id = row["userId"].as_str().unwrap();
        let user = &users[id];
        let state = match user.external_user_state {
            Some(ExternalUserState::PendingAcceptance) => "pending",
            Some(ExternalUserState::Accepted) => "accepted",
            None => "none",
        };
        assert_eq!(row["state"], state, "{row}");
        assert_eq!(
            row["email"].as_str().unwrap(),
            user.mail.as_deref().unwrap().to_lowercase(),
            "{row}"
        );
        let in_groups: Vec<String> = groups
            .iter()
            .filter(|g| control.group_members(&g.id).contains(&user.id))
            .map(|g| g.display_name.clone())
            .collect();
        let listed: Vec<String> = row["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_str().unwrap().to_string())
            .collect();
        assert_eq!(listed, in_groups, "{row}");
        match records.iter().find(|r| r.user_id == id) {
            Some(record) => {
                assert_eq!(row["managed"], true);
                assert_eq!(row["email"], record.email.as_str());
                assert_eq!(row["partner"].as_str(), record.partner_id.as_deref());
                assert_eq!(row["reminders"], record.reminders);
                let origin = match &record.origin {
                    Origin::Partner(p) => format!("partner:{p}"),
                    Origin::Hr(e) => format!("hr:{e}"),
                    Origin::Request(_) => "request".into(),
                    Origin::Import(f) => format!("import:{f}"),
                };
                assert_eq!(row["origin"], origin.as_str());
                assert_eq!(record.state, GuestState::Pending);
            }
            None => {
                assert_eq!(row["managed"], false);
                assert_eq!(row["email"], "pat@elsewhere.example");
                assert_eq!(row["origin"], "-");
            }
        }
    }
    drop(ledger);

    // Filters.
    let cmd = against(
        &tenant,
        &state,
        &[
            "report",
            "--format",
            "json",
            "--status",
            "pending",
            "--partner",
            "litware",
        ],
    );
    let o = output(cmd).await;
    let rows: Vec<Value> = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["email"], "s***@litware.com");
    let cmd = against(
        &tenant,
        &state,
        &["report", "--format", "csv", "--older-than", "7d"],
    );
    let o = output(cmd).await;
    let (out, _) = text(&o);
    assert_eq!(out.lines().count(), 1, "only the header: {out}");
    tenant.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_makes_no_write() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = start_tenant(dir.path(), Seed::Demo, None).await;
    let state = dir.path().join("state");
    let csv = dir.path().join("few.csv");
    std::fs::write(
        &csv,
        "version:v1.0\nEmail address to invite [inviteeEmail] Required,Redirection url [inviteRedirectURL] Required,Send invitation message (true or false) [sendEmail],Customized invitation message [customizedMessageBody]\n\
         ann@fabrikam.com,https://myapplications.microsoft.com,true,Welcome\n\
         bob@fabrikam.com,https://myapplications.microsoft.com,false,\n",
    )
    .unwrap();
    let control = tenant.control();
    control.clear_requests();

    let cmd = against(
        &tenant,
        &state,
        &["--dry-run", "run", "events/partner.signed.json"],
    );
    let o = output(cmd).await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let outcome: Value = serde_json::from_str(&out).unwrap();
    let planned = outcome["dryRun"]["plannedWrites"].as_array().unwrap();
    let invitations = planned
        .iter()
        .filter(|w| w["method"] == "POST" && w["target"] == "/invitations")
        .count();
    assert_eq!(invitations, 2, "{out}");
    assert!(planned.iter().any(|w| w["method"] == "MAIL"), "{out}");

    let cmd = against(
        &tenant,
        &state,
        &[Path::new("--dry-run"), Path::new("import"), csv.as_path()],
    );
    let o = output(cmd).await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("dry run: 2 writes planned, none made"),
        "{out}"
    );

    let cmd = against(&tenant, &state, &["--dry-run", "sweep"]);
    let o = output(cmd).await;
    assert!(o.status.success(), "{:?}", text(&o));

    let log = control.requests();
    assert!(log.iter().any(|r| r.method == "GET"), "reads happened");
    let writes: Vec<_> = log.iter().filter(|r| r.is_write).collect();
    assert!(writes.is_empty(), "writes in a dry run: {writes:?}");
    assert!(
        control
            .users()
            .iter()
            .all(|u| u.user_type != UserType::Guest),
        "no guest was created"
    );
    // Nor did the ledger change: the real run afterwards does everything.
    let cmd = against(&tenant, &state, &["run", "events/partner.signed.json"]);
    let o = output(cmd).await;
    let outcome: Value = serde_json::from_slice(&o.stdout).unwrap();
    let outcomes = outcome["events"][0]["outcomes"].as_array().unwrap();
    assert!(
        outcomes.iter().all(|o| o["result"] == "invited"),
        "{outcome}"
    );
    tenant.shutdown().await;
}

/// 2,000 rows, 50 of them bad: every good row invited exactly once, every bad one reported by
/// line, and a second run does nothing new. The write budget is raised tenfold over Graph's:
/// this tests the import, not the pace (bench/ measures that).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_two_thousand_rows_once() {
    let dir = tempfile::tempdir().unwrap();
    let limit = WriteLimit {
        writes: 200,
        per: std::time::Duration::from_secs(1),
    };
    let tenant = start_tenant(dir.path(), Seed::Empty, Some(limit)).await;
    let state = dir.path().join("state");
    let file = dir.path().join("guests.csv");
    let mut csv = String::from(
        "version:v1.0\n\
         Email address to invite [inviteeEmail] Required,Redirection url [inviteRedirectURL] Required,Send invitation message (true or false) [sendEmail],Customized invitation message [customizedMessageBody]\n",
    );
    let mut bad_lines = Vec::new();
    for i in 0..2000u64 {
        let line = i + 3;
        let row = if i % 40 == 7 {
            bad_lines.push(line);
            match (i / 40) % 3 {
                0 => format!("guest{i}.example.com,https://myapplications.microsoft.com,false,\n"),
                1 => {
                    format!("guest{i}@example.com,https://myapplications.microsoft.com,perhaps,\n")
                }
                _ => format!("guest{i}@example.com,mailto:x@y.z,false,\n"),
            }
        } else {
            format!(
                "guest{i}@partner{}.example,https://myapplications.microsoft.com,false,\n",
                i % 7
            )
        };
        csv.push_str(&row);
    }
    assert_eq!(bad_lines.len(), 50);
    std::fs::write(&file, csv).unwrap();

    let mut cmd = against(&tenant, &state, &[Path::new("import"), file.as_path()]);
    cmd.env("GRAPH_MAX_WRITES_PER_SECOND", "200");
    let o = output(cmd).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(65), "{out}\n{err}");
    assert!(
        out.contains("2000 rows: 1950 invited, 0 already in the tenant, 0 done by an earlier run, 50 with errors"),
        "{out}"
    );
    let reported: Vec<u64> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("line "))
        .filter_map(|l| l.split(':').next()?.parse().ok())
        .collect();
    assert_eq!(reported, bad_lines, "{out}");

    let control = tenant.control();
    let guests = control
        .users()
        .into_iter()
        .filter(|u| u.user_type == UserType::Guest)
        .count();
    assert_eq!(guests, 1950);
    let invitations = control
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v1.0/invitations" && r.status == 201)
        .count();
    assert_eq!(invitations, 1950, "each guest invited exactly once");

    let results = dir.path().join("guests-results.csv");
    let mut reader = csv::Reader::from_path(&results).unwrap();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 2000);
    let failures = records.iter().filter(|r| &r[2] == "Failure").count();
    assert_eq!(failures, 50);

    let writes_before = control.requests().iter().filter(|r| r.is_write).count();
    let mut cmd = against(&tenant, &state, &[Path::new("import"), file.as_path()]);
    cmd.env("GRAPH_MAX_WRITES_PER_SECOND", "200");
    let o = output(cmd).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(65), "{out}\n{err}");
    assert!(
        out.contains("2000 rows: 0 invited, 0 already in the tenant, 1950 done by an earlier run, 50 with errors"),
        "{out}"
    );
    let writes_after = control.requests().iter().filter(|r| r.is_write).count();
    assert_eq!(writes_before, writes_after, "the second run wrote");
    tenant.shutdown().await;
}

/// What a new user tripped over: a second `run` of an event looked like a fresh invitation,
/// and log lines carried colour codes into files.
#[test]
fn a_second_run_of_an_event_says_it_is_a_duplicate_and_logs_carry_no_colour_codes() {
    let state = tempfile::tempdir().unwrap();
    let file = repo_root().join("events/hr.record.added.json");
    let run = || {
        cli(
            state.path(),
            &[Path::new("--verbose"), Path::new("run"), file.as_path()],
        )
        .output()
        .unwrap()
    };
    let first = run();
    let (out, err) = text(&first);
    assert!(first.status.success(), "{out}\n{err}");
    let outcome: Value = serde_json::from_str(&out).unwrap();
    assert!(outcome.get("duplicate").is_none(), "{out}");
    assert!(err.contains("INFO"), "no log lines to look at: {err}");
    assert!(
        !err.contains('\u{1b}'),
        "escape codes in redirected logs: {err:?}"
    );

    let second = run();
    let (out, err) = text(&second);
    assert!(second.status.success(), "{out}\n{err}");
    let outcome: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        outcome["duplicate"],
        serde_json::json!(["https://hr.contoso.com#hr-E-1042"]),
        "{out}"
    );
    assert!(err.contains("processed before"), "{err}");
}

#[test]
fn import_announces_the_rows_it_reports() {
    let state = tempfile::tempdir().unwrap();
    let file = state.path().join("three.csv");
    std::fs::write(
        &file,
        "version:v1.0\n\
         Email address to invite [inviteeEmail] Required,Redirection url [inviteRedirectURL] Required\n\
         one@fabrikam.example,https://myapplications.microsoft.com\n\
         not-an-address,https://myapplications.microsoft.com\n\
         two@fabrikam.example,https://myapplications.microsoft.com\n",
    )
    .unwrap();
    let o = cli(state.path(), &[Path::new("import"), file.as_path()])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(err.contains("importing 3 rows"), "{err}");
    assert!(out.contains("3 rows: 2 invited"), "{out}");
}

#[test]
fn completions_man_page_version_and_exit_statuses_follow_conventions() {
    let state = tempfile::tempdir().unwrap();
    let bare = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_b2b-invites"));
        for var in b2b::config::VARIABLES {
            cmd.env_remove(var);
        }
        cmd.args(args).current_dir(state.path()).output().unwrap()
    };
    let bash = bare(&["completions", "bash"]);
    assert!(bash.status.success());
    assert!(String::from_utf8_lossy(&bash.stdout).contains("complete -F"));
    let man = bare(&["man"]);
    assert!(String::from_utf8_lossy(&man.stdout).starts_with(".ie"));
    assert!(String::from_utf8_lossy(&man.stdout).contains(".TH b2b-invites 1"));
    let version = String::from_utf8_lossy(&bare(&["--version"]).stdout).into_owned();
    assert!(
        version.starts_with("b2b-invites ") && version.contains('('),
        "{version}"
    );
    // Usage error: 64 (sysexits), not clap's 2.
    assert_eq!(bare(&["no-such-command"]).status.code(), Some(64));
    // A configuration error: 78.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_b2b-invites"));
    let o = cmd
        .env("AZURE_TENANT_ID", "contoso.onmicrosoft.com")
        .env_remove("AZURE_CLIENT_ID")
        .args(["report", "--state"])
        .arg(state.path())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(78),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn circuit_status_and_close_work_on_the_ledger() {
    let state = tempfile::tempdir().unwrap();
    {
        let ledger = EmbeddedLedger::open(&state.path().join("ledger")).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(ledger.open_circuit(
            "Graph refused invitations: abuse block",
            time::OffsetDateTime::now_utc(),
        ))
        .unwrap();
    }
    let circuit = |action: &str| {
        let o = cli(state.path(), &["circuit", action]).output().unwrap();
        let (out, err) = text(&o);
        assert!(o.status.success(), "{out}\n{err}");
        (serde_json::from_str::<Value>(&out).unwrap(), err)
    };
    let (status, _) = circuit("status");
    assert_eq!(status["circuit"]["open"], true, "{status}");
    assert!(
        status["circuit"]["reason"]
            .as_str()
            .unwrap()
            .contains("abuse")
    );
    let (closed, err) = circuit("close");
    assert_eq!(closed["circuit"]["open"], false, "{closed}");
    assert!(err.contains("circuit closed"), "{err}");
    let (again, err) = circuit("close");
    assert_eq!(again["circuit"]["open"], false);
    assert!(err.contains("closed already"), "{err}");
}

/// The AWS emulator's SQS (scripts/aws-emulator), as the command would find a deployment's.
async fn emulator_sqs() -> aws_sdk_sqs::Client {
    std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL: start the emulator, eval \"$(scripts/aws-emulator env)\"");
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    aws_sdk_sqs::Client::new(&config)
}

#[tokio::test]
async fn redrive_sends_dead_letters_back_to_their_queue_and_says_how_many() {
    let sqs = emulator_sqs().await;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let dlq = sqs
        .create_queue()
        .queue_name(format!("redrive-dlq-{suffix}"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let source = sqs
        .create_queue()
        .queue_name(format!("redrive-src-{suffix}"))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            serde_json::json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5" })
                .to_string(),
        )
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    for n in 0..3 {
        sqs.send_message()
            .queue_url(&dlq)
            .message_body(format!("{{\"n\":{n}}}"))
            .send()
            .await
            .unwrap();
    }
    let redrive = |queue: String| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_b2b-invites"));
        cmd.env_remove("AWS_PROFILE").args(["redrive", &queue]);
        cmd
    };

    let o = output(redrive(format!("redrive-dlq-{suffix}"))).await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let result: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(result["status"], "COMPLETED", "{result}");
    assert_eq!(result["moved"], 3, "{result}");
    assert!(err.contains("3 message(s) moved back"), "{err}");
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let received = sqs
            .receive_message()
            .queue_url(&source)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        bodies.extend(
            received
                .messages()
                .iter()
                .filter_map(|m| m.body().map(str::to_string)),
        );
        if bodies.len() == 3 {
            break;
        }
    }
    bodies.sort();
    assert_eq!(bodies, ["{\"n\":0}", "{\"n\":1}", "{\"n\":2}"]);

    // By ARN now: empty, so nothing is moved.
    let o = output(redrive(dlq_arn.clone())).await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["moved"], 0);
    assert!(err.contains("nothing was moved"), "{err}");

    // A queue that is nobody's dead-letter queue, and one that does not exist: usage errors.
    let o = output(redrive(source.clone())).await;
    assert_eq!(o.status.code(), Some(64), "{}", text(&o).1);
    assert!(
        text(&o).1.contains("not the dead-letter queue"),
        "{}",
        text(&o).1
    );
    let o = output(redrive(format!("no-such-queue-{suffix}"))).await;
    assert_eq!(o.status.code(), Some(64), "{}", text(&o).1);
    assert!(text(&o).1.contains("no queue"), "{}", text(&o).1);
}
