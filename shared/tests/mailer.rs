//! The mailers: the file outbox, and SES v2 against the local AWS emulator
//! (`scripts/aws-emulator`).

mod aws_emulator;

use b2b::adapters::mailer::{InvitationVars, OutboxMailer, SesMailer, Templates};
use b2b::error::{Classify, FailureClass};
use b2b::ports::mailer::{Mail, Mailer, MailerError};
use std::path::{Path, PathBuf};

fn mail() -> Mail {
    Mail {
        from: "Contoso Invitations <invitations@contoso.example>".into(),
        to: "ann@litware.example".into(),
        to_name: Some("Ann Ho".into()),
        subject: "Your invitation".into(),
        text: "Hello Ann,\r\nopen https://redeem.example/r?x=1\r\n".into(),
        html: "<p>Hello Ann</p>\r\n".into(),
    }
}

fn eml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// The value of a header (first occurrence), unfolded.
fn header(message: &str, name: &str) -> Option<String> {
    let head = message.split("\r\n\r\n").next().unwrap_or_default();
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

#[tokio::test]
async fn mailer_outbox_writes_one_eml_per_message() {
    let dir = tempfile::tempdir().unwrap();
    let outbox_dir = dir.path().join("nested/outbox");
    let outbox = OutboxMailer::new(&outbox_dir);
    assert_eq!(outbox.dir(), outbox_dir);

    let id = outbox.send(&mail()).await.unwrap();
    assert!(id.ends_with("@contoso.example"), "{id}");
    let files = eml_files(&outbox_dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.ends_with(&format!("-{id}.eml")), "{name}");
    let stamp = name.strip_suffix(&format!("-{id}.eml")).unwrap();
    assert_eq!(stamp.len(), "20260302T090000.000Z".len(), "{stamp}");
    assert!(stamp.starts_with("20") && stamp.ends_with('Z'), "{stamp}");

    let message = std::fs::read_to_string(&files[0]).unwrap();
    assert_eq!(header(&message, "Message-ID"), Some(format!("<{id}>")));
    assert_eq!(
        header(&message, "From").as_deref(),
        Some("\"Contoso Invitations\" <invitations@contoso.example>")
    );
    assert_eq!(
        header(&message, "To").as_deref(),
        Some("\"Ann Ho\" <ann@litware.example>")
    );
    assert_eq!(
        header(&message, "Subject").as_deref(),
        Some("Your invitation")
    );
    assert!(header(&message, "Date").is_some_and(|d| d.ends_with("+0000")));
    assert_eq!(header(&message, "MIME-Version").as_deref(), Some("1.0"));
    let content_type = header(&message, "Content-Type").unwrap();
    assert!(
        content_type.starts_with("multipart/alternative"),
        "{content_type}"
    );
    let plain = message.find("Content-Type: text/plain").expect("text part");
    let html = message.find("Content-Type: text/html").expect("html part");
    assert!(plain < html, "the preferred (HTML) part comes last");
    assert!(message.contains("open https://redeem.example/r?x=1"));
    assert!(message.contains("<p>Hello Ann</p>"));

    let second = outbox.send(&mail()).await.unwrap();
    assert_ne!(second, id);
    let files = eml_files(&outbox_dir);
    assert_eq!(
        files.len(),
        2,
        "no temporary file may stay behind: {files:?}"
    );
    assert!(files.iter().all(|f| f.extension().unwrap() == "eml"));
}

#[tokio::test]
async fn mailer_outbox_rejects_header_injection_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = OutboxMailer::new(dir.path());
    let mut m = mail();
    m.subject = "Hi\r\nBcc: everyone@evil.example".into();
    let err = outbox.send(&m).await.unwrap_err();
    assert!(matches!(err, MailerError::Rejected(_)), "{err}");
    assert!(err.to_string().contains("subject"), "{err}");

    let mut m = mail();
    m.to = "ann@@litware.example".into();
    let err = outbox.send(&m).await.unwrap_err();
    assert_eq!(err.class(), FailureClass::Permanent);
    assert!(err.to_string().contains("to:"), "{err}");
    assert!(eml_files(dir.path()).is_empty());
}

#[tokio::test]
async fn mailer_outbox_empty_from_uses_the_default_sender() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = OutboxMailer::new(dir.path());
    let mut m = mail();
    m.from = String::new();
    m.to_name = None;
    outbox.send(&m).await.unwrap();
    let message = std::fs::read_to_string(&eml_files(dir.path())[0]).unwrap();
    assert_eq!(
        header(&message, "From").as_deref(),
        Some(format!("<{}>", OutboxMailer::DEFAULT_FROM).as_str())
    );
    assert_eq!(
        header(&message, "To").as_deref(),
        Some("<ann@litware.example>")
    );
}

#[tokio::test]
async fn mailer_outbox_unwritable_folder_is_transient_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let outbox = OutboxMailer::new(file.join("outbox"));
    let err = outbox.send(&mail()).await.unwrap_err();
    assert_eq!(err.class(), FailureClass::Transient, "{err}");
    assert!(err.to_string().contains("OUTBOX_DIR"), "{err}");
}

#[tokio::test]
async fn mailer_outbox_carries_a_rendered_invitation() {
    let templates = Templates::load(None).unwrap();
    let rendered = templates
        .render(
            "de",
            &InvitationVars {
                guest_name: Some("Jürgen <Admin>".into()),
                guest_email: "juergen@litware.example".into(),
                redeem_url: "https://login.microsoftonline.com/redeem?rd=abc&x=1".into(),
                partner_name: Some("Litware".into()),
                inviter_name: Some("Jörg Weiß".into()),
                organisation: "Contoso".into(),
                message: None,
                trust_tenant_id: None,
            },
        )
        .unwrap();
    let mail = rendered.into_mail(
        "invitations@contoso.example",
        "juergen@litware.example",
        Some("Jürgen <Admin>"),
    );
    let dir = tempfile::tempdir().unwrap();
    OutboxMailer::new(dir.path()).send(&mail).await.unwrap();
    let raw = std::fs::read_to_string(&eml_files(dir.path())[0]).unwrap();
    // Non-ASCII headers are RFC 2047 encoded words; the display name stays out of the address.
    let subject = header(&raw, "Subject").unwrap();
    assert!(subject.starts_with("=?utf-8?"), "{subject}");
    let to = header(&raw, "To").unwrap();
    assert!(
        to.starts_with("\"=?utf-8?") && to.ends_with("<juergen@litware.example>"),
        "{to}"
    );
    assert!(raw.contains("multipart/alternative"));
}

// ---- SES v2 against the emulator --------------------------------------------------------

async fn ses_client(test: &str) -> Option<aws_sdk_sesv2::Client> {
    Some(aws_sdk_sesv2::Client::new(
        &aws_emulator::config(test).await?,
    ))
}

/// Every object the emulator keeps, as JSON: `{service: {model: [objects]}}`.
async fn emulator_objects() -> serde_json::Value {
    let url = format!("{}/moto-api/data.json", aws_emulator::endpoint());
    reqwest::get(&url)
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The message SES recorded with `id`, wherever the emulator keeps it.
fn recorded_message(objects: &serde_json::Value, id: &str) -> Option<serde_json::Value> {
    objects
        .as_object()?
        .values()
        .filter_map(|models| models.as_object())
        .flat_map(|models| models.values())
        .filter_map(|list| list.as_array())
        .flatten()
        .find(|o| o.get("id").and_then(|v| v.as_str()) == Some(id))
        .cloned()
}

#[tokio::test]
async fn mailer_ses_sends_through_sesv2() {
    let Some(client) = ses_client("mailer_ses_sends_through_sesv2").await else {
        return;
    };
    let sender = format!(
        "invitations-{}@contoso.example",
        uuid::Uuid::new_v4().simple()
    );
    client
        .create_email_identity()
        .email_identity(&sender)
        .send()
        .await
        .unwrap();
    let mailer = SesMailer::new(client, format!("Contoso Invitations <{sender}>"));
    let mut m = mail();
    // An empty `from` means the configured sender.
    m.from = String::new();
    m.subject = "Einladung für Ann".into();
    let id = mailer.send(&m).await.unwrap();
    assert!(!id.is_empty());

    let objects = emulator_objects().await;
    let recorded = recorded_message(&objects, &id)
        .unwrap_or_else(|| panic!("SES did not record message {id}"));
    assert_eq!(
        recorded["source"].as_str(),
        Some(format!("\"Contoso Invitations\" <{sender}>").as_str())
    );
    assert_eq!(recorded["subject"].as_str(), Some("Einladung für Ann"));
    assert_eq!(
        recorded["destinations"]["ToAddresses"],
        serde_json::json!(["\"Ann Ho\" <ann@litware.example>"])
    );
    // The emulator keeps one body: the HTML one, when there is one.
    assert_eq!(recorded["body"].as_str(), Some(m.html.as_str()));
}

#[tokio::test]
async fn mailer_ses_unverified_sender_is_rejected() {
    let Some(client) = ses_client("mailer_ses_unverified_sender_is_rejected").await else {
        return;
    };
    let mailer = SesMailer::new(
        client,
        format!(
            "nobody-{}@unverified.example",
            uuid::Uuid::new_v4().simple()
        ),
    );
    let mut m = mail();
    m.from = String::new();
    let err = mailer.send(&m).await.unwrap_err();
    assert!(matches!(err, MailerError::Rejected(_)), "{err}");
    assert_eq!(err.class(), FailureClass::Permanent);
    let msg = err.to_string();
    assert!(msg.contains("MessageRejected"), "{msg}");
    assert!(
        !msg.contains("ann@litware.example"),
        "addresses are masked: {msg}"
    );
}

#[tokio::test]
async fn mailer_ses_unreachable_is_transient() {
    let client = aws_sdk_sesv2::Client::new(&aws_emulator::unreachable().await);
    let mailer = SesMailer::new(client, "invitations@contoso.example".into());
    let err = mailer.send(&mail()).await.unwrap_err();
    assert_eq!(err.class(), FailureClass::Transient, "{err}");
}
