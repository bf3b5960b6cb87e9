// End to end with the official `openai` Node SDK on the Responses API (issue 12).
//
// Usage: node responses_node.mjs RELAY_ROOT   (e.g. http://127.0.0.1:PORT, no /v1)
//
// Driven by tests/apis_sdk.rs (relay with auth key `relay-client-key`, the cache on, and the
// Responses fixture of tests/common/responses.rs). Checks plain, streamed (the SDK's stream
// helper and raw `stream: true`), a streamed cache hit built from a plain answer, and a
// function-tool round trip. Exits non-zero on the first mismatch.
import OpenAI from "openai";

const TEXT = "Hello from the Responses fixture.";
const TOOL_TEXT = "It is sunny in Paris.";
const WEATHER_TOOL = {
  type: "function",
  name: "get_weather",
  description: "Weather in a city",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  strict: false,
};

function check(what, got, want) {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (g !== w) {
    console.error(`FAIL ${what}: expected ${w}, got ${g}`);
    process.exit(1);
  }
  console.log(`ok   ${what}`);
}

const root = process.argv[2];
if (!root) {
  console.error("usage: node responses_node.mjs RELAY_ROOT");
  process.exit(2);
}
const client = new OpenAI({ baseURL: `${root}/v1`, apiKey: "relay-client-key", maxRetries: 0, timeout: 20000 });

const plain = await client.responses.create({ model: "relay-alias", input: "Node hello" });
check("node plain text", plain.output_text, TEXT);
check("node model rewritten by rule", plain.model, "fixture-model-a");

const helper = client.responses.stream({ model: "relay-alias", input: "Node stream" });
let deltas = "";
for await (const e of helper) {
  if (e.type === "response.output_text.delta") deltas += e.delta;
}
const final = await helper.finalResponse();
check("node streamed deltas", deltas, TEXT);
check("node stream final text", final.output_text, TEXT);

const fromCache = client.responses.stream({ model: "relay-alias", input: "Node hello" });
for await (const _ of fromCache) {
  // drain
}
const hit = await fromCache.finalResponse();
check("node streamed hit from a plain answer", [hit.id, hit.output_text, hit.usage], [plain.id, plain.output_text, plain.usage]);

const raw = await client.responses.create({ model: "m", input: "Node raw", stream: true });
const types = [];
for await (const e of raw) types.push(e.type);
check("node raw stream starts", types[0], "response.created");
check("node raw stream ends", types[types.length - 1], "response.completed");

const tool = await client.responses.create({ model: "m", input: "Weather in Paris?", tools: [WEATHER_TOOL] });
const call = tool.output[0];
check("node function call", [call.type, call.name, call.arguments], ["function_call", "get_weather", '{"city":"Paris"}']);
const follow = await client.responses.create({
  model: "m",
  tools: [WEATHER_TOOL],
  input: [
    { role: "user", content: "Weather in Paris?" },
    { type: "function_call", call_id: call.call_id, name: call.name, arguments: call.arguments },
    { type: "function_call_output", call_id: call.call_id, output: "sunny" },
  ],
});
check("node answer after the tool output", follow.output_text, TOOL_TEXT);
console.log("all Node Responses checks passed");
