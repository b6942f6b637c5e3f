/* tok_impl.h — the tokenizer's internal data model, shared by the tokenizer/tok_*.c files.
 *
 * Pipeline (mirrors Hugging Face `tokenizers`, offsets are not tracked because wick never
 * returns them):
 *   raw bytes -> added-token split (non-normalized tokens on raw text) -> normalizer per
 *   segment -> added-token split (normalized tokens) -> pre-tokenizer -> model (BPE /
 *   WordPiece / Unigram / WordLevel) -> post-processor (only with add_special).
 * Decoding: ids -> token strings -> decoder chain, run as a streaming machine so the batch
 * detokenizer and the streaming one are the same code (tok_decode.c).
 * Not here: truncation, padding, offsets. */
#ifndef WICK_TOK_IMPL_H
#define WICK_TOK_IMPL_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "wick.h"

/* Ids of a tokenizer.json lie below tok_id_limit(vocab entries + added tokens), i.e.
 * 2 × entries + 1024 (at most INT32_MAX). Real files number their tokens 0..N-1, a few with
 * holes; the id tables are sized by the largest id, so the rule keeps them within a small
 * multiple of what the file holds (without it a 62-byte file with the id 1e8 cost 1.3 GB). */
static inline int64_t tok_id_limit(size_t entries) {
    return entries > (size_t)INT32_MAX / 2 - 1024 ? (int64_t)INT32_MAX : 2 * (int64_t)entries + 1024;
}

/* ---- growable byte buffer ---- */
typedef struct tok_buf {
    char *p;
    size_t len, cap;
} tok_buf;
bool tok_buf_grow(tok_buf *b, size_t extra);  /* slow path of tok_buf_reserve */
/* Makes room for `extra` more bytes plus a NUL. */
static inline bool tok_buf_reserve(tok_buf *b, size_t extra) {
    return b->len + extra + 1 <= b->cap || tok_buf_grow(b, extra);
}
/* Appends n bytes and keeps the buffer NUL-terminated. */
static inline bool tok_buf_put(tok_buf *b, const void *s, size_t n) {
    if (!tok_buf_reserve(b, n)) return false;
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return true;
}
static inline bool tok_buf_putc(tok_buf *b, char c) { return tok_buf_put(b, &c, 1); }
void tok_buf_free(tok_buf *b);

/* ---- string -> int32 open-addressing hash map (keys borrowed, must outlive the map) ---- */
typedef struct tok_sent {
    const char *key;           /* NULL: empty slot */
    uint32_t klen, tag;        /* tag: high bits of the hash, compared before the bytes */
    int32_t val;
} tok_sent;
typedef struct tok_smap {
    tok_sent *e;               /* one array, so a probe touches one cache line */
    size_t cap, n;             /* cap is a power of two */
} tok_smap;
bool tok_smap_init(tok_smap *m, size_t expect);
/* Split form of get, for batched lookups: hash first, prefetch the slot, then probe. */
uint64_t tok_smap_hash(const char *k, size_t kl);
/* The per-process random key of the tokenizer's hash tables (tok_util.c). */
uint64_t tok_hash_seed(void);
static inline void tok_smap_prefetch(const tok_smap *m, uint64_t h) {
    if (m->cap) __builtin_prefetch(&m->e[h & (m->cap - 1)]);
}
int32_t tok_smap_get_h(const tok_smap *m, const char *k, size_t kl, uint64_t h);
bool tok_smap_put_h(tok_smap *m, const char *k, size_t kl, int32_t v, uint64_t h);
bool tok_smap_put(tok_smap *m, const char *k, size_t kl, int32_t v);  /* overwrites */
int32_t tok_smap_get(const tok_smap *m, const char *k, size_t kl);      /* -1 if absent */
void tok_smap_free(tok_smap *m);

/* ---- (left id, right id) -> (rank, merged id) map for BPE merges ---- */
typedef struct tok_pmap {
    uint64_t *keys;   /* (left << 32 | right) + 1; 0 marks an empty slot */
    int32_t *rank, *merged;
    size_t cap, n;
} tok_pmap;
bool tok_pmap_init(tok_pmap *m, size_t expect);
bool tok_pmap_put(tok_pmap *m, int32_t a, int32_t b, int32_t rank, int32_t merged);
bool tok_pmap_get(const tok_pmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *merged);
void tok_pmap_prefetch(const tok_pmap *m, int32_t a, int32_t b);
void tok_pmap_free(tok_pmap *m);

/* ---- a compiled regex (PCRE2, UTF + UCP, JIT when available) ---- */
typedef struct tok_regex {
    pcre2_code *code;
} tok_regex;

/* ---- SentencePiece's precompiled_charsmap (tok_precompiled.c) ---- */
typedef struct tok_charsmap {
    uint32_t *units;           /* Darts double-array trie, (n_units) */
    size_t n_units;
    char *strs;                /* NUL-separated replacement strings, (n_strs) bytes */
    size_t n_strs;
} tok_charsmap;

/* ---- normalizers ---- */
typedef enum {
    NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_LOWER, NORM_STRIP_ACCENTS, NORM_REPLACE,
    NORM_PREPEND, NORM_BERT, NORM_STRIP, NORM_SEQ, NORM_PRECOMPILED
} tok_norm_kind;
typedef struct tok_norm {
    tok_norm_kind kind;
    char *str, *str2;          /* Replace: pattern (String) + content; Prepend: prepend */
    tok_regex re;              /* Replace with a Regex pattern (code NULL otherwise) */
    bool clean_text, chinese, strip_accents, lowercase;  /* BertNormalizer */
    bool left, right;          /* Strip */
    struct tok_norm *sub;      /* Sequence */
    int nsub;
    tok_charsmap cmap;         /* Precompiled (an empty map copies the text) */
} tok_norm;

/* ---- pre-tokenizers ---- */
typedef enum {
    SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS
} tok_split_behavior;
typedef enum {
    PRE_BYTELEVEL, PRE_SPLIT, PRE_METASPACE, PRE_WHITESPACE, PRE_WSSPLIT, PRE_BERT, PRE_PUNCT,
    PRE_DIGITS, PRE_SEQ
} tok_pre_kind;
typedef enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } tok_prepend;
typedef struct tok_pre {
    tok_pre_kind kind;
    tok_regex re;              /* Split (string patterns are compiled as escaped literals),
                                  ByteLevel use_regex, Whitespace */
    tok_split_behavior behavior;
    bool invert;
    bool add_prefix_space, use_regex;  /* ByteLevel */
    char repl[8];              /* Metaspace replacement (UTF-8) */
    tok_prepend prepend;
    bool split;                /* Metaspace split */
    bool individual_digits;
    struct tok_pre *sub;
    int nsub;
} tok_pre;

/* ---- decoders ---- */
typedef enum {
    DEC_BYTELEVEL, DEC_METASPACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_REPLACE,
    DEC_WORDPIECE, DEC_BPE_SUFFIX
} tok_dec_kind;
typedef struct tok_dec {   /* a flat list: a Sequence is flattened at load */
    tok_dec_kind kind;
    char repl[8];
    tok_prepend prepend;
    char *str, *str2;          /* Replace pattern/content; WordPiece prefix; BPEDecoder suffix */
    tok_regex re;
    uint32_t content;          /* Strip: code point */
    int start, stop;
    bool cleanup;
} tok_dec;

/* ---- post-processor: ids to put around the single sequence ---- */
typedef struct tok_post {
    bool present;
    int32_t *pre, *post;       /* ids before / after the sequence */
    int npre, npost;
} tok_post;

/* ---- added tokens ---- */
typedef struct tok_added {
    int32_t id;
    char *content;
    uint32_t len;
    bool special, lstrip, rstrip, single_word, normalized;
} tok_added;

typedef enum { MODEL_BPE, MODEL_WORDPIECE, MODEL_UNIGRAM, MODEL_WORDLEVEL } tok_model_kind;

/* Longest Unigram piece, bytes: the Viterbi pass walks the piece trie from every position of
 * a word, so a word costs O(bytes x longest piece) (every match is a lattice edge, so no
 * algorithm does better). SentencePiece's default max_piece_length is 16 characters (at most
 * 64 bytes); a hostile file with a 1024-byte piece costs up to 1024 trie steps per byte. */
#define TOK_UNIGRAM_MAX_PIECE 1024

struct wick_tokenizer {
    /* vocabulary: id -> string (NUL-terminated, in `strs`), string -> id */
    char **id_str;
    uint32_t *id_len;
    int32_t n_ids;
    tok_smap vocab;            /* model vocab + added tokens */
    uint32_t max_tok_len;      /* longest string in `vocab`, bytes (WordPiece's longest try) */
    char *strs;                /* arena for model vocab strings */
    bool *is_special;          /* per id: an added token marked special */

    tok_model_kind model;
    /* BPE */
    tok_pmap merges;
    int32_t cp_id[512];        /* id of the one-code-point token for cp < 512, or -1 (covers
                                  ASCII and the byte-level alphabet: the BPE's fast path) */
    int32_t byte_fallback_id[256]; /* <0xNN> ids when byte_fallback */
    bool byte_fallback, fuse_unk, ignore_merges;
    char *cont_prefix, *eow_suffix;  /* BPE continuing_subword_prefix / end_of_word_suffix */
    int32_t unk_id;
    /* WordPiece */
    char *wp_prefix;
    int wp_max_chars;
    /* Unigram: score per model id, (ug_n); a byte trie of the pieces like the added-token
     * matcher below (ug_root: the root's children, ug_edges: (node, byte) -> child in the
     * rank field, ug_term[node]: model id of the piece ending there or -1). */
    double *ug_score;
    int32_t ug_n;
    double ug_unk_score;       /* lowest score - 10, HF's penalty for an unknown character */
    tok_pmap ug_edges;
    int32_t *ug_term;
    int32_t ug_root[256];

    tok_norm *norm;            /* NULL: none */
    tok_pre *pre;              /* NULL: none */
    tok_dec *dec;              /* flat list, NULL/0: join with spaces */
    int ndec;
    tok_post post;

    tok_added *added;
    int nadded, cap_added;
    /* added-token matcher, per set (0: normalized=false, matched on raw text; 1: normalized):
     * a trie of the contents. Node 0 is the root; am_root[set][b] is the root's child for byte
     * b (or -1), deeper edges are am_edges[set]: (node, byte) -> child (the pmap's rank field).
     * am_term[set][node]: index into `added` of the token ending there, or -1. Finding the
     * longest token at a position costs one step per byte matched, however many tokens share
     * a prefix (a bucket scan cost 30k comparisons per byte with 30k tokens starting alike). */
    tok_pmap am_edges[2];
    int32_t *am_term[2];
    int32_t am_root[2][256];
    bool has_added[2];
    int32_t specials[7];       /* wick_special -> id */

    uint64_t serial;           /* unique per load (never reused), keys per-thread caches */
    /* tokenizer_config.json values */
    char *chat_template;
    _Atomic(struct jinja_template *) chat_tpl;  /* compiled on first use (chat.c), or NULL */
    char *cfg_special[4];      /* bos, eos, pad, unk strings */
    _Atomic(void *) js_vocab;  /* structured output's token table, built on first use by
                                  infer/json_schema.c, which frees it through js_vocab_free */
    void (*js_vocab_free)(void *);
};

/* tok_regex.c */
bool tok_regex_compile(tok_regex *re, const char *pattern, bool literal, char *err, size_t errn);
void tok_regex_free(tok_regex *re);
/* Finds the next match in s[from..n); returns false when none. Invalid UTF-8 never matches.
 * Also false when PCRE2 fails (its match or depth limit: a pattern that backtracks
 * catastrophically); that error is remembered for the thread until tok_regex_clear, and callers
 * check tok_regex_failed after their loop so the failure is reported, never taken for the end
 * of the matches (which would tokenize the rest differently). */
bool tok_regex_next(const tok_regex *re, pcre2_match_data *md, const char *s, size_t n,
                    size_t from, size_t *ms, size_t *me);
int tok_regex_failed(void);   /* the PCRE2 error code since tok_regex_clear, or 0 */
void tok_regex_clear(void);
/* "wick_tokenize" or "detokenize" + ": a regex of the tokenizer failed: <PCRE2's message>" */
wick_status tok_regex_error(const char *who);

/* tok_normalize.c: appends normalize(s) to out. False when out of memory, or (with *over set)
 * when out, or any intermediate text of a Sequence, would pass `max` bytes: a Replace or
 * Prepend (or chain of them) in a hostile file can grow text without bound. */
bool tok_normalize(const tok_norm *nm, const char *s, size_t n, tok_buf *out, size_t max, bool *over);
/* What wick_tokenize passes as max for a segment of n bytes: no real normalizer comes near it
 * (NFKC's widest expansion, U+FDFA, is 11-fold). */
#define TOK_NORM_MAX(n) (64 * (n) + 4096)
void tok_norm_free(tok_norm *nm);

/* tok_pretok.c: a list of pieces living in one buffer. */
typedef struct tok_pieces {
    tok_buf text;
    uint32_t *off, *len;
    uint8_t *first;            /* piece begins at offset 0 of the original input */
    size_t n, cap;
} tok_pieces;
/* False when out of memory or when the text would pass 4 GiB (offsets are 32-bit). */
bool tok_pieces_add(tok_pieces *p, const char *s, size_t n, bool first);
void tok_pieces_clear(tok_pieces *p);
void tok_pieces_free(tok_pieces *p);
/* Pre-tokenizes `in` into `out` (out is cleared first; in may be modified as scratch). */
bool tok_pretokenize(const tok_pre *pre, tok_pieces *in, tok_pieces *out, pcre2_match_data *md);
void tok_pre_free(tok_pre *pre);

/* tok_model.c: appends the ids of one pre-tokenized word. */
typedef struct tok_scratch tok_scratch;
/* Unigram's per-word lattice: for each byte position, the best path ending there. */
typedef struct tok_lattice {
    double *score;             /* (n + 1) */
    int32_t *start, *id;       /* (n + 1): where the last piece starts, its id; start -1 unset */
    int32_t *ends;             /* (n + 1): the best path's piece ends, last first */
    size_t cap;
} tok_lattice;
tok_scratch *tok_scratch_new(void);
void tok_scratch_free(tok_scratch *s);
bool tok_model_word(const wick_tokenizer *t, const char *w, size_t n, tok_scratch *sc,
                    int32_t **ids, size_t *nids, size_t *cap);

/* tok_unigram.c (its loader is in tok_components.h): encodes one word by Viterbi. */
bool tok_unigram_word(const wick_tokenizer *t, const char *w, size_t n, tok_lattice *lat,
                      int32_t **ids, size_t *nids, size_t *cap);
void tok_unigram_free(wick_tokenizer *t);

/* tok_precompiled.c: decodes and checks a base64 precompiled_charsmap (`path` names the field
 * in errors); applies it to one segment (output capped at max as tok_normalize). */
wick_status tok_charsmap_parse(const char *file, const char *path, const char *b64, tok_charsmap *cm);
bool tok_charsmap_apply(const tok_charsmap *cm, const char *s, size_t n, tok_buf *out, size_t max,
                        bool *over);
void tok_charsmap_free(tok_charsmap *cm);

/* tok_load.c */
/* Grows the id tables (id_str, id_len, is_special) so that ids below n are valid. */
bool tok_ensure_ids(wick_tokenizer *t, int32_t n);
uint32_t tok_utf8_decode(const unsigned char *s, size_t n, size_t *adv);  /* 0xFFFFFFFF bad */
size_t tok_utf8_encode(uint32_t cp, char *out);
/* Unicode White_Space (Rust char::is_whitespace); false for 0xFFFFFFFF. */
bool tok_is_ws(uint32_t c);
/* Letter or number (L* or N* categories: Rust char::is_alphanumeric, less the few combining
 * marks that Unicode also calls Alphabetic). */
bool tok_is_alnum(uint32_t c);
/* length of the valid UTF-8 sequence at s (0 when invalid or truncated) */
size_t tok_utf8_valid_len(const unsigned char *s, size_t n);
extern const uint16_t tok_byte_to_cp[256];  /* GPT-2 byte-level alphabet */
extern const int16_t tok_cp_to_byte[324];   /* its inverse, -1 outside */

/* tok_decode.c */
void tok_dec_free_list(tok_dec *d, int n);
/* Every id's bytes as the decoder chain gives them for that token alone, before UTF-8 assembly
 * (a token holding part of a character gives those bytes): id i is bytes[offsets[i] ..
 * offsets[i+1]). Both malloc'd. Each token is decoded after the vocabulary's "a" (when it
 * has one), so stages that treat the start of the stream differently (Metaspace, Strip) see
 * it mid-stream; byte-fallback runs keep their raw bytes. */
wick_status tok_vocab_bytes(const wick_tokenizer *t, uint32_t **offsets, char **bytes);

#endif
