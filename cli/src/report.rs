//! `report`: guests and their redemption state, from Graph joined with the ledger.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use b2b::app::runtime::Runtime;
use b2b::config::parse_duration;
use b2b::domain::email::mask;
use b2b::domain::trust::TrustState;
use b2b::ports::directory::DirectoryUser;
use b2b::ports::ledger::{GuestEnded, GuestRecord, Origin, PartnerRecord};
use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;

use crate::Global;
use crate::context::{Context, LocalOptions};
use crate::graph_read::GraphReader;

/// The long help of the command.
pub const LONG_ABOUT: &str = "List guests and their redemption state. Every guest the ledger knows (the \
        ones this product invited) is looked up in Graph, and every other guest Graph lists \
        as pending is added with origin `-`. Groups are the assigned groups each guest is in.";

#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    pub state: crate::StateDir,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Only guests in this state of their invitation.
    #[arg(long, value_enum)]
    status: Option<State>,
    /// Only guests of this partner (its id).
    #[arg(long, value_name = "ID")]
    partner: Option<String>,
    /// Only guests invited longer ago than this (90m, 36h, 7d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    older_than: Option<Duration>,
    /// Show addresses in full (masked by default: j***@example.com).
    #[arg(long)]
    show_addresses: bool,
    /// Leave out group memberships (saves one Graph read per assigned group).
    #[arg(long)]
    no_groups: bool,
    /// List the registered partners and the trust of their tenants instead of guests.
    #[arg(long, conflicts_with_all = ["status", "partner", "older_than", "no_groups"])]
    partners: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "camelCase")]
pub enum State {
    /// Invited, not yet redeemed.
    Pending,
    /// Redeemed.
    Accepted,
    /// Sign-in blocked (expired by resend-stale, or by an administrator).
    Disabled,
    /// No longer in the directory.
    Deleted,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Accepted => "accepted",
            State::Disabled => "disabled",
            State::Deleted => "deleted",
        }
    }
}

/// One guest in the report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GuestRow {
    pub email: String,
    pub user_id: String,
    pub partner: Option<String>,
    /// `partner:<id>`, `hr:<employee id>`, `request`, `import:<file>`, or `-` when this
    /// product did not invite the guest.
    pub origin: String,
    pub state: State,
    pub reminders: u32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub invited_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_reminded_at: Option<OffsetDateTime>,
    pub groups: Vec<String>,
    /// This product invited the guest (the ledger has a record of it).
    pub managed: bool,
    /// What the end of a contract or an assignment took away from the guest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<GuestEnded>,
}

fn origin_text(origin: &Origin) -> String {
    match origin {
        Origin::Partner(p) => format!("partner:{p}"),
        Origin::Hr(e) => format!("hr:{e}"),
        Origin::Request(_) => "request".into(),
        Origin::Import(f) => format!("import:{f}"),
    }
}

fn state_of(user: Option<&DirectoryUser>) -> State {
    match user {
        None => State::Deleted,
        Some(u) if u.account_enabled == Some(false) => State::Disabled,
        Some(u) if u.is_pending() => State::Pending,
        Some(_) => State::Accepted,
    }
}

/// Every guest: the ledger's, looked up in Graph, and Graph's other pending guests.
/// Groups are filled in by [`collect_with`].
pub async fn collect(runtime: &Runtime) -> anyhow::Result<Vec<GuestRow>> {
    let directory = runtime.directory(Instant::now() + Duration::from_secs(15 * 60));
    let records = runtime
        .ledger
        .guests()
        .await
        .context("reading the ledger")?;
    let mut pending: HashMap<String, DirectoryUser> = HashMap::new();
    let mut pages = directory.pending_guests(None);
    while let Some(page) = pages.try_next().await.context("listing pending guests")? {
        pending.extend(page.users.into_iter().map(|u| (u.id.clone(), u)));
    }
    drop(pages);
    let lookups: Vec<(GuestRecord, Option<DirectoryUser>)> = futures::stream::iter(records)
        .map(|record| {
            let directory = directory.clone();
            let known = pending.get(&record.user_id).cloned();
            async move {
                let user = match known {
                    Some(u) => Some(u),
                    None => directory.get_user(&record.user_id).await?,
                };
                Ok::<_, anyhow::Error>((record, user))
            }
        })
        .buffer_unordered(16)
        .try_collect()
        .await
        .context("looking guests up in Graph")?;
    let mut rows: Vec<GuestRow> = Vec::new();
    for (record, user) in lookups {
        pending.remove(&record.user_id);
        rows.push(GuestRow {
            email: record.email.clone(),
            groups: Vec::new(),
            state: state_of(user.as_ref()),
            partner: record.partner_id.clone(),
            origin: origin_text(&record.origin),
            reminders: record.reminders,
            invited_at: Some(record.invited_at),
            last_reminded_at: record.last_reminded_at,
            user_id: record.user_id,
            managed: true,
            ended: record.ended,
        });
    }
    for user in pending.into_values() {
        rows.push(GuestRow {
            email: user
                .mail
                .clone()
                .or_else(|| user.other_mails.first().cloned())
                .unwrap_or_default()
                .to_lowercase(),
            groups: Vec::new(),
            state: state_of(Some(&user)),
            partner: None,
            origin: "-".into(),
            reminders: 0,
            invited_at: user.created_date_time,
            last_reminded_at: None,
            user_id: user.id,
            managed: false,
            ended: None,
        });
    }
    rows.sort_by(|a, b| {
        (a.partner.is_none(), &a.partner, a.invited_at, &a.email).cmp(&(
            b.partner.is_none(),
            &b.partner,
            b.invited_at,
            &b.email,
        ))
    });
    Ok(rows)
}

/// Filters as the command line asks.
pub struct Filter {
    pub state: Option<State>,
    pub partner: Option<String>,
    pub older_than: Option<Duration>,
    pub now: OffsetDateTime,
}

impl Filter {
    fn keeps(&self, row: &GuestRow) -> bool {
        self.state.is_none_or(|s| s == row.state)
            && self
                .partner
                .as_ref()
                .is_none_or(|p| row.partner.as_deref() == Some(p.as_str()))
            && self.older_than.is_none_or(|d| {
                let d = time::Duration::try_from(d).unwrap_or(time::Duration::MAX);
                row.invited_at.is_some_and(|t| self.now - t >= d)
            })
    }
}

fn time_text(t: Option<OffsetDateTime>) -> String {
    t.and_then(|t| {
        t.format(&time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]"
        ))
        .ok()
    })
    .unwrap_or_else(|| "-".into())
}

/// Prints the rows in the chosen format.
pub fn render(rows: &[GuestRow], format: Format, show_addresses: bool) -> anyhow::Result<()> {
    let shown: Vec<GuestRow> = rows
        .iter()
        .cloned()
        .map(|mut r| {
            if !show_addresses {
                r.email = mask(&r.email);
            }
            r
        })
        .collect();
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&shown)?),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            w.write_record([
                "email",
                "userId",
                "partner",
                "origin",
                "state",
                "reminders",
                "invitedAt",
                "lastRemindedAt",
                "groups",
                "endedAt",
                "removed",
            ])?;
            for r in &shown {
                let rfc = |t: Option<OffsetDateTime>| {
                    t.and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default()
                };
                w.write_record([
                    r.email.clone(),
                    r.user_id.clone(),
                    r.partner.clone().unwrap_or_default(),
                    r.origin.clone(),
                    r.state.as_str().into(),
                    r.reminders.to_string(),
                    rfc(r.invited_at),
                    rfc(r.last_reminded_at),
                    r.groups.join(";"),
                    rfc(r.ended.as_ref().and_then(|e| e.at)),
                    r.ended
                        .as_ref()
                        .map(|e| e.removed.join(";"))
                        .unwrap_or_default(),
                ])?;
            }
            w.flush()?;
        }
        Format::Table => {
            let mut table = Table::new();
            table.load_preset(UTF8_FULL_CONDENSED).set_header([
                "guest",
                "partner",
                "origin",
                "state",
                "reminders",
                "invited",
                "groups",
                "ended",
            ]);
            for r in &shown {
                table.add_row([
                    r.email.clone(),
                    r.partner.clone().unwrap_or_else(|| "-".into()),
                    r.origin.clone(),
                    r.state.as_str().into(),
                    r.reminders.to_string(),
                    time_text(r.invited_at),
                    if r.groups.is_empty() {
                        "-".into()
                    } else {
                        r.groups.join(", ")
                    },
                    match &r.ended {
                        Some(e) => format!("{}: {} taken away", time_text(e.at), e.removed.len()),
                        None => "-".into(),
                    },
                ]);
            }
            println!("{table}");
            let count = |s: State| shown.iter().filter(|r| r.state == s).count();
            println!(
                "{} guests: {} pending, {} accepted, {} disabled, {} deleted",
                shown.len(),
                count(State::Pending),
                count(State::Accepted),
                count(State::Disabled),
                count(State::Deleted)
            );
        }
    }
    Ok(())
}

pub async fn run(global: &Global, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let ctx = Context::open(global, LocalOptions::default()).await?;
    let runtime = Runtime::from_env("report", &ctx.env).await?;
    if args.partners {
        let partners = runtime.ledger.partners().await?;
        render_partners(&partners, args.format)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows = collect_with(&ctx, &runtime, !args.no_groups).await?;
    let filter = Filter {
        state: args.status,
        partner: args.partner,
        older_than: args.older_than,
        now: ctx.now()?,
    };
    let rows: Vec<GuestRow> = rows.into_iter().filter(|r| filter.keeps(r)).collect();
    render(&rows, args.format, args.show_addresses)?;
    Ok(ExitCode::SUCCESS)
}

/// One registered partner in the report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct PartnerRow<'a> {
    id: &'a str,
    name: &'a str,
    domains: &'a [String],
    inviters: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    trust: Option<&'a TrustState>,
}

/// What a partner's trust says in one line.
fn trust_text(trust: Option<&TrustState>) -> String {
    match trust {
        None => "-".into(),
        Some(TrustState::NotSet { tenant_id, reason }) => match tenant_id {
            Some(t) => format!("not set for tenant {t}: {reason}"),
            None => format!("not set: {reason}"),
        },
        Some(TrustState::Trusted { tenant_id, set, .. }) => {
            let mut what = Vec::new();
            if set.automatic_redemption == Some(true) {
                what.push("automatic redemption");
            }
            if set.mfa_accepted == Some(true) {
                what.push("MFA");
            }
            if set.compliant_device_accepted == Some(true) {
                what.push("compliant devices");
            }
            if what.is_empty() {
                format!("tenant {tenant_id}: as asked already (nothing set by us)")
            } else {
                format!("tenant {tenant_id}: {} (set by us)", what.join(", "))
            }
        }
    }
}

fn render_partners(partners: &[PartnerRecord], format: Format) -> anyhow::Result<()> {
    let rows: Vec<PartnerRow<'_>> = partners
        .iter()
        .map(|p| PartnerRow {
            id: &p.id,
            name: &p.name,
            domains: &p.domains,
            inviters: p.inviters.len(),
            trust: p.trust.as_ref(),
        })
        .collect();
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            w.write_record(["id", "name", "domains", "inviters", "trust"])?;
            for r in &rows {
                w.write_record([
                    r.id.to_string(),
                    r.name.to_string(),
                    r.domains.join(";"),
                    r.inviters.to_string(),
                    trust_text(r.trust),
                ])?;
            }
            w.flush()?;
        }
        Format::Table => {
            let mut table = Table::new();
            table.load_preset(UTF8_FULL_CONDENSED).set_header([
                "partner",
                "name",
                "domains",
                "inviters",
                "tenant trust",
            ]);
            for r in &rows {
                table.add_row([
                    r.id.to_string(),
                    r.name.to_string(),
                    r.domains.join(", "),
                    r.inviters.to_string(),
                    trust_text(r.trust),
                ]);
            }
            println!("{table}");
            println!("{} partners", rows.len());
        }
    }
    Ok(())
}

/// [`collect`], with group memberships read through the command's credentials.
pub async fn collect_with(
    ctx: &Context,
    runtime: &Runtime,
    groups: bool,
) -> anyhow::Result<Vec<GuestRow>> {
    let mut rows = collect(runtime).await?;
    if groups && let Some(reader) = GraphReader::from_env(&ctx.env, runtime)? {
        let memberships = reader
            .memberships()
            .await
            .context("reading group members")?;
        for row in &mut rows {
            row.groups = memberships.get(&row.user_id).cloned().unwrap_or_default();
        }
    }
    Ok(rows)
}
