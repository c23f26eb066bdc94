//! tracecast's domain model.
//!
//! Everything here is plain data plus the rules that keep it valid: the 19 destination
//! types and their config schemas ([`config`]), filter rules ([`filter`]), data regions,
//! workspaces and API keys. Storage, delivery and HTTP live in other crates and depend on
//! this one, never the other way round.

pub mod api_key;
pub mod config;
pub mod destination;
pub mod error;
pub mod filter;
pub mod generation;
pub mod multimodal;
pub mod region;
pub mod time;
pub mod trace;
pub mod workspace;

pub use api_key::{ApiKey, KeyKind, generate_key, hash_key};
pub use config::DestinationType;
pub use destination::{Destination, DestinationPatch, NewDestination, Patch};
pub use error::ValidationError;
pub use filter::FilterRules;
pub use region::Region;
pub use workspace::{Tenant, Workspace};
