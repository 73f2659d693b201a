//! `b2b-invites`: run the product on a workstation. With no Azure settings every command
//! uses an emulated Entra tenant (the dev tenant), the embedded ledger and a mail outbox;
//! with the Azure variables set it talks to the real tenant, exactly as the Lambda
//! functions would.

mod aws;
mod circuit;
mod context;
mod demo;
mod dev_tenant;
mod dry_run;
mod functions;
mod graph_read;
mod import;
mod progress;
mod redrive;
mod report;
mod run;
mod sweep;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "b2b-invites",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("B2B_COMMIT"), ")"),
    about = "Automated Microsoft Entra ID B2B guest onboarding, run locally",
    long_about = "Automated Microsoft Entra ID B2B guest onboarding, run locally.\n\n\
        Without Azure settings (AZURE_TENANT_ID, AZURE_CLIENT_ID and a credential) every \
        command runs against an emulated Entra tenant (the dev tenant) kept under --state, \
        with the embedded ledger and a mail outbox there too. With them, commands talk to \
        the real tenant exactly as the Lambda functions do; add --dry-run to see each \
        Graph write a command would make without making it.",
    after_help = "Start with `b2b-invites demo`: a guided run through all five functions \
        against a fresh dev tenant."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Where local state lives.
#[derive(Args, Debug, Clone)]
pub struct StateDir {
    /// Where local state lives: the dev tenant, the embedded ledger, the outbox and the
    /// webhook secret [default: .state; the demo uses a fresh temporary folder]
    #[arg(long = "state", value_name = "DIR", global = true)]
    pub dir: Option<PathBuf>,
}

/// Options every command takes.
#[derive(Args, Debug, Clone)]
struct Global {
    /// The state folder: the subcommand's `--state DIR`.
    #[arg(skip)]
    state: Option<PathBuf>,
    /// Print each Graph write (and mail) instead of making it; reads still happen.
    #[arg(long, global = true)]
    dry_run: bool,
    /// Show the functions' logs (info level; RUST_LOG overrides).
    #[arg(short, long, global = true)]
    verbose: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the dev tenant (an emulated Entra tenant) until Ctrl-C, printing the variables that point at it.
    #[command(long_about = dev_tenant::LONG_ABOUT)]
    DevTenant(dev_tenant::DevTenantArgs),
    /// A guided run of all five functions against a fresh dev tenant, ending with a report of every guest.
    #[command(long_about = demo::LONG_ABOUT)]
    Demo(demo::DemoArgs),
    /// Feed an event (CloudEvents, EventBridge, or an AWS-shaped Lambda payload) to the function that takes it.
    #[command(long_about = run::LONG_ABOUT)]
    Run(run::RunArgs),
    /// Invite guests in bulk from a CSV in the Entra portal's bulk-invite format.
    #[command(long_about = import::LONG_ABOUT)]
    Import(import::ImportArgs),
    /// Run resend-stale once: remind pending guests, expire stale ones, mark redeemed ones accepted.
    #[command(long_about = sweep::LONG_ABOUT)]
    Sweep(sweep::SweepArgs),
    /// List guests and their redemption state from Graph, joined with the ledger.
    #[command(long_about = report::LONG_ABOUT)]
    Report(report::ReportArgs),
    /// See the tenant-wide invitation circuit, or close it once Graph's block is lifted.
    #[command(long_about = circuit::LONG_ABOUT)]
    Circuit(circuit::CircuitArgs),
    /// Send a dead-letter queue's messages back to the queue they came from, and say how many.
    #[command(long_about = redrive::LONG_ABOUT)]
    Redrive(redrive::RedriveArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the manual page (roff), e.g. `b2b-invites man > b2b-invites.1`.
    Man,
}

#[derive(Args, Debug)]
struct CompletionsArgs {
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Exit statuses after sysexits.h, so scripts and schedulers can tell what went wrong.
pub const EX_USAGE: u8 = 64;
/// Input data was wrong: rows of an import, an event that is not JSON.
pub const EX_DATAERR: u8 = 65;
/// Configuration (a variable) is wrong.
pub const EX_CONFIG: u8 = 78;

/// Writes generated text to standard output; a reader that went away early is no failure.
fn print_out(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    match std::io::stdout().write_all(bytes) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e.into()),
    }
}

/// The exit status of a command that failed.
fn exit_code(e: &anyhow::Error) -> u8 {
    let config = e.chain().any(|c| {
        c.downcast_ref::<b2b::config::ConfigError>().is_some()
            || matches!(
                c.downcast_ref::<b2b::app::runtime::StartupError>(),
                Some(b2b::app::runtime::StartupError::Config(_))
            )
    });
    if config { EX_CONFIG } else { 1 }
}

impl Global {
    /// The state folder of every command but the demo.
    fn state_dir(&self) -> PathBuf {
        self.state
            .clone()
            .unwrap_or_else(|| PathBuf::from(".state"))
    }
}

fn init_logs(verbose: bool, quiet: bool) {
    let default = match (verbose, quiet) {
        (true, _) => "info",
        (false, true) => "error",
        (false, false) => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(EX_USAGE),
            };
        }
    };
    cli.global.state = match &cli.command {
        Command::DevTenant(a) => a.state.dir.clone(),
        Command::Demo(a) => a.state.dir.clone(),
        Command::Run(a) => a.state.dir.clone(),
        Command::Import(a) => a.state.dir.clone(),
        Command::Sweep(a) => a.state.dir.clone(),
        Command::Report(a) => a.state.dir.clone(),
        Command::Circuit(a) => a.state.dir.clone(),
        Command::Redrive(_) | Command::Completions(_) | Command::Man => None,
    };
    // The demo narrates what the functions' warnings would say.
    init_logs(cli.global.verbose, matches!(cli.command, Command::Demo(_)));
    let result = match cli.command {
        Command::DevTenant(args) => dev_tenant::run(&cli.global, args).await,
        Command::Demo(args) => demo::run(&cli.global, args).await,
        Command::Run(args) => run::run(&cli.global, args).await,
        Command::Import(args) => import::run(&cli.global, args).await,
        Command::Sweep(args) => sweep::run(&cli.global, args).await,
        Command::Report(args) => report::run(&cli.global, args).await,
        Command::Circuit(args) => circuit::run(&cli.global, args).await,
        Command::Redrive(args) => redrive::run(args).await,
        Command::Completions(args) => {
            // Rendered whole first: the generator panics on a closed pipe (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut Cli::command(), "b2b-invites", &mut script);
            print_out(&script)
        }
        Command::Man => {
            let mut page = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut page) {
                Ok(()) => print_out(&page),
                Err(e) => Err(e.into()),
            }
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}
