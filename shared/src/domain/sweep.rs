//! resend-stale's decision for one pending guest (SPEC section 2, "resend-stale").
//!
//! `REMIND_AFTER` and `EXPIRE_AFTER` count from the first invitation; `REMIND_EVERY` from our
//! last reminder. Every threshold is inclusive: a guest invited exactly three days ago is due
//! under `REMIND_AFTER=3d`, so that a daily schedule reminds on the day, not a day late.

use std::time::Duration;
use time::OffsetDateTime;

use crate::config::{ExpireAction, Scope, SweepConfig};

/// What the sweep knows about one guest.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestFacts {
    pub user_id: String,
    /// The address to invite again; without one there is nobody to remind.
    pub email: Option<String>,
    /// `externalUserState` is `PendingAcceptance`.
    pub pending: bool,
    /// The ledger's `invited_at` for guests we invited, else the guest's `createdDateTime`.
    pub first_invited_at: OffsetDateTime,
    /// Reminders we sent (the ledger's count; 0 for guests we did not invite).
    pub reminders: u32,
    pub last_reminded_at: Option<OffsetDateTime>,
    /// This product invited the guest (the ledger has a record of it).
    pub managed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "decision", content = "detail")]
pub enum Decision {
    /// Invite again (SPEC section 2 says how, per delivery).
    Remind,
    /// Pending for longer than `EXPIRE_AFTER`: disable or delete, and do not remind.
    Expire(ExpireAction),
    /// Redeemed: record the guest as accepted.
    MarkAccepted,
    Skip(SkipReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SkipReason {
    /// Redeemed, but not a guest we track.
    Redeemed,
    /// `SCOPE=managed` and this product did not invite the guest.
    NotManaged,
    /// Invited less than `REMIND_AFTER` ago.
    NotDueYet,
    /// Reminded less than `REMIND_EVERY` ago.
    RemindedRecently,
    /// `MAX_REMINDERS` already sent.
    MaxReminders,
    /// The guest has no address to invite again.
    NoAddress,
}

impl SkipReason {
    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::Redeemed => "redeemed; not invited by this product",
            SkipReason::NotManaged => "not invited by this product (SCOPE=managed)",
            SkipReason::NotDueYet => "invited less than REMIND_AFTER ago",
            SkipReason::RemindedRecently => "reminded less than REMIND_EVERY ago",
            SkipReason::MaxReminders => "MAX_REMINDERS reached",
            SkipReason::NoAddress => "no email address to invite again",
        }
    }
}

/// Whether at least `span` has passed from `since` to `now`. A `since` in the future (clock
/// skew) has not passed anything.
fn elapsed(since: OffsetDateTime, now: OffsetDateTime, span: Duration) -> bool {
    // A span too long for time::Duration never passes.
    time::Duration::try_from(span).is_ok_and(|span| now - since >= span)
}

/// The decision for one guest. Expiry comes before reminding: a guest pending past
/// `EXPIRE_AFTER` is expired and not reminded, whatever its reminder count.
pub fn decide(facts: &GuestFacts, cfg: &SweepConfig, now: OffsetDateTime) -> Decision {
    if !facts.pending {
        return if facts.managed {
            Decision::MarkAccepted
        } else {
            Decision::Skip(SkipReason::Redeemed)
        };
    }
    if cfg.scope == Scope::Managed && !facts.managed {
        return Decision::Skip(SkipReason::NotManaged);
    }
    if let Some((after, action)) = cfg.expire
        && elapsed(facts.first_invited_at, now, after)
    {
        return Decision::Expire(action);
    }
    if !elapsed(facts.first_invited_at, now, cfg.remind_after) {
        return Decision::Skip(SkipReason::NotDueYet);
    }
    if facts.reminders >= cfg.max_reminders {
        return Decision::Skip(SkipReason::MaxReminders);
    }
    if let Some(last) = facts.last_reminded_at
        && !elapsed(last, now, cfg.remind_every)
    {
        return Decision::Skip(SkipReason::RemindedRecently);
    }
    if facts.email.as_deref().is_none_or(|e| e.trim().is_empty()) {
        return Decision::Skip(SkipReason::NoAddress);
    }
    Decision::Remind
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_duration;
    use time::macros::datetime;

    const DAY: time::Duration = time::Duration::DAY;
    const START: OffsetDateTime = datetime!(2026-05-01 06:00 UTC);

    fn cfg() -> SweepConfig {
        SweepConfig {
            remind_after: parse_duration("3d").unwrap(),
            remind_every: parse_duration("7d").unwrap(),
            max_reminders: 2,
            expire: None,
            expire_max_per_run: 50,
            scope: Scope::Managed,
            dry_run: false,
            offboard_max_per_run: 200,
        }
    }

    fn guest(days_pending: i64) -> GuestFacts {
        GuestFacts {
            user_id: format!("u-{days_pending}"),
            email: Some(format!("g{days_pending}@litware.com")),
            pending: true,
            first_invited_at: START - time::Duration::days(days_pending),
            reminders: 0,
            last_reminded_at: None,
            managed: true,
        }
    }

    /// One sweep: decides for every guest and records the reminders as the use case would.
    fn run(guests: &mut [GuestFacts], cfg: &SweepConfig, now: OffsetDateTime) -> Vec<String> {
        let mut reminded = Vec::new();
        for g in guests.iter_mut() {
            if decide(g, cfg, now) == Decision::Remind {
                g.reminders += 1;
                g.last_reminded_at = Some(now);
                reminded.push(g.user_id.clone());
            }
        }
        reminded
    }

    #[test]
    fn reminds_on_schedule_and_never_a_third_time() {
        let cfg = cfg();
        let mut guests: Vec<GuestFacts> = [1, 5, 10, 40].into_iter().map(guest).collect();
        assert_eq!(run(&mut guests, &cfg, START), vec!["u-5", "u-10", "u-40"]);
        assert_eq!(
            decide(&guests[0], &cfg, START),
            Decision::Skip(SkipReason::NotDueYet)
        );
        // A second run the same day reminds nobody.
        let later = START + time::Duration::hours(8);
        assert!(run(&mut guests, &cfg, later).is_empty());
        assert_eq!(
            decide(&guests[1], &cfg, later),
            Decision::Skip(SkipReason::RemindedRecently)
        );
        // Seven days later: the three again, and the 1-day guest (now 8 days) for the first time.
        assert_eq!(
            run(&mut guests, &cfg, START + DAY * 7),
            vec!["u-1", "u-5", "u-10", "u-40"]
        );
        assert_eq!(
            run(&mut guests, &cfg, START + DAY * 13),
            Vec::<String>::new()
        );
        assert_eq!(run(&mut guests, &cfg, START + DAY * 14), vec!["u-1"]);
        // Never a third time, however long they stay pending.
        for week in 3..10 {
            assert!(run(&mut guests, &cfg, START + DAY * (7 * week)).is_empty());
        }
        assert!(guests.iter().all(|g| g.reminders == 2));
        assert_eq!(
            decide(&guests[3], &cfg, START + DAY * 100),
            Decision::Skip(SkipReason::MaxReminders)
        );
    }

    #[test]
    fn expiry_wins_over_reminding() {
        let mut cfg = cfg();
        cfg.expire = Some((parse_duration("30d").unwrap(), ExpireAction::Disable));
        assert_eq!(
            decide(&guest(40), &cfg, START),
            Decision::Expire(ExpireAction::Disable)
        );
        assert_eq!(
            decide(&guest(30), &cfg, START),
            Decision::Expire(ExpireAction::Disable)
        );
        assert_eq!(decide(&guest(29), &cfg, START), Decision::Remind);
        let mut maxed = guest(40);
        maxed.reminders = 2;
        cfg.expire = Some((parse_duration("30d").unwrap(), ExpireAction::Delete));
        assert_eq!(
            decide(&maxed, &cfg, START),
            Decision::Expire(ExpireAction::Delete)
        );
    }

    #[test]
    fn redeemed_scope_and_address() {
        let mut cfg = cfg();
        let mut redeemed = guest(10);
        redeemed.pending = false;
        assert_eq!(decide(&redeemed, &cfg, START), Decision::MarkAccepted);
        redeemed.managed = false;
        assert_eq!(
            decide(&redeemed, &cfg, START),
            Decision::Skip(SkipReason::Redeemed)
        );

        let mut foreign = guest(10);
        foreign.managed = false;
        assert_eq!(
            decide(&foreign, &cfg, START),
            Decision::Skip(SkipReason::NotManaged)
        );
        cfg.scope = Scope::All;
        assert_eq!(decide(&foreign, &cfg, START), Decision::Remind);

        let mut nameless = guest(10);
        nameless.email = None;
        assert_eq!(
            decide(&nameless, &cfg, START),
            Decision::Skip(SkipReason::NoAddress)
        );
    }

    #[test]
    fn clock_skew_is_not_age() {
        let future = guest(-2);
        assert_eq!(
            decide(&future, &cfg(), START),
            Decision::Skip(SkipReason::NotDueYet)
        );
        let mut exactly = guest(3);
        assert_eq!(decide(&exactly, &cfg(), START), Decision::Remind);
        exactly.first_invited_at += time::Duration::SECOND;
        assert_eq!(
            decide(&exactly, &cfg(), START),
            Decision::Skip(SkipReason::NotDueYet)
        );
    }
}
