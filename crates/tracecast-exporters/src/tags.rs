//! Tags from custom metadata, as OpenRouter documents them for LangSmith and Braintrust ("any
//! array of strings passed in metadata can be used as tags").

use serde_json::Value;
use tracecast_model::trace::TraceView;

/// The elements of every custom `trace` value that is a non-empty array of strings only, in
/// metadata order, trimmed, without repeats or empty strings.
pub fn from_metadata<'a>(view: &TraceView<'a>) -> Vec<&'a str> {
    let mut out: Vec<&'a str> = Vec::new();
    for (_, value) in view.metadata() {
        let Some(items) = value.as_array() else {
            continue;
        };
        if items.is_empty() || !items.iter().all(Value::is_string) {
            continue;
        }
        for tag in items.iter().filter_map(Value::as_str) {
            let tag = tag.trim();
            if !tag.is_empty() && !out.contains(&tag) {
                out.push(tag);
            }
        }
    }
    out
}
