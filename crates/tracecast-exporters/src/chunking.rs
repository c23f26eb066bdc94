//! Request bodies split into chunks that respect a platform's request size limit, and the
//! answers to those chunks combined into one outcome (used by `datadog` and `posthog`).
//!
//! # Chunked payloads
//!
//! Both platforms take a JSON body with a list of events and have a hard limit on the size of
//! one request (Datadog 5 MiB as ddtrace sends, PostHog 5 MiB as its SDK sends). The engine sizes
//! batches from stored record sizes, which only approximate the encoded size, so
//! [`Exporter::encode`] packs the encoded events into as many requests ("chunks") as the limit
//! needs. The payload body is the chunks, one per line, each `<number of traces>\t<request
//! JSON>\n` (compact JSON has no raw newline). `send` sends them in order; with more than one
//! chunk, the answers are combined into one outcome ([`combine`]). A batch that fits in one
//! request (the usual case) is one chunk and one request.
//!
//! [`Exporter::encode`]: crate::Exporter::encode

use bytes::Bytes;

use crate::{ItemOutcome, Outcome};

/// One request's worth of encoded traces.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Chunk<'a> {
    /// Number of traces in it.
    pub items: usize,
    /// The JSON the platform receives (or, for PostHog, the part the credentials are wrapped
    /// around at send time).
    pub json: &'a [u8],
}

/// One request's worth of consecutive items, as [`group_by_size`] forms them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    /// The items, by index.
    pub items: std::ops::Range<usize>,
    /// A single item that alone exceeds the limit.
    pub oversized: bool,
}

/// Greedy, in-order grouping of items of `sizes` bytes into requests of at most `max` bytes,
/// where a request costs `frame` bytes plus its items plus `sep` bytes between two items. An
/// item that alone exceeds `max` is a group of its own, marked `oversized`. Shared by every
/// exporter that splits a batch into requests under a platform's size limit.
pub(crate) fn group_by_size(sizes: &[usize], max: usize, frame: usize, sep: usize) -> Vec<Group> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut len = frame;
    for (i, &size) in sizes.iter().enumerate() {
        let extra = size + if i > start { sep } else { 0 };
        if i > start && len + extra > max {
            out.push(Group {
                items: start..i,
                oversized: false,
            });
            start = i;
            len = frame;
        }
        len += if i > start { size + sep } else { size };
        if i == start && frame + size > max {
            out.push(Group {
                items: i..i + 1,
                oversized: true,
            });
            start = i + 1;
            len = frame;
        }
    }
    if start < sizes.len() {
        out.push(Group {
            items: start..sizes.len(),
            oversized: false,
        });
    }
    out
}

/// Packs per-trace encodings into chunks. `events[i]` is trace `i`'s encoded events (one or
/// more JSON values joined with `,`); `wrap(list)` must produce the request JSON for the list
/// `list` (a comma-separated sequence of events). A chunk's request stays within `max_request`
/// bytes unless a single trace alone exceeds it (callers truncate events first, so it cannot;
/// such a trace is sent alone).
pub(crate) fn pack(
    events: &[Vec<u8>],
    max_request: usize,
    overhead: usize,
    wrap: impl Fn(&[u8]) -> Vec<u8>,
) -> Bytes {
    let sizes: Vec<usize> = events.iter().map(Vec::len).collect();
    let mut out = Vec::with_capacity(sizes.iter().sum::<usize>() + 256);
    for g in group_by_size(&sizes, max_request, overhead, 1) {
        let list = events[g.items.clone()].join(&b","[..]);
        out.extend_from_slice(g.items.len().to_string().as_bytes());
        out.push(b'\t');
        out.extend_from_slice(&wrap(&list));
        out.push(b'\n');
    }
    Bytes::from(out)
}

/// Splits a payload body made by [`pack`] into its chunks.
pub(crate) fn chunks(body: &[u8]) -> Result<Vec<Chunk<'_>>, String> {
    let mut out = Vec::new();
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let tab = line
            .iter()
            .position(|b| *b == b'\t')
            .ok_or("a payload chunk has no item count")?;
        let items = std::str::from_utf8(&line[..tab])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or("a payload chunk has an invalid item count")?;
        out.push(Chunk {
            items,
            json: &line[tab + 1..],
        });
    }
    Ok(out)
}

/// Combines the answers to the chunks of one payload, sent in order, into one outcome.
///
/// `answers[i]` answers chunk `i` (of `sizes[i]` traces); chunks after a retryable or
/// credentials answer are not sent (their answer is missing) and are retried. One chunk: its
/// answer as is. Several: delivered when all are; `Unauthorized` when the credentials were
/// refused (the whole batch waits for new credentials, so a chunk accepted before is sent
/// again); `Retry` (with the platform's `Retry-After`) when the first chunk must be retried;
/// otherwise per-trace answers (`Partial`).
pub(crate) fn combine(sizes: &[usize], answers: Vec<Outcome>) -> Outcome {
    if sizes.len() == 1 && answers.len() == 1 {
        return answers.into_iter().next().expect("one answer");
    }
    if answers.iter().all(|a| *a == Outcome::Delivered) && answers.len() == sizes.len() {
        return Outcome::Delivered;
    }
    if let Some(u) = answers
        .iter()
        .find(|a| matches!(a, Outcome::Unauthorized { .. }))
    {
        return u.clone();
    }
    if let Some(first @ Outcome::Retry { .. }) = answers.first() {
        return first.clone();
    }
    let mut items = Vec::with_capacity(sizes.iter().sum());
    let mut pending_error = String::from("not sent: an earlier request of the batch failed");
    for (i, n) in sizes.iter().enumerate() {
        let item = match answers.get(i) {
            Some(Outcome::Delivered) => ItemOutcome::Delivered,
            Some(Outcome::Rejected { error, .. }) => ItemOutcome::Rejected {
                error: error.clone(),
            },
            Some(Outcome::Retry { error, .. }) => {
                pending_error = error.clone();
                ItemOutcome::Retry {
                    error: error.clone(),
                }
            }
            Some(Outcome::Partial(_)) | Some(Outcome::Unauthorized { .. }) | None => {
                ItemOutcome::Retry {
                    error: pending_error.clone(),
                }
            }
        };
        items.extend(std::iter::repeat_n(item, *n));
    }
    Outcome::Partial(items)
}

/// Whether a chunk's answer stops the chunks after it from being sent.
pub(crate) fn stops(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Retry { .. } | Outcome::Unauthorized { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pack_and_split_round_trip() {
        let events: Vec<Vec<u8>> = (0..5)
            .map(|i| format!("{{\"e\":{i}}}").into_bytes())
            .collect();
        let wrap = |l: &[u8]| [b"[".as_slice(), l, b"]"].concat();
        let one = pack(&events, 1000, 2, wrap);
        let c = chunks(&one).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].items, 5);
        assert_eq!(c[0].json, br#"[{"e":0},{"e":1},{"e":2},{"e":3},{"e":4}]"#);
        // 7 bytes per event, room for two per request.
        let many = pack(&events, 2 + 7 + 1 + 7, 2, wrap);
        let c = chunks(&many).unwrap();
        assert_eq!(c.iter().map(|c| c.items).collect::<Vec<_>>(), vec![2, 2, 1]);
        assert!(c.iter().all(|c| c.json.len() <= 17));
        assert_eq!(c[2].json, br#"[{"e":4}]"#);
        assert!(chunks(b"x{}\n").is_err());
        assert!(chunks(b"").unwrap().is_empty());
    }

    #[test]
    fn grouping_by_size() {
        let g = |sizes: &[usize], max, frame, sep| {
            group_by_size(sizes, max, frame, sep)
                .into_iter()
                .map(|g| (g.items, g.oversized))
                .collect::<Vec<_>>()
        };
        // 40 + 40 fit in 100; 200 alone is oversized; 10 starts a new group.
        assert_eq!(
            g(&[40, 40, 200, 10], 100, 0, 0),
            vec![(0..2, false), (2..3, true), (3..4, false)]
        );
        // Frame and separators count: 10 + 40 + 1 + 40 = 91 fits, a third item does not.
        assert_eq!(
            g(&[40, 40, 40], 91, 10, 1),
            vec![(0..2, false), (2..3, false)]
        );
        assert_eq!(g(&[40, 40], 90, 10, 1), vec![(0..1, false), (1..2, false)]);
        assert!(g(&[], 10, 0, 0).is_empty());
    }

    #[test]
    fn combining_answers() {
        let retry = Outcome::Retry {
            status: Some(429),
            error: "HTTP 429".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(combine(&[3], vec![retry.clone()]), retry);
        assert_eq!(
            combine(&[1, 2], vec![Outcome::Delivered, Outcome::Delivered]),
            Outcome::Delivered
        );
        assert_eq!(combine(&[1, 2], vec![retry.clone()]), retry);
        let rejected = Outcome::Rejected {
            status: Some(400),
            error: "HTTP 400: bad".into(),
        };
        match combine(&[1, 1, 1], vec![Outcome::Delivered, rejected, retry]) {
            Outcome::Partial(items) => {
                assert_eq!(items[0], ItemOutcome::Delivered);
                assert!(
                    matches!(&items[1], ItemOutcome::Rejected { error } if error.contains("bad"))
                );
                assert!(matches!(&items[2], ItemOutcome::Retry { .. }));
            }
            other => panic!("{other:?}"),
        }
        match combine(&[2, 1], vec![Outcome::Delivered]) {
            Outcome::Partial(items) => assert_eq!(items.len(), 3),
            other => panic!("{other:?}"),
        }
    }
}
