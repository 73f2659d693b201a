//! A compiled function binary running as a child process against a local Runtime API, its
//! output captured for log assertions.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::{oneshot, watch};

use crate::runtime_api::{InvocationFailure, RuntimeApi};

/// The memory size the functions are deployed with (infra template).
pub const MEMORY_SIZE_MB: &str = "256";

/// Which build of the binaries to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    fn dir(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

/// The workspace's target directory: `CARGO_TARGET_DIR`, else `target/` next to this crate.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    }
}

/// The path of a function binary, or an error that says how to build it.
pub fn binary_path(name: &str, profile: Profile) -> anyhow::Result<PathBuf> {
    let path = target_dir().join(profile.dir()).join(name);
    if !path.is_file() {
        let build = match profile {
            Profile::Debug => "cargo build --bins".to_string(),
            Profile::Release => format!("cargo build --release -p {name}"),
        };
        bail!(
            "function binary {} is missing: run `{build}` first (the end-to-end tests run the \
             compiled functions, they do not build them)",
            path.display()
        );
    }
    Ok(path)
}

/// Captured output, one entry per line, in arrival order per stream.
#[derive(Debug, Default, Clone)]
pub struct Output {
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

impl Output {
    /// Lines that name an email address in full. Logs must mask every address (`s***@x.com`),
    /// so any such line is a leak: checked for every function process of every end-to-end test
    /// when the process is stopped or dropped.
    pub fn unmasked_addresses(&self) -> Vec<&str> {
        self.stdout
            .iter()
            .chain(&self.stderr)
            .map(String::as_str)
            .filter(|line| {
                line.split(|c: char| !(c.is_alphanumeric() || "._%+-'#!$&*?^`~@".contains(c)))
                    .filter_map(|word| word.rsplit_once('@'))
                    .any(|(local, domain)| {
                        let domain = domain.trim_end_matches(['.', '-']);
                        let masked = local.chars().count() == 4 && local.ends_with("***");
                        !local.is_empty() && domain.contains('.') && !masked
                    })
            })
            .collect()
    }

    /// Every line, stdout first.
    pub fn text(&self) -> String {
        let mut all = self.stdout.join("\n");
        if !self.stderr.is_empty() {
            all.push('\n');
            all.push_str(&self.stderr.join("\n"));
        }
        all
    }
}

/// A running function process. Dropping it kills the process.
pub struct FunctionProcess {
    name: String,
    api: RuntimeApi,
    pid: u32,
    spawned_at: Instant,
    output: Arc<Mutex<Output>>,
    exit: watch::Receiver<Option<String>>,
    kill: Option<oneshot::Sender<()>>,
}

impl FunctionProcess {
    /// Starts `target/debug/<name>` with the Lambda variables and `env` (nothing else is
    /// inherited from the test process, as in Lambda).
    pub async fn spawn(name: &str, env: &[(String, String)]) -> anyhow::Result<FunctionProcess> {
        Self::spawn_binary(&binary_path(name, Profile::Debug)?, name, env).await
    }

    /// Starts the binary at `path` as the function `name`.
    pub async fn spawn_binary(
        path: &Path,
        name: &str,
        env: &[(String, String)],
    ) -> anyhow::Result<FunctionProcess> {
        let api = RuntimeApi::start(name).await?;
        let mut command = Command::new(path);
        command
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", api.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", MEMORY_SIZE_MB)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "e2e")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let spawned_at = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        let pid = child.id().context("the function process has no pid")?;
        let output = Arc::new(Mutex::new(Output::default()));
        if let Some(stdout) = child.stdout.take() {
            capture(stdout, output.clone(), false);
        }
        if let Some(stderr) = child.stderr.take() {
            capture(stderr, output.clone(), true);
        }
        let (exit_tx, exit) = watch::channel(None);
        let (kill, kill_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                _ = kill_rx => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let status = match status {
                Ok(s) => s.to_string(),
                Err(e) => format!("unknown: {e}"),
            };
            let _ = exit_tx.send(Some(status));
        });
        Ok(FunctionProcess {
            name: name.to_string(),
            api,
            pid,
            spawned_at,
            output,
            exit,
            kill: Some(kill),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Time from spawning the process to its first `GET /invocation/next`.
    pub async fn ready(&self, timeout: Duration) -> anyhow::Result<Duration> {
        let waited = tokio::select! {
            at = self.api.wait_first_poll(timeout) => at,
            status = self.exited() => bail!(
                "{} exited ({status}) before asking for an invocation; its output:\n{}",
                self.name,
                self.output().text()
            ),
        };
        match waited {
            Some(at) => Ok(at.duration_since(self.spawned_at)),
            None => bail!(
                "{} did not ask for an invocation within {timeout:?}; its output:\n{}",
                self.name,
                self.output().text()
            ),
        }
    }

    /// Invokes the function with a deadline `timeout` from now.
    pub async fn invoke(
        &self,
        payload: Value,
        timeout: Duration,
    ) -> Result<Value, InvocationFailure> {
        let answer = tokio::select! {
            answer = self.api.invoke(payload, timeout) => answer,
            status = self.exited() => Err(InvocationFailure::Exited { status, output: String::new() }),
        };
        match answer {
            Err(InvocationFailure::Exited { status, .. }) => {
                // The pipes may still hold the last lines; let the readers drain them.
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(InvocationFailure::Exited {
                    status,
                    output: self.output().text(),
                })
            }
            other => other,
        }
    }

    /// Resolves when the process has ended, with its exit status.
    pub async fn exited(&self) -> String {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(status) => status.clone().unwrap_or_default(),
            Err(_) => "unknown".into(),
        }
    }

    /// Everything the process wrote so far.
    pub fn output(&self) -> Output {
        self.output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Peak resident set size in KiB (`VmHWM`), while the process runs (Linux only).
    pub fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .with_context(|| format!("reading /proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmHWM line in /proc/<pid>/status")
    }

    /// Kills the process, waits for it to end, and returns its output.
    pub async fn stop(mut self) -> Output {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.exited()).await;
        // Let the readers drain the pipes after the process closed them.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.output()
    }

    /// Fails the test when the process logged an address in full.
    fn assert_no_address_logged(&self) {
        let output = self.output();
        let leaks = output.unmasked_addresses();
        assert!(
            leaks.is_empty(),
            "{} logged email addresses in full:\n{}",
            self.name,
            leaks.join("\n")
        );
    }
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if !std::thread::panicking() {
            self.assert_no_address_logged();
        }
    }
}

fn capture<R: AsyncRead + Unpin + Send + 'static>(
    stream: R,
    output: Arc<Mutex<Output>>,
    is_stderr: bool,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut out = output.lock().unwrap_or_else(|e| e.into_inner());
            if is_stderr {
                out.stderr.push(line);
            } else {
                out.stdout.push(line);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::Output;

    #[test]
    fn addresses_in_full_are_found_and_masked_ones_are_not() {
        let output = Output {
            stdout: vec![
                r#"{"level":"WARN","invitee":"k***@litware.com","reason":"ok"}"#.into(),
                r#"{"level":"WARN","reason":"kim.wu@litware.com: domain not allowed"}"#.into(),
            ],
            stderr: vec![
                "user root@localhost, guest ann_litware.com#EXT#@contoso.onmicrosoft.com".into(),
            ],
        };
        let leaks = output.unmasked_addresses();
        assert_eq!(leaks.len(), 2, "{leaks:?}");
        assert!(leaks[0].contains("kim.wu@"));
        assert!(leaks[1].contains("#EXT#@"));
    }
}
