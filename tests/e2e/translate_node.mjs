// The official `openai` Node SDK's Responses calls through the relay to an upstream that speaks
// only Chat Completions (tests/common/chat_model.rs): plain, streamed, and a function-tool
// round trip. Driven by tests/translate_e2e.rs.
//
// Usage: node translate_node.mjs RELAY_ROOT_URL   (e.g. http://127.0.0.1:PORT)

import OpenAI from "openai";

const FIXTURE_TEXT = "Hello from the fixture.";
const CALL = 'What is the weather?\nCALL get_weather {"city":"Oslo"}';
const tools = [{
  type: "function", name: "get_weather", description: "Weather in a city", strict: false,
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
}];

function check(what, got, expected) {
  const [g, e] = [JSON.stringify(got), JSON.stringify(expected)];
  if (g !== e) {
    console.log(`FAIL ${what}: expected ${e}, got ${g}`);
    process.exit(1);
  }
  console.log(`ok   ${what}`);
}

const root = process.argv[2].replace(/\/$/, "");
const client = new OpenAI({ baseURL: `${root}/v1`, apiKey: "test-key", maxRetries: 0, timeout: 20000 });

const plain = await client.responses.create({ model: "gpt-5", input: "Say hello" });
check("node responses plain text", plain.output_text, FIXTURE_TEXT);
check("node responses plain usage", [plain.usage.input_tokens, plain.usage.output_tokens], [12, 6]);

const stream = client.responses.stream({ model: "gpt-5", input: "Say hello" });
let deltas = "";
for await (const event of stream) {
  if (event.type === "response.output_text.delta") deltas += event.delta;
}
const final = await stream.finalResponse();
check("node responses streamed deltas", deltas, FIXTURE_TEXT);
check("node responses streamed final", final.output_text, FIXTURE_TEXT);

const first = await client.responses.create({ model: "gpt-5", input: CALL, tools });
const call = first.output.find((o) => o.type === "function_call");
check("node function call", [call.name, JSON.parse(call.arguments)], ["get_weather", { city: "Oslo" }]);
const sstream = client.responses.stream({ model: "gpt-5", input: CALL, tools });
let args = "";
for await (const event of sstream) {
  if (event.type === "response.function_call_arguments.delta") args += event.delta;
}
const sfinal = await sstream.finalResponse();
const scall = sfinal.output.find((o) => o.type === "function_call");
check("node streamed function call", [scall.name, JSON.parse(args), scall.call_id],
  ["get_weather", { city: "Oslo" }, call.call_id]);
const second = await client.responses.create({
  model: "gpt-5", tools,
  input: [
    { role: "user", content: CALL },
    { type: "function_call", call_id: call.call_id, name: call.name, arguments: call.arguments },
    { type: "function_call_output", call_id: call.call_id, output: "12 C" },
  ],
});
check("node function output answer", second.output_text, "TOOL SAID: 12 C");
console.log("all node translation checks passed");
