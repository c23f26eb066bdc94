use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ValidationError;

/// Where a request was served. A destination only receives generations served in one of its
/// regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    Global,
    #[serde(alias = "eu")]
    Europe,
    Us,
}

impl Region {
    pub const ALL: [Region; 3] = [Region::Global, Region::Europe, Region::Us];

    pub fn as_str(self) -> &'static str {
        match self {
            Region::Global => "global",
            Region::Europe => "europe",
            Region::Us => "us",
        }
    }

    /// Parses an input value; `eu` is accepted as an alias for `europe`.
    pub fn parse(s: &str) -> Option<Region> {
        match s {
            "global" => Some(Region::Global),
            "europe" | "eu" => Some(Region::Europe),
            "us" => Some(Region::Us),
            _ => None,
        }
    }

    /// Validates a `regions` input array: non-empty, known values, duplicates folded.
    pub fn parse_list(field: &str, values: &[String]) -> Result<Vec<Region>, ValidationError> {
        if values.is_empty() {
            return Err(ValidationError::new(format!(
                "{field} must contain at least one region"
            )));
        }
        let mut out = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            let r = Region::parse(v).ok_or_else(|| {
                ValidationError::new(format!(
                    "{field}[{i}] must be one of global, europe, us (or eu), got {v:?}"
                ))
            })?;
            if !out.contains(&r) {
                out.push(r);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eu_is_an_alias_and_duplicates_fold() {
        let v = vec!["eu".to_string(), "europe".to_string(), "us".to_string()];
        assert_eq!(
            Region::parse_list("regions", &v).unwrap(),
            vec![Region::Europe, Region::Us]
        );
    }

    #[test]
    fn empty_and_unknown_are_rejected() {
        assert!(Region::parse_list("regions", &[]).is_err());
        let err = Region::parse_list("regions", &["mars".into()]).unwrap_err();
        assert!(err.0.contains("regions[0]"), "{err}");
    }
}
