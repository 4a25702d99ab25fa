//! What the v3 API answers, as the client reads it: lists, custom fields,
//! privileges, activities and contacts, and the pages they come in.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactList {
    pub list_id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub membership_count: Option<u64>,
    #[serde(default)]
    pub favorite: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomField {
    pub custom_field_id: String,
    pub label: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Privilege {
    pub privilege_id: i64,
    pub privilege_name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityStatus {
    #[serde(default)]
    pub items_total_count: u64,
    #[serde(default)]
    pub items_completed_count: u64,
    #[serde(default)]
    pub person_count: u64,
    #[serde(default)]
    pub error_count: u64,
    #[serde(default)]
    pub correctable_count: u64,
    #[serde(default)]
    pub cannot_add_to_list_count: u64,
    #[serde(default)]
    pub list_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    pub activity_id: String,
    pub state: String,
    #[serde(default)]
    pub percent_done: u32,
    /// Strings for imports; objects for some other activities.
    #[serde(default)]
    pub activity_errors: Vec<serde_json::Value>,
    #[serde(default)]
    pub status: ActivityStatus,
}

#[derive(Deserialize)]
pub(crate) struct ActivitiesPage {
    #[serde(default)]
    pub(crate) activities: Vec<Activity>,
}

impl Activity {
    /// `completed`, `cancelled`, `failed` or `timed_out`.
    pub fn is_finished(&self) -> bool {
        matches!(
            self.state.as_str(),
            "completed" | "cancelled" | "failed" | "timed_out"
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailAddress {
    pub address: String,
    #[serde(default)]
    pub permission_to_send: Option<String>,
    #[serde(default)]
    pub opt_out_source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub contact_id: String,
    pub email_address: EmailAddress,
    #[serde(default)]
    pub list_memberships: Vec<String>,
}

impl Contact {
    pub fn is_unsubscribed(&self) -> bool {
        self.email_address.permission_to_send.as_deref() == Some("unsubscribed")
    }
}

#[derive(Deserialize)]
pub(crate) struct Href {
    pub(crate) href: String,
}

#[derive(Deserialize, Default)]
pub(crate) struct Links {
    pub(crate) next: Option<Href>,
}

#[derive(Deserialize)]
pub(crate) struct ListsPage {
    #[serde(default)]
    pub(crate) lists: Vec<ContactList>,
    #[serde(default, rename = "_links")]
    pub(crate) links: Option<Links>,
}

#[derive(Deserialize)]
pub(crate) struct FieldsPage {
    #[serde(default)]
    pub(crate) custom_fields: Vec<CustomField>,
    #[serde(default, rename = "_links")]
    pub(crate) links: Option<Links>,
}

#[derive(Deserialize)]
pub(crate) struct ContactsPage {
    #[serde(default)]
    pub(crate) contacts: Vec<Contact>,
    #[serde(default, rename = "_links")]
    pub(crate) links: Option<Links>,
}
