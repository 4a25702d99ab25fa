pub mod audit;
pub mod connection_new;
pub mod connections;
pub mod home;
pub mod login;
pub mod not_found;
pub mod setup;
pub mod users;
