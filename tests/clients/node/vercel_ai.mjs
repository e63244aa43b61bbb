// The Vercel AI SDK (`ai` + `@ai-sdk/openai`) through hallgate: generateText, streamText,
// a tool loop, generateObject; over chat completions and the Responses API.
// Run: node vercel_ai.mjs ROOT (the gateway's http://host:port). One JSON line per check,
// as tests/clients/_checks.py prints them.
import { createRequire } from "node:module";
import { createOpenAI } from "@ai-sdk/openai";
import { generateObject, generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const require = createRequire(import.meta.url);
const VERSION = `${require("ai/package.json").version} + @ai-sdk/openai ${
  require("@ai-sdk/openai/package.json").version}`;
const FINAL = "It is 21 degrees and clear in Paris.";
const ROOT = process.argv[2].replace(/\/$/, "");
const openai = createOpenAI({ baseURL: `${ROOT}/v1`, apiKey: "x" });
let failed = 0;

function expect(condition, what) {
  if (!condition) throw new Error(`expected: ${what}`);
}

async function check(name, fn) {
  let ok = true;
  let detail = "";
  try {
    detail = (await fn()) ?? "";
  } catch (err) {
    ok = false;
    failed += 1;
    detail = `${err.name}: ${err.message}`;
    console.error(err);
  }
  console.log(JSON.stringify({ client: "Vercel AI SDK (ai)", version: VERSION, check: name,
                               ok, detail: String(detail).slice(0, 300) }));
}

const getWeather = tool({
  description: "The current weather in a city.",
  inputSchema: z.object({ city: z.string() }),
  execute: async ({ city }) => {
    expect(city === "Paris", `city Paris, got ${city}`);
    return { temp_c: 21, sky: "clear" };
  },
});

for (const [api, model] of [["chat", openai.chat("fake")], ["Responses", openai("fake")]]) {
  await check(`generateText (${api})`, async () => {
    const { text } = await generateText({ model, prompt: "What is the weather in Paris?" });
    expect(text === FINAL, `"${FINAL}", got "${text}"`);
  });
  await check(`streamText (${api})`, async () => {
    const result = streamText({ model, prompt: "What is the weather in Paris?" });
    let text = "";
    for await (const part of result.textStream) text += part;
    expect(text === FINAL, `"${FINAL}", got "${text}"`);
  });
  await check(`tools, 2 steps (${api})`, async () => {
    const result = await generateText({ model, prompt: "What is the weather in Paris?",
                                         tools: { get_weather: getWeather },
                                         stopWhen: stepCountIs(3) });
    expect(result.steps[0].toolCalls[0]?.toolName === "get_weather", "a get_weather call");
    expect(result.text === FINAL, `"${FINAL}", got "${result.text}"`);
  });
  await check(`generateObject (${api})`, async () => {
    const { object } = await generateObject({
      model, prompt: "What is the weather in Paris?",
      schema: z.object({ city: z.string(), temp_c: z.number() }) });
    expect(object.city === "Paris" && object.temp_c === 21, JSON.stringify(object));
  });
}
process.exit(failed ? 1 : 0);
