//! Golden files under `tests/golden/`: compared byte for byte, rewritten with `UPDATE_GOLDEN=1`
//! (then review the diff).

use std::path::PathBuf;

/// The path of `tests/golden/<name>`.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Writes `now` to the golden file when `UPDATE_GOLDEN` is set.
fn update(path: &PathBuf, now: &[u8]) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("golden dir")).expect("mkdir golden");
        std::fs::write(path, now).expect("write golden");
    }
}

/// Asserts that `now` is `tests/golden/<name>` byte for byte (`what` names it in the failure,
/// e.g. "Ramp body"); returns the golden bytes.
pub fn assert_bytes(name: &str, what: &str, now: &[u8]) -> Vec<u8> {
    let path = path(name);
    update(&path, now);
    let golden = std::fs::read(&path).unwrap_or_else(|e| panic!("tests/golden/{name} exists: {e}"));
    if golden != now {
        panic!(
            "the {what} differs from {}\n--- golden\n{}\n--- now\n{}",
            path.display(),
            String::from_utf8_lossy(&golden),
            String::from_utf8_lossy(now)
        );
    }
    golden
}

/// [`assert_bytes`] for text; returns the golden text.
pub fn assert_text(name: &str, what: &str, now: &str) -> String {
    let golden = assert_bytes(name, what, now.as_bytes());
    String::from_utf8(golden).expect("golden file is UTF-8")
}

/// Asserts that the JSON `now` equals the JSON of `tests/golden/<name>` (written pretty, with a
/// final newline, under `UPDATE_GOLDEN=1`).
pub fn assert_json(name: &str, what: &str, now: &serde_json::Value) {
    let path = path(name);
    let pretty = serde_json::to_vec_pretty(now).unwrap();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, [pretty.as_slice(), b"\n"].concat()).expect("write golden");
    }
    let golden: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("golden exists"))
            .expect("golden is JSON");
    if golden != *now {
        panic!(
            "the {what} differs from {}\n--- now\n{}",
            path.display(),
            serde_json::to_string_pretty(now).unwrap()
        );
    }
}
