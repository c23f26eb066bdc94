// The current Vercel AI SDK (ai 7): telemetry is the @ai-sdk/otel integration (GenAI semantic
// conventions), spans exported with the standard OTLP/HTTP JSON exporter to tracecast's
// /v1/traces. Run with Node 22 (ai 7 needs it), which the test installs from the npm registry.
//   node app.mjs <tracecast base URL> <workspace key> <upstream base URL> <tag>
// Prints the model-call span's trace id, span id and parent span id as JSON.
import { generateText } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { OpenTelemetry } from "@ai-sdk/otel";
import { TracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { context } from "@opentelemetry/api";

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());

const [endpoint, key, upstream, tag] = process.argv.slice(2);
const ended = [];
const provider = new TracerProvider({
  resource: resourceFromAttributes({ "service.name": "otlp-ingest-vercel7" }),
  spanProcessors: [
    new SimpleSpanProcessor({
      exporter: new OTLPTraceExporter({
        url: `${endpoint}/v1/traces`,
        headers: { authorization: `Bearer ${key}` },
      }),
    }),
    { onStart() {}, onEnd(span) { ended.push(span); }, forceFlush: async () => {}, shutdown: async () => {} },
  ],
});
const telemetry = new OpenTelemetry({
  tracer: provider.getTracer("ai"),
  // The app's end user and session, as GenAI attributes on the model-call span.
  enrichSpan: ({ spanType }) =>
    spanType === "languageModel" ? { "user.id": "vercel-user", "session.id": "vercel-session" } : undefined,
});
const openai = createOpenAI({ baseURL: upstream, apiKey: "sk-fake-upstream" });
await generateText({
  model: openai.chat("gpt-4o-mini"),
  system: "You are terse.",
  prompt: `PROMPT-${tag}`,
  temperature: 0.3,
  telemetry: { functionId: "vercel7-check", integrations: telemetry },
});
await provider.forceFlush();
await provider.shutdown();
const call = ended.find((s) => s.name === "chat gpt-4o-mini");
if (!call) {
  console.error("no model-call span; spans:", ended.map((s) => s.name));
  process.exit(1);
}
console.log(JSON.stringify({
  trace_id: call.spanContext().traceId,
  span_id: call.spanContext().spanId,
  parent_span_id: call.parentSpanContext?.spanId,
  spans: ended.map((s) => s.name),
}));
