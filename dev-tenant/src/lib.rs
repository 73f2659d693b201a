//! An emulated Microsoft Entra ID tenant ("dev tenant") for tests, benchmarks and local
//! runs: an HTTPS server speaking the v2.0 token endpoint, OpenID discovery and the
//! Microsoft Graph v1.0 subset that b2b-invites uses, with Graph's shapes and errors.
//! See README.md for the `/_dev` control routes and the known differences from Graph.

mod chaos;
mod control;
mod cross_tenant;
mod crypto;
mod devapi;
mod directory;
mod error;
mod filter;
mod graph;
mod mint;
mod model;
mod realities;
mod removals;
mod server;
mod token;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context;
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use chaos::{Chaos, ChaosRule, FaultWindow, FiredFault};
pub use control::{Control, Fault, FaultKind, FaultMatcher, RequestLogEntry, WriteLimit};
pub use cross_tenant::{FABRIKAM_TENANT_ID, LITWARE_TENANT_ID};
pub use directory::{API_APP_ID_URI, API_CLIENT_ID, FederatedKey};
pub use mint::{MintToken, TokenKind, TokenVersion};
pub use model::*;

use control::{FaultState, Inner, Limiter};
use directory::{AppRegistration, Directory, Snapshot, new_id};

pub(crate) const STATE_FILE: &str = "state.json";

/// What the tenant starts with when its state folder holds no snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Seed {
    /// Only the initial domain and the app the tenant issues tokens to.
    #[default]
    Empty,
    /// Adds contoso.com, a few members, groups (one dynamic, one synced), an app with roles,
    /// and the tenants of litware.com and fabrikam.com for the lookup by domain.
    Demo,
}

#[derive(Clone, Debug)]
pub struct DevTenantOptions {
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    pub seed: Seed,
    /// `None` is Graph's limit (3,000 writes per 150 s per app); see [`WriteLimit::unlimited`].
    pub write_limit: Option<WriteLimit>,
}

impl DevTenantOptions {
    pub fn new(state_dir: impl Into<PathBuf>) -> DevTenantOptions {
        DevTenantOptions {
            state_dir: state_dir.into(),
            ..DevTenantOptions::default()
        }
    }
}

impl Default for DevTenantOptions {
    fn default() -> Self {
        DevTenantOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: PathBuf::from(".state/dev-tenant"),
            seed: Seed::Empty,
            write_limit: None,
        }
    }
}

/// A running dev tenant. Dropping it stops the server and saves its state.
pub struct DevTenant {
    control: Control,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

const INITIAL_DOMAIN: &str = "b2bdev.onmicrosoft.com";

fn new_secret() -> String {
    // The shape of an Entra client secret value: three characters, "8Q~", then 34 more.
    let mut rng = rand::rng();
    let mut part = |n: usize| -> String {
        (0..n)
            .map(|_| rng.sample(rand::distr::Alphanumeric) as char)
            .collect()
    };
    format!("{}8Q~{}", part(3), part(34))
}

fn seed_directory(seed: Seed, now: time::OffsetDateTime) -> Directory {
    let app = AppRegistration {
        client_id: new_id(),
        client_secret: new_secret(),
        service_principal_id: String::new(),
        display_name: "b2b-invites".to_string(),
        certificates: Vec::new(),
        federated: Vec::new(),
    };
    let mut dir = Directory::new(new_id(), INITIAL_DOMAIN.to_string(), app);
    dir.domains.push(Domain {
        id: INITIAL_DOMAIN.to_string(),
        is_verified: true,
        is_default: true,
        is_initial: true,
    });
    let client_id = dir.app.client_id.clone();
    let sp = dir.add_service_principal("b2b-invites".into(), Some(client_id), Vec::new());
    dir.app.service_principal_id = sp.id;

    if seed == Seed::Demo {
        crate::cross_tenant::seed_demo(&mut dir);
        dir.add_domain("contoso.com", true);
        dir.make_default_domain("contoso.com");
        let people = [
            ("Megan Bowen", "megan.bowen", "Partner Manager", "Sales"),
            (
                "Alex Wilber",
                "alex.wilber",
                "Engineering Manager",
                "Engineering",
            ),
            (
                "Patti Fernandez",
                "patti.fernandez",
                "HR Business Partner",
                "Human Resources",
            ),
            ("Lee Gu", "lee.gu", "IT Administrator", "IT"),
        ];
        for (name, local, title, dept) in people {
            let (given, surname) = name.split_once(' ').unwrap_or((name, ""));
            dir.add_user(
                NewUser {
                    display_name: name.into(),
                    mail: format!("{local}@contoso.com"),
                    user_type: UserType::Member,
                    given_name: Some(given.into()),
                    surname: Some(surname.into()),
                    job_title: Some(title.into()),
                    department: Some(dept.into()),
                    company_name: Some("Contoso".into()),
                    ..NewUser::default()
                },
                now,
            );
        }
        dir.add_group(
            NewGroup {
                display_name: "Partners".into(),
                kind: GroupKind::Assigned,
                membership_rule: None,
            },
            now,
        );
        dir.add_group(
            NewGroup {
                display_name: "Project Falcon".into(),
                kind: GroupKind::Assigned,
                membership_rule: None,
            },
            now,
        );
        dir.add_group(
            NewGroup {
                display_name: "All Engineering".into(),
                kind: GroupKind::Dynamic,
                membership_rule: Some("(user.department -eq \"Engineering\")".into()),
            },
            now,
        );
        dir.add_group(
            NewGroup {
                display_name: "Finance (on-premises)".into(),
                kind: GroupKind::Synced,
                membership_rule: None,
            },
            now,
        );
        dir.add_service_principal(
            "Partner Portal".into(),
            None,
            vec![
                ("Portal.Reader".into(), "Partner portal reader".into()),
                (
                    "Portal.Contributor".into(),
                    "Partner portal contributor".into(),
                ),
            ],
        );
    }
    dir
}

impl DevTenant {
    pub async fn start(opts: DevTenantOptions) -> anyhow::Result<DevTenant> {
        std::fs::create_dir_all(&opts.state_dir)
            .with_context(|| format!("creating {}", opts.state_dir.display()))?;
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .with_context(|| format!("listening on {}", opts.listen))?;
        let addr = listener.local_addr()?;
        let host_ip = if addr.ip().is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            addr.ip()
        };
        let authority = match host_ip {
            std::net::IpAddr::V6(ip) => format!("https://[{ip}]:{}", addr.port()),
            std::net::IpAddr::V4(ip) => format!("https://{ip}:{}", addr.port()),
        };

        let state_dir = opts.state_dir.clone();
        let (tls, keys, dir, offset) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let tls = crypto::load_or_create_tls(&state_dir, host_ip)?;
            let keys = match crypto::load_signing_keys(&state_dir)? {
                Some(k) => k,
                None => {
                    let k = vec![crypto::SigningKey::generate()?];
                    crypto::save_signing_keys(&state_dir, &k)?;
                    k
                }
            };
            let path = state_dir.join(STATE_FILE);
            let (dir, offset) = if path.exists() {
                let snap: Snapshot = serde_json::from_slice(&std::fs::read(&path)?)
                    .with_context(|| format!("parsing {}", path.display()))?;
                let offset = time::Duration::seconds(snap.clock_offset_seconds);
                (Directory::from_snapshot(snap), offset)
            } else {
                (
                    seed_directory(opts.seed, time::OffsetDateTime::now_utc()),
                    time::Duration::ZERO,
                )
            };
            Ok((tls, keys, dir, offset))
        })
        .await??;

        let inner = Arc::new(Inner {
            dir: Mutex::new(dir),
            clock_offset: Mutex::new(offset),
            keys: RwLock::new(keys),
            faults: Mutex::new(FaultState::default()),
            limiter: Mutex::new(Limiter {
                limit: opts.write_limit.unwrap_or(WriteLimit::GRAPH),
                windows: HashMap::new(),
            }),
            log: Mutex::new(VecDeque::new()),
            issued: Mutex::new(HashMap::new()),
            realities: realities::Realities::default(),
            authority,
            state_dir: opts.state_dir.clone(),
        });

        let router = axum::Router::new()
            .route(
                "/{tenant}/oauth2/v2.0/token",
                axum::routing::post(token::token),
            )
            .route(
                "/{tenant}/v2.0/.well-known/openid-configuration",
                axum::routing::get(token::openid),
            )
            .route(
                "/{tenant}/discovery/v2.0/keys",
                axum::routing::get(token::jwks),
            )
            .nest("/v1.0", graph::router())
            .nest("/_dev", devapi::router())
            .layer(axum::middleware::from_fn_with_state(
                inner.clone(),
                server::front,
            ))
            .with_state(inner.clone());

        let (shutdown, rx) = watch::channel(false);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config);
        let task = server::spawn(listener, acceptor, router, rx);
        Ok(DevTenant {
            control: Control { inner },
            addr,
            shutdown,
            task: Some(task),
        })
    }

    /// `https://127.0.0.1:PORT`, the value for `AZURE_AUTHORITY_HOST`.
    pub fn authority_host(&self) -> String {
        self.control.inner.authority.clone()
    }

    /// `https://127.0.0.1:PORT/v1.0`, the value for `GRAPH_BASE_URL`.
    pub fn graph_base_url(&self) -> String {
        format!("{}/v1.0", self.control.inner.authority)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn tenant_id(&self) -> String {
        self.control.tenant_id()
    }

    pub fn client_id(&self) -> String {
        self.control.client_id()
    }

    pub fn client_secret(&self) -> String {
        self.control.client_secret()
    }

    /// The client id of the API requesters' tokens are for: the value for `API_AUDIENCE`.
    pub fn api_client_id(&self) -> String {
        self.control.api_client_id()
    }

    /// The App ID URI of that API: the value for `API_APP_ID_URI`.
    pub fn api_app_id_uri(&self) -> String {
        self.control.api_app_id_uri()
    }

    /// The CA certificate clients must trust (`B2B_EXTRA_CA_CERTS`).
    pub fn ca_pem_path(&self) -> PathBuf {
        self.control.inner.state_dir.join(crypto::CA_FILE)
    }

    /// The environment that points b2b-invites at this tenant.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AZURE_TENANT_ID".into(), self.tenant_id()),
            ("AZURE_CLIENT_ID".into(), self.client_id()),
            ("AZURE_CLIENT_SECRET".into(), self.client_secret()),
            ("AZURE_AUTHORITY_HOST".into(), self.authority_host()),
            ("GRAPH_BASE_URL".into(), self.graph_base_url()),
            (
                "B2B_EXTRA_CA_CERTS".into(),
                self.ca_pem_path().display().to_string(),
            ),
        ]
    }

    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Stops serving and writes the state snapshot.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Err(e) = self.control.save() {
            tracing::warn!(error = %e, "could not save the dev tenant state");
        }
    }
}

impl Drop for DevTenant {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            let _ = self.shutdown.send(true);
            task.abort();
            if let Err(e) = self.control.save() {
                tracing::warn!(error = %e, "could not save the dev tenant state");
            }
        }
    }
}
