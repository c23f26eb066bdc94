//! POSTed forms, and where on a form an API error belongs.

/// The fields of an `application/x-www-form-urlencoded` body, in order; names may repeat
/// (checkbox groups, header rows).
#[derive(Debug, Default, Clone)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn parse(body: &[u8]) -> Fields {
        Fields(url::form_urlencoded::parse(body).into_owned().collect())
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, or "".
    pub fn text(&self, name: &str) -> &str {
        self.get(name).unwrap_or_default()
    }

    /// Every value of `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A checkbox: present with any value but "" or "off".
    pub fn checked(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| !v.is_empty() && v != "off")
    }

    /// Every (name, value), in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Where on the destination form an API validation message belongs. The API's messages start
/// with the path of the offending field (`config.url must be ...`,
/// `filter_rules.groups[0].rules[1].value is not a valid regex ...`); the form shows each one
/// next to that field:
///
/// - `config.<field>...` → `cfg.<field>` (`headers` for every header);
/// - `filter_rules.groups[g].rules[r]...` → `g<g>.r<r>`; other `filter_rules...` → `filter`;
/// - `api_key_hashes...` → `keys`; `regions...` → `regions`; `workspace_id` → `workspace`;
///   `name`, `sampling_rate` as they are;
/// - anything else → `general` (shown above the form).
pub fn slot_of(message: &str) -> String {
    let head = message
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_end_matches([':', ',']);
    if let Some(rest) = head.strip_prefix("config.") {
        let field = rest.split(['.', '[']).next().unwrap_or_default();
        return if field == "headers" {
            "headers".into()
        } else {
            format!("cfg.{field}")
        };
    }
    if let Some(rest) = head.strip_prefix("filter_rules.groups[") {
        let group = rest.split(']').next().and_then(|g| g.parse::<usize>().ok());
        let rule = rest
            .split_once(".rules[")
            .and_then(|(_, r)| r.split(']').next())
            .and_then(|r| r.parse::<usize>().ok());
        return match (group, rule) {
            (Some(g), Some(r)) => format!("g{g}.r{r}"),
            _ => "filter".into(),
        };
    }
    if head.starts_with("filter_rules") {
        return "filter".into();
    }
    if head.starts_with("api_key_hashes") {
        return "keys".into();
    }
    if head == "regions" || head.starts_with("regions[") {
        return "regions".into();
    }
    match head {
        "name" => "name".into(),
        "sampling_rate" => "sampling_rate".into(),
        "workspace_id" => "workspace".into(),
        _ => "general".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_fields_keep_their_order() {
        let f = Fields::parse(b"regions=global&regions=us&name=a+b&c=off&d=on&e=");
        assert_eq!(f.all("regions").collect::<Vec<_>>(), ["global", "us"]);
        assert_eq!(f.get("name"), Some("a b"));
        assert!(!f.checked("c") && f.checked("d") && !f.checked("e") && !f.checked("x"));
    }

    #[test]
    fn messages_find_their_fields() {
        assert_eq!(
            slot_of("config.url must be an absolute http(s) URL, got \"x\""),
            "cfg.url"
        );
        assert_eq!(
            slot_of("config.headers.X-A must not contain control characters"),
            "headers"
        );
        assert_eq!(
            slot_of(
                "config.url, config.method changes where this destination's credentials are sent"
            ),
            "cfg.url"
        );
        assert_eq!(
            slot_of("filter_rules.groups[2].rules[11].value is not a valid regex: x"),
            "g2.r11"
        );
        assert_eq!(
            slot_of("filter_rules.groups[0].rules[1].value: the destination's regexes would take"),
            "g0.r1"
        );
        assert_eq!(
            slot_of("filter_rules.groups[0].rules must contain at least one rule"),
            "filter"
        );
        assert_eq!(slot_of("api_key_hashes[0] is not the hash"), "keys");
        assert_eq!(
            slot_of("regions must contain at least one region"),
            "regions"
        );
        assert_eq!(slot_of("sampling_rate must be between"), "sampling_rate");
        assert_eq!(slot_of("name must not be empty"), "name");
        assert_eq!(
            slot_of("workspace_id does not name a workspace of this account"),
            "workspace"
        );
        assert_eq!(
            slot_of("The tenant already holds 5 destinations"),
            "general"
        );
    }
}
