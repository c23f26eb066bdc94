//! Ways in besides `/api/v1/generations`: each turns its input into generation records and
//! appends them through the same path (`crate::api::generations::append`).

pub mod otlp;
