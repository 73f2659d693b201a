//! The [`Directory`] port over Graph: one method per documented operation.

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

use super::client::{Call, GraphDirectory, decode};
use super::odata::{encode, literal, query, user_by_email_filter};
use super::wire::{self, Page};
use crate::domain::trust::{CrossTenantPartner, TrustSettings};
use crate::ports::directory::{
    AppRoleRef, Applied, Directory, DirectoryError, DirectoryUser, GROUP_BATCH, Group, GuestPage,
    Invitation, InvitationRequest, Removed, TenantInfo, UserPatch, add_one_by_one,
    ensure_assignable,
};

/// Only what the product reads: `$select` keeps answers (and request units) small.
const USER_SELECT: &str = "id,displayName,mail,otherMails,userPrincipalName,userType,\
creationType,externalUserState,externalUserStateChangeDateTime,createdDateTime,accountEnabled";

/// Graph's largest page for users.
const PAGE_SIZE: &str = "999";

/// How long the tenant's verified domains are trusted before they are read again.
const DOMAINS_TTL: Duration = Duration::from_secs(3600);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InvitationAnswer {
    id: String,
    invite_redeem_url: Option<String>,
    status: Option<String>,
    invited_user: InvitedUser,
}

#[derive(Deserialize)]
struct InvitedUser {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Domain {
    id: String,
    #[serde(default)]
    is_verified: bool,
}

#[derive(Deserialize)]
struct Id {
    #[allow(dead_code)]
    id: String,
}

impl GraphDirectory {
    /// A write whose "already there" answer is success.
    async fn add_once(
        &self,
        target: String,
        body: serde_json::Value,
    ) -> Result<Applied, DirectoryError> {
        match self
            .send(Call::write(Method::POST, target, Some(&body)))
            .await
        {
            Ok(_) => Ok(Applied::Done),
            Err(e) if wire::is_already_present(&e) => Ok(Applied::AlreadyPresent),
            Err(e) => Err(e),
        }
    }

    fn object_ref(&self, collection: &str, id: &str) -> serde_json::Value {
        json!({ "@odata.id": format!("{}/{collection}/{}", self.inner.base, encode(id)) })
    }

    /// A checkpointed nextLink must point back at this Graph's user listing: a tampered
    /// ledger must not make us send our token elsewhere.
    fn checked_next_link(&self, link: String) -> Result<String, DirectoryError> {
        if link.starts_with(&format!("{}/users?", self.inner.base)) {
            Ok(link)
        } else {
            Err(DirectoryError::permanent(
                400,
                "InvalidCheckpoint",
                "the saved page link does not point at this Graph's users",
            ))
        }
    }
}

#[async_trait]
impl Directory for GraphDirectory {
    fn deadline(&self) -> Option<Instant> {
        Some(GraphDirectory::deadline(self))
    }

    async fn invite(&self, request: &InvitationRequest) -> Result<Invitation, DirectoryError> {
        let mut body = json!({
            "invitedUserEmailAddress": request.email,
            "inviteRedirectUrl": request.redirect_url,
            "sendInvitationMessage": request.send_invitation_message,
        });
        if let Some(name) = &request.display_name {
            body["invitedUserDisplayName"] = json!(name);
        }
        if let Some(message) = request
            .message
            .as_ref()
            .filter(|_| request.send_invitation_message)
        {
            body["invitedUserMessageInfo"] = json!({ "customizedMessageBody": message });
        }
        if let Some(user_id) = &request.reset_redemption_of {
            body["resetRedemption"] = json!(true);
            body["invitedUser"] = json!({ "id": user_id });
        }
        let mut call = Call::write(Method::POST, "/invitations".into(), Some(&body));
        call.inviting = true;
        let (_, answer) = self.send(call).await?;
        let answer: InvitationAnswer = decode(&answer)?;
        Ok(Invitation {
            id: answer.id,
            user_id: answer.invited_user.id,
            redeem_url: answer.invite_redeem_url.unwrap_or_default(),
            status: answer.status.unwrap_or_else(|| "PendingAcceptance".into()),
        })
    }

    async fn find_user_by_email(
        &self,
        email: &str,
    ) -> Result<Option<DirectoryUser>, DirectoryError> {
        let filter = user_by_email_filter(email);
        let target = format!(
            "/users{}",
            query(&[
                ("$filter", &filter),
                ("$select", USER_SELECT),
                ("$top", "2")
            ])
        );
        let page: Page<DirectoryUser> = self
            .get_json(target)
            .await?
            .ok_or_else(|| DirectoryError::permanent(404, "NotFound", "users collection"))?;
        Ok(page.value.into_iter().next())
    }

    async fn get_user(&self, id_or_upn: &str) -> Result<Option<DirectoryUser>, DirectoryError> {
        if id_or_upn.is_empty() {
            return Ok(None);
        }
        self.get_json(format!(
            "/users/{}{}",
            encode(id_or_upn),
            query(&[("$select", USER_SELECT)])
        ))
        .await
    }

    async fn update_user(&self, user_id: &str, patch: &UserPatch) -> Result<(), DirectoryError> {
        if patch.is_empty() {
            return Ok(());
        }
        let body = serde_json::to_value(patch).expect("a patch serialises");
        self.send(Call::write(
            Method::PATCH,
            format!("/users/{}", encode(user_id)),
            Some(&body),
        ))
        .await
        .map(|_| ())
    }

    fn pending_guests(
        &self,
        resume_from: Option<String>,
    ) -> BoxStream<'_, Result<GuestPage, DirectoryError>> {
        let first = match resume_from {
            Some(link) => self.checked_next_link(link),
            None => Ok(format!(
                "/users{}",
                query(&[
                    ("$filter", "externalUserState eq 'PendingAcceptance'"),
                    ("$select", USER_SELECT),
                    ("$top", PAGE_SIZE),
                ])
            )),
        };
        // State: the next page to read; None once the last page was read or a read failed.
        stream::unfold(Some(first), move |next| async move {
            let target = match next? {
                Ok(target) => target,
                Err(e) => return Some((Err(e), None)),
            };
            let result = self.get_json::<Page<DirectoryUser>>(target).await;
            match result {
                Ok(Some(page)) => {
                    let following = page.next_link.clone().map(|l| self.checked_next_link(l));
                    Some((
                        Ok(GuestPage {
                            users: page.value,
                            next: page.next_link,
                        }),
                        following,
                    ))
                }
                Ok(None) => Some((
                    Err(DirectoryError::permanent(
                        404,
                        "NotFound",
                        "users collection",
                    )),
                    None,
                )),
                Err(e) => Some((Err(e), None)),
            }
        })
        .boxed()
    }

    async fn get_group(&self, group_id: &str) -> Result<Option<Group>, DirectoryError> {
        self.get_json(format!(
            "/groups/{}{}",
            encode(group_id),
            query(&[(
                "$select",
                "id,displayName,groupTypes,onPremisesSyncEnabled,mailEnabled,securityEnabled"
            )])
        ))
        .await
    }

    async fn add_group_member(
        &self,
        group_id: &str,
        user_id: &str,
    ) -> Result<Applied, DirectoryError> {
        ensure_assignable(self, group_id).await?;
        self.add_once(
            format!("/groups/{}/members/$ref", encode(group_id)),
            self.object_ref("directoryObjects", user_id),
        )
        .await
    }

    /// One `PATCH` with `members@odata.bind` for the lot. Graph refuses the whole request
    /// when one of them is a member already; then they go one by one, "already there" being
    /// success.
    async fn add_group_members(
        &self,
        group_id: &str,
        user_ids: &[String],
    ) -> Result<Vec<Result<Applied, DirectoryError>>, DirectoryError> {
        if user_ids.len() > GROUP_BATCH {
            let mut results = Vec::with_capacity(user_ids.len());
            for chunk in user_ids.chunks(GROUP_BATCH) {
                results.extend(self.add_group_members(group_id, chunk).await?);
            }
            return Ok(results);
        }
        if user_ids.len() <= 1 {
            return add_one_by_one(self, group_id, user_ids).await;
        }
        ensure_assignable(self, group_id).await?;
        let refs: Vec<String> = user_ids
            .iter()
            .map(|id| format!("{}/directoryObjects/{}", self.inner.base, encode(id)))
            .collect();
        let body = json!({ "members@odata.bind": refs });
        let target = format!("/groups/{}", encode(group_id));
        match self
            .send(Call::write(Method::PATCH, target, Some(&body)))
            .await
        {
            Ok(_) => Ok(user_ids.iter().map(|_| Ok(Applied::Done)).collect()),
            Err(e) if wire::is_already_present(&e) => {
                add_one_by_one(self, group_id, user_ids).await
            }
            Err(e) => Err(e),
        }
    }

    async fn assign_app_role(
        &self,
        user_id: &str,
        role: &AppRoleRef,
    ) -> Result<Applied, DirectoryError> {
        self.add_once(
            format!(
                "/servicePrincipals/{}/appRoleAssignedTo",
                encode(&role.resource_id)
            ),
            json!({
                "principalId": user_id,
                "resourceId": role.resource_id,
                "appRoleId": role.app_role_id,
            }),
        )
        .await
    }

    async fn assign_directory_role(
        &self,
        user_id: &str,
        role_template_id: &str,
    ) -> Result<Applied, DirectoryError> {
        // A read is cheaper than a refused write, and Graph documents no duplicate answer.
        if self.has_directory_role(user_id, role_template_id).await? {
            return Ok(Applied::AlreadyPresent);
        }
        self.add_once(
            "/roleManagement/directory/roleAssignments".into(),
            json!({
                "@odata.type": "#microsoft.graph.unifiedRoleAssignment",
                "roleDefinitionId": role_template_id,
                "principalId": user_id,
                "directoryScopeId": "/",
            }),
        )
        .await
    }

    async fn has_directory_role(
        &self,
        user_id: &str,
        role_template_id: &str,
    ) -> Result<bool, DirectoryError> {
        let filter = format!(
            "principalId eq {} and roleDefinitionId eq {}",
            literal(user_id),
            literal(role_template_id)
        );
        let page: Option<Page<Id>> = self
            .get_json(format!(
                "/roleManagement/directory/roleAssignments{}",
                query(&[("$filter", &filter)])
            ))
            .await?;
        Ok(page.is_some_and(|p| !p.value.is_empty()))
    }

    async fn find_tenant_by_domain(
        &self,
        domain: &str,
    ) -> Result<Option<TenantInfo>, DirectoryError> {
        self.tenant_by_domain(domain).await
    }

    async fn cross_tenant_partner(
        &self,
        tenant_id: &str,
    ) -> Result<Option<CrossTenantPartner>, DirectoryError> {
        self.partner_trust(tenant_id).await
    }

    async fn create_cross_tenant_partner(
        &self,
        tenant_id: &str,
        settings: &TrustSettings,
    ) -> Result<Applied, DirectoryError> {
        self.create_partner_trust(tenant_id, settings).await
    }

    async fn update_cross_tenant_partner(
        &self,
        tenant_id: &str,
        settings: &TrustSettings,
    ) -> Result<(), DirectoryError> {
        self.update_partner_trust(tenant_id, settings).await
    }

    async fn add_sponsor(
        &self,
        user_id: &str,
        sponsor_id: &str,
    ) -> Result<Applied, DirectoryError> {
        self.add_once(
            format!("/users/{}/sponsors/$ref", encode(user_id)),
            self.object_ref("users", sponsor_id),
        )
        .await
    }

    async fn remove_group_member(
        &self,
        group_id: &str,
        user_id: &str,
    ) -> Result<Removed, DirectoryError> {
        self.leave_group(group_id, user_id).await
    }

    async fn remove_app_role(
        &self,
        user_id: &str,
        role: &AppRoleRef,
    ) -> Result<Removed, DirectoryError> {
        self.unassign_app_role(user_id, role).await
    }

    async fn remove_directory_role(
        &self,
        user_id: &str,
        role_template_id: &str,
    ) -> Result<Removed, DirectoryError> {
        self.unassign_directory_role(user_id, role_template_id)
            .await
    }

    async fn disable_user(&self, user_id: &str) -> Result<(), DirectoryError> {
        self.update_user(
            user_id,
            &UserPatch {
                account_enabled: Some(false),
                ..UserPatch::default()
            },
        )
        .await
    }

    async fn delete_user(&self, user_id: &str) -> Result<(), DirectoryError> {
        match self
            .send(Call::write(
                Method::DELETE,
                format!("/users/{}", encode(user_id)),
                None,
            ))
            .await
        {
            // Deleting what is gone is done.
            Ok(_) | Err(DirectoryError::Permanent { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn verified_domains(&self) -> Result<Vec<String>, DirectoryError> {
        let mut cached = self.inner.verified_domains.lock().await;
        if let Some((at, domains)) = cached.as_ref()
            && at.elapsed() < DOMAINS_TTL
        {
            return Ok(domains.clone());
        }
        let page: Page<Domain> = self
            .get_json("/domains".into())
            .await?
            .ok_or_else(|| DirectoryError::permanent(404, "NotFound", "domains"))?;
        let domains: Vec<String> = page
            .value
            .into_iter()
            .filter(|d| d.is_verified)
            .map(|d| d.id.to_ascii_lowercase())
            .collect();
        *cached = Some((Instant::now(), domains.clone()));
        Ok(domains)
    }
}
