// wick serve driven by the official `openai` npm SDK, the way an application would use it:
// models list/retrieve, completions and chat (plain and streamed), logprobs, seeds, errors,
// API keys, and an adapter loaded into the running server, used, and unloaded.
//
// Run by CTest as test_openai_client (tests/CMakeLists.txt) with WICK_BIN set; needs
// `npm ci` in this folder (make fetch does it). Without node_modules or the fixtures it
// prints SKIP and passes, or fails when CI=true.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const ci = process.env.CI === 'true';
const wick = process.env.WICK_BIN || join(root, 'build', 'wick');
const fixtures = process.env.WICK_FIXTURES || resolve(root, '..', 'shared', 'fixtures');

function skip(why) {
  console.log(`SKIP: ${why}`);
  process.exit(ci ? 1 : 0);
}

let OpenAI;
try {
  ({ default: OpenAI } = await import('openai'));
} catch {
  skip(`the openai package is not installed (run: npm ci --prefix ${here})`);
}
for (const f of [join('tokenizers', 'qwen3'), 'tiny-bert'])
  if (!existsSync(join(fixtures, f))) skip(`fixture ${f} not found under ${fixtures}`);
if (!existsSync(wick)) skip(`${wick} not built`);

const KEY = 'test-key-7f3a';
const tmp = mkdtempSync(join(tmpdir(), 'wick-openai-'));
const model = join(tmp, 'model');
const adapter = join(tmp, 'style');
let server, baseURL, client;

function run(args) {
  const r = spawnSync(wick, args, { encoding: 'utf8', timeout: 300000 });
  if (r.status !== 0) throw new Error(`wick ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

before(async () => {
  run(['create-random', '--like', 'tiny', '--tokenizer', join(fixtures, 'tokenizers', 'qwen3'), '--out', model]);
  writeFileSync(join(tmp, 'style.txt'), 'Verily the answer is plain.\nVerily it is so, and plainly said.\n');
  run(['train', '-m', model, '--data', join(tmp, 'style.txt'), '--out', adapter, '--steps', '3', '--lr', '0.01', '-t', '1']);
  server = spawn(wick, ['serve', '-m', model, '--port', '0', '-t', '1', '--api-key', KEY, '-q',
                        '--embedding-model', join(fixtures, 'tiny-bert')],
                 { stdio: ['ignore', 'pipe', 'inherit'] });
  baseURL = await new Promise((ok, fail) => {
    let out = '';
    const t = setTimeout(() => fail(new Error('wick serve did not start in 120 s')), 120000);
    server.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/[0-9.]+:\d+)/);
      if (m) { clearTimeout(t); ok(`${m[1]}/v1`); }
    });
    server.on('exit', (code) => { clearTimeout(t); fail(new Error(`wick serve exited (${code})`)); });
  });
  client = new OpenAI({ apiKey: KEY, baseURL, maxRetries: 0, timeout: 120000 });
});

after(async () => {
  if (server && server.exitCode === null) {
    const done = new Promise((ok) => server.on('exit', (code, sig) => ok({ code, sig })));
    server.kill('SIGTERM');
    const { code } = await done;
    assert.equal(code, 0, 'wick serve exits 0 on SIGTERM');
  }
  rmSync(tmp, { recursive: true, force: true });
});

test('a wrong or missing API key is a 401 AuthenticationError', async () => {
  const bad = new OpenAI({ apiKey: 'wrong', baseURL, maxRetries: 0 });
  await assert.rejects(bad.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  await assert.rejects(bad.chat.completions.create({ model: 'model', messages: [{ role: 'user', content: 'hi' }] }),
                       (e) => e.status === 401 && e.code === 'invalid_api_key');
});

test('models: list and retrieve', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids, ['model', 'tiny-bert']);
  const m = await client.models.retrieve('model');
  assert.equal(m.id, 'model');
  assert.equal(m.object, 'model');
  await assert.rejects(client.models.retrieve('nope'), (e) => e instanceof OpenAI.NotFoundError);
});

test('completions: text, usage, logprobs; streamed text equals the plain one', async () => {
  const p = { model: 'model', prompt: 'Hello world', max_tokens: 8, temperature: 0, logprobs: 2 };
  const r = await client.completions.create(p);
  const c = r.choices[0];
  assert.equal(typeof c.text, 'string');
  assert.ok(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= 8);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  assert.equal(c.logprobs.tokens.length, r.usage.completion_tokens);
  assert.equal(c.logprobs.top_logprobs[0] && Object.keys(c.logprobs.top_logprobs[0]).length <= 2, true);
  assert.ok(c.logprobs.token_logprobs.every((x) => x <= 0));
  let text = '', finish = null;
  const s = await client.completions.create({ ...p, logprobs: undefined, stream: true });
  for await (const ch of s) {
    text += ch.choices[0]?.text ?? '';
    if (ch.choices[0]?.finish_reason) finish = ch.choices[0].finish_reason;
  }
  assert.equal(text, c.text);
  assert.equal(finish, c.finish_reason);
});

test('chat: message, streamed deltas with usage, logprobs, seeds', async () => {
  const p = { model: 'model', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Say hello' }],
              max_tokens: 10, temperature: 0 };
  const r = await client.chat.completions.create(p);
  const msg = r.choices[0].message;
  assert.equal(msg.role, 'assistant');
  assert.equal(typeof msg.content, 'string');
  let text = '', usage = null, role = null;
  const s = await client.chat.completions.create({ ...p, stream: true, stream_options: { include_usage: true } });
  for await (const ch of s) {
    if (ch.usage) usage = ch.usage;
    const d = ch.choices[0]?.delta;
    if (d?.role) role = d.role;
    text += d?.content ?? '';
  }
  assert.equal(role, 'assistant');
  assert.equal(text, msg.content);
  assert.deepEqual(usage, r.usage);
  const lp = await client.chat.completions.create({ ...p, logprobs: true, top_logprobs: 2 });
  const content = lp.choices[0].logprobs.content;
  assert.equal(content.length, lp.usage.completion_tokens);
  assert.ok(content.every((t) => t.top_logprobs.length === 2 && t.logprob <= 0));
  const seeded = { ...p, temperature: 1, seed: 42 };
  const a = await client.chat.completions.create(seeded);
  const b = await client.chat.completions.create(seeded);
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
});

test('errors name the parameter', async () => {
  await assert.rejects(client.completions.create({ model: 'model', prompt: 'x', top_p: 2 }),
                       (e) => e instanceof OpenAI.BadRequestError && e.param === 'top_p');
  await assert.rejects(client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }),
                       (e) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found');
});

test('an adapter loaded at run time is served as a model, then unloaded', async () => {
  const loaded = await client.post('/adapters', { body: { name: 'style', path: adapter } });
  assert.equal(loaded.id, 'style');
  assert.equal(loaded.parent, 'model');
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids, ['model', 'style', 'tiny-bert']);
  assert.equal((await client.models.retrieve('style')).parent, 'model');
  const r = await client.chat.completions.create({ model: 'style', messages: [{ role: 'user', content: 'Say hello' }],
                                                   max_tokens: 6, temperature: 0 });
  assert.equal(r.model, 'style');
  await assert.rejects(client.post('/adapters', { body: { name: 'style', path: adapter } }),
                       (e) => e.status === 409);
  const del = await client.delete('/adapters/style');
  assert.equal(del.deleted, true);
  await assert.rejects(client.chat.completions.create({ model: 'style', messages: [{ role: 'user', content: 'x' }] }),
                       (e) => e instanceof OpenAI.NotFoundError);
});

test('embeddings: the SDK default (base64) equals the float format; usage counted', async () => {
  const input = ['hello world', 'The quick brown fox jumps over the lazy dog.'];
  const r = await client.embeddings.create({ model: 'tiny-bert', input });
  assert.equal(r.data.length, 2);
  const f = await client.embeddings.create({ model: 'tiny-bert', input, encoding_format: 'float' });
  for (let k = 0; k < 2; k++) {
    const a = r.data[k].embedding, b = f.data[k].embedding;
    assert.equal(a.length, 64);
    assert.equal(r.data[k].index, k);
    const norm = Math.sqrt(a.reduce((s, x) => s + x * x, 0));
    assert.ok(Math.abs(norm - 1) < 1e-5, `unit length (${norm})`);
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) < 1e-6);
  }
  assert.ok(r.usage.prompt_tokens > 0 && r.usage.total_tokens === r.usage.prompt_tokens);
  const d = await client.embeddings.create({ model: 'tiny-bert', input: 'hello world', dimensions: 16 });
  assert.equal(d.data[0].embedding.length, 16);
});

test('structured output: a json_schema reply parses and has the schema\'s shape', async () => {
  const r = await client.chat.completions.create({
    model: 'model', messages: [{ role: 'user', content: 'Describe a city as JSON' }], max_tokens: 300, seed: 9,
    response_format: { type: 'json_schema', json_schema: { name: 'city', strict: true, schema: {
      type: 'object', additionalProperties: false, required: ['name', 'population', 'coastal'],
      properties: { name: { type: 'string', maxLength: 12 }, population: { type: 'integer' }, coastal: { type: 'boolean' } },
    } } },
  });
  assert.equal(r.choices[0].finish_reason, 'stop');
  const v = JSON.parse(r.choices[0].message.content);
  assert.deepEqual(Object.keys(v), ['name', 'population', 'coastal']);
  assert.equal(typeof v.name, 'string');
  assert.ok(Number.isInteger(v.population));
  assert.equal(typeof v.coastal, 'boolean');
});

test('tools: a forced call comes back as tool_calls, and the conversation goes on with its result', async () => {
  const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Current weather',
    parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 24 } }, required: ['city'] } } }];
  const messages = [{ role: 'user', content: 'What is the weather in Paris?' }];
  const r = await client.chat.completions.create({ model: 'model', messages, tools, max_tokens: 200,
    tool_choice: { type: 'function', function: { name: 'get_weather' } } });
  const choice = r.choices[0];
  assert.equal(choice.finish_reason, 'tool_calls');
  const call = choice.message.tool_calls[0];
  assert.equal(call.function.name, 'get_weather');
  assert.equal(typeof JSON.parse(call.function.arguments).city, 'string');
  messages.push(choice.message, { role: 'tool', tool_call_id: call.id, content: '21 C and clear' });
  const r2 = await client.chat.completions.create({ model: 'model', messages, tools, max_tokens: 8 });
  assert.equal(r2.choices[0].message.role, 'assistant');
  // streamed: the SDK's helper accumulates the tool_calls delta
  const stream = client.chat.completions.stream({ model: 'model', messages: messages.slice(0, 1), tools, max_tokens: 200,
    tool_choice: 'required' });
  const done = await stream.finalChatCompletion();
  assert.equal(done.choices[0].finish_reason, 'tool_calls');
  assert.equal(done.choices[0].message.tool_calls[0].function.name, 'get_weather');
});
