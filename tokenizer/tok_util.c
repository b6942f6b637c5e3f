/* tok_util.c — small building blocks of the tokenizer: growable buffers, the string->id and
 * (id,id)->merge hash maps, PCRE2 regex wrappers, UTF-8 helpers and the GPT-2 byte-level
 * alphabet. No tokenizer semantics live here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <utf8proc.h>

#include "base/error.h"
#include "tokenizer/tok_impl.h"
#include "tokenizer/tokenizer_internal.h"

bool tok_buf_grow(tok_buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return true;
    size_t nc = b->cap ? b->cap : 64;
    while (nc < b->len + extra + 1) nc *= 2;
    char *np = realloc(b->p, nc);
    if (!np) return false;
    b->p = np;
    b->cap = nc;
    return true;
}

void tok_buf_free(tok_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- hashing: a multiply-xor mix over 8-byte words, keyed per process ----
 * The tables hold strings from files and from text to encode (a server's clients), so the
 * start state is a random 64-bit key drawn once per process: without it, keys chosen to
 * collide (a crafted vocabulary, or words sent to the encoder's word cache) would turn every
 * lookup into a walk of one long probe chain. No output depends on the key: tables are only
 * probed, never iterated to produce results. */
static uint64_t g_hash_seed;
static pthread_once_t g_hash_once = PTHREAD_ONCE_INIT;

static void hash_seed_init(void) {
    uint64_t k = 0;
    if (getrandom(&k, sizeof k, GRND_NONBLOCK) != (ssize_t)sizeof k) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        k = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec ^
            (uint64_t)(uintptr_t)&k ^ (uint64_t)getpid() << 32;
    }
    g_hash_seed = k;
}

uint64_t tok_hash_seed(void) {
    pthread_once(&g_hash_once, hash_seed_init);
    return g_hash_seed;
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = tok_hash_seed() ^ 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

static size_t pow2_for(size_t expect) {
    size_t c = 16;
    while (c < expect * 2) c *= 2;
    return c;
}

bool tok_smap_init(tok_smap *m, size_t expect) {
    memset(m, 0, sizeof *m);
    m->cap = pow2_for(expect);
    m->e = calloc(m->cap, sizeof *m->e);
    return m->e != NULL;
}

/* Inserts a key known to be absent (rehash). */
static void smap_insert_new(tok_smap *m, const tok_sent *src, uint64_t h) {
    size_t mask = m->cap - 1, i = h & mask;
    while (m->e[i].key) i = (i + 1) & mask;
    m->e[i] = *src;
    m->n++;
}

static bool smap_grow(tok_smap *m) {
    tok_smap nm;
    if (!tok_smap_init(&nm, m->cap)) return false;
    for (size_t i = 0; i < m->cap; i++)
        if (m->e[i].key) smap_insert_new(&nm, &m->e[i], hash_bytes(m->e[i].key, m->e[i].klen));
    tok_smap_free(m);
    *m = nm;
    return true;
}

bool tok_smap_put(tok_smap *m, const char *k, size_t kl, int32_t v) {
    return tok_smap_put_h(m, k, kl, v, hash_bytes(k, kl));
}

bool tok_smap_put_h(tok_smap *m, const char *k, size_t kl, int32_t v, uint64_t h) {
    if ((m->n + 1) * 2 > m->cap && !smap_grow(m)) return false;
    uint32_t tag = (uint32_t)(h >> 32);
    size_t mask = m->cap - 1, i = h & mask;
    while (m->e[i].key) {
        tok_sent *e = &m->e[i];
        if (e->tag == tag && e->klen == kl && memcmp(e->key, k, kl) == 0) {
            e->val = v;
            return true;
        }
        i = (i + 1) & mask;
    }
    m->e[i] = (tok_sent){k, (uint32_t)kl, tag, v};
    m->n++;
    return true;
}

uint64_t tok_smap_hash(const char *k, size_t kl) { return hash_bytes(k, kl); }

int32_t tok_smap_get(const tok_smap *m, const char *k, size_t kl) {
    return tok_smap_get_h(m, k, kl, hash_bytes(k, kl));
}

int32_t tok_smap_get_h(const tok_smap *m, const char *k, size_t kl, uint64_t h) {
    if (!m->cap) return -1;
    uint32_t tag = (uint32_t)(h >> 32);
    size_t mask = m->cap - 1, i = h & mask;
    while (m->e[i].key) {
        const tok_sent *e = &m->e[i];
        if (e->tag == tag && e->klen == kl && memcmp(e->key, k, kl) == 0) return e->val;
        i = (i + 1) & mask;
    }
    return -1;
}

void tok_smap_free(tok_smap *m) {
    free(m->e);
    memset(m, 0, sizeof *m);
}

static inline uint64_t pair_hash(uint64_t k) {
    k ^= g_hash_seed; /* set by tok_pmap_init */
    k *= 0xbf58476d1ce4e5b9ull;
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

bool tok_pmap_init(tok_pmap *m, size_t expect) {
    (void)tok_hash_seed();
    memset(m, 0, sizeof *m);
    m->cap = pow2_for(expect);
    m->keys = calloc(m->cap, sizeof *m->keys);
    m->rank = malloc(m->cap * sizeof *m->rank);
    m->merged = malloc(m->cap * sizeof *m->merged);
    return m->keys && m->rank && m->merged;
}

bool tok_pmap_put(tok_pmap *m, int32_t a, int32_t b, int32_t rank, int32_t merged) {
    if ((m->n + 1) * 2 > m->cap) {
        tok_pmap nm;
        if (!tok_pmap_init(&nm, m->cap)) {
            tok_pmap_free(&nm);
            return false;
        }
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i]) {
                uint64_t k = m->keys[i] - 1;
                tok_pmap_put(&nm, (int32_t)(k >> 32), (int32_t)(uint32_t)k, m->rank[i],
                             m->merged[i]);
            }
        tok_pmap_free(m);
        *m = nm;
    }
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t mask = m->cap - 1, i = pair_hash(key) & mask;
    while (m->keys[i]) {
        if (m->keys[i] == key) return true;  /* first (lowest-rank) merge wins */
        i = (i + 1) & mask;
    }
    m->keys[i] = key;
    m->rank[i] = rank;
    m->merged[i] = merged;
    m->n++;
    return true;
}

void tok_pmap_prefetch(const tok_pmap *m, int32_t a, int32_t b) {
    if (!m->cap) return;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t i = pair_hash(key) & (m->cap - 1);
    __builtin_prefetch(&m->keys[i]);
    __builtin_prefetch(&m->rank[i]);
    __builtin_prefetch(&m->merged[i]);
}

bool tok_pmap_get(const tok_pmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *merged) {
    if (!m->cap) return false;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t mask = m->cap - 1, i = pair_hash(key) & mask;
    while (m->keys[i]) {
        if (m->keys[i] == key) {
            *rank = m->rank[i];
            *merged = m->merged[i];
            return true;
        }
        i = (i + 1) & mask;
    }
    return false;
}

void tok_pmap_free(tok_pmap *m) {
    free(m->keys);
    free(m->rank);
    free(m->merged);
    memset(m, 0, sizeof *m);
}

/* ---- regex ---- */
bool tok_regex_compile(tok_regex *re, const char *pattern, bool literal, char *err, size_t errn) {
    int ec;
    PCRE2_SIZE eo;
    /* PCRE2_LITERAL refuses PCRE2_UCP ("invalid option bits"), which means nothing for a
     * literal anyway: with it every Split of a {"String": ...} pattern failed to load */
    uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    re->code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opts, &ec, &eo, NULL);
    if (!re->code) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        snprintf(err, errn, "regex '%s' at %zu: %s", pattern, (size_t)eo, (const char *)msg);
        return false;
    }
    pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);  /* falls back to the interpreter */
    return true;
}

void tok_regex_free(tok_regex *re) {
    if (re->code) pcre2_code_free(re->code);
    re->code = NULL;
}

static _Thread_local int regex_rc;  /* see tok_regex_failed */

int tok_regex_failed(void) { return regex_rc; }
void tok_regex_clear(void) { regex_rc = 0; }

wick_status tok_regex_error(const char *who) {
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(regex_rc, msg, sizeof msg);
    return err_set(WICK_ERR_FORMAT, "%s: a regex of the tokenizer failed: %s", who, (const char *)msg);
}

bool tok_regex_next(const tok_regex *re, pcre2_match_data *md, const char *s, size_t n,
                    size_t from, size_t *ms, size_t *me) {
    while (from <= n) {
        int rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, from, 0, md, NULL);
        if (rc < 0) {
            if (rc != PCRE2_ERROR_NOMATCH) regex_rc = rc;
            return false;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] > ov[0]) {
            *ms = ov[0];
            *me = ov[1];
            return true;
        }
        /* Empty match: HF (onig find_iter) skips it; move one character on. */
        size_t p = ov[0] + 1;
        while (p < n && ((unsigned char)s[p] & 0xC0) == 0x80) p++;
        from = p;
    }
    return false;
}

/* ---- UTF-8 ---- */
size_t tok_utf8_valid_len(const unsigned char *s, size_t n) {
    if (!n) return 0;
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t l;
    uint32_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) l = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        l = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        l = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if (n < l) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < l; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return l;
}

uint32_t tok_utf8_decode(const unsigned char *s, size_t n, size_t *adv) {
    size_t l = tok_utf8_valid_len(s, n);
    if (!l) {
        *adv = 1;
        return 0xFFFFFFFFu;
    }
    *adv = l;
    if (l == 1) return s[0];
    if (l == 2) return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    if (l == 3) return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
           ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
}

size_t tok_utf8_encode(uint32_t cp, char *o) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* GPT-2 byte-level alphabet: printable Latin-1 bytes map to themselves, the other 68 bytes to
 * U+0100.. in byte order, so every byte has a visible one-character token. */
const uint16_t tok_byte_to_cp[256] = {
    256, 257, 258, 259, 260, 261, 262, 263, 264, 265, 266, 267,
    268, 269, 270, 271, 272, 273, 274, 275, 276, 277, 278, 279,
    280, 281, 282, 283, 284, 285, 286, 287, 288, 33, 34, 35,
    36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47,
    48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
    60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71,
    72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83,
    84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95,
    96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107,
    108, 109, 110, 111, 112, 113, 114, 115, 116, 117, 118, 119,
    120, 121, 122, 123, 124, 125, 126, 289, 290, 291, 292, 293,
    294, 295, 296, 297, 298, 299, 300, 301, 302, 303, 304, 305,
    306, 307, 308, 309, 310, 311, 312, 313, 314, 315, 316, 317,
    318, 319, 320, 321, 322, 161, 162, 163, 164, 165, 166, 167,
    168, 169, 170, 171, 172, 323, 174, 175, 176, 177, 178, 179,
    180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 190, 191,
    192, 193, 194, 195, 196, 197, 198, 199, 200, 201, 202, 203,
    204, 205, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215,
    216, 217, 218, 219, 220, 221, 222, 223, 224, 225, 226, 227,
    228, 229, 230, 231, 232, 233, 234, 235, 236, 237, 238, 239,
    240, 241, 242, 243, 244, 245, 246, 247, 248, 249, 250, 251,
    252, 253, 254, 255,
};

/* Inverse of tok_byte_to_cp for code points < 324 (-1: not in the alphabet). */
const int16_t tok_cp_to_byte[324] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47,
    48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
    64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79,
    80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95,
    96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111,
    112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, -1, 174, 175,
    176, 177, 178, 179, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 190, 191,
    192, 193, 194, 195, 196, 197, 198, 199, 200, 201, 202, 203, 204, 205, 206, 207,
    208, 209, 210, 211, 212, 213, 214, 215, 216, 217, 218, 219, 220, 221, 222, 223,
    224, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234, 235, 236, 237, 238, 239,
    240, 241, 242, 243, 244, 245, 246, 247, 248, 249, 250, 251, 252, 253, 254, 255,
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
    32, 127, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141,
    142, 143, 144, 145, 146, 147, 148, 149, 150, 151, 152, 153, 154, 155, 156, 157,
    158, 159, 160, 173,
};

bool tok_is_ws(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

bool tok_is_alnum(uint32_t c) {
    if (c > 0x10FFFF) return false;
    int cat = utf8proc_category((utf8proc_int32_t)c);
    return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
           (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
}

int tokenizer_post_count(const wick_tokenizer *t) { return t && t->post.present ? t->post.npost : 0; }
