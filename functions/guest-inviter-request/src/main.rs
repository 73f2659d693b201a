//! guest-inviter-request: a partner's inviter asks for guests. Authenticates the requester
//! (Entra ID bearer token or a trusted system's signature), authorises the request against
//! the registered partners, and invites inline or through its own work queue.

use b2b::config::ProcessEnv;
use b2b::lambda::guest_inviter_request::GuestInviterRequest;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    b2b::lambda::serve::serve(GuestInviterRequest::from_env(&ProcessEnv)).await
}
