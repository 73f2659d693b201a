//! Access a guest may be granted: group memberships and app roles.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

use crate::ports::directory::AppRoleRef;

/// A set of groups and app roles. Sets, so that merging and containment are exact and the
/// order of grants is stable.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Access {
    #[serde(default)]
    pub groups: BTreeSet<String>,
    #[serde(default)]
    pub app_roles: BTreeSet<AppRoleRef>,
}

impl Access {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.app_roles.is_empty()
    }

    pub fn merge(&mut self, other: &Access) {
        self.groups.extend(other.groups.iter().cloned());
        self.app_roles.extend(other.app_roles.iter().cloned());
    }

    /// The first group or app role of `self` that `allowed` does not contain.
    pub fn first_outside(&self, allowed: &Access) -> Option<String> {
        if let Some(g) = self.groups.iter().find(|g| !allowed.groups.contains(*g)) {
            return Some(format!("group {g}"));
        }
        self.app_roles
            .iter()
            .find(|r| !allowed.app_roles.contains(*r))
            .map(|r| format!("app role {} on {}", r.app_role_id, r.resource_id))
    }
}
