//! Graph's routes for taking access away again (the end of a contract or an assignment):
//! a user's app role assignments, listed and deleted, and directory role assignments
//! deleted. Group members are removed in graph.rs with the rest of group membership.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get};

use crate::control::Inner;
use crate::error::{GraphError, GraphResult};
use crate::graph::{METADATA, collection, render_assignment};

pub(crate) fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route("/users/{id}/appRoleAssignments", get(list_user_assignments))
        .route(
            "/users/{id}/appRoleAssignments/{aid}",
            delete(remove_user_assignment),
        )
        .route(
            "/roleManagement/directory/roleAssignments/{rid}",
            delete(remove_role_assignment),
        )
}

/// `GET /users/{id}/appRoleAssignments`: a user has few, so one page.
async fn list_user_assignments(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
) -> GraphResult<Response> {
    let dir = inner.dir();
    let user = dir.user(&id).ok_or_else(|| GraphError::not_found(&id))?;
    let values = dir
        .app_role_assignments
        .iter()
        .filter(|a| a.principal_id == user.id)
        .map(render_assignment)
        .collect();
    let user_id = user.id.clone();
    drop(dir);
    Ok(collection(
        format!("{METADATA}#users('{user_id}')/appRoleAssignments"),
        values,
        None,
        None,
    ))
}

/// `DELETE /users/{id}/appRoleAssignments/{aid}`: 204, or 404 when the user has no such
/// assignment.
async fn remove_user_assignment(
    State(inner): State<Arc<Inner>>,
    Path((id, aid)): Path<(String, String)>,
) -> GraphResult<StatusCode> {
    let mut dir = inner.dir();
    let user_id = dir
        .user(&id)
        .ok_or_else(|| GraphError::not_found(&id))?
        .id
        .clone();
    let before = dir.app_role_assignments.len();
    dir.app_role_assignments
        .retain(|a| !(a.id == aid && a.principal_id == user_id));
    if dir.app_role_assignments.len() == before {
        return Err(GraphError::not_found(&aid));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /roleManagement/directory/roleAssignments/{rid}`: 204 or 404.
async fn remove_role_assignment(
    State(inner): State<Arc<Inner>>,
    Path(rid): Path<String>,
) -> GraphResult<StatusCode> {
    let mut dir = inner.dir();
    let before = dir.role_assignments.len();
    dir.role_assignments.retain(|r| r.id != rid);
    if dir.role_assignments.len() == before {
        return Err(GraphError::not_found(&rid));
    }
    Ok(StatusCode::NO_CONTENT)
}
