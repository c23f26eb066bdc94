//! tracecast's delivery engine.
//!
//! - [`route`]: per destination, whether a generation goes there (switches, region, key
//!   allowlist, filter rules, deterministic sampling).

pub mod route;
