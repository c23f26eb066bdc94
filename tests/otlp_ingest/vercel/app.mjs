// The Vercel AI SDK (ai 5, telemetry on) calling a fake OpenAI upstream through @ai-sdk/openai,
// spans exported with the standard OTLP/HTTP protobuf exporter to tracecast's /v1/traces.
//   node app.mjs <tracecast base URL> <workspace key> <upstream base URL> <tag>
// Prints the provider-call span's trace id, span id and parent span id as JSON.
import { generateText } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { TracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { context } from "@opentelemetry/api";

// Parent/child links between the SDK's spans need a context manager, as in any Node app.
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());

const [endpoint, key, upstream, tag] = process.argv.slice(2);
const ended = [];
const provider = new TracerProvider({
  resource: resourceFromAttributes({ "service.name": "otlp-ingest-vercel" }),
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
const openai = createOpenAI({ baseURL: upstream, apiKey: "sk-fake-upstream" });
await generateText({
  model: openai.chat("gpt-4o-mini"),
  system: "You are terse.",
  prompt: `PROMPT-${tag}`,
  temperature: 0.3,
  experimental_telemetry: {
    isEnabled: true,
    functionId: "vercel-check",
    metadata: { userId: "vercel-user", sessionId: "vercel-session" },
    tracer: provider.getTracer("ai"),
  },
});
await provider.forceFlush();
await provider.shutdown();
const call = ended.find((s) => s.name === "ai.generateText.doGenerate");
console.log(JSON.stringify({
  trace_id: call.spanContext().traceId,
  span_id: call.spanContext().spanId,
  parent_span_id: call.parentSpanContext?.spanId,
}));
