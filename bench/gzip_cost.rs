//! What gzip costs and saves on B1's records: 500 generations like loadgen's (~2.4 KB, three
//! 500-character messages and a 400-character reply from the same word list), encoded as the
//! `otel-collector` exporter sends them (OTLP/JSON) and, for comparison, as the `datadog`
//! exporter does; each body gzipped at levels 1, 3, 6 and 9 with the crate's own
//! `compression::gzip_at` (flate2). Prints one JSON line per body and level: bytes before and
//! after, the ratio, and CPU time per record (the best of `--rounds` rounds, so other load on
//! the box inflates it least).
//!
//! ```sh
//! cargo run --release -p tracecast-exporters --example gzip_cost -- --rounds 20
//! # instruction counts, robust to load on the box:
//! valgrind --tool=callgrind target/release/examples/gzip_cost --rounds 1
//! ```

use std::time::{Duration, Instant};

use serde_json::json;
use tracecast_exporters::compression::gzip_at;
use tracecast_exporters::{ExportContext, build};
use tracecast_model::DestinationType;
use tracecast_model::generation::{Generation, IngestContext};
use tracecast_model::trace::{TraceOptions, TraceView};

/// loadgen's filler generator (xorshift64*) and word list, so the text compresses as B1's does.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "the",
    "model",
    "token",
    "request",
    "latency",
    "stream",
    "context",
    "window",
    "answer",
    "question",
    "user",
    "assistant",
    "system",
    "prompt",
    "function",
    "call",
    "result",
    "error",
    "retry",
    "budget",
    "summary",
    "document",
    "search",
    "vector",
    "embedding",
    "temperature",
    "sampling",
    "provider",
    "routing",
    "fallback",
    "cache",
    "policy",
    "please",
    "explain",
    "why",
    "how",
    "when",
    "rust",
    "python",
    "deploy",
    "service",
    "database",
    "query",
    "index",
    "schema",
    "customer",
    "invoice",
    "report",
    "weather",
    "travel",
    "recipe",
    "translate",
    "french",
    "code",
    "review",
    "bug",
    "fix",
    "test",
    "example",
    "JSON",
    "output",
    "format",
    "step",
    "reason",
    "carefully",
    "concise",
    "list",
    "table",
    "markdown",
    "and",
    "or",
    "with",
    "for",
    "of",
    "to",
    "in",
    "on",
    "a",
    "is",
    "are",
    "it",
];

fn text(rng: &mut Rng, chars: usize) -> String {
    let mut s = String::with_capacity(chars + 16);
    while s.len() < chars {
        if !s.is_empty() {
            s.push(if rng.below(12) == 0 { '.' } else { ' ' });
            if s.ends_with('.') {
                s.push(' ');
            }
        }
        s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
    s.truncate(chars);
    s
}

fn record(rng: &mut Rng, i: usize) -> Generation {
    let prompt = 200 + rng.below(1800);
    let completion = 20 + rng.below(600);
    let v = json!({
        "id": format!("gen-bench-{i:016}"),
        "model": "openai/gpt-4o-mini",
        "created_at": "2026-12-07T12:00:00.000Z",
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        "total_cost": 0.000123,
        "user": format!("user-{:04}", rng.below(1000)),
        "session_id": format!("sess-{:06}", rng.below(100_000)),
        "trace": {"marker": "lg", "sent_us": 1_765_000_000_000_000u64 + i as u64},
        "request": {"messages": [
            {"role": "system", "content": text(rng, 500)},
            {"role": "user", "content": text(rng, 500)},
            {"role": "assistant", "content": text(rng, 500)},
        ]},
        "response": {"choices": [{"message": {"role": "assistant", "content": text(rng, 400)}}]},
    });
    Generation::from_json(v, &IngestContext::default()).expect("a valid generation")
}

fn main() {
    let rounds: usize = std::env::args()
        .skip_while(|a| a != "--rounds")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ 500);
    let gens: Vec<Generation> = (0..500).map(|i| record(&mut rng, i)).collect();
    let opts = TraceOptions {
        privacy_mode: false,
        cost: true,
        identity: false,
        request_context: true,
        cost_allocation: false,
    };
    let views: Vec<TraceView<'_>> = gens.iter().map(|g| TraceView::new(g, opts)).collect();
    let ctx = ExportContext::new(Duration::from_secs(5));
    let bodies = [
        (
            "otel-collector",
            build(
                DestinationType::OtelCollector,
                json!({"endpoint": "http://127.0.0.1:9/v1/traces"})
                    .as_object()
                    .unwrap(),
                &ctx,
            ),
        ),
        (
            "datadog",
            build(
                DestinationType::Datadog,
                json!({"apiKey": "k", "mlApp": "bench"})
                    .as_object()
                    .unwrap(),
                &ctx,
            ),
        ),
    ];
    for (name, exporter) in bodies {
        let body = exporter
            .expect("exporter")
            .encode(&views)
            .expect("encodes")
            .body;
        for level in [1u32, 3, 6, 9] {
            let mut best = Duration::MAX;
            let mut out = 0;
            for _ in 0..rounds {
                let t = Instant::now();
                out = std::hint::black_box(gzip_at(std::hint::black_box(&body), level)).len();
                best = best.min(t.elapsed());
            }
            println!(
                "{}",
                json!({
                    "body": name,
                    "records": views.len(),
                    "level": level,
                    "bytes": body.len(),
                    "gzipped": out,
                    "ratio": (body.len() as f64 / out as f64 * 100.0).round() / 100.0,
                    "saved_pct": ((1.0 - out as f64 / body.len() as f64) * 1000.0).round() / 10.0,
                    "us_per_record": (best.as_secs_f64() * 1e6 / views.len() as f64 * 100.0).round() / 100.0,
                    "mb_per_s": (body.len() as f64 / best.as_secs_f64() / 1e6).round(),
                })
            );
        }
    }
}
