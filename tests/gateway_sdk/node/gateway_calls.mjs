// Calls the tracecast gateway with the official openai Node SDK and @openrouter/sdk; prints one
// JSON object with what each call returned (and its generation id when the SDK exposes the
// answer's headers). Driven by tests/gateway_sdk/test_node_sdks.py, which checks the results and
// the generations the webhook destination received.
//
// Environment: GATEWAY_URL (http://127.0.0.1:<port>/api/v1), GATEWAY_KEY (a workspace key).
import OpenAI from "openai";
import { OpenRouter } from "@openrouter/sdk";

const baseURL = process.env.GATEWAY_URL;
const apiKey = process.env.GATEWAY_KEY;
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 20000 });
const out = {};

async function attempt(name, fn) {
  try {
    out[name] = await fn();
  } catch (e) {
    out[name] = { unexpected: String(e && e.stack ? e.stack : e) };
  }
}

const genId = (headers) => headers.get("x-tracecast-generation-id");

await attempt("openai_whole", async () => {
  const { data, response } = await client.chat.completions
    .create({ model: "fake/ok", messages: [{ role: "user", content: "Capital of France (node)?" }], user: "node-user" })
    .withResponse();
  return {
    content: data.choices[0].message.content,
    prompt_tokens: data.usage.prompt_tokens,
    request_id: response.headers.get("x-request-id"),
    gen_id: genId(response.headers),
  };
});

await attempt("openai_stream", async () => {
  const { data: stream, response } = await client.chat.completions
    .create({ model: "fake/ok", messages: [{ role: "user", content: "Say hello (node)" }], stream: true })
    .withResponse();
  let text = "";
  let chunks = 0;
  let emptyChoices = 0;
  for await (const c of stream) {
    chunks += 1;
    if (c.choices.length === 0) emptyChoices += 1;
    text += c.choices[0]?.delta?.content ?? "";
  }
  return { text, chunks, empty_choices: emptyChoices, gen_id: genId(response.headers) };
});

await attempt("openai_tools", async () => {
  const runner = client.chat.completions.stream({
    model: "fake/tools",
    messages: [{ role: "user", content: "Weather in Lyon (node)?" }],
    tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } } }],
  });
  const final = await runner.finalChatCompletion();
  const call = final.choices[0].message.tool_calls[0];
  return { name: call.function.name, arguments: call.function.arguments, finish_reason: final.choices[0].finish_reason };
});

await attempt("openai_error", async () => {
  try {
    await client.chat.completions.create({ model: "fake/rate-limited", messages: [{ role: "user", content: "hi" }] });
    return { raised: false };
  } catch (e) {
    return {
      raised: true,
      is_rate_limit_error: e instanceof OpenAI.RateLimitError,
      status: e.status,
      code: e.code,
      remaining: e.headers?.get("x-ratelimit-remaining-requests"),
      gen_id: e.headers ? genId(e.headers) : null,
    };
  }
});

await attempt("openai_own_error", async () => {
  try {
    await new OpenAI({ baseURL, apiKey: "sk-not-a-key", maxRetries: 0 }).chat.completions.create({
      model: "fake/ok",
      messages: [{ role: "user", content: "hi" }],
    });
    return { raised: false };
  } catch (e) {
    return { raised: true, is_authentication_error: e instanceof OpenAI.AuthenticationError, status: e.status, code: e.code };
  }
});

await attempt("openai_abort", async () => {
  const controller = new AbortController();
  const { data: stream, response } = await client.chat.completions
    .create({ model: "fake/endless", messages: [{ role: "user", content: "Count (node)" }], stream: true }, { signal: controller.signal })
    .withResponse();
  let first = null;
  try {
    for await (const c of stream) {
      first = c.choices[0].delta.content;
      controller.abort();
    }
  } catch (e) {
    // The SDK ends the stream with an abort error; expected.
  }
  return { first, gen_id: genId(response.headers) };
});

await attempt("openai_embeddings", async () => {
  const { data, response } = await client.embeddings
    .create({ model: "fake/emb", input: "hello node", encoding_format: "float" })
    .withResponse();
  return { embedding: data.data[0].embedding, gen_id: genId(response.headers) };
});

const openRouter = new OpenRouter({ apiKey, serverURL: baseURL });

await attempt("openrouter_whole", async () => {
  const r = await openRouter.chat.send({
    appTitle: "Node OpenRouter SDK",
    chatRequest: { model: "fake/ok", messages: [{ role: "user", content: "Capital of France (openrouter sdk)?" }] },
  });
  return { content: r.choices[0].message.content };
});

await attempt("openrouter_stream", async () => {
  const stream = await openRouter.chat.send({
    chatRequest: { model: "fake/ok", messages: [{ role: "user", content: "Say hello (openrouter sdk)" }], stream: true },
  });
  let text = "";
  for await (const c of stream) {
    text += c.choices[0]?.delta?.content ?? "";
  }
  return { text };
});

await attempt("openrouter_error", async () => {
  try {
    await openRouter.chat.send({ chatRequest: { model: "fake/rate-limited", messages: [{ role: "user", content: "hi" }] } });
    return { raised: false };
  } catch (e) {
    return { raised: true, name: e.constructor.name, status: e.statusCode ?? e.httpMeta?.response?.status };
  }
});

process.stdout.write(JSON.stringify(out) + "\n");
