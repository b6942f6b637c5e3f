/* tok_targets.c — harness bodies for the tokenizer and its BPE trainer (see fuzz_targets.h): the input is a
 * tokenizer.json, optionally followed by "\n#TEXT#\n" and a text to encode. Each input that
 * loads is exercised through every public path a hostile file can reach: encode (with and
 * without special tokens, the text given or a few fixed ones), batch decode of the encoded ids
 * and of the highest ids of the vocabulary, the streaming detokenizer, and the special-token
 * queries. Load failures are fine; crashes, sanitizer reports, hangs and memory blow-ups are
 * the findings. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz_targets.h"
#include "tokenizer/bpe_train.h"

static void decode_all(const wick_tokenizer *t, const int32_t *ids, size_t n) {
    char buf[4096];
    size_t ol = 0;
    for (int skip = 0; skip < 2; skip++) {
        wick_detokenize(t, ids, n, skip, buf, sizeof buf, &ol);
        wick_detok *d = NULL;
        if (wick_detok_create(t, skip, &d) != WICK_OK) continue;
        const char *s;
        size_t l;
        for (size_t i = 0; i < n; i++) wick_detok_push(d, ids[i], &s, &l);
        wick_detok_flush(d, &s, &l);
        wick_detok_free(d);
    }
}

static void encode(const wick_tokenizer *t, const char *text, size_t len) {
    int32_t ids[1024];
    for (int special = 0; special < 2; special++) {
        int32_t n = wick_tokenize(t, text, len, special, ids, 1024);
        if (n > 0) decode_all(t, ids, (size_t)n);
    }
}

int fuzz_target_tokenizer(const uint8_t *data, size_t size) {
    static const char sep[] = "\n#TEXT#\n";
    const char *js = (const char *)data;
    size_t jl = size;
    const char *text = NULL;
    size_t tl = 0;
    const char *hit = memmem(data, size, sep, sizeof sep - 1);
    if (hit) {
        jl = (size_t)(hit - js);
        text = hit + sizeof sep - 1;
        tl = size - jl - (sizeof sep - 1);
    }
    wick_tokenizer *t = NULL;
    if (wick_tokenizer_load_mem(js, jl, NULL, &t) != WICK_OK) return 0;
    if (text) {
        encode(t, text, tl);
    } else {
        static const char *fixed[] = {"", "a", "Hello world!  \n\tx", " a  b ",
                                      "caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD 123 \xF0\x9F\x98\x80",
                                      "\xFF\xFE\xC3", "<s>[CLS]</s>"};
        for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) encode(t, fixed[i], strlen(fixed[i]));
    }
    int32_t nv = wick_tokenizer_vocab_size(t), ids[64];
    int32_t k = nv < 64 ? nv : 64;
    for (int32_t i = 0; i < k; i++) ids[i] = nv - 1 - i;  /* highest ids: added tokens, holes */
    decode_all(t, ids, (size_t)k);
    for (int w = 0; w < 7; w++) {
        int32_t id = wick_tokenizer_special(t, (wick_special)w);
        wick_token_str(t, id);
        wick_token_is_special(t, id);
    }
    wick_tokenizer_free(t);
    return 0;
}

/* The BPE trainer (bpe_train_mem): byte 0 picks the vocabulary size (259..769), the rest is
 * the training text. A tokenizer the trainer writes must load, and every line of ASCII text
 * must decode back to itself (byte-level BPE loses nothing; NFC keeps ASCII). */
int fuzz_target_bpe_train(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    wick_bpe_train_params p = wick_bpe_train_params_default();
    p.vocab_size = 259 + 2 * data[0];
    const char *text = (const char *)data + 1, *name = "fuzz.txt";
    const size_t n = size - 1;
    char *json = NULL;
    if (bpe_train_mem(&text, &n, &name, 1, &p, &json, NULL) != WICK_OK) return 0;
    wick_tokenizer *t = NULL;
    if (wick_tokenizer_load_mem(json, strlen(json), NULL, &t) != WICK_OK) abort();
    free(json);
    bool ascii = true;
    for (size_t i = 0; i < n; i++) ascii = ascii && text[i] > 0 && text[i] < 0x7f;
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(text + i, '\n', n - i);
        const size_t e = nl ? (size_t)(nl - text) + 1 : n;
        int32_t ids[4096];
        const int32_t k = e - i <= 4096 ? wick_tokenize(t, text + i, e - i, false, ids, 4096) : -1;
        if (ascii && k >= 0) {
            char buf[8192];
            size_t ol = 0;
            if (wick_detokenize(t, ids, (size_t)k, false, buf, sizeof buf, &ol) != WICK_OK ||
                ol != e - i || memcmp(buf, text + i, ol))
                abort();
        }
        i = e;
    }
    wick_tokenizer_free(t);
    return 0;
}
