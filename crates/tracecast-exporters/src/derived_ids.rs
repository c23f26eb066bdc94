//! Ids derived from a generation's own ids, so that every retry, restart and replay of a
//! generation sends the same ids (platforms then replace rather than duplicate).

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The first 16 bytes of SHA-256 of `parts` joined by U+001F.
pub(crate) fn digest16(parts: &[&str]) -> [u8; 16] {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update("\u{1f}".as_bytes());
        }
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// A UUID derived from `parts` (RFC 9562 version 8, "custom": SHA-256 based), lower-case
/// hyphenated: the same input gives the same UUID on every retry.
pub(crate) fn derived_uuid(parts: &[&str]) -> String {
    let mut b = digest16(parts);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A UUIDv7 with the given time (ms since the epoch, 48 bits) and random bits taken from
/// SHA-256 of the parts (separated by U+001F).
pub fn derived_uuid_v7(unix_ms: u64, parts: &[&str]) -> Uuid {
    let d = digest16(parts);
    let mut random = [0u8; 10];
    random.copy_from_slice(&d[..10]);
    uuid::Builder::from_unix_timestamp_millis(unix_ms & 0xFFFF_FFFF_FFFF, &random).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_versioned() {
        let u = derived_uuid(&["posthog", "gen-1"]);
        assert_eq!(u, derived_uuid(&["posthog", "gen-1"]));
        assert_ne!(u, derived_uuid(&["posthog", "gen-2"]));
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "8", "version 8: {u}");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "variant: {u}");
        let v = derived_uuid_v7(1_767_274_662_250, &["opik-trace", "t"]);
        assert_eq!(v.get_version_num(), 7);
        assert_eq!(v, derived_uuid_v7(1_767_274_662_250, &["opik-trace", "t"]));
        let (secs, nanos) = v.get_timestamp().expect("v7 has a time").to_unix();
        assert_eq!(
            secs * 1000 + u64::from(nanos) / 1_000_000,
            1_767_274_662_250
        );
    }
}
