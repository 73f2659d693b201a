//! How the queue functions treat what they are not made for: other triggers, and bad
//! configuration at start (SPEC sections 1 and 6).

use std::time::Duration;

use anyhow::{bail, ensure};
use b2b_e2e::events::{http_request, scheduled_event};
use b2b_e2e::{FunctionProcess, InvocationFailure, TestEnv};

const INVOKE_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn hr_record_added_refuses_webhooks_and_schedules_by_name() -> anyhow::Result<()> {
    let env = TestEnv::builder().start().await?;
    let function = env.spawn("hr-record-added").await?;
    let webhook = http_request(
        "POST",
        &[("content-type", "application/json")],
        b"{}",
        false,
    );
    for (what, payload) in [
        ("HTTP request", webhook),
        ("EventBridge scheduled event", scheduled_event()),
    ] {
        match function.invoke(payload, INVOKE_TIMEOUT).await {
            Err(InvocationFailure::Function { message, .. }) => ensure!(
                message.contains("hr-record-added")
                    && message.contains(what)
                    && message.contains("SQS"),
                "the error should name the function, the trigger and what it takes: {message}"
            ),
            other => bail!("a {what} should fail the invocation, got {other:?}"),
        }
    }
    // The process serves on after refusing.
    ensure!(
        control_is_untouched(&env),
        "a refused trigger reached Graph: {:?}",
        env.control().requests()
    );
    Ok(())
}

fn control_is_untouched(env: &TestEnv) -> bool {
    env.control().requests().iter().all(|r| !r.is_write)
}

#[tokio::test]
async fn bad_configuration_stops_the_start_with_one_line_naming_the_variable() -> anyhow::Result<()>
{
    let env = TestEnv::builder().start().await?;
    let mut vars = env.vars().to_vec();
    vars.push(("ACCESS_RULES".into(), "[{\"match\":{}}]".into()));
    let function = FunctionProcess::spawn("hr-record-added", &vars).await?;
    match function.ready(INVOKE_TIMEOUT).await {
        Ok(_) => bail!("hr-record-added started with invalid ACCESS_RULES"),
        Err(e) => {
            let output = function.stop().await;
            ensure!(
                output
                    .stderr
                    .iter()
                    .any(|l| l.starts_with("configuration: ACCESS_RULES")),
                "no line naming ACCESS_RULES on stderr ({e}):\n{}",
                output.text()
            );
        }
    }
    Ok(())
}
