//! Taking access away again over Graph v1.0: a group membership
//! (`DELETE /groups/{id}/members/{id}/$ref`), an app role assignment (found among the
//! user's, `DELETE /users/{id}/appRoleAssignments/{id}`) and a directory role assignment
//! (`DELETE /roleManagement/directory/roleAssignments/{id}`). What is already gone is done.

use reqwest::Method;
use serde::Deserialize;

use super::client::{Call, GraphDirectory};
use super::odata::{encode, literal, query};
use super::wire::Page;
use crate::ports::directory::{AppRoleRef, DirectoryError, Removed};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Assignment {
    id: String,
    #[serde(default)]
    resource_id: Option<String>,
    #[serde(default)]
    app_role_id: Option<String>,
}

impl GraphDirectory {
    async fn delete(&self, target: String) -> Result<Removed, DirectoryError> {
        match self.send(Call::write(Method::DELETE, target, None)).await {
            Ok(_) => Ok(Removed::Done),
            Err(DirectoryError::Permanent { status: 404, .. }) => Ok(Removed::AlreadyGone),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn leave_group(
        &self,
        group_id: &str,
        user_id: &str,
    ) -> Result<Removed, DirectoryError> {
        self.delete(format!(
            "/groups/{}/members/{}/$ref",
            encode(group_id),
            encode(user_id)
        ))
        .await
    }

    pub(super) async fn unassign_app_role(
        &self,
        user_id: &str,
        role: &AppRoleRef,
    ) -> Result<Removed, DirectoryError> {
        // A user holds few assignments: one page, matched here.
        let Some(page) = self
            .get_json::<Page<Assignment>>(format!("/users/{}/appRoleAssignments", encode(user_id)))
            .await?
        else {
            return Ok(Removed::AlreadyGone);
        };
        let mut removed = Removed::AlreadyGone;
        for a in page.value.iter().filter(|a| {
            a.resource_id.as_deref() == Some(role.resource_id.as_str())
                && a.app_role_id.as_deref() == Some(role.app_role_id.as_str())
        }) {
            if self
                .delete(format!(
                    "/users/{}/appRoleAssignments/{}",
                    encode(user_id),
                    encode(&a.id)
                ))
                .await?
                == Removed::Done
            {
                removed = Removed::Done;
            }
        }
        Ok(removed)
    }

    pub(super) async fn unassign_directory_role(
        &self,
        user_id: &str,
        role_template_id: &str,
    ) -> Result<Removed, DirectoryError> {
        let filter = format!(
            "principalId eq {} and roleDefinitionId eq {}",
            literal(user_id),
            literal(role_template_id)
        );
        let Some(page) = self
            .get_json::<Page<Assignment>>(format!(
                "/roleManagement/directory/roleAssignments{}",
                query(&[("$filter", &filter)])
            ))
            .await?
        else {
            return Ok(Removed::AlreadyGone);
        };
        let mut removed = Removed::AlreadyGone;
        for a in &page.value {
            if self
                .delete(format!(
                    "/roleManagement/directory/roleAssignments/{}",
                    encode(&a.id)
                ))
                .await?
                == Removed::Done
            {
                removed = Removed::Done;
            }
        }
        Ok(removed)
    }
}
