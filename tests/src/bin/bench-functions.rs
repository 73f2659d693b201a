//! Benchmarks the compiled function binaries through the local Lambda Runtime API: cold
//! start (process spawn to its first `GET /invocation/next`), binary size, time per event
//! with the dev tenant answering at once, and peak RSS after the events.
//!
//! Run through `bench/run`, which builds the release binaries first and writes
//! bench/RESULTS.md. Prints a Markdown report on stdout.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use b2b_dev_tenant::WriteLimit;
use b2b_e2e::checks::{batch_failures, group_id};
use b2b_e2e::events::{cloud_event, sqs_event};
use b2b_e2e::{LedgerKind, Profile, TestEnv, binary_path};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(about = "Benchmark the function binaries (cold start, RSS, size, time per event)")]
struct Args {
    /// Functions to measure.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "partner-signed,hr-record-added"
    )]
    functions: Vec<String>,
    /// Which build to run.
    #[arg(long, value_enum, default_value = "release")]
    profile: ProfileArg,
    /// Fresh processes started per function to time the cold start.
    #[arg(long, default_value_t = 30)]
    cold_starts: usize,
    /// Events per function for the time per event and the peak RSS.
    #[arg(long, default_value_t = 300)]
    events: usize,
    /// Events run first and not timed (token fetch, connection set-up).
    #[arg(long, default_value_t = 10)]
    warm_up: usize,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ProfileArg {
    Debug,
    Release,
}

/// The targets.
const READY_TARGET: Duration = Duration::from_millis(20);
const RSS_TARGET_KIB: u64 = 30 * 1024;
const SIZE_TARGET_BYTES: u64 = 10 * 1024 * 1024;

const INVOKE_TIMEOUT: Duration = Duration::from_secs(60);

struct Stats {
    samples: Vec<Duration>,
}

impl Stats {
    fn new(mut samples: Vec<Duration>) -> Stats {
        samples.sort();
        Stats { samples }
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.samples.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * (self.samples.len() - 1) as f64).round() as usize;
        self.samples[rank.min(self.samples.len() - 1)]
    }

    fn mean(&self) -> Duration {
        if self.samples.is_empty() {
            return Duration::ZERO;
        }
        self.samples.iter().sum::<Duration>() / self.samples.len() as u32
    }

    fn min(&self) -> Duration {
        self.samples.first().copied().unwrap_or_default()
    }

    fn max(&self) -> Duration {
        self.samples.last().copied().unwrap_or_default()
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

/// One event for `function`, numbered so that every event invites someone new.
fn event_for(function: &str, n: usize, groups: &[String]) -> anyhow::Result<String> {
    Ok(match function {
        "partner-signed" => cloud_event(
            "partner.signed",
            "urn:bench:crm",
            &format!("contract-{n}"),
            json!({
                "partner": { "id": format!("partner-{n}"), "name": format!("Partner {n}"),
                             "domains": [format!("partner{n}.example")] },
                "contacts": [ { "email": format!("contact{n}@partner{n}.example"),
                                "displayName": format!("Contact {n}") } ],
                "access": { "groups": groups },
                "sponsors": ["megan.bowen@contoso.com"],
            }),
        ),
        "hr-record-added" => cloud_event(
            "hr.record.added",
            "urn:bench:hr",
            &format!("E-{n}"),
            json!({
                "employeeId": format!("E-{n}"), "email": format!("worker{n}@contractor.example"),
                "displayName": format!("Worker {n}"), "company": "Contractor Ltd",
                "department": "Engineering", "jobTitle": "Engineer",
                "manager": "alex.wilber@contoso.com",
                "access": { "groups": groups },
            }),
        ),
        other => anyhow::bail!("no benchmark event for function '{other}'"),
    })
}

struct FunctionReport {
    name: String,
    size: u64,
    cold: Stats,
    cold_dynamo: Option<Stats>,
    per_event: Stats,
    events: usize,
    wall: Duration,
    peak_rss_kib: u64,
}

async fn world(profile: Profile, ledger: LedgerKind) -> anyhow::Result<TestEnv> {
    TestEnv::builder()
        .profile(profile)
        .ledger(ledger)
        .write_limit(WriteLimit::unlimited())
        // The client's own write pacing is Graph's quota, not the function's speed.
        .var("GRAPH_MAX_WRITES_PER_SECOND", "100000")
        .var("RUST_LOG", "warn")
        .start()
        .await
}

async fn cold_starts(env: &TestEnv, function: &str, runs: usize) -> anyhow::Result<Stats> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let process = env.spawn(function).await?;
        samples.push(process.ready(Duration::from_secs(30)).await?);
        process.stop().await;
    }
    Ok(Stats::new(samples))
}

async fn measure(args: &Args, profile: Profile, function: &str) -> anyhow::Result<FunctionReport> {
    let binary = binary_path(function, profile)?;
    let size = std::fs::metadata(&binary)?.len();

    let env = world(profile, LedgerKind::Embedded).await?;
    let cold = cold_starts(&env, function, args.cold_starts).await?;
    let cold_dynamo = if std::env::var_os("AWS_ENDPOINT_URL").is_some() {
        let env = world(profile, LedgerKind::Dynamo).await?;
        Some(cold_starts(&env, function, args.cold_starts).await?)
    } else {
        None
    };

    let control = env.control();
    let groups = vec![group_id(&control, "Partners")?];
    let process = env.spawn(function).await?;
    let mut per_event = Vec::with_capacity(args.events);
    let mut started = Instant::now();
    for n in 0..args.warm_up + args.events {
        let body = event_for(function, n, &groups)?;
        let payload: Value = sqs_event(&[(&format!("m-{n}"), &body)]);
        let at = Instant::now();
        let answer = process.invoke(payload, INVOKE_TIMEOUT).await?;
        let took = at.elapsed();
        ensure!(
            batch_failures(&answer)?.is_empty(),
            "{function} failed event {n}: {answer}\n{}",
            process.output().text()
        );
        if n + 1 == args.warm_up {
            started = Instant::now();
        }
        if n >= args.warm_up {
            per_event.push(took);
        }
    }
    let wall = started.elapsed();
    let peak_rss_kib = process.peak_rss_kib()?;
    let invited = control
        .users()
        .iter()
        .filter(|u| u.user_type == b2b_dev_tenant::UserType::Guest)
        .count();
    ensure!(
        invited == args.warm_up + args.events,
        "{function}: expected {} guests, the dev tenant has {invited}",
        args.warm_up + args.events
    );
    process.stop().await;
    Ok(FunctionReport {
        name: function.to_string(),
        size,
        cold,
        cold_dynamo,
        per_event: Stats::new(per_event),
        events: args.events,
        wall,
        peak_rss_kib,
    })
}

fn report(args: &Args, reports: &[FunctionReport], binary_dir: &Path) {
    println!(
        "Targets: ready in under {} ms, peak RSS under {} MiB, binary under {} MiB.\n",
        READY_TARGET.as_millis(),
        RSS_TARGET_KIB / 1024,
        SIZE_TARGET_BYTES / 1024 / 1024
    );
    // Relative to the workspace, so the committed results name no machine's paths.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shown = std::fs::canonicalize(&workspace)
        .ok()
        .and_then(|root| binary_dir.strip_prefix(root).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| binary_dir.to_path_buf());
    println!("Binaries: `{}`\n", shown.display());
    println!(
        "| function | binary (stripped) | cold start p50 / p95 / max (embedded ledger) \
         | cold start p50 / p95 / max (DynamoDB ledger) | per event mean / p50 / p95 \
         | peak RSS after events | ready < 20 ms | RSS < 30 MiB | binary < 10 MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in reports {
        let size_mib = r.size as f64 / 1024.0 / 1024.0;
        let rss_mib = r.peak_rss_kib as f64 / 1024.0;
        let cold_dynamo = r
            .cold_dynamo
            .as_ref()
            .map(|s| {
                format!(
                    "{} / {} / {} ms",
                    ms(s.percentile(50.0)),
                    ms(s.percentile(95.0)),
                    ms(s.max())
                )
            })
            .unwrap_or_else(|| "not measured (no AWS_ENDPOINT_URL)".into());
        let worst_cold = r
            .cold_dynamo
            .as_ref()
            .map(|s| s.percentile(50.0).max(r.cold.percentile(50.0)))
            .unwrap_or(r.cold.percentile(50.0));
        println!(
            "| {} | {:.2} MiB | {} / {} / {} ms | {} | {} / {} / {} ms | {:.1} MiB | {} | {} | {} |",
            r.name,
            size_mib,
            ms(r.cold.percentile(50.0)),
            ms(r.cold.percentile(95.0)),
            ms(r.cold.max()),
            cold_dynamo,
            ms(r.per_event.mean()),
            ms(r.per_event.percentile(50.0)),
            ms(r.per_event.percentile(95.0)),
            rss_mib,
            verdict(worst_cold < READY_TARGET),
            verdict(r.peak_rss_kib < RSS_TARGET_KIB),
            verdict(r.size < SIZE_TARGET_BYTES),
        );
    }
    println!();
    for r in reports {
        println!(
            "- {}: {} cold starts (min {} ms); {} events after {} warm-up events in {:.2} s \
             ({:.0} events/s, min {} ms, max {} ms per event).",
            r.name,
            args.cold_starts,
            ms(r.cold.min()),
            r.events,
            args.warm_up,
            r.wall.as_secs_f64(),
            r.events as f64
                / r.per_event
                    .samples
                    .iter()
                    .sum::<Duration>()
                    .as_secs_f64()
                    .max(f64::EPSILON),
            ms(r.per_event.min()),
            ms(r.per_event.max()),
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let profile = match args.profile {
        ProfileArg::Debug => Profile::Debug,
        ProfileArg::Release => Profile::Release,
    };
    let mut reports = Vec::new();
    for function in &args.functions {
        eprintln!("bench: measuring {function}");
        reports.push(
            measure(&args, profile, function)
                .await
                .with_context(|| format!("benchmarking {function}"))?,
        );
    }
    let binary = binary_path(&args.functions[0], profile)?;
    let dir = binary
        .canonicalize()
        .unwrap_or(binary)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    report(&args, &reports, &dir);
    Ok(())
}
