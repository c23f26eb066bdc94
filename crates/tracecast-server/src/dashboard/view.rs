//! Display helpers shared by the pages: the page frame, destination-type marks, field labels,
//! ages and numbers.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tracecast_model::{ApiKey, DestinationType};

use super::assets;

/// What every page's frame (`base.html`) needs.
pub struct Chrome {
    pub title: String,
    /// The navigation entry to mark current: `destinations`, `workspaces`, `keys` or "".
    pub nav: &'static str,
    /// The session's CSRF token ("" before sign-in): htmx sends it as `X-CSRF-Token`.
    pub csrf: String,
    pub signed_in: bool,
    pub key_name: String,
    pub key_label: String,
    pub htmx: String,
    pub css: String,
    pub js: String,
    pub icon: String,
}

impl Chrome {
    pub fn anonymous(title: impl Into<String>) -> Self {
        Chrome {
            title: title.into(),
            nav: "",
            csrf: String::new(),
            signed_in: false,
            key_name: String::new(),
            key_label: String::new(),
            htmx: assets::htmx(),
            css: assets::css(),
            js: assets::js(),
            icon: assets::icon(),
        }
    }

    pub fn signed_in(
        title: impl Into<String>,
        nav: &'static str,
        csrf: &str,
        key: &ApiKey,
    ) -> Self {
        Chrome {
            nav,
            csrf: csrf.to_string(),
            signed_in: true,
            key_name: key.name.clone(),
            key_label: key.label.clone(),
            ..Chrome::anonymous(title)
        }
    }

    /// The `hx-headers` value of the page body: the CSRF token for every htmx request.
    pub fn hx_headers(&self) -> String {
        serde_json::json!({ "X-CSRF-Token": self.csrf }).to_string()
    }
}

/// A destination type as the pages show it: its name and a small coloured mark.
#[derive(Clone)]
pub struct TypeMark {
    pub slug: &'static str,
    pub name: &'static str,
    pub initials: String,
    /// Background of the mark (`#rrggbb`), dark enough for white initials.
    pub color: String,
}

impl TypeMark {
    pub fn of(ty: DestinationType) -> Self {
        let name = ty.display_name();
        let words: Vec<&str> = name
            .split(|c: char| c.is_whitespace() || c == '/')
            .filter(|w| !w.is_empty())
            .collect();
        // "S3", "W&B": a short first word that is a name of its own. Two words: their
        // initials ("NR"). One word: its capitals ("CH" for ClickHouse), else its first two
        // letters ("Da").
        let initials = match words.as_slice() {
            [first, ..]
                if first.chars().count() <= 3
                    && first.chars().any(|c| c.is_ascii_digit() || c == '&') =>
            {
                first.to_string()
            }
            [first, second, ..] => first
                .chars()
                .take(1)
                .chain(second.chars().take(1))
                .collect::<String>()
                .to_uppercase(),
            [only] => {
                let capitals: String = only.chars().filter(char::is_ascii_uppercase).collect();
                if capitals.chars().count() >= 2 {
                    capitals.chars().take(2).collect()
                } else {
                    only.chars().take(2).collect()
                }
            }
            [] => "?".into(),
        };
        TypeMark {
            slug: ty.as_str(),
            name,
            initials,
            color: mark_color(ty.as_str()),
        }
    }
}

impl TypeMark {
    /// The mark as an inline SVG (decorative: the type's name is always written beside it).
    pub fn svg(&self) -> String {
        let initials = self
            .initials
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        let size = if self.initials.chars().count() > 2 {
            10
        } else {
            12
        };
        format!(
            r##"<svg class="mark" width="28" height="28" viewBox="0 0 28 28" aria-hidden="true" focusable="false"><rect width="28" height="28" rx="6" fill="{}"/><text x="14" y="18" text-anchor="middle" font-size="{size}" font-weight="700" fill="#ffffff">{initials}</text></svg>"##,
            self.color
        )
    }
}

/// A colour from the type's name: any hue, at a lightness where white text keeps a contrast
/// of at least 4.5:1 (checked by a test for every type).
fn mark_color(slug: &str) -> String {
    let d = Sha256::digest(slug.as_bytes());
    let hue = (u16::from_be_bytes([d[0], d[1]]) % 360) as f64;
    let (r, g, b) = hsl_to_rgb(hue, 0.55, 0.30);
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn hsl_to_rgb(h: f64, s: f64, l: f64) -> (u8, u8, u8) {
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let hp = h / 60.0;
    let x = c * (1.0 - (hp % 2.0 - 1.0).abs());
    let (r, g, b) = match hp as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = l - c / 2.0;
    let to = |v: f64| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    (to(r), to(g), to(b))
}

/// A config field's label from its camelCase name: `apiKey` → "API key", `baseUrl` →
/// "Base URL", `shouldIncludeCacheWriteTokens` → "Include cache write tokens".
pub fn field_label(name: &str) -> String {
    const UPPER: [&str; 9] = ["api", "url", "id", "ml", "dsn", "otlp", "arn", "aws", "sql"];
    let mut words: Vec<String> = Vec::new();
    let mut cur = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() && !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
        cur.push(c.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    if words.first().is_some_and(|w| w == "should") && words.len() > 1 {
        words.remove(0);
    }
    let words: Vec<String> = words
        .into_iter()
        .map(|w| {
            if UPPER.contains(&w.as_str()) {
                w.to_uppercase()
            } else {
                w
            }
        })
        .collect();
    let mut out = words.join(" ");
    if let Some(first) = out.get(0..1) {
        let upper = first.to_uppercase();
        out.replace_range(0..1, &upper);
    }
    out
}

/// An age in seconds as people say it: `45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`.
pub fn age(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// How long ago an RFC 3339 time was (`3 min ago`), or the text itself if it does not parse.
pub fn ago(rfc3339: &str) -> String {
    match DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => {
            let secs = (Utc::now() - t.with_timezone(&Utc)).num_milliseconds() as f64 / 1000.0;
            if secs < 0.0 {
                "just now".into()
            } else {
                format!("{} ago", age(secs))
            }
        }
        Err(_) => rfc3339.to_string(),
    }
}

/// Unix ms as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// An RFC 3339 time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(rfc3339: &str) -> String {
    DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| {
            t.with_timezone(&Utc)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
        })
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// A count with thousands separators: `1 234 567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

/// At most `max` characters of `s`, with `…` when cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn luminance(hex: &str) -> f64 {
        let ch = |i: usize| {
            let v = u8::from_str_radix(&hex[i..i + 2], 16).unwrap() as f64 / 255.0;
            if v <= 0.03928 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * ch(1) + 0.7152 * ch(3) + 0.0722 * ch(5)
    }

    #[test]
    fn every_type_has_a_legible_mark() {
        for t in DestinationType::ALL {
            let m = TypeMark::of(t);
            assert!(
                !m.initials.is_empty() && m.initials.chars().count() <= 3,
                "{t}"
            );
            let contrast = 1.05 / (luminance(&m.color) + 0.05);
            assert!(contrast >= 4.5, "{t}: {} has contrast {contrast}", m.color);
        }
        assert_eq!(TypeMark::of(DestinationType::S3).initials, "S3");
        assert_eq!(TypeMark::of(DestinationType::Bigquery).initials, "GB");
        assert_eq!(TypeMark::of(DestinationType::Langfuse).initials, "La");
        assert_eq!(TypeMark::of(DestinationType::Langsmith).initials, "LS");
        assert_eq!(TypeMark::of(DestinationType::Newrelic).initials, "NR");
        assert_eq!(TypeMark::of(DestinationType::Weave).initials, "W&B");
    }

    #[test]
    fn labels_ages_and_counts() {
        assert_eq!(field_label("apiKey"), "API key");
        assert_eq!(field_label("baseUrl"), "Base URL");
        assert_eq!(field_label("otlpEndpoint"), "OTLP endpoint");
        assert_eq!(field_label("roleArn"), "Role ARN");
        assert_eq!(
            field_label("shouldIncludeCacheWriteTokens"),
            "Include cache write tokens"
        );
        assert_eq!(field_label("dsn"), "DSN");
        assert_eq!(age(5.2), "5 s");
        assert_eq!(age(125.0), "2 min");
        assert_eq!(age(3700.0), "1 h 1 min");
        assert_eq!(age(90_000.0), "1 d 1 h");
        assert_eq!(count(1234567), "1\u{202f}234\u{202f}567");
        assert_eq!(count(12), "12");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }
}
