//! Invitation email templates (SPEC section 3): a subject, a text and an HTML body per
//! language, rendered with minijinja.
//!
//! The built-in templates are `shared/templates/invitation.<lang>.{subject,txt,html}` for
//! `en` and `de`. `MAIL_TEMPLATES` names a folder with the same file names that replaces them
//! as a whole; it must hold `en`, the fallback for every other language.
//!
//! Undefined variables are errors (strict mode), and every template is rendered with sample
//! values when loaded, so a template that names an unknown variable fails at start, naming
//! the file and the variable. Values are HTML-escaped in the `.html` templates.

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::error::{Classify, FailureClass};
use crate::ports::mailer::Mail;

/// The variables a template may use.
pub const VARIABLES: &[&str] = &[
    "guest_name",
    "guest_email",
    "redeem_url",
    "partner_name",
    "inviter_name",
    "organisation",
    "message",
    "trust_tenant_id",
];

/// The language used when a requested one has no templates.
pub const FALLBACK_LANGUAGE: &str = "en";

const KINDS: [Kind; 3] = [Kind::Subject, Kind::Text, Kind::Html];

const BUILT_IN: &[(&str, [&str; 3])] = &[
    (
        "en",
        [
            include_str!("../../../templates/invitation.en.subject"),
            include_str!("../../../templates/invitation.en.txt"),
            include_str!("../../../templates/invitation.en.html"),
        ],
    ),
    (
        "de",
        [
            include_str!("../../../templates/invitation.de.subject"),
            include_str!("../../../templates/invitation.de.txt"),
            include_str!("../../../templates/invitation.de.html"),
        ],
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Subject,
    Text,
    Html,
}

impl Kind {
    fn extension(self) -> &'static str {
        match self {
            Kind::Subject => "subject",
            Kind::Text => "txt",
            Kind::Html => "html",
        }
    }

    fn from_extension(ext: &str) -> Option<Kind> {
        KINDS.into_iter().find(|k| k.extension() == ext)
    }
}

/// The template name minijinja sees; the `.html` ending turns on HTML auto-escaping.
fn file_name(lang: &str, kind: Kind) -> String {
    format!("invitation.{lang}.{}", kind.extension())
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("MAIL_TEMPLATES: cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("MAIL_TEMPLATES: {dir} lacks {file}")]
    Missing { dir: String, file: String },
    #[error("MAIL_TEMPLATES: {path}: {problem}")]
    BadFile { path: String, problem: String },
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    #[error(
        "{file}: unknown variable '{variable}' (known: guest_name, guest_email, redeem_url, \
         partner_name, inviter_name, organisation, message, trust_tenant_id)"
    )]
    UnknownVariable { file: String, variable: String },
    #[error("{file}: {message}")]
    Render { file: String, message: String },
    #[error("{field}: {problem}")]
    InvalidValue {
        field: &'static str,
        problem: String,
    },
}

impl Classify for TemplateError {
    fn class(&self) -> FailureClass {
        FailureClass::Permanent
    }
}

/// The values an invitation template sees. Absent optional values are `none` to the
/// templates (defined, so strict mode accepts them), tested with `{% if message %}` or
/// `{{ guest_name or guest_email }}`.
#[derive(Clone, Serialize)]
pub struct InvitationVars {
    pub guest_name: Option<String>,
    pub guest_email: String,
    /// Secret: whoever has it can redeem the invitation. Never logged.
    pub redeem_url: String,
    pub partner_name: Option<String>,
    pub inviter_name: Option<String>,
    /// The inviting organisation (the tenant's display name).
    pub organisation: String,
    pub message: Option<String>,
    /// Our tenant id, in the emails of a trusted partner's inviters: their administrator
    /// allows outbound automatic redemption for it.
    pub trust_tenant_id: Option<String>,
}

impl std::fmt::Debug for InvitationVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvitationVars")
            .field(
                "guest_email",
                &crate::domain::email::mask(&self.guest_email),
            )
            .field("redeem_url", &"<redacted>")
            .field("partner_name", &self.partner_name)
            .field("organisation", &self.organisation)
            .finish_non_exhaustive()
    }
}

/// A rendered invitation.
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedMail {
    /// One line.
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl std::fmt::Debug for RenderedMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bodies hold the redeem URL.
        f.debug_struct("RenderedMail")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl RenderedMail {
    pub fn into_mail(self, from: &str, to: &str, to_name: Option<&str>) -> Mail {
        Mail {
            from: from.to_string(),
            to: to.to_string(),
            to_name: to_name.map(str::to_string),
            subject: self.subject,
            text: self.text,
            html: self.html,
        }
    }
}

/// One language's three templates, and where they came from (for error messages).
#[derive(Debug, Clone)]
struct Language {
    /// Template names as minijinja sees them, see [`file_name`].
    names: [String; 3],
    sources: [String; 3],
    origins: [String; 3],
}

/// The loaded, validated templates.
#[derive(Debug, Clone)]
pub struct Templates {
    languages: BTreeMap<String, Language>,
}

impl Templates {
    /// The built-in templates (`dir: None`) or those in `dir`, each validated.
    pub fn load(dir: Option<&Path>) -> Result<Templates, TemplateError> {
        let languages = match dir {
            None => built_in(),
            Some(dir) => from_dir(dir)?,
        };
        if !languages.contains_key(FALLBACK_LANGUAGE) {
            let dir = dir.map(|d| d.display().to_string()).unwrap_or_default();
            return Err(TemplateError::Missing {
                dir,
                file: format!(
                    "{} (every folder needs the {FALLBACK_LANGUAGE} templates)",
                    file_name(FALLBACK_LANGUAGE, Kind::Subject)
                ),
            });
        }
        let templates = Templates { languages };
        for language in templates.languages.values() {
            validate(language)?;
        }
        Ok(templates)
    }

    /// The languages with templates, sorted.
    pub fn languages(&self) -> Vec<&str> {
        self.languages.keys().map(String::as_str).collect()
    }

    /// Renders the invitation in `lang` (`de`, `de-CH`, `DE`...), falling back to English.
    pub fn render(&self, lang: &str, vars: &InvitationVars) -> Result<RenderedMail, TemplateError> {
        check_vars(vars)?;
        let lang = self.pick(lang);
        render_language(&self.languages[lang], vars)
    }

    fn pick(&self, requested: &str) -> &str {
        let requested = requested.trim().to_ascii_lowercase().replace('_', "-");
        let primary = requested.split('-').next().unwrap_or_default().to_string();
        [requested, primary]
            .into_iter()
            .find_map(|l| self.languages.get_key_value(&l).map(|(k, _)| k.as_str()))
            .unwrap_or(FALLBACK_LANGUAGE)
    }
}

fn built_in() -> BTreeMap<String, Language> {
    BUILT_IN
        .iter()
        .map(|(lang, sources)| {
            let origins = KINDS.map(|k| format!("built-in {}", file_name(lang, k)));
            (
                lang.to_string(),
                Language {
                    names: KINDS.map(|k| file_name(lang, k)),
                    sources: sources.map(str::to_string),
                    origins,
                },
            )
        })
        .collect()
}

fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let primary = parts.next().unwrap_or_default();
    (2..=3).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_lowercase())
        && parts.all(|p| {
            (1..=8).contains(&p.len())
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

fn from_dir(dir: &Path) -> Result<BTreeMap<String, Language>, TemplateError> {
    let io = |path: &Path, source| TemplateError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut found: BTreeMap<String, [Option<(String, String)>; 3]> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        // Other files (a README, images kept beside the templates) are not ours to judge.
        let Some(rest) = name.strip_prefix("invitation.") else {
            continue;
        };
        let bad = |problem: &str| TemplateError::BadFile {
            path: path.display().to_string(),
            problem: problem.to_string(),
        };
        let (lang, ext) = rest
            .rsplit_once('.')
            .ok_or_else(|| bad("expected invitation.<language>.<subject|txt|html>"))?;
        let kind = Kind::from_extension(ext)
            .ok_or_else(|| bad("unknown ending: expected .subject, .txt or .html"))?;
        if !is_language_tag(lang) {
            return Err(bad(
                "the language must be a lower-case tag such as en, de or pt-br",
            ));
        }
        let source = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        let slot = KINDS.iter().position(|k| *k == kind).unwrap_or_default();
        found.entry(lang.to_string()).or_default()[slot] =
            Some((source, path.display().to_string()));
    }
    let mut languages = BTreeMap::new();
    for (lang, files) in found {
        let mut sources: [String; 3] = Default::default();
        let mut origins: [String; 3] = Default::default();
        for (i, file) in files.into_iter().enumerate() {
            let (source, origin) = file.ok_or_else(|| TemplateError::Missing {
                dir: dir.display().to_string(),
                file: file_name(&lang, KINDS[i]),
            })?;
            sources[i] = source;
            origins[i] = origin;
        }
        let names = KINDS.map(|k| file_name(&lang, k));
        languages.insert(
            lang,
            Language {
                names,
                sources,
                origins,
            },
        );
    }
    Ok(languages)
}

fn environment(language: &Language) -> Result<Environment<'_>, TemplateError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Block tags on lines of their own leave no blank lines behind in the text body.
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    for i in 0..KINDS.len() {
        env.add_template(&language.names[i], &language.sources[i])
            .map_err(|e| TemplateError::Syntax {
                file: language.origins[i].clone(),
                message: describe(&e),
            })?;
    }
    Ok(env)
}

fn describe(e: &minijinja::Error) -> String {
    match (e.detail(), e.line()) {
        (Some(detail), Some(line)) => format!("line {line}: {} ({detail})", e.kind()),
        (None, Some(line)) => format!("line {line}: {}", e.kind()),
        _ => e.to_string(),
    }
}

/// Rejects unknown variables by name, then renders with sample values (every optional one
/// present, then every optional one absent) to catch what only shows at render time.
fn validate(language: &Language) -> Result<(), TemplateError> {
    let env = environment(language)?;
    let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
    for i in 0..KINDS.len() {
        let template = env
            .get_template(&language.names[i])
            .map_err(|e| TemplateError::Syntax {
                file: language.origins[i].clone(),
                message: describe(&e),
            })?;
        let mut unknown: Vec<String> = template
            .undeclared_variables(false)
            .into_iter()
            .filter(|v| !VARIABLES.contains(&v.as_str()) && !globals.contains(v.as_str()))
            .collect();
        unknown.sort();
        if let Some(variable) = unknown.into_iter().next() {
            return Err(TemplateError::UnknownVariable {
                file: language.origins[i].clone(),
                variable,
            });
        }
    }
    for sample in [sample(true), sample(false)] {
        let rendered = render_language(language, &sample)?;
        if rendered.subject.is_empty() {
            return Err(TemplateError::Render {
                file: language.origins[0].clone(),
                message: "renders an empty subject".into(),
            });
        }
    }
    Ok(())
}

fn sample(with_optional: bool) -> InvitationVars {
    let some = |v: &str| with_optional.then(|| v.to_string());
    InvitationVars {
        guest_name: some("Sam Lee"),
        guest_email: "sam@litware.example".into(),
        redeem_url: "https://login.microsoftonline.com/redeem?rd=sample".into(),
        partner_name: some("Litware Inc."),
        inviter_name: some("Kim Wu"),
        organisation: "Contoso".into(),
        message: some("Welcome aboard <3"),
        trust_tenant_id: some("00000000-0000-4000-8000-000000000001"),
    }
}

fn render_language(
    language: &Language,
    vars: &InvitationVars,
) -> Result<RenderedMail, TemplateError> {
    let env = environment(language)?;
    let render = |i: usize| {
        let file = || language.origins[i].clone();
        let template = env
            .get_template(&language.names[i])
            .map_err(|e| TemplateError::Syntax {
                file: file(),
                message: describe(&e),
            })?;
        template.render(vars).map_err(|e| TemplateError::Render {
            file: file(),
            message: describe(&e),
        })
    };
    let (subject, text, html) = (render(0)?, render(1)?, render(2)?);
    Ok(RenderedMail {
        // A subject is one header line: line breaks from values or the template never reach
        // the message headers.
        subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
        text,
        html,
    })
}

fn check_vars(vars: &InvitationVars) -> Result<(), TemplateError> {
    if vars.guest_email.trim().is_empty() {
        return Err(TemplateError::InvalidValue {
            field: "guest_email",
            problem: "empty".into(),
        });
    }
    if vars.organisation.trim().is_empty() {
        return Err(TemplateError::InvalidValue {
            field: "organisation",
            problem: "empty".into(),
        });
    }
    // The URL itself is never part of the message: it is a secret.
    match url::Url::parse(&vars.redeem_url) {
        Ok(url) if url.scheme() == "https" => Ok(()),
        _ => Err(TemplateError::InvalidValue {
            field: "redeem_url",
            problem: "must be an https URL".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> InvitationVars {
        InvitationVars {
            guest_name: Some("Ann <Ho> & \"Co\"".into()),
            guest_email: "ann@litware.com".into(),
            redeem_url: "https://login.microsoftonline.com/redeem?rd=abc&tenant=t".into(),
            partner_name: Some("Litware".into()),
            inviter_name: Some("Sam Lee".into()),
            trust_tenant_id: None,
            organisation: "Contoso".into(),
            message: Some("See you\n<b>soon</b>".into()),
        }
    }

    fn write(dir: &Path, name: &str, body: &str) {
        std::fs::write(dir.join(name), body).unwrap();
    }

    fn custom_en(dir: &Path) {
        write(dir, "invitation.en.subject", "Join {{ organisation }}\n");
        write(
            dir,
            "invitation.en.txt",
            "Hi {{ guest_name }}: {{ redeem_url }}\n",
        );
        write(
            dir,
            "invitation.en.html",
            "<p>{{ guest_name }}</p><a href=\"{{ redeem_url }}\">go</a>\n",
        );
    }

    #[test]
    fn mailer_templates_built_in_render_in_english_and_german() {
        let t = Templates::load(None).unwrap();
        assert_eq!(t.languages(), vec!["de", "en"]);
        let en = t.render("en", &vars()).unwrap();
        assert_eq!(
            en.subject,
            "Sam Lee invited you to collaborate with Contoso"
        );
        assert!(en.text.contains("Hello Ann <Ho> & \"Co\","), "{}", en.text);
        assert!(
            en.text
                .contains("https://login.microsoftonline.com/redeem?rd=abc&tenant=t")
        );
        assert!(en.text.contains("as part of Litware"));
        assert!(
            en.text.contains("See you\n<b>soon</b>"),
            "text is not escaped"
        );
        assert!(
            !en.text.contains("\n\n\n"),
            "no stray blank lines:\n{}",
            en.text
        );

        let de = t.render("de-CH", &vars()).unwrap();
        assert_eq!(
            de.subject,
            "Sam Lee lädt Sie zur Zusammenarbeit mit Contoso ein"
        );
        assert!(de.text.starts_with("Guten Tag"));
        assert!(de.html.contains("lang=\"de\""));

        let fallback = t.render("fr", &vars()).unwrap();
        assert_eq!(fallback, en, "unknown languages fall back to English");
    }

    #[test]
    fn mailer_templates_escape_values_in_html_only() {
        let t = Templates::load(None).unwrap();
        let en = t.render("en", &vars()).unwrap();
        assert!(
            en.html.contains("Ann &lt;Ho&gt; &amp; &quot;Co&quot;"),
            "{}",
            en.html
        );
        assert!(
            en.html.contains("&lt;b&gt;soon&lt;&#x2f;b&gt;"),
            "{}",
            en.html
        );
        assert!(!en.html.contains("<b>soon"));
        // The URL survives as an attribute value: entities decode back to the same URL.
        assert!(en.html.contains("rd=abc&amp;tenant=t"), "{}", en.html);
    }

    #[test]
    fn mailer_templates_without_optional_values() {
        let t = Templates::load(None).unwrap();
        let bare = InvitationVars {
            guest_name: None,
            partner_name: None,
            inviter_name: None,
            message: None,
            ..vars()
        };
        let en = t.render("en", &bare).unwrap();
        assert_eq!(en.subject, "Your invitation to collaborate with Contoso");
        assert!(en.text.starts_with("Hello ann@litware.com,"));
        assert!(!en.text.contains("None") && !en.text.contains("none"));
        assert!(!en.html.contains("blockquote"));
    }

    #[test]
    fn mailer_templates_end_a_sentence_once_after_a_name_ending_in_a_period() {
        let templates = Templates::load(None).unwrap();
        let mut v = vars();
        v.partner_name = Some("Litware Inc.".into());
        let mail = templates.render("en", &v).unwrap();
        assert!(
            mail.text.contains("as part of Litware Inc."),
            "{}",
            mail.text
        );
        assert!(!mail.text.contains("Inc.."), "{}", mail.text);
        assert!(!mail.html.contains("Inc.."), "{}", mail.html);
    }

    #[test]
    fn mailer_templates_subject_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        custom_en(dir.path());
        write(
            dir.path(),
            "invitation.en.subject",
            "Join\n{{ organisation }}\n\n",
        );
        let t = Templates::load(Some(dir.path())).unwrap();
        let mut v = vars();
        v.organisation = "Contoso\r\nBcc: someone@evil.example".into();
        assert_eq!(
            t.render("en", &v).unwrap().subject,
            "Join Contoso Bcc: someone@evil.example"
        );
    }

    #[test]
    fn mailer_templates_custom_folder_replaces_built_ins() {
        let dir = tempfile::tempdir().unwrap();
        custom_en(dir.path());
        write(dir.path(), "README.md", "not a template");
        let t = Templates::load(Some(dir.path())).unwrap();
        assert_eq!(t.languages(), vec!["en"]);
        let r = t.render("de", &vars()).unwrap();
        assert_eq!(r.subject, "Join Contoso");
        assert_eq!(
            r.text,
            "Hi Ann <Ho> & \"Co\": https://login.microsoftonline.com/redeem?rd=abc&tenant=t"
        );
    }

    #[test]
    fn mailer_templates_unknown_variable_names_file_and_variable() {
        let dir = tempfile::tempdir().unwrap();
        custom_en(dir.path());
        write(
            dir.path(),
            "invitation.en.txt",
            "Hi {{ guest_name }} from {{ company }}\n",
        );
        let err = Templates::load(Some(dir.path())).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("invitation.en.txt"), "{msg}");
        assert!(msg.contains("unknown variable 'company'"), "{msg}");
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    }

    #[test]
    fn mailer_templates_load_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        custom_en(dir.path());
        write(dir.path(), "invitation.de.subject", "Hallo\n");
        let msg = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(msg.contains("lacks invitation.de.txt"), "{msg}");

        let dir = tempfile::tempdir().unwrap();
        custom_en(dir.path());
        write(
            dir.path(),
            "invitation.en.html",
            "<p>{% if guest_name %}unclosed</p>\n",
        );
        let msg = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(msg.contains("invitation.en.html: line"), "{msg}");

        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "invitation.de.subject", "a");
        write(dir.path(), "invitation.de.txt", "b");
        write(dir.path(), "invitation.de.html", "c");
        let msg = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(
            msg.contains("invitation.en.subject"),
            "English is required: {msg}"
        );

        let dir = tempfile::tempdir().unwrap();
        custom_en(dir.path());
        write(dir.path(), "invitation.en.text", "typo");
        let msg = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(
            msg.contains("invitation.en.text") && msg.contains("unknown ending"),
            "{msg}"
        );

        let msg = Templates::load(Some(Path::new("/nonexistent/templates")))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("MAIL_TEMPLATES: cannot read /nonexistent/templates"),
            "{msg}"
        );
    }

    #[test]
    fn mailer_templates_fail_at_load_when_optional_values_break_them() {
        let dir = tempfile::tempdir().unwrap();
        custom_en(dir.path());
        // Fine with a message, broken without one: the load must catch it.
        write(dir.path(), "invitation.en.txt", "{{ message[0] }}\n");
        let msg = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(msg.contains("invitation.en.txt"), "{msg}");
    }

    #[test]
    fn mailer_templates_reject_bad_values_without_echoing_them() {
        let t = Templates::load(None).unwrap();
        let mut v = vars();
        v.redeem_url = "javascript:alert(1)".into();
        let msg = t.render("en", &v).unwrap_err().to_string();
        assert_eq!(msg, "redeem_url: must be an https URL");
        let mut v = vars();
        v.guest_email = " ".into();
        assert!(
            t.render("en", &v)
                .unwrap_err()
                .to_string()
                .starts_with("guest_email")
        );
        assert!(
            !format!("{:?}", vars()).contains("rd=abc"),
            "Debug hides the URL"
        );
    }
}
