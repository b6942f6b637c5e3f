// The chat page (GET /) in headless Chromium (Debian's chromium, driven by playwright-core):
// models listed from /v1/models, a message sent and its reply streamed with tokens/s, an
// adapter picked, a long reply stopped, HTML in messages shown as text and never run, the API
// key entered in the page. A screenshot goes to $WICK_ARTIFACTS (default build/test-artifacts).
//
// Run by CTest as test_chat_page; skips (fails under CI=true) without chromium, the package
// or the fixtures.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
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
const artifacts = process.env.WICK_ARTIFACTS || join(dirname(wick), 'test-artifacts');
const chromiumPath = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));

function skip(why) {
  console.log(`SKIP: ${why}`);
  process.exit(ci ? 1 : 0);
}

let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch {
  skip(`playwright-core is not installed (run: npm ci --prefix ${here})`);
}
if (!chromiumPath) skip('chromium is not installed (Debian package chromium)');
if (!existsSync(join(fixtures, 'tokenizers', 'qwen3'))) skip(`fixture tokenizers/qwen3 not found under ${fixtures}`);
if (!existsSync(wick)) skip(`${wick} not built`);

const KEY = 'page-key-19';
const tmp = mkdtempSync(join(tmpdir(), 'wick-page-'));
const model = join(tmp, 'model');
let server, base, browser, page;

function run(args) {
  const r = spawnSync(wick, args, { encoding: 'utf8', timeout: 300000 });
  if (r.status !== 0) throw new Error(`wick ${args.join(' ')} failed: ${r.stderr}`);
}

before(async () => {
  run(['create-random', '--like', 'tiny', '--tokenizer', join(fixtures, 'tokenizers', 'qwen3'), '--out', model]);
  writeFileSync(join(tmp, 'd.txt'), 'A short text to train on.\nAnother line.\n');
  run(['train', '-m', model, '--data', join(tmp, 'd.txt'), '--out', join(tmp, 'style'), '--steps', '2', '-t', '1']);
  server = spawn(wick, ['serve', '-m', model, '--port', '0', '-t', '1', '--api-key', KEY, '-q',
                        '--adapter', `style=${join(tmp, 'style')}`], { stdio: ['ignore', 'pipe', 'inherit'] });
  base = await new Promise((ok, fail) => {
    let out = '';
    const t = setTimeout(() => fail(new Error('wick serve did not start')), 120000);
    server.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/[0-9.]+:\d+)/);
      if (m) { clearTimeout(t); ok(m[1]); }
    });
    server.on('exit', (code) => { clearTimeout(t); fail(new Error(`wick serve exited (${code})`)); });
  });
  browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ['--no-sandbox'] });
  page = await browser.newPage();
  page.on('pageerror', (e) => { throw e; });
});

after(async () => {
  if (browser) await browser.close();
  if (server && server.exitCode === null) {
    const done = new Promise((ok) => server.on('exit', (code) => ok(code)));
    server.kill('SIGTERM');
    assert.equal(await done, 0);
  }
  rmSync(tmp, { recursive: true, force: true });
});

const replies = () => page.locator('.msg.assistant');

async function sendAndWait(text) {
  const before = await replies().count();
  await page.fill('#input', text);
  await page.click('#send');
  await page.locator(`.msg.assistant >> nth=${before}`).and(page.locator('[data-done="1"]')).waitFor({ timeout: 120000 });
  return replies().nth(before);
}

test('the page loads without a key, then lists models once the key is entered', async () => {
  const r = await page.goto(base + '/');
  assert.equal(r.status(), 200);
  await page.waitForSelector('#status.err'); // /v1/models refused: no key yet
  await page.fill('#key', KEY);
  await page.dispatchEvent('#key', 'change');
  await page.waitForFunction(() => document.querySelectorAll('#model option').length === 2);
  const opts = await page.$$eval('#model option', (os) => os.map((o) => o.value));
  assert.deepEqual(opts, ['model', 'style']);
});

test('a message is answered by a streamed reply with its speed', async () => {
  await page.fill('#maxtok', '24');
  const reply = await sendAndWait('Hello there');
  const stats = await reply.locator('.stats').textContent();
  assert.match(stats, /\d+ tokens · [\d.]+ tok\/s/);
  const text = await reply.locator('.body').textContent();
  assert.ok(text.length > 0);
  assert.equal(await page.locator('.msg.user').count(), 1);
});

test('HTML in a message is shown as text and never runs', async () => {
  const evil = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> **bold** `code`';
  await sendAndWait(evil);
  const user = page.locator('.msg.user').last();
  assert.equal(await user.locator('img').count(), 0);
  assert.equal(await user.locator('script').count(), 0);
  assert.equal(await user.locator('strong').textContent(), 'bold');
  assert.equal(await user.locator('code').textContent(), 'code');
  assert.ok((await user.locator('.body').textContent()).includes('<img src=x onerror="window.__pwned=1">'));
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
});

test('picking the adapter sends it as the model', async () => {
  await page.selectOption('#model', 'style');
  const reqP = page.waitForRequest((r) => r.url().endsWith('/v1/chat/completions'));
  const reply = await sendAndWait('Again please');
  const body = JSON.parse((await reqP).postData());
  assert.equal(body.model, 'style');
  assert.equal(body.messages.length, 5); // the conversation so far: user, assistant, user, assistant, user
  assert.equal(await reply.locator('.who').textContent(), 'style');
});

test('Stop ends a long reply and the server frees its slot', async () => {
  await page.fill('#maxtok', '3000');
  const before = await replies().count();
  await page.fill('#input', 'Write a long story');
  await page.click('#send');
  const reply = replies().nth(before);
  await page.waitForFunction((n) => {
    const b = document.querySelectorAll('.msg.assistant .body')[n];
    return b && b.textContent.length > 20;
  }, before, { timeout: 120000 });
  await page.click('#stop');
  await reply.and(page.locator('[data-done="1"]')).waitFor({ timeout: 30000 });
  assert.match(await reply.locator('.stats').textContent(), /stopped/);
  assert.equal(await page.locator('#send').isDisabled(), false);
  // the cancelled generation leaves the engine (no client left to read it)
  let running = -1;
  for (let i = 0; i < 100 && running !== 0; i++) {
    running = (await (await fetch(base + '/health')).json()).running;
    if (running) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(running, 0);
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, 'chat_page.png'), fullPage: true });
});
