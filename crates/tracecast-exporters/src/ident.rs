//! Identifiers derived from free text (provider names, model authors): lower case, with each
//! run of other characters replaced by one `_`.

/// `s` lower-cased, each run of characters that are not letters or digits (ASCII only unless
/// `unicode`) replaced by one `_`, none at either end; `unknown` when nothing is left.
pub fn snake(s: &str, unicode: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut gap = false;
    for c in s.chars().flat_map(char::to_lowercase) {
        let keep = if unicode {
            c.is_alphanumeric()
        } else {
            c.is_ascii_alphanumeric()
        };
        if keep {
            if gap && !out.is_empty() {
                out.push('_');
            }
            gap = false;
            out.push(c);
        } else {
            gap = true;
        }
    }
    if out.is_empty() {
        out.push_str("unknown");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::snake;

    #[test]
    fn snake_identifiers() {
        assert_eq!(snake("Google Vertex", false), "google_vertex");
        assert_eq!(snake("  Together AI! ", false), "together_ai");
        assert_eq!(snake("Ünïcode AI", false), "n_code_ai");
        assert_eq!(snake("Ünïcode AI", true), "ünïcode_ai");
        assert_eq!(snake("!!", true), "unknown");
    }
}
