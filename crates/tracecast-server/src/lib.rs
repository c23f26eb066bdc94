//! The tracecast service: HTTP server, management API and admin commands.
//!
//! `main.rs` is only the command line; everything it runs lives here so that integration tests
//! start exactly the server users run.

pub mod api;
pub mod app;
pub mod auth;
pub mod error;
pub mod extract;
pub mod provision;
pub mod settings;
pub mod state;
