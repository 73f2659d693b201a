//! Where a unit of work says how far it got. The CLI draws it for `run` and `import`; the
//! functions in Lambda report nothing (their record and logs say it).

/// Counts invitees, not writes: that is what a person watching a large unit wants to see.
pub trait Progress: Send + Sync {
    /// `invitees` more are about to be worked on.
    fn planned(&self, invitees: u64);
    /// `invitees` more are done, whatever became of them.
    fn done(&self, invitees: u64);
}
