//! `dev-tenant`: serve the emulated tenant until Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use b2b_dev_tenant::{DevTenant, DevTenantOptions, Seed, WriteLimit};
use clap::Args;
use serde_json::json;

use crate::Global;
use crate::context::{SERVER_FILE, parse_write_limit, write_private};

/// The long help of the command.
pub const LONG_ABOUT: &str = "Serve the dev tenant, an emulated Entra ID tenant (token endpoint, OpenID \
        discovery and the Graph subset b2b-invites uses), until Ctrl-C; its state is saved on \
        the way out (in <--state>/dev-tenant) and loaded at the next start. Prints the export lines that point a \
        function, or this CLI, at it. While it runs, other b2b-invites commands with the same \
        --state use it instead of starting their own. Control routes: GET /_dev/info, \
        POST /_dev/users/{id}/redeem, POST /_dev/clock/advance, ... (dev-tenant/README.md).";

#[derive(Args, Debug)]
pub struct DevTenantArgs {
    #[command(flatten)]
    pub state: crate::StateDir,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDR")]
    listen: SocketAddr,
    /// What a new tenant starts with.
    #[arg(long, value_enum, default_value_t = SeedArg::Demo)]
    seed: SeedArg,
    /// Graph's write limit per app, as WRITES/SECONDS (default 3000/150), or `unlimited`.
    #[arg(long, value_name = "N/SECS", value_parser = parse_write_limit)]
    write_limit: Option<WriteLimit>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SeedArg {
    /// contoso.com, four members, groups (one dynamic, one synced), an app with roles.
    Demo,
    /// Only the initial domain and the app the tenant issues tokens to.
    Empty,
}

impl From<SeedArg> for Seed {
    fn from(s: SeedArg) -> Seed {
        match s {
            SeedArg::Demo => Seed::Demo,
            SeedArg::Empty => Seed::Empty,
        }
    }
}

/// Shell-quotes a value for an `export` line.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

pub async fn run(global: &Global, args: DevTenantArgs) -> anyhow::Result<ExitCode> {
    // Under the same folder every other command looks in, so they find it serving.
    let dir = global.state_dir().join("dev-tenant");
    let tenant = DevTenant::start(DevTenantOptions {
        listen: args.listen,
        state_dir: dir.clone(),
        seed: args.seed.into(),
        write_limit: args.write_limit,
    })
    .await
    .context("starting the dev tenant")?;
    let server_file = dir.join(SERVER_FILE);
    write_private(
        &server_file,
        &json!({ "authorityHost": tenant.authority_host(), "pid": std::process::id() }).to_string(),
    )?;
    eprintln!(
        "dev tenant serving at {} (state in {}); Ctrl-C to stop",
        tenant.authority_host(),
        dir.display()
    );
    eprintln!("# point a function at it:");
    for (name, value) in tenant.env() {
        println!("export {name}={}", quoted(&value));
    }
    // guest-inviter-request's bearer tokens: the tenant's API registration.
    println!("export API_AUDIENCE={}", quoted(&tenant.api_client_id()));
    println!("export API_APP_ID_URI={}", quoted(&tenant.api_app_id_uri()));
    let stopped = tokio::signal::ctrl_c().await;
    let _ = std::fs::remove_file(&server_file);
    tenant.shutdown().await;
    stopped.context("waiting for Ctrl-C")?;
    eprintln!("dev tenant stopped; state saved in {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::quoted;

    #[test]
    fn export_values_are_quoted() {
        assert_eq!(quoted("abc"), "'abc'");
        assert_eq!(quoted("a'b"), r"'a'\''b'");
    }
}
