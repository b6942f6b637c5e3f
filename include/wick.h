/*
 * wick.h — the one public header of libwick: transformer language models on the CPU, and
 * (built with CUDA) on NVIDIA GPUs: see wick_model_params.device.
 *
 * Example: load a Hugging Face model folder and print the greedy next token.
 *
 *     #include <wick.h>
 *     wick_model *m = NULL;
 *     wick_model_params mp = wick_model_params_default();
 *     if (wick_model_load("Qwen2.5-0.5B", &mp, &m) != WICK_OK) {
 *         fprintf(stderr, "%s\n", wick_last_error());
 *         return 1;
 *     }
 *     wick_session *s = NULL;
 *     wick_session_params sp = wick_session_params_default();
 *     wick_session_create(m, &sp, &s);
 *     wick_model_info info;
 *     wick_model_get_info(m, &info);
 *     float *logits = malloc(sizeof(float) * info.n_vocab);
 *     int32_t ids[] = {9707, 11, 1879};
 *     if (wick_session_eval(s, ids, 3, WICK_LOGITS_LAST, logits) != WICK_OK)
 *         fprintf(stderr, "%s\n", wick_last_error());
 *     // ... argmax(logits) is the next token; feed it back with wick_session_eval(s, &tok, 1, ...)
 *     free(logits);
 *     wick_session_free(s);
 *     wick_model_free(m);
 *
 * Conventions
 *  - Every fallible call returns wick_status (WICK_OK = 0). On failure, wick_last_error()
 *    returns a message for the calling thread naming the file, tensor or field that was wrong.
 *  - Handles are opaque; each *_create or *_load has a matching *_free that accepts NULL.
 *  - Ownership: pointers passed in are borrowed for the duration of the call unless stated;
 *    pointers returned as `const` are owned by the handle and live as long as it does.
 *  - Threads: a wick_model is immutable after loading and may be shared by any number of
 *    threads and sessions. A wick_session must be used by one thread at a time.
 *  - The library never prints, exits or aborts on conditions a caller can cause.
 */
#ifndef WICK_H
#define WICK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WICK_VERSION_MAJOR 0
#define WICK_VERSION_MINOR 1
#define WICK_VERSION_PATCH 0

/* ------------------------------------------------------------------------------------------
 * Status and errors
 * ---------------------------------------------------------------------------------------- */

typedef enum wick_status {
    WICK_OK = 0,
    WICK_ERR_INVALID_ARG,   /* a NULL handle, a negative count, an id out of range ... */
    WICK_ERR_IO,            /* a file could not be opened, read, mapped or written */
    WICK_ERR_FORMAT,        /* a file is malformed (truncated, bad JSON, inconsistent sizes) */
    WICK_ERR_UNSUPPORTED,   /* valid input that wick does not handle (architecture, dtype ...) */
    WICK_ERR_SHAPE,         /* a tensor has the wrong shape or is missing */
    WICK_ERR_NOMEM,         /* an allocation failed */
    WICK_ERR_CONTEXT_FULL,  /* the session's context size would be exceeded */
    WICK_ERR_BUFFER_TOO_SMALL, /* a caller buffer is too small; the needed size is reported */
    WICK_ERR_NOT_FOUND,     /* a named item (adapter, token, tensor) does not exist */
    WICK_ERR_CANCELLED,     /* the operation was cancelled by the caller */
    WICK_ERR_TIMEOUT,       /* a wait ran out of time */
    WICK_ERR_INTERNAL,      /* a bug in wick: please report the message */
    WICK_DONE,              /* not an error: a generation or stream has finished */
    WICK_ERR_BUSY,          /* a queue is full: try again later (engine submissions) */
    WICK_STATUS_COUNT_
} wick_status;

/* Short constant name of a status ("ok", "invalid argument", ...). Never NULL. */
const char *wick_status_str(wick_status st);

/* Message of the most recent failure on the calling thread ("" if none). The string is owned
 * by the library and stays valid until the next wick call on the same thread. */
const char *wick_last_error(void);

/* Library version string, e.g. "0.1.0". */
const char *wick_version(void);

/* Frees memory that a wick function returned with "free with wick_free". NULL is ignored. */
void wick_free(void *p);

/* ------------------------------------------------------------------------------------------
 * Model: weights and configuration, immutable once loaded.
 * ---------------------------------------------------------------------------------------- */

typedef struct wick_model wick_model;
typedef struct wick_session wick_session;
typedef struct wick_tokenizer wick_tokenizer;

typedef struct wick_model_params {
    /* Kernel table: "auto" (best for this CPU), "ref" (plain scalar C, slow, the definition of
     * every op), "cpu" (threaded + BLAS). Overridden by the WICK_ISA environment variable when
     * that is set. Default "auto". */
    const char *kernels;
    /* Load the tokenizer found in the model folder (tokenizer.json or vocab.txt), if any.
     * Default true. A folder without one still loads; wick_model_tokenizer() then returns NULL. */
    bool load_tokenizer;
    /* Where the model runs: NULL or "cpu" (default: the CPU, `kernels` picks the table), or
     * "cuda" / "cuda:N" (NVIDIA GPU N, 0 <= N < 16, 0 by default; its table replaces the CPU
     * one). The WICK_DEVICE environment variable, when set, overrides it. With CUDA every
     * weight the forward pass reads is copied to the GPU once at load (the host mapping stays
     * too, for saving and merging), and sessions and engines created on the model keep their
     * activations, KV cache and adapters' matrices there. wick_model_load fails with
     * WICK_ERR_UNSUPPORTED when this build has no CUDA backend (built without
     * -DWICK_CUDA=ON) or no usable GPU is present, WICK_ERR_INVALID_ARG for a device index the
     * machine lacks, and WICK_ERR_NOMEM when the weights do not fit in GPU memory. Each thread
     * that evaluates on a GPU also keeps scratch there (up to 64 MiB for widening weights in
     * prefill, plus span tables) and a cuBLAS handle, freed when the thread ends. CPU-only in
     * this version, refused on a CUDA model with WICK_ERR_UNSUPPORTED: training
     * (wick_trainer_create) and merging (wick_model_merge_adapter). Embeddings
     * (wick_embedder) always run on the CPU. */
    const char *device;
    /* Arithmetic of the matrix products: NULL or "fast" (default), or "exact". "exact": every
     * product is the f32 product of kernels/ref (weights widened exactly, activations in f32)
     * up to summation order — what the golden tests check. "fast" also lets prefill GEMMs of
     * BF16 weights round the activations to bf16 on CPUs with a bf16 dot-product unit
     * (AVX512_BF16), as llama.cpp and PyTorch's bf16 matmul do: each product of two bf16
     * values is exact, the error comes from the activations' rounding (README: measured
     * effect on logits and speed). Decode steps of a few rows and every other weight type
     * compute the same in both modes. The WICK_PRECISION environment variable, when set,
     * overrides it. wick_model_load fails with WICK_ERR_INVALID_ARG for another name. */
    const char *precision;
} wick_model_params;

wick_model_params wick_model_params_default(void);

/* ---- Hugging Face Hub downloads ----
 * wick_hub_download fetches a model repository ("ORG/NAME", optionally "ORG/NAME@REVISION": a
 * branch, tag or commit) into the cache layout huggingface_hub uses
 * (CACHE/models--ORG--NAME/{blobs,snapshots,refs}), so Python and wick share one cache, and
 * returns the snapshot folder (*out_dir, malloc'd; free it) that wick_model_load reads. Files
 * already in the cache are not fetched again; an interrupted download resumes where it
 * stopped (HTTP Range); every file is checked against the size and ETag the server announced
 * (sha256 for LFS files, the git blob sha1 for others) before it is published, and a file
 * that fails the check is deleted, never left under its final name. Gated or private
 * repositories need a token (401/403 say so). Without a network the cached snapshot of the
 * revision is used when there is one. Environment, as huggingface_hub reads it: HF_ENDPOINT
 * (another server, e.g. a mirror), HF_TOKEN (then HF_HOME/token), HF_HUB_OFFLINE=1 (cache
 * only), HF_HUB_CACHE, HF_HOME (default ~/.cache/huggingface). */
typedef struct wick_hub_params {
    const char *revision;        /* NULL: "main" (an "@REV" in the name wins) */
    const char *const *include;  /* fnmatch patterns of the files to fetch; none: all files */
    int n_include;
    const char *token;           /* NULL: $HF_TOKEN, then the token file */
    const char *endpoint;        /* NULL: $HF_ENDPOINT, else https://huggingface.co */
    const char *cache_dir;       /* NULL: $HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub */
    bool offline;                /* only the cache (also HF_HUB_OFFLINE=1) */
    int n_parallel;              /* files downloaded at once, 1..16. Default 4 */
    /* progress per file (bytes done of total; total -1 when unknown), from download threads
       one call at a time; NULL: none */
    void (*on_progress)(void *user, const char *file, long long done, long long total);
    void *user;
} wick_hub_params;

wick_hub_params wick_hub_params_default(void);
wick_status wick_hub_download(const char *repo, const wick_hub_params *params, char **out_dir);

/* Loads a model from `path`: a Hugging Face folder holding config.json and model.safetensors
 * (or a sharded model.safetensors.index.json), optionally generation_config.json.
 * Weights are memory-mapped and used in their file dtype (F32, BF16, F16); nothing is copied
 * except norm weights and biases, which are converted to f32.
 * Every weight the config implies is checked for presence and shape.
 * A path ending in ".gguf" that is not a folder is read as a GGUF model (llama, qwen2).
 *
 * Untrusted files: work and memory are bounded by the size of the files read, never by a
 * number written in them. Every count is checked against what the file can hold before
 * anything is allocated for it: num_hidden_layers / block_count <= tensors in the file / 9,
 * vocab_size and hidden_size against the embedding's shape, safetensors offsets and GGUF
 * counts, array lengths and string lengths against the bytes of the file (GGUF metadata takes
 * at most ~32 bytes of memory per byte of file). Every JSON or GGUF number is range-checked
 * before it is converted to an integer or float. Token ids that cross files (bos/eos/pad of
 * config.json and generation_config.json, GGUF tokenizer.ggml.*_token_id, the tokenizer's
 * vocabulary, added and special tokens) must lie in [0, n_vocab) of the model: an id outside
 * is a WICK_ERR_FORMAT naming the file and the field. A tokenizer may know fewer ids than the
 * model has rows (padded embeddings), never more.
 *
 * On success *out owns the model (free with wick_model_free). On failure *out is NULL and
 * wick_last_error() names the file/field/tensor. Thread-safe (separate calls). */
wick_status wick_model_load(const char *path, const wick_model_params *params, wick_model **out);

/* Frees a model. Every session created on it must have been freed first. NULL is ignored. */
void wick_model_free(wick_model *model);

typedef struct wick_model_info {
    const char *architecture;  /* "Qwen2ForCausalLM", "LlamaForCausalLM", ... (owned by model) */
    const char *weight_dtype;  /* dtype of the large matrices: "F32", "BF16", "F16", "mixed" */
    const char *kernels;       /* name of the kernel table in use, e.g. "cpu-avx512", "cuda:0" */
    int64_t n_params;          /* number of parameters (tied embeddings counted once) */
    int64_t weight_bytes;      /* bytes of weight data in the files */
    int64_t decode_bytes;      /* weight bytes streamed per decoded token (all matrices the
                                  forward pass reads; one embedding row; excluding KV cache) */
    int n_vocab, n_embd, n_layer, n_head, n_kv_head, head_dim, n_ff;
    int n_ctx_train;           /* max_position_embeddings */
    int sliding_window;        /* 0 = none */
    float rope_theta, norm_eps;
    const char *rope_scaling;  /* "none", "linear", "llama3", "longrope" */
    bool tied_embeddings;
    bool attn_bias;
    int32_t bos_id;            /* -1 when unknown */
    int32_t eos_ids[8];
    int n_eos;
    int32_t pad_id;            /* -1 when unknown */
    /* mixture of experts: experts per MoE block, chosen per token, and their width (0 when
       the model has none); rot_dim: the values of each head RoPE rotates (< head_dim: partial) */
    int n_expert, n_expert_used, n_ff_expert;
    int rot_dim;
} wick_model_info;

/* Fills *info. Pointers inside live as long as the model. */
wick_status wick_model_get_info(const wick_model *model, wick_model_info *info);

/* The tokenizer loaded with the model folder, or NULL when there is none. Owned by the model. */
const wick_tokenizer *wick_model_tokenizer(const wick_model *model);

/* ------------------------------------------------------------------------------------------
 * Session: KV cache + scratch for one sequence. One thread at a time.
 * ---------------------------------------------------------------------------------------- */

/* Element type of the KV cache. F32 is exact (what the golden tests use); F16 and BF16 halve
 * its memory and Q8_0 (blocks of 32 with an f16 scale) quarters it, at a small logit error
 * (README: "KV cache types" gives the measured error and speed). */
typedef enum wick_kv_type {
    WICK_KV_DEFAULT = 0,  /* sessions: F32; engines: F16 */
    WICK_KV_F32,
    WICK_KV_F16,
    WICK_KV_BF16,
    WICK_KV_Q8_0,         /* needs head_dim % 32 == 0 */
} wick_kv_type;

typedef struct wick_session_params {
    int n_ctx;      /* context size in tokens; 0 = min(model max_position_embeddings, 4096) */
    int n_batch;    /* tokens processed per forward chunk during prefill; default 512 */
    int n_threads;  /* worker threads incl. the caller; 0 = number of online CPUs */
    wick_kv_type kv_type; /* default F32 (exact) */
} wick_session_params;

wick_session_params wick_session_params_default(void);

/* Creates a session on `model`: a single-sequence engine (see wick_engine below) with its own
 * worker threads, activations for n_batch rows and a paged KV cache able to hold n_ctx tokens,
 * reserved up front and committed by the OS as it fills. Nothing allocates during evaluation
 * afterwards. The model must outlive the session. */
wick_status wick_session_create(const wick_model *model, const wick_session_params *params,
                                wick_session **out);

void wick_session_free(wick_session *s);

/* Forgets every token: position back to 0. */
void wick_session_reset(wick_session *s);

/* Number of tokens in the KV cache (the position of the next token). */
int wick_session_pos(const wick_session *s);

/* Context size of the session in tokens. */
int wick_session_n_ctx(const wick_session *s);

/* Drops tokens from the end so that pos becomes `pos` (0 <= pos <= current pos). */
wick_status wick_session_truncate(wick_session *s, int pos);

typedef enum wick_logits_mode {
    WICK_LOGITS_NONE = 0,  /* only fill the KV cache */
    WICK_LOGITS_LAST = 1,  /* logits of the last token: n_vocab floats */
    WICK_LOGITS_ALL = 2,   /* logits of every token: n * n_vocab floats, row-major */
} wick_logits_mode;

/* Appends `n` tokens to the sequence (one forward pass in chunks of n_batch) and writes the
 * requested logits into `logits` (caller-owned; may be NULL for WICK_LOGITS_NONE).
 * Fails with WICK_ERR_CONTEXT_FULL, before touching anything, when pos + n > n_ctx, and with
 * WICK_ERR_INVALID_ARG for an id outside [0, n_vocab). After a failure the session is unchanged. */
wick_status wick_session_eval(wick_session *s, const int32_t *ids, int n, wick_logits_mode mode,
                              float *logits);

/* ------------------------------------------------------------------------------------------
 * Tokenizer: Hugging Face tokenizer.json (BPE, WordPiece, Unigram, WordLevel), or a BERT
 * vocab.txt.
 * A tokenizer is immutable after loading and may be shared by threads.
 * ---------------------------------------------------------------------------------------- */

/* `path`: a tokenizer.json, a vocab.txt, or a folder holding one of them. tokenizer_config.json
 * beside it is read when present (chat_template, special token strings, do_lower_case).
 * Limits on tokenizer.json, so that a hostile file fails with WICK_ERR_FORMAT instead of
 * costing unbounded time, stack or memory (real tokenizers are far inside them):
 *  - every token id (model.vocab, added_tokens) is an integer below
 *    2 x (number of vocab entries + number of added tokens) + 1024. Real files number their
 *    tokens 0..N-1, some leaving a few holes; the id tables are sized by the largest id, so
 *    this keeps a small file from claiming a huge vocabulary. Holes decode as "".
 *  - a BPE model's continuing_subword_prefix and end_of_word_suffix are at most 64 bytes.
 *  - post-processor ids are ids of the vocabulary; at most 256 before and 256 after the text.
 *  - Strip decoders: start and stop are integers in [0, 1024], content one character;
 *    Metaspace replacement is one character.
 *  - a normalizer may not make a text more than 64 times longer (wick_tokenize fails with
 *    WICK_ERR_FORMAT), nor a Replace decoder write more than 64 bytes per byte of the tokens
 *    (detokenizing fails); real ones grow text at most 11-fold (NFKC) and decoders shrink it.
 *  - Sequences of normalizers, pre-tokenizers, decoders or post-processors nest at most 16
 *    deep, and a decoder chain has at most 64 decoders once Sequences are flattened.
 *  - a Unigram model has at least one piece and an unk_id (an index of model.vocab), every
 *    score is a finite number, and no piece is longer than 1024 bytes: a word costs
 *    O(its bytes x the longest piece) time (HF's cost too) and 20 bytes of scratch per byte.
 *  - a Precompiled normalizer's precompiled_charsmap decodes to at most 16 MiB; its trie is
 *    walked at load and every index and string offset checked, the strings are UTF-8. */
wick_status wick_tokenizer_load(const char *path, wick_tokenizer **out);
void wick_tokenizer_free(wick_tokenizer *tok);

/* Training a byte-level BPE tokenizer as Hugging Face tokenizers' BpeTrainer does with
 * Qwen2's pre-tokenizer (NFC, Qwen2's split regex, ByteLevel): every line of every file (with
 * its line ending) is one training sequence, as Tokenizer.train(files) reads them; the
 * vocabulary is the special tokens, the 256 byte-level characters by code point, then one
 * entry per merge, merges chosen by pair frequency with ties broken by the smaller pair of
 * ids. The result, written atomically to out_path, is a tokenizer.json that HF tokenizers
 * loads and that encodes as a tokenizer HF trained on the same files would (checked against
 * tokenizers 0.23 in tests/test_tokenizer_train.c). */
typedef struct wick_bpe_train_params {
    int vocab_size;             /* entries including specials and the 256 bytes. Default 8192 */
    int min_frequency;          /* pairs seen fewer times are never merged. Default 0 */
    const char *const *special; /* special tokens, ids 0..n-1; NULL = "<|endoftext|>",
                                   "<|im_start|>", "<|im_end|>" */
    int n_special;
    void (*progress)(void *user, int vocab_now, int vocab_target);   /* after each merge */
    void *progress_user;
} wick_bpe_train_params;

typedef struct wick_bpe_train_stats {
    int64_t bytes, words, word_occurrences;  /* input bytes, distinct words, words seen */
    int vocab_size, merges;
} wick_bpe_train_stats;

wick_bpe_train_params wick_bpe_train_params_default(void);
wick_status wick_tokenizer_train_bpe(const char *const *files, int n_files,
                                     const wick_bpe_train_params *params, const char *out_path,
                                     wick_bpe_train_stats *stats);

/* Same as wick_tokenizer_load for a tokenizer.json held in memory (`len` bytes) and an optional
 * tokenizer_config.json text (NUL-terminated, may be NULL). Both are copied as needed; the
 * caller keeps ownership. Messages name "tokenizer.json (in memory)". */
wick_status wick_tokenizer_load_mem(const char *tokenizer_json, size_t len,
                                    const char *config_json, wick_tokenizer **out);

/* Longest text wick_tokenize accepts, in bytes (256 MiB). Encoding time grows as
 * O(len log len) (BPE merges use a heap, never O(len²), even for one huge word) and its
 * scratch memory reaches about 35 bytes per input byte (one word of 16 MB); longer texts are
 * refused rather than risk tens of gigabytes. Split bigger inputs (at line breaks, say). */
#define WICK_TOKENIZE_MAX_BYTES ((size_t)256 << 20)

/* Encodes `len` bytes of `text` (any bytes; invalid UTF-8 does not fail) into `ids`.
 * Special tokens written in the text are recognized as Hugging Face tokenizers does.
 * add_special: also add the post-processor's tokens (BOS, [CLS]/[SEP]), like
 * add_special_tokens=True. Returns the number of ids (<= cap) on success; when cap is too small
 * returns -(needed count) and writes nothing beyond cap. Returns INT32_MIN on an invalid
 * argument, a text longer than WICK_TOKENIZE_MAX_BYTES, more than INT32_MAX ids, a normalizer
 * over its growth limit (see wick_tokenizer_load), a regex of the tokenizer failing (PCRE2's
 * match limit), or out of memory (message in wick_last_error). */
int32_t wick_tokenize(const wick_tokenizer *tok, const char *text, size_t len, bool add_special,
                      int32_t *ids, int32_t cap);

/* Decodes ids into `buf` (cap bytes, NUL-terminated). *out_len (optional) receives the byte
 * length of the text without the NUL, both on success and on WICK_ERR_BUFFER_TOO_SMALL (then
 * nothing but an empty string is written, and a buffer of *out_len + 1 bytes is enough).
 * skip_special drops special/added tokens marked special. Out-of-range id: WICK_ERR_INVALID_ARG;
 * a Replace decoder over its growth limit (see wick_tokenizer_load) or a failing regex:
 * WICK_ERR_FORMAT. */
wick_status wick_detokenize(const wick_tokenizer *tok, const int32_t *ids, size_t n,
                            bool skip_special, char *buf, size_t cap, size_t *out_len);

/* Vocabulary string of one token (e.g. "Ġthe"), owned by the tokenizer; NULL when out of range. */
const char *wick_token_str(const wick_tokenizer *tok, int32_t id);

/* Id of a vocabulary or added-token string, or -1. */
int32_t wick_token_id(const wick_tokenizer *tok, const char *str);

/* Number of ids (vocabulary + added tokens), i.e. one more than the largest id. */
int32_t wick_tokenizer_vocab_size(const wick_tokenizer *tok);

typedef enum wick_special {
    WICK_SPECIAL_BOS, WICK_SPECIAL_EOS, WICK_SPECIAL_PAD, WICK_SPECIAL_UNK,
    WICK_SPECIAL_CLS, WICK_SPECIAL_SEP, WICK_SPECIAL_MASK,
} wick_special;

/* Id of a special token, or -1 when the tokenizer has none. */
int32_t wick_tokenizer_special(const wick_tokenizer *tok, wick_special which);

/* True when `id` is an added token marked special (skipped by skip_special). */
bool wick_token_is_special(const wick_tokenizer *tok, int32_t id);

/* Streaming detokenizer: fed one id at a time it emits only complete UTF-8; the concatenation
 * of everything it emits (pushes + final flush) equals wick_detokenize of all the ids. */
typedef struct wick_detok wick_detok;
wick_status wick_detok_create(const wick_tokenizer *tok, bool skip_special, wick_detok **out);
/* Pushes one id; *text and *len receive the newly completed text (possibly empty), valid until the
 * next call on this detok. */
wick_status wick_detok_push(wick_detok *d, int32_t id, const char **text, size_t *len);
/* Emits whatever is still held back (incomplete UTF-8 becomes U+FFFD, as HF decode does). */
wick_status wick_detok_flush(wick_detok *d, const char **text, size_t *len);
void wick_detok_reset(wick_detok *d);
void wick_detok_free(wick_detok *d);

/* Chat templates (tokenizer_config.json "chat_template", rendered by wick's Jinja subset). */
typedef struct wick_chat_message {
    const char *role;     /* "system", "user", "assistant", ... */
    const char *content;
} wick_chat_message;

/* Renders the tokenizer's chat template for `n` messages, like transformers'
 * apply_chat_template(tokenize=False). extra_json: optional JSON object of extra template
 * variables (e.g. {"enable_thinking": false}), may be NULL. *out is NUL-terminated, free with
 * wick_free. Fails with WICK_ERR_NOT_FOUND when the tokenizer has no template, and with
 * WICK_ERR_UNSUPPORTED naming the construct the interpreter cannot render.
 *
 * Templates come from downloaded files, so a render is bounded whatever the template does;
 * past a limit it fails with an error (WICK_ERR_UNSUPPORTED for parse nesting,
 * WICK_ERR_NOMEM for memory and output, WICK_ERR_INVALID_ARG otherwise), never a crash:
 *   - parsing: expressions and blocks nest at most 200 levels;
 *   - evaluation: 400 nested expressions/statements, 100 nested macro calls, and lists/dicts
 *     printed, compared or converted to JSON at most 1000 levels deep (a namespace that
 *     contains itself is an error, not an endless print); the JSON variables too;
 *   - work: 50,000,000 steps, a step being one node evaluated, one list item or dict entry
 *     that an operator, filter or loop visits, or 64 bytes of string copied or searched
 *     (one byte for per-character work such as case mapping); range() gives at most
 *     100,000 items, as jinja2's sandbox;
 *   - memory: 512 MiB of values per render, plus 64 MiB of rendered text shared by the
 *     output and the macro results / set blocks being built at the same time;
 *   - integers are 64-bit: where Python's would grow past that (2 ** 63, 1e300|int,
 *     INT64_MIN // -1) the render fails with WICK_ERR_UNSUPPORTED "integer overflow"
 *     instead of wrapping.
 * The deepest nesting needs about 0.5 MiB of stack (about 2 MiB under AddressSanitizer):
 * call from threads with at least 1 MiB. */
wick_status wick_chat_render(const wick_tokenizer *tok, const wick_chat_message *msgs, size_t n,
                             bool add_generation_prompt, const char *extra_json, char **out);

/* Same, with the messages given as a JSON array of message objects that reaches the template
 * as it is (so "tool_calls", "reasoning_content", "tool" messages and any other field work).
 * Fails with WICK_ERR_INVALID_ARG when messages_json is not an array of objects. Both render
 * functions compile the template once per tokenizer (on first use) and may be called by many
 * threads at once. */
wick_status wick_chat_render_json(const wick_tokenizer *tok, const char *messages_json,
                                  bool add_generation_prompt, const char *extra_json, char **out);

/* ------------------------------------------------------------------------------------------
 * Generation: a pull API (start / step / free) at the core; the callback (wick_generate) and
 * the background stream (wick_stream_*) are thin layers over it.
 * ---------------------------------------------------------------------------------------- */

typedef struct wick_logit_bias {
    int32_t id;
    float bias;               /* added to the logit; -INFINITY bans the token */
} wick_logit_bias;

/* Sampler order (fixed): logit_bias -> repetition_penalty -> frequency/presence penalties ->
 * [temperature == 0: argmax] -> temperature -> top_k -> typical_p -> top_p -> min_p -> draw.
 * min_p is relative to the most likely token's probability after temperature (as in HF).
 * Sampling never sorts the whole vocabulary (partial selection). */
typedef struct wick_gen_params {
    int max_tokens;           /* new tokens at most; 0 = until the context is full. Default 256 */
    int min_tokens;           /* EOS and stop ids are banned until this many. Default 0 */
    float temperature;        /* 0 = greedy (argmax, ties -> lowest id). Default 0.8 */
    int top_k;                /* 0 = off. Default 40 */
    float top_p;              /* (0, 1], 1 = off. Default 0.95 */
    float min_p;              /* [0, 1], 0 = off. Default 0.05 */
    float typical_p;          /* (0, 1], 1 = off. Default 1 */
    float repetition_penalty; /* HF semantics over prompt + output; 1 = off. Default 1 */
    int repetition_last_n;    /* window for repetition_penalty; 0 = every token. Default 0 */
    float frequency_penalty;  /* OpenAI semantics over generated tokens; 0 = off. Default 0 */
    float presence_penalty;   /* OpenAI semantics over generated tokens; 0 = off. Default 0 */
    const wick_logit_bias *logit_bias; /* n_logit_bias entries, copied at start */
    int n_logit_bias;
    uint64_t seed;            /* same seed + same inputs = same tokens. Default 0 */
    const int32_t *stop_ids;  /* extra ids that end generation (finish "stop_token"); copied */
    int n_stop_ids;
    const char *const *stop_strings; /* end generation when the text contains one; the stop
                                        string and anything after it is never emitted; copied */
    int n_stop_strings;
    bool stop_on_eos;         /* end at an EOS id (finish "eos"). Default true */
    const int32_t *eos_ids;   /* overrides the model's EOS ids when n_eos_ids > 0; copied */
    int n_eos_ids;
    int n_logprobs;           /* top-N alternatives reported per token (0..20). Default 0 */
    bool skip_special;        /* leave special tokens out of the text. Default true */
    const char *json_schema;  /* structured output: the text must be a JSON value valid against
                                 this JSON Schema (its text; "{\"type\":\"object\"}" = any object,
                                 "true" = any value); see wick_json_schema_check for what is
                                 supported. Generation ends (finish "grammar") when the value is
                                 complete, or at EOS where the value may end. Compiled at start,
                                 not kept. Default NULL (off) */
    bool reuse_prefix;        /* keep the session's cached keys/values for the longest common
                                 prefix of the previous and the new prompt (same ids, same
                                 adapter settings) and prefill only the rest. Default true */
    /* Speculative decoding, for session generations (wick_gen_start / wick_generate; an
     * engine refuses it): each step proposes up to spec_k ids, runs the last id and the
     * proposals through the model in one batched pass, and keeps the proposals as long as
     * they equal what is sampled from each row. Proposals are deterministic (prompt lookup,
     * or the draft model's greedy choice), and every output id is still drawn from the
     * target's processed distribution in order, so greedy output is the same as without
     * speculation and sampled output has the same distribution: drawing x ~ p against a
     * proposal d gives d with probability p(d) (acceptance) and otherwise a draw from p
     * without d — speculative sampling's residual for a one-point proposal. The session
     * keeps only accepted positions (rejected ones are truncated away).
     *   spec_ngram  prompt lookup (0 = off, else 1..8): the last spec_ngram ids (then fewer,
     *               down to 1) are searched in the prompt and output so far; the ids that
     *               followed their latest earlier occurrence are proposed.
     *   draft       a session on a draft model with the same token ids (NULL = none); it
     *               proposes by greedy decoding and is used only by this generation until
     *               wick_gen_free.
     *   spec_propose a proposer of the caller's (NULL = none): called with the ids so far
     *               (prompt and output, n of them) and room for kmax >= 1 ids; writes up to
     *               kmax ids into out and returns how many (0 = none this step; a negative
     *               count or an id outside [0, n_vocab) fails the generation with
     *               WICK_ERR_INVALID_ARG). Called on the generating thread; spec_user is
     *               passed through. Lookups over a retrieval corpus, extra decoding heads,
     *               benchmarks (`wick bench spec`) plug in here.
     *   spec_k      most proposals per step, 1..16; 0 = 4.
     * Set together, they are tried in the order prompt lookup, spec_propose, draft; the first
     * that proposes anything supplies this step's proposals. */
    int spec_ngram;
    int spec_k;
    wick_session *draft;
    int (*spec_propose)(void *spec_user, const int32_t *ids, int n, int32_t *out, int kmax);
    void *spec_user;
} wick_gen_params;

wick_gen_params wick_gen_params_default(void);

/* Checks a JSON Schema for structured output (wick_gen_params.json_schema) without
 * generating: WICK_OK, or WICK_ERR_FORMAT (not JSON, not a schema, contradictory bounds) /
 * WICK_ERR_UNSUPPORTED (a keyword structured output cannot enforce), naming the keyword and
 * its path. Supported: type (one or a list), properties + required, additionalProperties,
 * items, minItems, maxItems, minLength, maxLength, enum, const, anyOf/oneOf whose branches
 * start with different characters or are objects told apart by a first required property
 * holding a different constant, $ref to #/$defs or #/definitions (recursion allowed),
 * true; annotations (title, description, default, format, ...) are ignored. Output is compact
 * JSON with object keys in the schema's order. */
wick_status wick_json_schema_check(const char *schema_json);

typedef enum wick_finish_reason {
    WICK_FINISH_NONE = 0,     /* generation goes on */
    WICK_FINISH_EOS,          /* an EOS id was generated (it is the last token, is_eos) */
    WICK_FINISH_STOP_TOKEN,   /* one of stop_ids was generated (it is the last token) */
    WICK_FINISH_STOP_STRING,  /* a stop string appeared in the text (not emitted) */
    WICK_FINISH_LENGTH,       /* max_tokens reached, or the context is full */
    WICK_FINISH_CANCELLED,    /* wick_gen_cancel / callback returned false / stream cancelled */
    WICK_FINISH_ERROR,        /* an engine could not go on with this generation; the reason
                                 is in wick_token.error */
    WICK_FINISH_GRAMMAR,      /* json_schema: the JSON value is complete (last token) */
} wick_finish_reason;

/* "eos", "stop_token", "stop_string", "length", "cancelled", "error", "grammar" ("" for NONE). */
const char *wick_finish_reason_str(wick_finish_reason r);

typedef struct wick_top_logprob {
    int32_t id;
    float logprob;
} wick_top_logprob;

/* One generated token. Pointers are owned by the generator (or stream) and stay valid until
 * its next step/next call. */
typedef struct wick_token {
    int32_t id;               /* -1 only on a final token that carries no new id (cancelled) */
    const char *text;         /* newly completed UTF-8 text (NUL-terminated), possibly "" while
                                 bytes of a character or a possible stop string are held back */
    size_t text_len;
    float logit;              /* raw model logit of id */
    float prob, logprob;      /* under the final sampling distribution (after truncation) */
    const wick_top_logprob *top; /* n_top alternatives, most likely first */
    int n_top;
    bool is_eos;
    wick_finish_reason finish;   /* set on the last token only */
    /* filled on the last token (finish != NONE): */
    int prompt_tokens, generated_tokens;
    int cached_tokens;        /* prompt tokens reused from the session's cache (not prefilled) */
    double prefill_ms, decode_ms;
    int drafted_tokens, accepted_tokens; /* speculative decoding: proposals made / kept */
    const char *error;        /* finish == WICK_FINISH_ERROR: what went wrong; else NULL */
} wick_token;

typedef struct wick_gen wick_gen;

/* Starts generating after `prompt` (n >= 1 ids) on `session`. The session's cache is kept
 * for the longest prefix shared with what it already holds (params->reuse_prefix), the rest
 * is dropped; the prefill of the remaining prompt runs in the first wick_gen_step. Copies everything it keeps from params. Fails with
 * WICK_ERR_CONTEXT_FULL when the prompt does not fit, WICK_ERR_INVALID_ARG for a bad param
 * (named) or id. The session must not be used by anything else until wick_gen_free. */
wick_status wick_gen_start(wick_session *session, const int32_t *prompt, int n,
                           const wick_gen_params *params, wick_gen **out);

/* Produces the next token: WICK_OK with *tok filled (tok->finish != NONE on the last one),
 * WICK_DONE once the last token has been returned, or an error. Allocates nothing. */
wick_status wick_gen_step(wick_gen *gen, wick_token *tok);

/* Asks the generation to stop; the next step returns a final token with finish "cancelled".
 * Safe to call from any thread and from a signal handler. */
void wick_gen_cancel(wick_gen *gen);

void wick_gen_free(wick_gen *gen);

/* Synchronous streaming: runs the whole generation, calling on_token for every token
 * (including the last, which carries the finish reason and timings). Returning false from
 * on_token stops generation at once: no further callback is made and WICK_OK is returned. */
typedef bool (*wick_on_token)(const wick_token *tok, void *user);
wick_status wick_generate(wick_session *session, const int32_t *prompt, int n,
                          const wick_gen_params *params, wick_on_token on_token, void *user);

/* Asynchronous streaming: generation runs on a worker thread. */
typedef struct wick_stream wick_stream;

/* Starts a stream (same arguments as wick_gen_start). The session belongs to the stream until
 * wick_stream_close. */
wick_status wick_stream_open(wick_session *session, const int32_t *prompt, int n,
                             const wick_gen_params *params, wick_stream **out);

/* Waits up to timeout_ms (-1 = forever, 0 = poll) for the next token: WICK_OK with *tok (its
 * pointers valid until the next call), WICK_ERR_TIMEOUT, WICK_DONE after the last token, or the
 * error that stopped generation. Tokens come in order, none lost. One consumer thread. */
wick_status wick_stream_next(wick_stream *s, wick_token *tok, int timeout_ms);

/* A file descriptor that is readable while a token (or the end) is waiting, for poll/epoll. */
int wick_stream_fd(const wick_stream *s);

/* Asks the worker to stop (any thread); the stream then ends with a "cancelled" token. */
void wick_stream_cancel(wick_stream *s);

/* Cancels if still running, joins the worker and frees everything. Safe at any point. */
void wick_stream_close(wick_stream *s);

/* ------------------------------------------------------------------------------------------
 * Engine: many generations advanced together, one pass over the weights per step.
 *
 *     wick_engine *e = NULL;
 *     wick_engine_params ep = wick_engine_params_default();
 *     ep.max_seqs = 8;
 *     wick_engine_create(model, &ep, &e);
 *     wick_request r = {.prompt = ids, .n_prompt = n, .params = &gp, .on_token = cb, .user = u};
 *     uint64_t id;
 *     wick_engine_submit(e, &r, &id);              // from any thread, at any time
 *     int active = 1;
 *     while (active) {                              // one driver thread
 *         if (wick_engine_step(e, &active) != WICK_OK) break;
 *         if (!active) wick_engine_wait(e, 100);    // sleeps until a submit/cancel/resume
 *     }
 *     wick_engine_free(e);
 *
 * Each step builds one batch: one row for every running generation that has a token to feed
 * (decode), then chunks of the prompts being read (chunked prefill) up to n_batch rows, first
 * come first served. The batch goes through the model once: every weight matrix is read once
 * per step whatever the number of generations; attention runs per sequence over its own KV
 * blocks; each adapter's LoRA products run over its own rows (mixed adapters in one batch).
 * Generations join at the next step after submit and leave when they finish.
 *
 * KV cache: one pool of blocks (kv_block tokens each) shared by all generations; a sequence
 * holds only the blocks its tokens fill. With prefix_cache, whole blocks are shared between
 * sequences whose ids (and adapter and scale) agree from the start, and blocks of finished
 * generations stay cached until their memory is needed: a system prompt used by many
 * requests is stored and computed once. When the pool runs out, the most recently admitted
 * generation is preempted (its blocks released; it is recomputed later from its ids, sampling
 * state kept, so its output does not change).
 *
 * Exactness: a generation's tokens and logits do not depend on what else is in the batch
 * beyond f32 summation order (with kv_type F32: logits within 1e-5 of the same request run
 * alone in a session; seeded sampling gives the same ids).
 *
 * Threads: submit, cancel, pause, resume, wake and get_stats may be called from any thread at
 * any time (an internal lock). step and wait are called by one driver thread at a time;
 * callbacks run on it, without the lock held, so they may call submit/cancel/pause.
 * ---------------------------------------------------------------------------------------- */

typedef struct wick_engine wick_engine;

typedef struct wick_engine_params {
    int n_threads;        /* worker threads incl. the driver; 0 = online CPUs */
    int max_seqs;         /* generations running at once (decode rows per step). Default 16 */
    int n_ctx;            /* most positions one sequence may hold; 0 = min(max_position_
                             embeddings, 4096) */
    int n_batch;          /* most rows per step (decode rows + prefill chunk); >= max_seqs.
                             Smaller bounds the inter-token latency while prompts are read,
                             larger reads prompts faster. Default 128 */
    int kv_tokens;        /* KV pool capacity in positions over all sequences; 0 = max_seqs ×
                             n_ctx (reserved, committed as used) */
    int kv_block;         /* positions per KV block, a multiple of 16. Default 16 */
    wick_kv_type kv_type; /* default F16 */
    bool prefix_cache;    /* share and keep whole blocks of equal prefixes. Default true */
    int max_waiting;      /* submissions waiting for a free slot beyond which submit fails with
                             WICK_ERR_BUSY; 0 = no limit. Default 0 */
} wick_engine_params;

wick_engine_params wick_engine_params_default(void);

/* Creates an engine on `model` (which must outlive it): worker threads, activations for
 * n_batch rows, the KV pool. */
wick_status wick_engine_create(const wick_model *model, const wick_engine_params *params,
                               wick_engine **out);

/* Frees the engine and every generation still in it; their callbacks are not called again.
 * No other call on the engine may be running. NULL is ignored. */
void wick_engine_free(wick_engine *e);

typedef struct wick_request {
    const int32_t *prompt;      /* n_prompt >= 1 ids, copied */
    int n_prompt;
    const wick_gen_params *params; /* copied; NULL = wick_gen_params_default() (reuse_prefix is
                                      ignored: the engine's prefix_cache decides) */
    const char *adapter;        /* registered adapter applied to this generation, or NULL */
    float adapter_scale;        /* multiplier of its α/r; 0 is taken as 1 */
    /* Called on the driver thread for every token, the last one carrying finish != NONE
     * (also "cancelled" after wick_engine_cancel, and "error" with tok->error when the engine
     * cannot go on, e.g. a sequence that does not fit the whole KV pool). The token's pointers
     * are valid during the call. Returning false drops the generation at once, without a
     * final token. Required. */
    wick_on_token on_token;
    void *user;
} wick_request;

/* Queues a generation; it starts at the next step with a free slot. *id (optional) names it
 * for cancel/pause/resume. Fails, queuing nothing, with WICK_ERR_INVALID_ARG (bad prompt id or
 * param, named), WICK_ERR_NOT_FOUND (unknown adapter), WICK_ERR_CONTEXT_FULL (prompt longer
 * than n_ctx) or WICK_ERR_BUSY (max_waiting generations already wait). Any thread. */
wick_status wick_engine_submit(wick_engine *e, const wick_request *r, uint64_t *id);

/* Ends generation `id`: at the next step its callback gets a final "cancelled" token.
 * WICK_ERR_NOT_FOUND when it has already finished. Any thread, also from a callback. */
wick_status wick_engine_cancel(wick_engine *e, uint64_t id);

/* A paused generation keeps its KV blocks but gets no rows until resumed (e.g. a client that
 * does not read). Any thread, also from a callback. WICK_ERR_NOT_FOUND when finished. */
wick_status wick_engine_pause(wick_engine *e, uint64_t id);
wick_status wick_engine_resume(wick_engine *e, uint64_t id);

/* Runs one step (admission, one forward pass, sampling, callbacks). *n_active (optional)
 * receives the number of generations that can make progress at the next step (not paused);
 * with 0 the driver should wick_engine_wait. Errors are those of the whole step (out of memory
 * for a batch); per-generation errors end that generation with finish "error". */
wick_status wick_engine_step(wick_engine *e, int *n_active);

/* Sleeps until something was submitted, cancelled or resumed since the last step, or
 * wick_engine_wake was called, or timeout_ms passed (-1 = no limit): WICK_OK or
 * WICK_ERR_TIMEOUT. Driver thread. */
wick_status wick_engine_wait(wick_engine *e, int timeout_ms);
/* Makes a wick_engine_wait return now (e.g. to shut down). Any thread. */
void wick_engine_wake(wick_engine *e);

typedef struct wick_engine_stats {
    int running;              /* admitted generations (incl. paused) */
    int paused;
    int waiting;              /* submitted, not yet admitted */
    int kv_blocks, kv_block_tokens;   /* pool size in blocks; positions per block */
    int kv_used, kv_cached;   /* blocks held by sequences; unreferenced blocks kept cached */
    int64_t kv_bytes_per_block;
    int64_t steps, rows, decode_rows, prefill_rows;   /* totals */
    int64_t prefix_hit_tokens; /* prompt positions attached from the prefix cache */
    int64_t preemptions;
    int64_t finished;         /* generations ended (any reason) */
    double last_step_ms;
    int64_t activation_bytes; /* activation buffers */
} wick_engine_stats;

/* A snapshot of the engine's counters (as of the end of the last step). Any thread. */
wick_status wick_engine_get_stats(wick_engine *e, wick_engine_stats *out);

/* ------------------------------------------------------------------------------------------
 * LoRA adapters: PEFT folders (adapter_config.json + adapter_model.safetensors) kept in a
 * per-model registry and applied unmerged per session, or merged into a new model handle.
 *
 *     wick_adapter_load(model, "adapters/sql", NULL);          // registered as "sql"
 *     wick_adapter_load(model, "adapters/chat", "chat");
 *     wick_session_set_adapter(s1, "sql", 1.0f);                // s1 now uses sql
 *     wick_session_set_adapter(s2, "chat", 0.5f);               // s2 half-strength chat
 *     wick_session_set_adapter(s1, NULL, 0);                    // s1 back to the base model
 *
 * Supported: target_modules as a list (exact names or suffixes, as PEFT matches them) or a
 * regex string (full match), q/k/v/o/gate/up/down projections, use_rslora (scale α/√r),
 * rank_pattern / alpha_pattern, fan_in_fan_out (ignored like PEFT does for nn.Linear targets),
 * bias "none", F32/BF16/F16 tensors. DoRA (use_dora), modules_to_save, bias other than "none",
 * lora_bias and embedding / lm_head targets fail with WICK_ERR_UNSUPPORTED naming the field.
 * Every lora_A / lora_B is checked against the base weight it adapts; a failed load leaves
 * the model exactly as it was.
 *
 * Threads: load/unload/list/save may be called from any thread at any time (the registry
 * has its own lock); the model stays usable by other sessions meanwhile.
 * ---------------------------------------------------------------------------------------- */

typedef struct wick_adapter wick_adapter;

/* Loads an adapter and registers it on `model` under `name` (NULL = the folder's base name,
 * or the file name without ".gguf"). `dir` is a PEFT folder (adapter_config.json +
 * adapter_model.safetensors) or a llama.cpp GGUF LoRA file. Fails with WICK_ERR_INVALID_ARG
 * when the name is already registered. A and B are f32: used in place from an F32 file,
 * converted once otherwise. adapter_config.json numbers are range-checked before use: r and
 * rank_pattern values are integers in [1, 2^31), lora_alpha, alpha_pattern values and a GGUF
 * adapter.lora.alpha are finite floats; regexes are matched with a step limit. Memory is
 * bounded by the adapter file (A and B must match the base weights' shapes). */
wick_status wick_adapter_load(wick_model *model, const char *dir, const char *name);

/* Removes `name` from the registry (WICK_ERR_NOT_FOUND if absent). Sessions that currently
 * use it keep it alive until they switch away or are freed. */
wick_status wick_adapter_unload(wick_model *model, const char *name);

/* Writes up to `cap` registered names (owned by the registry; valid until that adapter is
 * unloaded) into names, in load order. Returns the total number registered. */
int wick_adapters_list(const wick_model *model, const char **names, int cap);

/* Selects the adapter a session applies from the next evaluated token on (safe between
 * wick_gen_step calls). name NULL = none. scale multiplies the config's α/r (1 = as trained).
 * Allocates only when the adapter needs more scratch than the session has (the first time
 * per rank). On failure the session keeps its previous adapter. */
wick_status wick_session_set_adapter(wick_session *s, const char *name, float scale);

/* Name of the session's current adapter, or NULL. Valid while the session keeps it. */
const char *wick_session_adapter(const wick_session *s);

/* Writes a registered adapter as a PEFT folder in `out_dir` (created if missing):
 * adapter_config.json (every field PEFT reads; peft_type LORA, task_type CAUSAL_LM) and
 * adapter_model.safetensors with PEFT key names, the dtype the tensors were loaded with,
 * tensors sorted by name. The folder is replaced as a whole (built beside it, swapped in
 * with one rename; other files already in it are kept): at every moment out_dir holds the
 * complete previous adapter or the complete new one, even if the process is killed. */
wick_status wick_adapter_save(const wick_model *model, const char *name, const char *out_dir);

/* Writes a registered adapter as a llama.cpp GGUF LoRA file at `path` (atomic):
 * general.type "adapter", adapter.type "lora", adapter.lora.alpha, tensors
 * blk.N.<proj>.weight.lora_a / .lora_b, q/k lora_b rows permuted for llama as llama.cpp's
 * converter does, F16/BF16 kept, else F32. Modules whose α/r does not follow the one alpha
 * (rsLoRA, alpha_pattern) have the ratio folded into lora_b. wick_adapter_load reads such a
 * file back (a path to a regular file is read as GGUF). */
wick_status wick_adapter_save_gguf(const wick_model *model, const char *name, const char *path);

/* Merged mode: a new model handle whose adapted matrices are W' = W + scale·(α/r)·B·A,
 * computed in f32 from the base weight and rounded once to the base dtype (bf16/f16: round to
 * nearest even; a block-quantized base (Q8_0, Q4_0, Q5_0, Q4_K, Q6_K, from GGUF) is
 * dequantized, merged in f32 and requantized to the same block type, so the merged model has
 * the base's size and speed and one more rounding of the adapted matrices at that type), in
 * private copies of the adapted matrices; every other weight, the tokenizer and the config are
 * shared with `base`, which is never modified ("unmerge" = wick_model_free(merged)).
 * `base` must outlive the merged model and all its sessions. */
wick_status wick_model_merge_adapter(const wick_model *base, const char *name, float scale,
                                     wick_model **merged);

/* Writes a model (loaded or merged) to `out_dir`. Used by `wick merge`.
 *  - A path ending in ".gguf" (any case) gets one GGUF file: every matrix in the type it has
 *    in memory (a model merged into a quantized base keeps the base's block types; nothing is
 *    requantized), norms and biases F32, the source's tokenizer metadata (its GGUF tokenizer.*
 *    keys, or its folder's tokenizer.json).
 *  - Any other path gets a Hugging Face folder. From a model folder: model.safetensors (every
 *    tensor of the source files with its name and dtype, merged matrices replaced; one file
 *    even for a sharded source), config.json, generation_config.json and tokenizer files
 *    copied. From a GGUF file: what `wick convert IN.gguf OUT_DIR` writes — HF tensor names,
 *    matrices in the source's type when it is F32, F16 or BF16 throughout, else BF16
 *    (quantized matrices dequantized), config.json / generation_config.json built from the
 *    config, tokenizer.json from the GGUF metadata.
 * Crash-safe: a file is written beside its path and renamed over it, a folder is built beside
 * its path and swapped in whole (other files already in it are kept), so the path holds the
 * complete previous output or the complete new one at every moment, even if the process is
 * killed (refused: replacing the current folder or one containing it — write to a subfolder —,
 * a folder holding a mount point, entries nested more than 64 folders deep in it).
 * Errors name the path; on failure the previous output is left as it was. */
wick_status wick_model_save(const wick_model *model, const char *out_dir);

/* ------------------------------------------------------------------------------------------
 * Training on the CPU (f32), matching PyTorch + PEFT: LoRA fine-tuning, and full-parameter
 * training of every weight (wick_trainer_create_full: fine-tuning or pretraining from scratch).
 *
 *     wick_adapter_create(model, "mine", 8, 16.0f, "q,k,v,o,gate,up,down", 42);
 *     wick_train_params tp = wick_train_params_default();
 *     tp.lr = 1e-4f; tp.total_steps = 100; tp.schedule = WICK_LR_COSINE; tp.warmup_steps = 10;
 *     wick_trainer *tr = NULL;
 *     wick_trainer_create(model, "mine", &tp, &tr);
 *     for (...) wick_train_step(tr, ids, NULL, batch, seq_len, &loss);
 *     wick_trainer_save(tr, "out/final");      // PEFT folder + optimizer checkpoint
 *     wick_trainer_free(tr);
 *
 * The loss is Hugging Face's causal-LM loss: position t predicts labels[t+1] (labels = the ids
 * when NULL), cross-entropy averaged over every predicted token whose label is not -100.
 * The optimizer is torch.optim.AdamW (decoupled weight decay p *= 1 - lr·wd first, bias
 * correction), one parameter group over every lora_A / lora_B of the adapter; in full
 * training two groups: every matrix (embedding and head included) with weight_decay, every
 * norm weight and bias without (the usual recipe).
 *
 * Full training: wick_trainer_create_full converts the model's matrices to f32 (the model
 * keeps them so from then on: a bf16 or quantized model becomes an f32 one) and trains them,
 * the norms and the biases in place; a tied LM head is the embedding (one tensor, both
 * gradients). Sessions on the model see each step's weights; none may evaluate while a step
 * runs, and keys/values cached before a step (a session's history, the engine's prefix
 * cache) hold old weights: start fresh sessions after training.
 *
 * Threads: the trainer trains the *registered* adapter in place, so sessions that select it
 * see the new weights from their next evaluated chunk after a step. No session may evaluate
 * with that adapter while wick_trainer_create, wick_train_step or
 * wick_trainer_load_checkpoint runs (they write its weights); other adapters and the base
 * model stay usable. A trainer is used by one thread at a time. After each optimizer step the
 * adapter gets a new identity, so sessions never reuse keys/values computed with old weights.
 * ---------------------------------------------------------------------------------------- */

typedef enum wick_lr_schedule {
    WICK_LR_CONSTANT = 0,   /* lr (after an optional linear warmup) */
    WICK_LR_LINEAR,         /* linear warmup 0 -> lr, then linear decay to 0 at total_steps */
    WICK_LR_COSINE,         /* linear warmup, then half-cosine decay to 0 at total_steps */
} wick_lr_schedule;

typedef struct wick_train_params {
    float lr;               /* peak learning rate. Default 1e-4 */
    float beta1, beta2;     /* Default 0.9, 0.999 */
    float eps;              /* Default 1e-8 */
    float weight_decay;     /* decoupled (AdamW). Default 0.01 */
    wick_lr_schedule schedule;  /* Default WICK_LR_CONSTANT */
    int warmup_steps;       /* optimizer steps of linear warmup (step s uses lr·s/warmup, as
                               transformers' schedulers: the first step has lr 0). Default 0 */
    int total_steps;        /* optimizer steps the decay spans (LINEAR/COSINE need > 0) */
    float max_grad_norm;    /* clip the global gradient norm to this; 0 = off. Default 0 */
    int grad_accum;         /* micro-batches (wick_train_step calls) per optimizer step; each
                               micro-batch's loss is divided by this. Default 1 */
    int n_threads;          /* 0 = number of online CPUs */
    uint64_t seed;          /* reserved for data order / dropout; stored in checkpoints */
} wick_train_params;

wick_train_params wick_train_params_default(void);

/* Creates and registers under `name` a fresh adapter initialised as PEFT does: lora_A
 * kaiming-uniform (U(-1/sqrt(in), 1/sqrt(in)), from wick's own seeded generator, so values
 * differ from torch's), lora_B zeros; rank r, lora_alpha alpha (scale alpha/r), on the
 * projections listed in `targets` ("q,k,v,o,gate,up,down" or the *_proj names, comma
 * separated; "default" is PEFT's default for the family: q,v, or qkv where the model fuses
 * them). On a model that fuses q/k/v and gate/up (Phi-3) the targets are its modules as PEFT
 * names them: "qkv" (qkv_proj), "o", "gate_up" (gate_up_proj), "down"; each fused module gets
 * one A and one B over its projections' rows, saved under the fused name. Fails with
 * WICK_ERR_INVALID_ARG for a bad r, alpha, target (a fused module's projection alone too) or
 * a taken name. */
wick_status wick_adapter_create(wick_model *model, const char *name, int r, float alpha,
                                const char *targets, uint64_t seed);

typedef struct wick_trainer wick_trainer;

/* Starts training the registered adapter `adapter_name` of `model` (which must outlive the
 * trainer). Its A/B become one trainable f32 block (an adapter loaded from bf16/f16 is saved
 * back as F32). Fresh optimizer state (step 0). On failure *out is NULL and the adapter is
 * unchanged. */
wick_status wick_trainer_create(wick_model *model, const char *adapter_name,
                                const wick_train_params *params, wick_trainer **out);

/* Starts full-parameter training of every weight of `model` (which must outlive the trainer;
 * a CPU model, not a merged-adapter handle, not a GGUF llama file whose q/k rows are in GGUF
 * order — convert it first). Fresh optimizer state (step 0). wick_trainer_save then writes a
 * Hugging Face model folder (f32 matrices, config, the source folder's tokenizer files) plus
 * trainer_state.safetensors with the moments under the tensors' names. */
wick_status wick_trainer_create_full(wick_model *model, const wick_train_params *params,
                                     wick_trainer **out);

/* Forward + backward on `batch` sequences of `seq_len` ids each (row-major, batch·seq_len),
 * full causal attention within each sequence from position 0. labels: NULL (= ids) or
 * batch·seq_len labels aligned with ids (-100 = no loss). Every grad_accum calls, one
 * optimizer step is taken. *loss (optional) = this micro-batch's mean loss before the update.
 * A batch without any target token returns WICK_ERR_INVALID_ARG. On an error nothing changes. */
wick_status wick_train_step(wick_trainer *tr, const int32_t *ids, const int32_t *labels,
                            int batch, int seq_len, float *loss);

/* Mean loss of a batch with the current weights, no gradient, no update. */
wick_status wick_train_eval(wick_trainer *tr, const int32_t *ids, const int32_t *labels,
                            int batch, int seq_len, float *loss);

typedef struct wick_train_state {
    int64_t step;           /* optimizer steps taken */
    float lr;               /* learning rate of the last step (0 before the first) */
    float grad_norm;        /* global gradient norm of the last step, before clipping */
    int64_t n_params;       /* trainable numbers */
} wick_train_state;

wick_status wick_trainer_get_state(const wick_trainer *tr, wick_train_state *out);

/* Writes `dir` (created if missing): the adapter as a PEFT folder (adapter_config.json +
 * adapter_model.safetensors, F32) — in full training the model as a Hugging Face folder —
 * and trainer_state.safetensors holding exp_avg / exp_avg_sq per PEFT key or tensor name
 * (key + ".exp_avg" / ".exp_avg_sq"), with the step count, the training params and the mode
 * ("lora" or "full") in "__metadata__". The folder is replaced as a whole like wick_adapter_save's, so
 * weights and optimizer state always belong to the same step. Fails with
 * WICK_ERR_INVALID_ARG while micro-batches of an unfinished step (grad_accum > 1) are
 * pending: save between optimizer steps. */
wick_status wick_trainer_save(const wick_trainer *tr, const char *dir);

/* Restores weights, moments and step count from a folder written by wick_trainer_save for an
 * adapter (or, in full training, a model) of the same shape, so training continues exactly as if uninterrupted (the
 * trainer's own params are kept). On failure the trainer is unchanged. */
wick_status wick_trainer_load_checkpoint(wick_trainer *tr, const char *dir);

/* Frees the trainer (the adapter stays registered with its trained weights). NULL ignored. */
void wick_trainer_free(wick_trainer *tr);

/* ------------------------------------------------------------------------------------------
 * Embeddings: sentence vectors from BERT, XLM-RoBERTa and MPNet encoders (E5, MiniLM, BGE,
 * GTE, all-mpnet ...) with sentence-transformers pooling and Dense modules.
 *
 *     wick_embedder *e = NULL;
 *     if (wick_embedder_load("all-MiniLM-L6-v2", NULL, &e) != WICK_OK) { ...wick_last_error() }
 *     const char *texts[] = {"a cat", "a dog"};
 *     float *v = malloc(sizeof(float) * 2 * wick_embedder_dim(e));
 *     wick_embed(e, texts, 2, v);          // 2 rows of dim floats (unit length by default)
 *     wick_embedder_free(e);
 *
 * Threads: an embedder holds its scratch and thread pool, so it must be used by one thread at
 * a time (like a session); load one per thread for parallel callers (weights are mmapped, so
 * the pages are shared). Scratch is sized on first use and grows only when a larger batch or
 * a longer sequence appears; nothing else is allocated per call.
 * ---------------------------------------------------------------------------------------- */

typedef struct wick_embedder wick_embedder;

typedef enum wick_pooling {
    WICK_POOLING_DEFAULT = 0,  /* the folder's (1_Pooling/config.json), else mean */
    WICK_POOLING_MEAN,         /* average of the token states (padding excluded) */
    WICK_POOLING_CLS,          /* the [CLS] (first) token state */
    WICK_POOLING_MAX,          /* element-wise max over the tokens */
    WICK_POOLING_MEAN_SQRT_LEN, /* sum of the token states / sqrt(token count) */
    WICK_POOLING_WEIGHTED_MEAN, /* Σ (i+1)·h_i / Σ (i+1) over positions i (SGPT) */
    WICK_POOLING_LAST_TOKEN     /* the last token's state (decoder embedders: Qwen3-Embedding,
                                   gte-Qwen; their tokenizer appends <|endoftext|>) */
} wick_pooling;

typedef struct wick_embedder_params {
    const char *kernels;   /* kernel table, as wick_model_params.kernels. Default "auto" */
    int n_threads;         /* threads incl. the caller; 0 = online CPUs. Default 0 */
    wick_pooling pooling;  /* Default WICK_POOLING_DEFAULT */
    int normalize;         /* -1 = the folder's (a Normalize module in modules.json; true when
                              there is no modules.json), 0 = off, 1 = L2-normalise. Default -1 */
    int max_length;        /* tokens per text incl. [CLS]/[SEP]; 0 = sentence_bert_config.json
                              max_seq_length, else what max_position_embeddings holds (less
                              pad_token_id + 1 for XLM-R, 2 for MPNet). Longer texts are cut
                              like HF truncation (the final [SEP] is kept). Default 0 */
    const char *prefix;    /* prepended to every text by wick_embed, e.g. "query: " or
                              "passage: " for E5 models; copied at load. Default NULL */
    int batch_size;        /* texts per forward pass. Default 32 */
    const char *prompt_name; /* a prompt of the folder's config_sentence_transformers.json
                              "prompts" (e.g. "query" for Qwen3-Embedding's instruction), used
                              as the prefix; NULL = its "default_prompt_name" if any, "" = none.
                              Not together with prefix. Default NULL */
} wick_embedder_params;

wick_embedder_params wick_embedder_params_default(void);

/* Loads an encoder folder: config.json (model_type bert, xlm-roberta or mpnet) +
 * model.safetensors, or a decoder folder (any family wick_model_load reads, architectures
 * "...ForCausalLM" or the base "...Model" saved without lm_head, as Qwen3-Embedding ships;
 * causal attention, each text its own sequence, no padding), the tokenizer (tokenizer.json or
 * vocab.txt; optional: without one only wick_embed_ids works), and when present the
 * sentence-transformers description (modules.json, sentence_bert_config.json, <pooling
 * path>/config.json, each Dense module's config.json + model.safetensors,
 * config_sentence_transformers.json's prompts). params may be NULL (defaults) and override
 * the folder. Fails with WICK_ERR_UNSUPPORTED naming the module or field for setups wick
 * cannot reproduce (other model types, several pooling modes at once, include_prompt false,
 * Dense activations other than Identity/Tanh/ReLU/Sigmoid), WICK_ERR_NOT_FOUND for a
 * prompt_name the folder lacks. *out NULL on failure. */
wick_status wick_embedder_load(const char *path, const wick_embedder_params *params,
                               wick_embedder **out);
void wick_embedder_free(wick_embedder *e);

/* Length of one embedding (the last Dense module's out_features, else hidden_size); 0 for
 * NULL. */
int wick_embedder_dim(const wick_embedder *e);
/* Effective settings after folder + params: pooling (never DEFAULT), normalize, max_length. */
wick_pooling wick_embedder_pooling(const wick_embedder *e);
bool wick_embedder_normalize(const wick_embedder *e);
int wick_embedder_max_length(const wick_embedder *e);

/* Embeds n texts (NUL-terminated UTF-8; prefix prepended, [CLS]/[SEP] added, truncated to
 * max_length) into out: n × dim floats, row i for texts[i]. n == 0 does nothing.
 * WICK_ERR_UNSUPPORTED when the folder had no tokenizer. On failure out is unspecified. */
wick_status wick_embed(wick_embedder *e, const char *const *texts, int n, float *out);

/* Lower level: n sequences of token ids, right-padded to seq_len (row-major n × seq_len).
 * mask: n × seq_len of 0/1, each row a run of 1s then 0s with at least one 1 (NULL: all
 * valid); token types are all 0 (decoders: the valid ids of each row are one sequence). Ids of valid positions must be in [0, vocab); seq_len must
 * not exceed wick_embedder's position limit (max_position_embeddings, less the padding offset
 * for XLM-R / MPNet). Outputs (each optional, caller-owned):
 *   embeddings: n × dim, pooled, through the Dense modules, normalised per the settings;
 *   hidden:     n × seq_len × hidden_size, the last hidden state (rows of padded positions
 *               are 0; hidden_size = dim unless the folder has Dense modules);
 *   pooler:     n × hidden_size, BERT's pooler tanh(dense(h[CLS])) (WICK_ERR_NOT_FOUND when the
 *               checkpoint has no pooler weights). No prefix and no truncation here. */
wick_status wick_embed_ids(wick_embedder *e, const int32_t *ids, const int32_t *mask, int n,
                           int seq_len, float *embeddings, float *hidden, float *pooler);

/* The ids wick_embed feeds the encoder for `text`: prefix, [CLS]/[SEP], truncation to
 * max_length. cap >= wick_embedder_max_length(e) is always enough; *n receives the count.
 * WICK_ERR_BUFFER_TOO_SMALL (with *n = the count) when cap is smaller. */
wick_status wick_embedder_tokenize(wick_embedder *e, const char *text, int32_t *ids, int cap,
                                   int *n);

/* The embedder's tokenizer (NULL when the folder had none). Owned by the embedder. */
const wick_tokenizer *wick_embedder_tokenizer(const wick_embedder *e);

#ifdef __cplusplus
}
#endif
#endif /* WICK_H */
