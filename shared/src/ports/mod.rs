//! The traits through which the core reaches the outside world.

pub mod budget;
pub mod directory;
pub mod ledger;
pub mod mailer;
pub mod metrics;
pub mod progress;
pub mod queue;

pub use directory::{Directory, DirectoryError};
pub use ledger::{Ledger, LedgerError};
pub use mailer::{Mailer, MailerError};
