//! The time the product acts as of: the system clock, or `B2B_NOW` for replays, forecasts and
//! tests, never in production.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::{ConfigError, Env};

/// Must be `true` for `B2B_NOW` to be honoured. A clock moved by configuration alone would
/// let one variable reopen expired tokens and stale webhook signatures (both are checked
/// against this clock), so acting as of another time takes a second, explicit switch that
/// only local runs and tests set.
pub const CLOCK_OVERRIDE_SWITCH: &str = "B2B_ALLOW_CLOCK_OVERRIDE";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    System,
    /// Every reading returns this instant.
    Fixed(OffsetDateTime),
}

impl Clock {
    pub fn now(&self) -> OffsetDateTime {
        match self {
            Clock::System => OffsetDateTime::now_utc(),
            Clock::Fixed(t) => *t,
        }
    }

    /// `B2B_NOW` when it is set and [`CLOCK_OVERRIDE_SWITCH`] allows it, else the system clock.
    pub fn from_env(env: &dyn Env) -> Result<Clock, ConfigError> {
        let allowed = match env.var(CLOCK_OVERRIDE_SWITCH) {
            Some(v) => v.trim().parse::<bool>().map_err(|_| {
                ConfigError::new(
                    CLOCK_OVERRIDE_SWITCH,
                    format!("'{v}': expected true or false"),
                )
            })?,
            None => false,
        };
        let Some(now) = env.var("B2B_NOW") else {
            return Ok(Clock::System);
        };
        if !allowed {
            return Err(ConfigError::new(
                "B2B_NOW",
                format!(
                    "set, but {CLOCK_OVERRIDE_SWITCH} is not true: acting as of another time is \
                     for replays, forecasts and tests, never in production"
                ),
            ));
        }
        OffsetDateTime::parse(now.trim(), &Rfc3339)
            .map(Clock::Fixed)
            .map_err(|e| ConfigError::new("B2B_NOW", format!("not RFC 3339: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(pairs: &[(&str, &str)]) -> Result<Clock, ConfigError> {
        Clock::from_env(&crate::config::test_env(pairs))
    }

    #[test]
    fn b2b_now_needs_the_explicit_switch() {
        const NOW: &str = "2027-01-02T03:04:05Z";
        assert_eq!(clock(&[]), Ok(Clock::System));
        assert_eq!(clock(&[(CLOCK_OVERRIDE_SWITCH, "true")]), Ok(Clock::System));
        let fixed = clock(&[("B2B_NOW", NOW), (CLOCK_OVERRIDE_SWITCH, "true")]).unwrap();
        assert_eq!(
            fixed,
            Clock::Fixed(OffsetDateTime::parse(NOW, &Rfc3339).unwrap())
        );
        for refused in [
            clock(&[("B2B_NOW", NOW)]),
            clock(&[("B2B_NOW", NOW), (CLOCK_OVERRIDE_SWITCH, "false")]),
        ] {
            let e = refused.unwrap_err();
            assert_eq!(e.variable, "B2B_NOW");
            let line = e.to_string();
            assert!(
                line.contains(CLOCK_OVERRIDE_SWITCH) && !line.contains('\n'),
                "{line}"
            );
        }
        let e = clock(&[("B2B_NOW", NOW), (CLOCK_OVERRIDE_SWITCH, "yes")]).unwrap_err();
        assert_eq!(e.variable, CLOCK_OVERRIDE_SWITCH);
        let e = clock(&[("B2B_NOW", "yesterday"), (CLOCK_OVERRIDE_SWITCH, "true")]).unwrap_err();
        assert_eq!(e.variable, "B2B_NOW");
    }
}
