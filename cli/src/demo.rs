//! `demo`: a guided run of the functions against a fresh dev tenant, through the same
//! handler code the Lambda binaries serve, fed the AWS-shaped payloads Lambda would hand them.

use b2b::domain::trust::TrustState;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use b2b::app::runtime::Runtime;
use b2b::domain::email::mask;
use b2b::ports::directory::GUEST_INVITER_ROLE;
use b2b::ports::ledger::{EventKey, EventRecord, EventStatus, InviteeResult};
use b2b_dev_tenant::{Control, DevTenant, DevTenantOptions, MintToken, Seed};
use clap::Args;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::context::Context;
use crate::functions::{self, Function};
use crate::report::{self, Format};
use crate::run::{Input, payload_for};
use crate::{Global, aws};

/// The long help of the command.
pub const LONG_ABOUT: &str = "A guided run against a fresh dev tenant (contoso.com, with groups, one of \
        them dynamic, an app with roles, and internal sponsors): a partner signs, HR adds an \
        external worker, the partner's inviter invites colleagues, some guests redeem, the \
        clock moves on and the reminder sweep runs. Every step calls the same handler code \
        as the Lambda functions, with the payloads Lambda would deliver (SQS batches, signed \
        function URL requests, a scheduled event), the embedded ledger and a mail outbox. \
        Ends with a report of every guest. Needs no Azure or AWS settings; state goes to a \
        temporary folder unless --state names one.";

#[derive(Args, Debug)]
pub struct DemoArgs {
    #[command(flatten)]
    pub state: crate::StateDir,
    /// Show guests' addresses in full (masked by default).
    #[arg(long)]
    show_addresses: bool,
}

/// What the demo tenant was seeded with, by name.
struct Seeded {
    groups: HashMap<String, String>,
    portal_id: String,
    roles: HashMap<String, String>,
    /// Object id -> display name, for narration.
    names: HashMap<String, String>,
}

impl Seeded {
    fn read(control: &Control) -> anyhow::Result<Seeded> {
        let groups: HashMap<String, String> = control
            .groups()
            .into_iter()
            .map(|g| (g.display_name.clone(), g.id.clone()))
            .collect();
        let portal = control
            .service_principals()
            .into_iter()
            .find(|sp| sp.display_name == "Partner Portal")
            .context("the demo seed has no Partner Portal app")?;
        let roles = portal
            .app_roles
            .iter()
            .map(|r| (r.value.clone(), r.id.clone()))
            .collect();
        let mut names: HashMap<String, String> = groups
            .iter()
            .map(|(name, id)| (id.clone(), name.clone()))
            .collect();
        for r in &portal.app_roles {
            names.insert(
                format!("appRole:{}/{}", portal.id, r.id),
                format!("Partner Portal {}", r.value),
            );
        }
        names.insert("properties".into(), "profile details".into());
        names.insert(
            format!("directoryRole:{GUEST_INVITER_ROLE}"),
            "Guest Inviter role".into(),
        );
        for u in control.users() {
            if let Some(name) = u.display_name {
                names.insert(format!("sponsor:{}", u.id), format!("sponsor {name}"));
            }
        }
        Ok(Seeded {
            groups,
            portal_id: portal.id.clone(),
            roles,
            names,
        })
    }

    fn group(&self, name: &str) -> anyhow::Result<&str> {
        self.groups
            .get(name)
            .map(String::as_str)
            .with_context(|| format!("the demo seed has no group '{name}'"))
    }

    fn role(&self, value: &str) -> anyhow::Result<&str> {
        self.roles
            .get(value)
            .map(String::as_str)
            .with_context(|| format!("the demo seed has no app role '{value}'"))
    }

    fn grant_name(&self, grant: &str) -> String {
        self.names
            .get(grant)
            .cloned()
            .unwrap_or_else(|| grant.to_string())
    }
}

struct Demo {
    ctx: Context,
    seeded: Seeded,
    show: bool,
    step: u32,
}

fn cloud_event(event_type: &str, source: &str, id: &str, data: Value) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": source,
        "type": event_type,
        "time": OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or(OffsetDateTime::UNIX_EPOCH).format(&Rfc3339).unwrap_or_default(),
        "datacontenttype": "application/json",
        "data": data,
    })
}

impl Demo {
    fn control(&self) -> Control {
        self.ctx
            .dev_tenant()
            .expect("the demo runs its own dev tenant")
            .control()
    }

    /// Writes the tenant has answered so far.
    fn graph_writes(&self) -> usize {
        self.control()
            .requests()
            .iter()
            .filter(|r| r.is_write)
            .count()
    }

    /// A message with its addresses masked (unless shown) and object ids named.
    fn scrub(&self, text: &str) -> String {
        // The record keeps Graph's error code for logs and searches; a person reads the words.
        let mut out = text
            .split("; ")
            .map(without_error_code)
            .collect::<Vec<_>>()
            .join("; ");
        for (grant, name) in &self.seeded.names {
            if uuid::Uuid::parse_str(grant).is_ok() {
                out = out.replace(grant.as_str(), name);
            }
        }
        if self.show {
            return out;
        }
        out.split(' ')
            .map(|word| {
                let core = word.trim_matches(|c: char| ":,;()'\"".contains(c));
                if core.contains('@') && !core.contains('*') {
                    word.replace(core, &mask(core))
                } else {
                    word.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn address(&self, email: &str) -> String {
        if self.show {
            email.to_string()
        } else {
            mask(email)
        }
    }

    fn heading(&mut self, text: &str) {
        self.step += 1;
        println!("\n{}. {text}", self.step);
    }

    /// Runs one payload through a function and returns its answer and the ledger records of
    /// the events in it.
    async fn call(
        &self,
        function: Function,
        payload: Value,
        keys: &[EventKey],
    ) -> anyhow::Result<(Value, Vec<EventRecord>)> {
        let built = functions::build(&self.ctx, function).await?;
        let answer = built.invoke(payload).await?;
        let mut records = Vec::new();
        for key in keys {
            if let Some(r) = built.ledger.event(&key.scoped(function.name())).await? {
                records.push(r);
            }
        }
        Ok((answer, records))
    }

    /// Sends a CloudEvent the way its function normally receives it, and narrates the outcome.
    async fn send(&self, event: Value, via: &str) -> anyhow::Result<Vec<EventRecord>> {
        let key = EventKey::new(
            "",
            event["source"].as_str().unwrap_or_default(),
            event["id"].as_str().unwrap_or_default(),
        );
        let input = Input::recognise(event)?;
        let function = Function::for_event_type(match &input {
            Input::Event { event_type, .. } => event_type,
            _ => "",
        })
        .context("demo event of an unknown type")?;
        let via = match via {
            "webhook" => Some(crate::run::Via::Webhook),
            _ => Some(crate::run::Via::Sqs),
        };
        let (payload, trigger) = payload_for(&self.ctx, input, function, via, false)?;
        let writes_before = self.graph_writes();
        let started = OffsetDateTime::now_utc();
        let (answer, records) = self.call(function, payload, &[key]).await?;
        let writes = self.graph_writes() - writes_before;
        println!(
            "   -> {} ({trigger}): {writes} Graph write{}",
            function.name(),
            if writes == 1 { "" } else { "s" }
        );
        if let Some(status) = answer.get("statusCode") {
            println!("   answer: HTTP {status}");
        }
        if answer
            .get("batchItemFailures")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
        {
            bail!(
                "{}: the message failed and would be retried: {answer}",
                function.name()
            );
        }
        for r in &records {
            if r.recorded_at < started {
                println!(
                    "   already processed at {}: nothing done again",
                    r.recorded_at.replace_nanosecond(0)?.format(&Rfc3339)?
                );
            } else {
                self.narrate(r);
            }
        }
        Ok(records)
    }

    /// A partner's inviter calls guest-inviter-request's function URL with their own token.
    async fn request_as(&self, email: &str, event: Value) -> anyhow::Result<()> {
        let control = self.control();
        let user = control
            .users()
            .into_iter()
            .find(|u| {
                u.mail
                    .as_deref()
                    .is_some_and(|m| m.eq_ignore_ascii_case(email))
            })
            .with_context(|| format!("{} is not in the tenant", mask(email)))?;
        let audience = self
            .ctx
            .env
            .get("API_AUDIENCE")
            .cloned()
            .unwrap_or_else(|| crate::context::LOCAL_API_AUDIENCE.into());
        let token = control.mint_token(MintToken::new(user.id.clone(), audience))?;
        let key = EventKey::new(
            "",
            event["source"].as_str().unwrap_or_default(),
            event["id"].as_str().unwrap_or_default(),
        );
        let mut event = event;
        event["data"]["requestedBy"] = json!(user.id);
        let payload = aws::function_url_request(
            &event.to_string(),
            &[("authorization", format!("Bearer {token}"))],
        );
        let writes_before = self.graph_writes();
        let (answer, records) = self
            .call(Function::GuestInviterRequest, payload, &[key])
            .await?;
        let writes = self.graph_writes() - writes_before;
        println!(
            "   -> guest-inviter-request (function URL request, bearer token of {}): {writes} Graph writes",
            self.address(email)
        );
        let status = answer
            .get("statusCode")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        println!("   answer: HTTP {status}");
        if status >= 400 {
            let body: Value = answer
                .get("body")
                .and_then(Value::as_str)
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or_default();
            if let Some(detail) = body.get("detail").and_then(Value::as_str) {
                println!("   {}", self.scrub(detail));
            }
        }
        for r in &records {
            if r.status != EventStatus::Rejected || status < 400 {
                self.narrate(r);
            }
        }
        Ok(())
    }

    fn narrate_sweep(&self, summary: &Value) {
        let n = |k: &str| summary.get(k).and_then(Value::as_u64).unwrap_or(0);
        let ends = |k: &str| summary["ends"].get(k).and_then(Value::as_u64).unwrap_or(0);
        if ends("due") > 0 {
            println!(
                "   ends that came due {}: carried out {}, guests {}, held back {}",
                ends("due"),
                ends("carriedOut"),
                ends("guests"),
                ends("heldBack")
            );
        }
        println!(
            "   scanned {}, reminded {}, marked accepted {}, expired {}, skipped {}, failed {}",
            n("scanned"),
            n("reminded"),
            n("accepted"),
            n("expired"),
            n("skipped"),
            n("failed")
        );
        for action in summary
            .get("actions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let text = |k: &str| action.get(k).and_then(Value::as_str).unwrap_or_default();
            // The summary masks addresses itself.
            print!("   {:<24} {}", text("guest"), text("action"));
            match action.get("reason").and_then(Value::as_str) {
                Some(reason) => println!("  ({})", self.scrub(reason)),
                None => println!(),
            }
        }
    }

    fn narrate(&self, record: &EventRecord) {
        if record.status == EventStatus::Rejected {
            println!(
                "   rejected: {}",
                self.scrub(record.reason.as_deref().unwrap_or("no reason"))
            );
        }
        match &record.trust {
            Some(TrustState::Trusted { tenant_id, set, .. }) => println!(
                "   tenant {tenant_id} trusted in our cross-tenant access settings: \
                 automatic redemption {}, MFA {}, compliant devices {}",
                on(set.automatic_redemption),
                on(set.mfa_accepted),
                on(set.compliant_device_accepted)
            ),
            Some(TrustState::NotSet { reason, .. }) => {
                println!("   tenant trust not set: {}", self.scrub(reason));
            }
            None => {}
        }
        for o in &record.outcomes {
            let result = match o.result {
                InviteeResult::Invited => "invited",
                InviteeResult::Existed => "already a guest",
                InviteeResult::Rejected => "refused",
                InviteeResult::Ended => "access ended",
            };
            let granted: Vec<String> = o
                .granted
                .iter()
                .map(|g| self.seeded.grant_name(g))
                .collect();
            println!(
                "   {:<24} {:<16} {}",
                self.address(&o.email),
                result,
                granted.join(", ")
            );
            if let Some(reason) = &o.reason {
                println!("   {:<24} note: {}", "", self.scrub(reason));
            }
        }
    }
}

pub async fn run(global: &Global, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let state: PathBuf = match &global.state {
        Some(dir) => {
            if dir.join("dev-tenant").join("state.json").exists() || dir.join("ledger").exists() {
                bail!(
                    "{} already holds a dev tenant or a ledger: the demo needs a fresh folder",
                    dir.display()
                );
            }
            dir.clone()
        }
        // Kept afterwards, so the outbox's emails and the ledger can be looked at.
        None => tempfile::Builder::new()
            .prefix("b2b-invites-demo-")
            .tempdir()
            .context("creating a temporary folder")?
            .keep(),
    };
    let tenant = DevTenant::start(DevTenantOptions {
        state_dir: state.join("dev-tenant"),
        seed: Seed::Demo,
        ..DevTenantOptions::default()
    })
    .await
    .context("starting the dev tenant")?;
    let control = tenant.control();
    let seeded = Seeded::read(&control)?;
    let mut ctx = Context::in_process(tenant, &state, global.dry_run)?;
    ctx.env.remove("B2B_NOW");
    ctx.env.insert("DELIVERY".into(), "own".into());
    ctx.env.insert(
        "MAIL_FROM".into(),
        "Contoso Partner Team <partners@contoso.com>".into(),
    );
    ctx.env.insert(
        "ACCESS_RULES".into(),
        json!([{ "match": { "department": "Engineering" },
                 "access": { "groups": [seeded.group("Project Falcon")?] } }])
        .to_string(),
    );
    let mut demo = Demo {
        ctx,
        seeded,
        show: args.show_addresses,
        step: 0,
    };

    println!("b2b-invites demo: the functions' own code against an emulated Entra tenant");
    println!("state: {}", state.display());
    demo.heading("The tenant");
    let members: Vec<String> = control
        .users()
        .into_iter()
        .filter_map(|u| u.display_name)
        .collect();
    println!(
        "   contoso.com with {} people ({}), groups {}, app Partner Portal (Portal.Reader, Portal.Contributor)",
        members.len(),
        members.join(", "),
        {
            let mut g: Vec<String> = control
                .groups()
                .into_iter()
                .map(|g| match g.kind {
                    b2b_dev_tenant::GroupKind::Dynamic => format!("{} (dynamic)", g.display_name),
                    b2b_dev_tenant::GroupKind::Synced => format!("{} (synced)", g.display_name),
                    b2b_dev_tenant::GroupKind::Distribution => {
                        format!("{} (distribution list)", g.display_name)
                    }
                    b2b_dev_tenant::GroupKind::MailEnabledSecurity => {
                        format!("{} (mail-enabled security)", g.display_name)
                    }
                    b2b_dev_tenant::GroupKind::Assigned => g.display_name,
                })
                .collect();
            g.sort();
            g.join(", ")
        }
    );

    demo.heading(
        "Litware signs a partnership contract and asks us to trust its Entra tenant \
         (the contract system queues partner.signed)",
    );
    let litware = cloud_event(
        "partner.signed",
        "https://contracts.contoso.com",
        "contract-2031",
        json!({
            "partner": { "id": "litware", "name": "Litware Inc.", "domains": ["litware.com"] },
            "contacts": [
                { "email": "sam.lee@litware.com", "displayName": "Sam Lee", "inviter": true },
                { "email": "kim.wu@litware.com", "displayName": "Kim Wu" }
            ],
            "access": {
                "groups": [demo.seeded.group("Partners")?],
                "appRoles": [{ "resourceId": demo.seeded.portal_id, "appRoleId": demo.seeded.role("Portal.Reader")? }]
            },
            "sponsors": ["megan.bowen@contoso.com"],
            "delivery": "own",
            "trust": { "automaticRedemption": true, "mfa": true }
        }),
    );
    demo.send(litware.clone(), "sqs").await?;

    demo.heading("The same contract arrives again (SQS delivers at least once)");
    demo.send(litware, "sqs").await?;

    demo.heading(
        "Fabrikam signs through the contract system's webhook (signed with the shared secret)",
    );
    demo.send(
        cloud_event(
            "partner.signed",
            "https://contracts.contoso.com",
            "contract-2032",
            json!({
                "partner": { "id": "fabrikam", "name": "Fabrikam", "domains": ["fabrikam.com"] },
                "contacts": [{ "email": "ravi.patel@fabrikam.com", "displayName": "Ravi Patel" }],
                "access": { "groups": [demo.seeded.group("Partners")?, demo.seeded.group("All Engineering")?] },
                "sponsors": ["alex.wilber@contoso.com"],
                "delivery": "microsoft"
            }),
        ),
        "webhook",
    )
    .await?;

    demo.heading("HR adds an external engineer (hr.record.added; ACCESS_RULES give Engineering Project Falcon)");
    demo.send(
        cloud_event(
            "hr.record.added",
            "https://hr.contoso.com",
            "hr-E-1042",
            json!({
                "employeeId": "E-1042", "email": "jo.park@contractor.example", "displayName": "Jo Park",
                "company": "Contractor Ltd", "department": "Engineering", "jobTitle": "Engineer",
                "manager": "alex.wilber@contoso.com", "startDate": "2026-01-05", "endDate": "2099-06-30"
            }),
        ),
        "sqs",
    )
    .await?;

    demo.heading("A record for an address in the tenant's own domain is refused, not retried");
    demo.send(
        cloud_event(
            "hr.record.added",
            "https://hr.contoso.com",
            "hr-E-1043",
            json!({
                "employeeId": "E-1043", "email": "lee.gu@contoso.com", "displayName": "Lee Gu",
                "manager": "alex.wilber@contoso.com"
            }),
        ),
        "sqs",
    )
    .await?;

    demo.heading(
        "Litware's inviter invites two colleagues (guest.invite.requested, with their Entra token)",
    );
    demo.request_as(
        "sam.lee@litware.com",
        cloud_event(
            "guest.invite.requested",
            "https://partners.contoso.com/portal",
            "request-0001",
            json!({
                "invitees": [
                    { "email": "ann.ho@litware.com", "displayName": "Ann Ho" },
                    { "email": "raj.rao@litware.com", "displayName": "Raj Rao" }
                ],
                "delivery": "own",
                "message": "Ann and Raj join the Falcon project team."
            }),
        ),
    )
    .await?;

    demo.heading("Requests beyond the partner are refused whole: an outsider's address, a contact who is no inviter");
    demo.request_as(
        "sam.lee@litware.com",
        cloud_event(
            "guest.invite.requested",
            "https://partners.contoso.com/portal",
            "request-0003",
            json!({ "invitees": [{ "email": "tom@northwind.example", "displayName": "Tom Berg" }] }),
        ),
    )
    .await?;
    demo.request_as(
        "kim.wu@litware.com",
        cloud_event(
            "guest.invite.requested",
            "https://partners.contoso.com/portal",
            "request-0002",
            json!({ "invitees": [{ "email": "lou@litware.com" }] }),
        ),
    )
    .await?;

    demo.heading("Some guests redeem their invitations");
    for email in [
        "sam.lee@litware.com",
        "jo.park@contractor.example",
        "ann.ho@litware.com",
    ] {
        control
            .redeem(email)
            .with_context(|| format!("redeeming {}", mask(email)))?;
        println!("   {} accepted", demo.address(email));
    }

    demo.heading("Four days pass");
    control.advance(std::time::Duration::from_secs(4 * 86_400));
    let now = control.now().replace_nanosecond(0)?;
    demo.ctx.env.insert("B2B_NOW".into(), now.format(&Rfc3339)?);
    println!(
        "   the tenant's clock (and B2B_NOW) now read {}",
        now.format(&Rfc3339)?
    );

    demo.heading(
        "The reminder sweep runs (resend-stale, on its EventBridge schedule; REMIND_AFTER=3d)",
    );
    let writes_before = demo.graph_writes();
    let (summary, _) = demo
        .call(Function::ResendStale, aws::scheduled_event(now), &[])
        .await?;
    println!(
        "   -> resend-stale (scheduled event): {} Graph writes",
        demo.graph_writes() - writes_before
    );
    demo.narrate_sweep(&summary);

    demo.heading(
        "Fabrikam's contract ends (partner.ended, action revoke): the access it was given goes, \
         sponsors and accounts stay",
    );
    demo.send(
        cloud_event(
            "partner.ended",
            "https://contracts.contoso.com",
            "contract-2032-end",
            json!({ "partner": { "id": "fabrikam" }, "action": "revoke" }),
        ),
        "sqs",
    )
    .await?;

    demo.heading("Every guest");
    let runtime = Runtime::from_env("report", &demo.ctx.env).await?;
    let rows = report::collect_with(&demo.ctx, &runtime, true).await?;
    drop(runtime);
    report::render(&rows, Format::Table, demo.show)?;
    let outbox = demo.ctx.env.get("OUTBOX_DIR").cloned().unwrap_or_default();
    let mails = std::fs::read_dir(&outbox)
        .map(|d| d.filter_map(Result::ok).count())
        .unwrap_or(0);
    println!(
        "{mails} invitation emails of our own in {outbox}; {} sent by Microsoft (delivery \"microsoft\")",
        control.sent_mail().len()
    );
    println!(
        "state kept in {} (the dev tenant, the ledger, the outbox); remove it when done",
        state.display()
    );
    if let Some(recorder) = &demo.ctx.recorder {
        print!("{}", recorder.render());
    }
    Ok(ExitCode::SUCCESS)
}

/// A trust setting as the demo tells it: what this event set.
fn on(setting: Option<bool>) -> &'static str {
    match setting {
        Some(true) => "on",
        _ => "unchanged",
    }
}

/// `... (GroupRefusesMembers)` without the code in parentheses at its end.
fn without_error_code(text: &str) -> &str {
    match text.strip_suffix(')').and_then(|t| t.rsplit_once(" (")) {
        Some((words, code))
            if !code.is_empty() && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            words
        }
        _ => text,
    }
}
