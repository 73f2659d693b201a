//! The progress bar `run` and `import` draw on standard error: invitees done of those
//! planned, the rate and the time left. Hidden when standard error is not a terminal.

use b2b::ports::progress::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Bar(ProgressBar);

impl Bar {
    /// A bar for `planned` invitees (more may be planned as the work finds them).
    pub fn new(planned: u64) -> Bar {
        let bar = ProgressBar::with_draw_target(Some(planned), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} invitees  {per_sec}  ETA {eta}",
            )
            .expect("a valid progress template"),
        );
        Bar(bar)
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bar {
    fn planned(&self, invitees: u64) {
        self.0.inc_length(invitees);
    }

    fn done(&self, invitees: u64) {
        self.0.inc(invitees);
    }
}
