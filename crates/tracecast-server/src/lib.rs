//! The tracecast service: HTTP server, management API and admin commands.
//!
//! `main.rs` is only the command line; everything it runs lives here so that integration tests
//! start exactly the server users run.

/// Writes a line to stderr for the operator. Unlike `eprintln!`, a closed or full stderr is
/// ignored instead of panicking.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod api;
pub mod app;
pub mod auth;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod gateway;
pub mod ingest;
pub mod permissions;
pub mod provision;
pub mod rate_limit;
pub mod settings;
pub mod state;
