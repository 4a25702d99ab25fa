//! The domain of Segment Export, free of any UI: storage, users and roles,
//! sessions and secrets. `app` calls into it from server functions and
//! `server` from the CLI; it never imports either.

pub mod account_cache;
pub mod alerts;
pub mod api_tokens;
pub mod audit;
pub mod connect;
pub mod connections;
pub mod constant_contact;
pub mod crypto;
pub mod csv_safe;
pub mod db;
pub mod demo;
pub mod error;
pub mod exports;
pub mod password;
pub mod policy;
pub mod profiles;
pub mod quota;
pub mod run;
pub mod runs;
pub mod schedule;
pub mod secrets;
pub mod segments;
pub mod sessions;
pub mod time;
pub mod users;
pub mod worker;

#[doc(hidden)]
pub mod testing;

pub use db::{Backend, Db};
pub use error::{Error, Result};
/// Ids of the records, typed (shared with the browser).
pub use types::{ConnectionId, ExportId, RunId, SegmentId, UserId};
