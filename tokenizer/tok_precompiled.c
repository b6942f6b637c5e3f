/* tok_precompiled.c — the Precompiled normalizer of tokenizer.json: SentencePiece's
 * precompiled_charsmap, a base64 blob that holds
 *   u32 little-endian: size of the trie in bytes (a multiple of 4)
 *   the trie: a Darts double array of u32 units, keys are UTF-8 byte strings
 *   the replacement strings: UTF-8, each ended by a NUL (the last may end with the blob)
 * A key's value is the offset of its replacement string.
 *
 * Applied as HF tokenizers applies it (not as SentencePiece itself does): the text is cut into
 * extended grapheme clusters; a cluster shorter than 6 bytes whose bytes start with a key is
 * replaced whole by the string of the shortest such key; otherwise each character of the
 * cluster is replaced by the string of the shortest key it starts with, or copied. Invalid
 * UTF-8 bytes (HF never sees them) are copied one by one.
 *
 * The blob is untrusted: at load every reachable unit of the trie is visited once and each
 * index and value is checked against the array and the string table, so the matcher can
 * trust them (it checks indexes anyway: a second line of defence costs two compares a byte).
 * Not here: SentencePiece's own longest-match normalizer, NMT normalizers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "base/error.h"
#include "tokenizer/tok_impl.h"

/* Largest decoded charsmap: load-time checking visits up to 256 slots per unit. Real
 * ones (nmt_nfkc, nfkc_cf) are about 240 KB. */
#define CHARSMAP_MAX (16u << 20)

/* The fields of a Darts unit. */
static inline bool unit_has_leaf(uint32_t u) { return (u >> 8) & 1; }
static inline uint32_t unit_value(uint32_t u) { return u & 0x7FFFFFFFu; }
static inline uint32_t unit_label(uint32_t u) { return u & 0x800000FFu; }
static inline uint32_t unit_offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }

void tok_charsmap_free(tok_charsmap *cm) {
    free(cm->units);
    free(cm->strs);
    memset(cm, 0, sizeof *cm);
}

static int b64_val(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Standard base64 with optional '=' padding; false on any other character or a bad length. */
static bool b64_decode(const char *s, size_t n, unsigned char *out, size_t *outn) {
    while (n && s[n - 1] == '=') n--;
    if (n % 4 == 1) return false;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_val((unsigned char)s[i]);
        if (v < 0) return false;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    *outn = o;
    return true;
}

/* Visits every node reachable from the root, checking each child index, each leaf's value
 * unit and each value (an offset into the strings). err: a description of the first fault. */
static bool check_trie(const tok_charsmap *cm, char *err, size_t errn) {
    size_t n = cm->n_units;
    if (!n) return true;
    /* a node's children are base ^ c for c < 256: bases past this bound have none */
    size_t nb = (n + 255) & ~(size_t)255;
    uint8_t *seen = calloc((nb + 7) / 8, 1);
    uint32_t *stack = malloc(nb * sizeof *stack);
    bool ok = seen && stack;
    if (!ok) snprintf(err, errn, "out of memory");
    size_t sp = 0;
    uint32_t root = unit_offset(cm->units[0]);
    if (ok && root < nb) {
        seen[root / 8] |= (uint8_t)(1u << (root % 8));
        stack[sp++] = root;
    }
    while (ok && sp) {
        uint32_t base = stack[--sp];
        for (uint32_t c = 1; ok && c < 256; c++) {
            uint32_t child = base ^ c;
            if (child >= n || unit_label(cm->units[child]) != c) continue;
            uint32_t next = child ^ unit_offset(cm->units[child]);
            if (unit_has_leaf(cm->units[child])) {
                if (next >= n) {
                    snprintf(err, errn, "trie unit %u: its value unit %u is past the end of the "
                             "trie (%zu units)", child, next, n);
                    ok = false;
                } else if (unit_value(cm->units[next]) >= cm->n_strs) {
                    snprintf(err, errn, "trie unit %u: string offset %u is past the end of the "
                             "replacement strings (%zu bytes)", next, unit_value(cm->units[next]),
                             cm->n_strs);
                    ok = false;
                }
            }
            if (ok && next < nb && !(seen[next / 8] & (1u << (next % 8)))) {
                seen[next / 8] |= (uint8_t)(1u << (next % 8));
                stack[sp++] = next;
            }
        }
    }
    free(seen);
    free(stack);
    return ok;
}

wick_status tok_charsmap_parse(const char *file, const char *path, const char *b64, tok_charsmap *cm) {
    memset(cm, 0, sizeof *cm);
    size_t n64 = strlen(b64);
    if (n64 / 4 * 3 > CHARSMAP_MAX)
        return err_set(WICK_ERR_FORMAT, "%s: %s: larger than %u bytes", file, path, CHARSMAP_MAX);
    unsigned char *blob = malloc(n64 / 4 * 3 + 3);
    if (!blob) return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
    size_t len = 0;
    wick_status st = WICK_OK;
    if (!b64_decode(b64, n64, blob, &len)) {
        st = err_set(WICK_ERR_FORMAT, "%s: %s: not valid base64", file, path);
    } else if (len == 0) {
        /* an empty map changes nothing */
    } else if (len < 4) {
        st = err_set(WICK_ERR_FORMAT, "%s: %s: %zu bytes, shorter than its 4-byte header", file, path, len);
    } else {
        uint32_t tsz = (uint32_t)blob[0] | (uint32_t)blob[1] << 8 | (uint32_t)blob[2] << 16 |
                       (uint32_t)blob[3] << 24;
        if (tsz % 4 || tsz > len - 4) {
            st = err_set(WICK_ERR_FORMAT, "%s: %s: trie size %u is not a multiple of 4 within the "
                         "%zu bytes that follow the header", file, path, tsz, len - 4);
        } else {
            cm->n_units = tsz / 4;
            cm->n_strs = len - 4 - tsz;
            cm->units = malloc(cm->n_units ? tsz : 4);
            cm->strs = malloc(cm->n_strs + 1);
            if (!cm->units || !cm->strs) {
                st = err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
            } else {
                for (size_t k = 0; k < cm->n_units; k++) {
                    const unsigned char *p = blob + 4 + 4 * k;
                    cm->units[k] = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                                   (uint32_t)p[3] << 24;
                }
                memcpy(cm->strs, blob + 4 + tsz, cm->n_strs);
                cm->strs[cm->n_strs] = 0;
            }
        }
    }
    free(blob);
    if (st) return st;
    /* the strings: UTF-8 (NULs between them are single valid bytes) */
    for (size_t i = 0; i < cm->n_strs;) {
        size_t l = tok_utf8_valid_len((const unsigned char *)cm->strs + i, cm->n_strs - i);
        if (!l)
            return err_set(WICK_ERR_FORMAT, "%s: %s: replacement strings: invalid UTF-8 at byte %zu",
                           file, path, i);
        i += l;
    }
    char err[256];
    if (!check_trie(cm, err, sizeof err))
        return err_set(strcmp(err, "out of memory") ? WICK_ERR_FORMAT : WICK_ERR_NOMEM, "%s: %s: %s",
                       file, path, err);
    return WICK_OK;
}

/* The replacement of the shortest key that starts s[0, n), or NULL; *rl its length. */
static const char *lookup(const tok_charsmap *cm, const unsigned char *s, size_t n, size_t *rl) {
    if (!cm->n_units) return NULL;
    uint32_t pos = unit_offset(cm->units[0]);
    for (size_t i = 0; i < n && s[i]; i++) {
        pos ^= s[i];
        if (pos >= cm->n_units) return NULL;
        uint32_t u = cm->units[pos];
        if (unit_label(u) != s[i]) return NULL;
        pos ^= unit_offset(u);
        if (unit_has_leaf(u)) {
            if (pos >= cm->n_units) return NULL;
            uint32_t v = unit_value(cm->units[pos]);
            if (v >= cm->n_strs) return NULL;
            const char *r = cm->strs + v, *z = memchr(r, 0, cm->n_strs - v);
            *rl = z ? (size_t)(z - r) : cm->n_strs - v;
            return r;
        }
    }
    return NULL;
}

static bool put_capped(tok_buf *out, const char *s, size_t n, size_t max, bool *over) {
    if (out->len + n > max) {
        *over = true;
        return false;
    }
    return tok_buf_put(out, s, n);
}

bool tok_charsmap_apply(const tok_charsmap *cm, const char *s, size_t n, tok_buf *out, size_t max,
                        bool *over) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        /* one grapheme cluster s[i, e), or one invalid byte */
        size_t adv;
        uint32_t c = tok_utf8_decode(u + i, n - i, &adv);
        size_t e = i + adv;
        if (c != 0xFFFFFFFFu) {
            utf8proc_int32_t state = 0;
            uint32_t prev = c;
            while (e < n) {
                uint32_t d = tok_utf8_decode(u + e, n - e, &adv);
                if (d == 0xFFFFFFFFu ||
                    utf8proc_grapheme_break_stateful((utf8proc_int32_t)prev, (utf8proc_int32_t)d, &state))
                    break;
                prev = d;
                e += adv;
            }
        }
        size_t rl;
        const char *r = e - i < 6 ? lookup(cm, u + i, e - i, &rl) : NULL;
        if (r) {
            if (!put_capped(out, r, rl, max, over)) return false;
            i = e;
            continue;
        }
        while (i < e) {  /* character by character */
            tok_utf8_decode(u + i, e - i, &adv);
            r = lookup(cm, u + i, adv, &rl);
            if (!(r ? put_capped(out, r, rl, max, over) : put_capped(out, s + i, adv, max, over)))
                return false;
            i += adv;
        }
    }
    return true;
}
