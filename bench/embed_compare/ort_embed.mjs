// ort_embed.mjs — ONNX Runtime's side of bench/embed_compare/run.sh: runs the encoder that
// torch_embed.py exported (embeddings + nn.TransformerEncoder + mean pooling + L2 norm) with
// onnxruntime-node on the CPU (all graph optimizations, THREADS intra-op threads, one
// inter-op), over the same ids.json in the same batches (padded to each batch's longest text).
//
//   node ort_embed.mjs DIR MODEL.onnx THREADS BATCH REPEATS OUT.f32
//
// Prints "sentences/s X" (BATCH > 1: best pass of REPEATS) or "latency_ms X" (BATCH 1:
// median over texts of the best of REPEATS) and writes the embeddings (texts x dim, f32).
import fs from 'node:fs';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const ort = require('onnxruntime-node');

const [dir, model, threads, B, reps, out] = process.argv.slice(2);
const batch = Number(B);
const texts = JSON.parse(fs.readFileSync(`${dir}/ids.json`, 'utf8')).texts;
const session = await ort.InferenceSession.create(model, {
  intraOpNumThreads: Number(threads), interOpNumThreads: 1,
  graphOptimizationLevel: 'all', executionMode: 'sequential',
});
const feeds = [];
for (let b0 = 0; b0 < texts.length; b0 += batch) {
  const chunk = texts.slice(b0, b0 + batch);
  const T = Math.max(...chunk.map((t) => t.length));
  const ids = new BigInt64Array(chunk.length * T), mask = new BigInt64Array(chunk.length * T);
  chunk.forEach((t, i) => t.forEach((id, j) => { ids[i * T + j] = BigInt(id); mask[i * T + j] = 1n; }));
  feeds.push({ b0, n: chunk.length, f: { ids: new ort.Tensor('int64', ids, [chunk.length, T]),
                                         mask: new ort.Tensor('int64', mask, [chunk.length, T]) } });
}
let best = Infinity, dim = 0;
const lat = new Array(texts.length).fill(Infinity);
let emb = null;
for (let r = 0; r < Number(reps); r++) {
  const t0 = process.hrtime.bigint();
  for (const { b0, n, f } of feeds) {
    const c0 = process.hrtime.bigint();
    const res = await session.run(f);
    const c1 = Number(process.hrtime.bigint() - c0) / 1e9;
    if (c1 < lat[b0]) lat[b0] = c1;
    const e = res.emb;
    dim = e.dims[1];
    if (!emb) emb = new Float32Array(texts.length * dim);
    emb.set(e.data, b0 * dim);
  }
  const t = Number(process.hrtime.bigint() - t0) / 1e9;
  if (t < best) best = t;
}
if (batch === 1) {
  const s = [...lat].sort((a, b) => a - b);
  console.log(`latency_ms ${(1e3 * s[s.length >> 1]).toFixed(3)}`);
} else {
  console.log(`sentences/s ${(texts.length / best).toFixed(1)}`);
}
fs.writeFileSync(out, Buffer.from(emb.buffer));
