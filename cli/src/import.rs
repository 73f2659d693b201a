//! `import`: bulk invitations from a CSV in the Entra portal's bulk-invite format, through
//! the same onboarding the functions use, resumable through the ledger.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::progress::Bar;
use anyhow::{Context as _, bail};
use b2b::app::Abort;
use b2b::app::circuit::CircuitGate;
use b2b::app::onboard::Onboarding;
use b2b::app::runtime::Runtime;
use b2b::domain::access::Access;
use b2b::domain::email::Email;
use b2b::domain::plan::{InviteePlan, Plan};
use b2b::domain::policy::check_invitee;
use b2b::error::{Classify, FailureClass};
use b2b::ports::directory::{Delivery, UserPatch};
use b2b::ports::ledger::{
    Claim, EventKey, EventRecord, EventStatus, InviteeOutcome, InviteeResult, Origin,
};
use b2b::ports::progress::Progress as _;
use clap::Args;
use futures::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::Global;
use crate::context::{Context, LocalOptions};

/// The ledger source of import rows; the id is a digest of the row's content.
pub const IMPORT_SOURCE: &str = "b2b-invites:import";
/// The ledger scope of imported rows: theirs alone, like each function's events.
pub const IMPORT_SCOPE: &str = "import";
/// The ledger type of import rows.
const IMPORT_TYPE: &str = "import.row";
/// How long a claimed row keeps another import off it.
const ROW_LEASE: Duration = Duration::from_secs(16 * 60);
/// How long one row may take, retries included.
const ROW_TIME: Duration = Duration::from_secs(10 * 60);

/// The long help of the command.
pub const LONG_ABOUT: &str = "Invite guests in bulk from a CSV in the Entra portal's bulk-invite format: \
        the template's `version:v1.0` line (optional), a header row, then one row per guest. \
        Columns, matched by name or by the [property] in the template's headings:\n\
        \n  Email address to invite [inviteeEmail]                 required\
        \n  Redirection url [inviteRedirectURL]                    default INVITE_REDIRECT_URL\
        \n  Send invitation message (true or false) [sendEmail]    true: Graph mails; false: nobody; empty: DELIVERY\
        \n  Customized invitation message [customizedMessageBody]\
        \n  Display name [displayName]                             optional\
        \n  Groups [groups]                                        group object ids, separated by ;\
        \n  Partner [partner]                                      a registered partner id: its domains, sponsors, default access\n\
        \nEach row is invited through the same onboarding as the functions, paced by the \
        write limit (GRAPH_MAX_WRITES_PER_SECOND). The ledger remembers every row done, keyed by \
        a digest of its content, so running the import again skips them. Rows with errors are \
        reported with their line numbers and never stop the others. A results CSV is written \
        next to the input (--results to choose).\n\
        \nExit status: 0 when every row is done, 65 when some rows have errors, 75 when some rows \
        failed for a transient reason (run again to retry them).";

#[derive(Args, Debug)]
pub struct ImportArgs {
    #[command(flatten)]
    pub state: crate::StateDir,
    /// The CSV file.
    file: PathBuf,
    /// Where to write the results CSV (default: FILE with `-results.csv`).
    #[arg(long, value_name = "FILE")]
    results: Option<PathBuf>,
    /// Rows in flight at once (writes are paced by the write limit whatever this is).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// Who mails the invitation, overriding the file's send column and DELIVERY.
    #[arg(long, value_parser = parse_delivery)]
    delivery: Option<Delivery>,
}

fn parse_delivery(s: &str) -> Result<Delivery, String> {
    s.parse()
}

/// A column the import reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Column {
    Email,
    Redirect,
    Send,
    Message,
    DisplayName,
    Groups,
    Partner,
}

/// Which column a heading names: by its `[property]` or its text, case-insensitively.
fn column_of(heading: &str) -> Option<Column> {
    let h = heading.trim().to_lowercase();
    let property = h.find('[').and_then(|a| {
        h[a + 1..]
            .find(']')
            .map(|b| h[a + 1..a + 1 + b].trim().to_string())
    });
    let text = h.split('[').next().unwrap_or_default().trim().to_string();
    let names: [(Column, &[&str]); 7] = [
        (
            Column::Email,
            &["inviteeemail", "email address to invite", "email"],
        ),
        (
            Column::Redirect,
            &["inviteredirecturl", "redirection url", "redirect url"],
        ),
        (
            Column::Send,
            &[
                "sendemail",
                "send invitation message (true or false)",
                "send invitation message",
            ],
        ),
        (
            Column::Message,
            &["customizedmessagebody", "customized invitation message"],
        ),
        (
            Column::DisplayName,
            &["displayname", "display name", "inviteduserdisplayname"],
        ),
        (Column::Groups, &["groups"]),
        (Column::Partner, &["partner", "partnerid", "partner id"]),
    ];
    names.iter().find_map(|(col, aliases)| {
        aliases
            .iter()
            .any(|a| property.as_deref() == Some(a) || text == *a)
            .then_some(*col)
    })
}

/// One valid row, ready to plan.
#[derive(Debug, Clone)]
struct Row {
    line: u64,
    email: Email,
    redirect: Option<String>,
    send: Option<bool>,
    message: Option<String>,
    display_name: Option<String>,
    groups: Vec<String>,
    partner: Option<String>,
}

impl Row {
    /// The row's ledger key: a digest of what it asks for, so a re-run recognises it and an
    /// edited row is carried out again. No address appears in the key (keys are logged).
    fn key(&self) -> EventKey {
        let mut groups = self.groups.clone();
        groups.sort();
        let canonical = json!([
            self.email.key(),
            self.redirect,
            self.send,
            self.message,
            self.display_name,
            groups,
            self.partner,
        ]);
        let digest = Sha256::digest(canonical.to_string().as_bytes());
        EventKey::new(IMPORT_SCOPE, IMPORT_SOURCE, hex::encode(&digest[..16]))
    }
}

/// A row the file itself gets wrong.
#[derive(Debug, Clone, PartialEq)]
struct RowError {
    line: u64,
    email: String,
    message: String,
}

/// The rows of a bulk-invite CSV: the valid ones, and errors by line.
#[derive(Debug, Default)]
struct Parsed {
    rows: Vec<Row>,
    errors: Vec<RowError>,
    /// Headings the import does not read.
    ignored: Vec<String>,
}

/// Line numbers of byte offsets. The csv reader's own line count goes wrong after blank
/// lines, and errors must name the line an editor shows.
struct Lines<'a> {
    bytes: &'a [u8],
    newlines: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        let newlines = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i)
            .collect();
        Lines { bytes, newlines }
    }

    /// The 1-based line of the first character of the record starting at `offset`, past
    /// any empty lines the reader counted into it.
    fn line_of(&self, mut offset: usize) -> u64 {
        while offset < self.bytes.len() && matches!(self.bytes[offset], b'\n' | b'\r') {
            offset += 1;
        }
        self.newlines.partition_point(|&n| n < offset) as u64 + 1
    }
}

fn parse_csv(bytes: &[u8]) -> anyhow::Result<Parsed> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let lines = Lines::new(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut parsed = Parsed::default();
    let mut columns: Option<HashMap<Column, usize>> = None;
    let mut first_data_row = true;
    let mut seen: HashMap<String, u64> = HashMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| lines.line_of(p.byte() as usize));
                parsed.errors.push(RowError {
                    line,
                    email: String::new(),
                    message: format!("unreadable CSV: {e}"),
                });
                continue;
            }
        };
        let line = record
            .position()
            .map_or(0, |p| lines.line_of(p.byte() as usize));
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let Some(cols) = &columns else {
            let first = record.get(0).unwrap_or_default().trim().to_lowercase();
            if first.starts_with("version:") {
                continue;
            }
            let mut map = HashMap::new();
            for (i, heading) in record.iter().enumerate() {
                match column_of(heading) {
                    Some(c) => {
                        map.entry(c).or_insert(i);
                    }
                    None if !heading.trim().is_empty() => {
                        parsed.ignored.push(heading.trim().to_string())
                    }
                    None => {}
                }
            }
            if !map.contains_key(&Column::Email) {
                bail!(
                    "line {line}: no 'Email address to invite [inviteeEmail]' column in the \
                     header row"
                );
            }
            columns = Some(map);
            continue;
        };
        let field = |c: Column| {
            cols.get(&c)
                .and_then(|i| record.get(*i))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let raw_email = field(Column::Email).unwrap_or_default().to_string();
        // The template's examples row, kept by mistake.
        if first_data_row && raw_email.to_lowercase().starts_with("example") {
            first_data_row = false;
            continue;
        }
        first_data_row = false;
        match parse_row(line, &field) {
            Ok(row) => {
                if let Some(first) = seen.insert(row.email.key(), line) {
                    parsed.errors.push(RowError {
                        line,
                        email: raw_email,
                        message: format!("the same address is on line {first}"),
                    });
                    seen.insert(row.email.key(), first);
                } else {
                    parsed.rows.push(row);
                }
            }
            Err(message) => parsed.errors.push(RowError {
                line,
                email: raw_email,
                message,
            }),
        }
    }
    if columns.is_none() {
        bail!("no header row: expected 'Email address to invite [inviteeEmail]', ...");
    }
    Ok(parsed)
}

fn parse_row<'a>(line: u64, field: &dyn Fn(Column) -> Option<&'a str>) -> Result<Row, String> {
    let email = match field(Column::Email) {
        None => return Err("Email address to invite: required".into()),
        Some(v) => Email::parse(v).map_err(|e| format!("Email address to invite: {e}"))?,
    };
    let redirect = field(Column::Redirect)
        .map(|v| match url::Url::parse(v) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => Ok(v.to_string()),
            Ok(_) => Err("Redirection url: must be an http or https URL".to_string()),
            Err(e) => Err(format!("Redirection url: {e}")),
        })
        .transpose()?;
    let send = field(Column::Send)
        .map(|v| match v.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!(
                "Send invitation message: '{v}' is not true or false"
            )),
        })
        .transpose()?;
    let message = field(Column::Message).map(String::from);
    if message.as_ref().is_some_and(|m| m.chars().count() > 2000) {
        return Err("Customized invitation message: longer than 2000 characters".into());
    }
    let display_name = field(Column::DisplayName).map(String::from);
    if display_name
        .as_ref()
        .is_some_and(|d| d.chars().count() > 256)
    {
        return Err("Display name: longer than 256 characters".into());
    }
    let mut groups = Vec::new();
    for g in field(Column::Groups)
        .unwrap_or_default()
        .split([';', ' '])
        .filter(|g| !g.trim().is_empty())
    {
        let id = uuid::Uuid::parse_str(g.trim())
            .map_err(|_| format!("Groups: '{g}' is not a group object id"))?;
        groups.push(id.hyphenated().to_string());
    }
    let partner = field(Column::Partner).map(String::from);
    Ok(Row {
        line,
        email,
        redirect,
        send,
        message,
        display_name,
        groups,
        partner,
    })
}

/// What became of one row.
#[derive(Debug, Clone)]
enum RowOutcome {
    Done {
        result: InviteeResult,
        user_id: Option<String>,
        /// Grants Graph refused (the guest is there; these were not given).
        problems: Option<String>,
    },
    /// Done by an earlier run.
    Skipped {
        user_id: Option<String>,
    },
    Failed(String),
    /// Not done for a transient reason: the next run retries it.
    Retry(String),
}

struct Importer<'a> {
    runtime: &'a Runtime,
    gate: CircuitGate,
    verified: Vec<String>,
    origin: String,
    delivery: Option<Delivery>,
    /// Set once Graph blocks invitations: the remaining rows are left for a later run.
    stopped: AtomicBool,
}

impl Importer<'_> {
    async fn row(&self, row: &Row) -> RowOutcome {
        if self.stopped.load(Ordering::SeqCst) {
            return RowOutcome::Retry("not started: invitations are blocked for the tenant".into());
        }
        match self.try_row(row).await {
            Ok(outcome) => outcome,
            Err(abort) => {
                if abort.class() == FailureClass::Blocked {
                    self.stopped.store(true, Ordering::SeqCst);
                }
                RowOutcome::Retry(abort.to_string())
            }
        }
    }

    async fn try_row(&self, row: &Row) -> Result<RowOutcome, Abort> {
        let rt = self.runtime;
        let now = rt.settings.clock.now();
        let key = row.key();
        match rt.ledger.claim_event(&key, ROW_LEASE, now).await? {
            Claim::Completed(record) => {
                return Ok(match record.status {
                    EventStatus::Rejected => RowOutcome::Failed(format!(
                        "rejected by an earlier run: {}",
                        record.reason.as_deref().unwrap_or("no reason recorded")
                    )),
                    _ => RowOutcome::Skipped {
                        user_id: record.outcomes.first().and_then(|o| o.user_id.clone()),
                    },
                });
            }
            Claim::InProgress { until } => {
                return Ok(RowOutcome::Retry(format!(
                    "another import holds this row until {until}"
                )));
            }
            Claim::Acquired => {}
        }
        let result = self.carry_out(row, now).await;
        let record = |status, reason: Option<String>, outcomes| EventRecord {
            key: key.clone(),
            event_type: IMPORT_TYPE.into(),
            status,
            reason,
            actor: None,
            outcomes,
            trust: None,
            recorded_at: now,
        };
        match result {
            Ok(Ok(outcome)) if outcome.result == InviteeResult::Rejected => {
                let reason = outcome.reason.clone().unwrap_or_else(|| "rejected".into());
                rt.ledger
                    .complete_event(&record(
                        EventStatus::Rejected,
                        Some(reason.clone()),
                        vec![outcome],
                    ))
                    .await?;
                Ok(RowOutcome::Failed(reason))
            }
            Ok(Ok(outcome)) => {
                let done = RowOutcome::Done {
                    result: outcome.result,
                    user_id: outcome.user_id.clone(),
                    problems: outcome.reason.clone(),
                };
                rt.ledger
                    .complete_event(&record(EventStatus::Completed, None, vec![outcome]))
                    .await?;
                Ok(done)
            }
            Ok(Err(refusal)) => {
                // Refused before any write, on facts that may change (a partner registered
                // later, a domain policy changed): not recorded, so the next run checks again.
                rt.ledger.release_event(&key).await?;
                Ok(RowOutcome::Failed(refusal))
            }
            Err(abort) => {
                if let Err(e) = rt.ledger.release_event(&key).await {
                    tracing::warn!(event = %key, error = %e, "could not release the row; its claim expires with its lease");
                }
                Err(abort)
            }
        }
    }

    /// Plans and onboards the row. `Ok(Err(reason))`: refused before anything was done.
    async fn carry_out(
        &self,
        row: &Row,
        now: OffsetDateTime,
    ) -> Result<Result<InviteeOutcome, String>, Abort> {
        let rt = self.runtime;
        if let Err(refusal) = check_invitee(&row.email, &self.verified, &rt.settings.domains) {
            return Ok(Err(refusal.reason));
        }
        let mut access = Access::default();
        access.groups.extend(row.groups.iter().cloned());
        let mut sponsors = Vec::new();
        let mut partner_name = None;
        if let Some(id) = &row.partner {
            let Some(partner) = rt.ledger.partner(id).await? else {
                return Ok(Err(format!(
                    "Partner: '{id}' is not registered (a partner.signed event registers it)"
                )));
            };
            if !partner.domains.iter().any(|d| row.email.in_domain(d)) {
                return Ok(Err(format!(
                    "domain {} is not one of partner {id}'s domains ({})",
                    row.email.domain(),
                    partner.domains.join(", ")
                )));
            }
            if access.is_empty() {
                access = partner.access.clone();
            }
            sponsors = partner.sponsors.clone();
            partner_name = Some(partner.name.clone());
        }
        let delivery = self.delivery.unwrap_or(match row.send {
            Some(true) => Delivery::Microsoft,
            Some(false) => Delivery::None,
            None => rt.settings.mail.delivery,
        });
        let plan = Plan {
            partner: None,
            invitees: vec![InviteePlan {
                email: row.email.clone(),
                display_name: row.display_name.clone(),
                access,
                sponsors,
                guest_inviter: false,
                // The name goes with the invitation; an existing guest keeps theirs, as with
                // the portal's bulk invite.
                patch: UserPatch::default(),
                delivery,
                message: row.message.clone(),
                redirect_url: row
                    .redirect
                    .clone()
                    .unwrap_or_else(|| rt.settings.redirect_url.clone()),
                origin: Origin::Import(self.origin.clone()),
                partner_id: row.partner.clone(),
            }],
            refused: Vec::new(),
        };
        let directory = rt.directory(Instant::now() + ROW_TIME);
        let unit = row.key();
        let source = format!("import:{}", self.origin);
        let mut outcomes = Onboarding {
            directory: directory.as_ref(),
            ledger: rt.ledger.as_ref(),
            mail: rt.mail.as_deref(),
            gate: &self.gate,
            now,
            probe_after: rt.settings.circuit_probe_after,
            unit: Some(&unit),
            partner_name,
            inviter_name: None,
            progress: None,
            trust_tenant_id: None,
            grant_source: Some(&source),
        }
        .run(&plan)
        .await?;
        match outcomes.pop() {
            Some(outcome) => Ok(Ok(outcome)),
            None => Err(Abort::transient(
                "onboarding answered no outcome for the row",
            )),
        }
    }
}

fn results_path(input: &Path) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "import".into());
    input.with_file_name(format!("{stem}-results.csv"))
}

pub async fn run(global: &Global, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let parsed = parse_csv(&bytes).with_context(|| format!("{}", args.file.display()))?;
    if !parsed.ignored.is_empty() {
        eprintln!("ignoring columns: {}", parsed.ignored.join(", "));
    }
    let ctx = Context::open(global, LocalOptions::default()).await?;
    let mut runtime = Runtime::from_env("import", &ctx.env).await?;
    if let Some(recorder) = &ctx.recorder {
        recorder.apply(&mut runtime)?;
    }
    let verified = runtime
        .directory(Instant::now() + ROW_TIME)
        .verified_domains()
        .await
        .context("reading the tenant's verified domains")?;
    // The same count the summary gives at the end: every row, unreadable ones included.
    let total = parsed.rows.len() + parsed.errors.len();
    eprintln!(
        "importing {total} row{} from {} into {}{}",
        if total == 1 { "" } else { "s" },
        args.file.display(),
        ctx.describe(),
        if parsed.errors.is_empty() {
            String::new()
        } else {
            format!(" ({} with errors, left out)", parsed.errors.len())
        }
    );
    let importer = Importer {
        runtime: &runtime,
        gate: CircuitGate::new(),
        verified,
        origin: args
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        delivery: args.delivery,
        stopped: AtomicBool::new(false),
    };
    let bar = Bar::new(parsed.rows.len() as u64);
    let importer = &importer;
    let bar_ref = &bar;
    let mut outcomes: Vec<(Row, RowOutcome)> = futures::stream::iter(parsed.rows.iter().cloned())
        .map(|row| async move {
            let outcome = importer.row(&row).await;
            bar_ref.done(1);
            (row, outcome)
        })
        .buffer_unordered(usize::from(args.concurrency))
        .collect()
        .await;
    bar.finish();
    outcomes.sort_by_key(|(row, _)| row.line);

    let results = args
        .results
        .clone()
        .unwrap_or_else(|| results_path(&args.file));
    write_results(&results, &outcomes, &parsed.errors)?;

    let count = |f: &dyn Fn(&RowOutcome) -> bool| outcomes.iter().filter(|(_, o)| f(o)).count();
    let invited = count(&|o| {
        matches!(
            o,
            RowOutcome::Done {
                result: InviteeResult::Invited,
                ..
            }
        )
    });
    let existed = count(&|o| {
        matches!(
            o,
            RowOutcome::Done {
                result: InviteeResult::Existed,
                ..
            }
        )
    });
    let skipped = count(&|o| matches!(o, RowOutcome::Skipped { .. }));
    let retry = count(&|o| matches!(o, RowOutcome::Retry(_)));
    let mut errors: Vec<RowError> = parsed.errors.clone();
    for (row, outcome) in &outcomes {
        match outcome {
            RowOutcome::Failed(m) | RowOutcome::Retry(m) => errors.push(RowError {
                line: row.line,
                email: row.email.to_string(),
                message: m.clone(),
            }),
            _ => {}
        }
    }
    errors.sort_by_key(|e| e.line);
    if let Some(recorder) = &ctx.recorder {
        print!("{}", recorder.render());
    }
    println!(
        "{} rows: {invited} invited, {existed} already in the tenant, {skipped} done by an \
         earlier run, {} with errors{}",
        outcomes.len() + parsed.errors.len(),
        errors.len(),
        if retry > 0 {
            format!(" ({retry} to retry)")
        } else {
            String::new()
        }
    );
    for e in &errors {
        println!("  line {}: {}", e.line, e.message);
    }
    let partial = outcomes
        .iter()
        .filter_map(|(row, o)| match o {
            RowOutcome::Done {
                problems: Some(p), ..
            } => Some((row.line, p)),
            _ => None,
        })
        .collect::<Vec<_>>();
    for (line, p) in &partial {
        println!("  line {line}: invited, but not granted: {p}");
    }
    println!("results: {}", results.display());
    drop(runtime);
    Ok(if retry > 0 {
        ExitCode::from(crate::run::RETRY_LATER)
    } else if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::EX_DATAERR)
    })
}

/// The results CSV: every row of the input by line, with what became of it.
fn write_results(
    path: &Path,
    outcomes: &[(Row, RowOutcome)],
    errors: &[RowError],
) -> anyhow::Result<()> {
    let mut lines: Vec<(u64, [String; 5])> = Vec::new();
    for (row, outcome) in outcomes {
        let (status, result, user, message) = match outcome {
            RowOutcome::Done {
                result,
                user_id,
                problems,
            } => (
                "Success",
                match result {
                    InviteeResult::Invited => "invited",
                    InviteeResult::Existed => "already in the tenant",
                    InviteeResult::Rejected => "rejected",
                    InviteeResult::Ended => "access ended",
                },
                user_id.clone().unwrap_or_default(),
                problems.clone().unwrap_or_default(),
            ),
            RowOutcome::Skipped { user_id } => (
                "Success",
                "done by an earlier run",
                user_id.clone().unwrap_or_default(),
                String::new(),
            ),
            RowOutcome::Failed(m) => ("Failure", "rejected", String::new(), m.clone()),
            RowOutcome::Retry(m) => ("Failure", "not done; run again", String::new(), m.clone()),
        };
        lines.push((
            row.line,
            [
                row.email.to_string(),
                status.into(),
                result.into(),
                user,
                message,
            ],
        ));
    }
    for e in errors {
        lines.push((
            e.line,
            [
                e.email.clone(),
                "Failure".into(),
                "invalid row".into(),
                String::new(),
                e.message.clone(),
            ],
        ));
    }
    lines.sort_by_key(|(line, _)| *line);
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("writing {}", path.display()))?;
    w.write_record([
        "Line",
        "Email address to invite",
        "Status",
        "Result",
        "Invited user id",
        "Error message",
    ])?;
    for (line, fields) in lines {
        let mut record = vec![line.to_string()];
        record.extend(fields);
        w.write_record(&record)?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "version:v1.0\n\
        Email address to invite [inviteeEmail] Required,Redirection url [inviteRedirectURL] Required,Send invitation message (true or false) [sendEmail],Customized invitation message [customizedMessageBody],Groups [groups],Shoe size\n";

    #[test]
    fn reads_the_portal_template() {
        let csv = format!(
            "{TEMPLATE}\
             Example: example@example.com,https://myapplications.microsoft.com,true,Hello,,\n\
             ann@fabrikam.com,https://myapplications.microsoft.com,true,\"Welcome, Ann\",,\n\
             \n\
             bad-address,https://x.example,false,,,\n\
             bob@fabrikam.com,ftp://x.example,false,,,\n\
             cy@fabrikam.com,,maybe,,,\n\
             ANN@fabrikam.com,,,,,\n\
             dee@fabrikam.com,,,,11111111-1111-1111-1111-111111111111;not-a-group,\n\
             eve@fabrikam.com,,FALSE,,11111111-1111-1111-1111-111111111111; 22222222-2222-2222-2222-222222222222,42\n"
        );
        let parsed = parse_csv(csv.as_bytes()).unwrap();
        assert_eq!(parsed.ignored, vec!["Shoe size"]);
        let lines: Vec<u64> = parsed.rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![4, 11]);
        let ann = &parsed.rows[0];
        assert_eq!(ann.send, Some(true));
        assert_eq!(ann.message.as_deref(), Some("Welcome, Ann"));
        let eve = &parsed.rows[1];
        assert_eq!(eve.send, Some(false));
        assert_eq!(eve.groups.len(), 2);
        let errors: Vec<(u64, &str)> = parsed
            .errors
            .iter()
            .map(|e| (e.line, e.message.as_str()))
            .collect();
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert_eq!(errors[0].0, 6, "{errors:?}");
        assert!(errors[0].1.starts_with("Email address to invite"));
        assert!(errors[1].1.starts_with("Redirection url"));
        assert!(errors[2].1.contains("'maybe' is not true or false"));
        assert_eq!(errors[3], (9, "the same address is on line 4"));
        assert!(errors[4].1.contains("'not-a-group'"));
    }

    #[test]
    fn plain_headers_and_no_version_line() {
        let parsed =
            parse_csv(b"email,display name,partner\nkim@litware.com,Kim Wu,litware\n").unwrap();
        assert_eq!(parsed.rows.len(), 1);
        assert_eq!(parsed.rows[0].display_name.as_deref(), Some("Kim Wu"));
        assert_eq!(parsed.rows[0].partner.as_deref(), Some("litware"));
        assert!(parse_csv(b"name,phone\nx,y\n").is_err());
    }

    #[test]
    fn row_keys_follow_content_not_position() {
        let a = parse_csv(b"email,groups\nkim@litware.com,11111111-1111-1111-1111-111111111111\n")
            .unwrap();
        let b =
            parse_csv(b"email,groups\n\nKIM@litware.com,11111111-1111-1111-1111-111111111111\n")
                .unwrap();
        let c = parse_csv(b"email,groups\nkim@litware.com,\n").unwrap();
        assert_eq!(a.rows[0].key(), b.rows[0].key());
        assert_ne!(a.rows[0].key(), c.rows[0].key());
        assert!(!a.rows[0].key().id.contains("kim"));
    }
}
