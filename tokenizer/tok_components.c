/* tok_components.c — reads the normalizer, pre_tokenizer, post_processor and decoder sections
 * of tokenizer.json into the structs of tok_impl.h. Every unknown or unsupported component is
 * an error naming its JSON path ("pre_tokenizer.pretokenizers[1]: unsupported type 'X'"); no
 * component is ever skipped silently. Sequences may nest TOK_MAX_NESTING deep (the readers, the
 * encoder and the free functions recurse once per level). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "tokenizer/tok_components.h"

static char *dupstr(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool jbool(const cJSON *o, const char *key, bool def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return def;
}

static const char *jtype(const cJSON *o) { return jstr(o, "type"); }

/* One character (a Rust char in HF), valid UTF-8; false for "", several or invalid bytes. */
static bool one_char(const char *s, uint32_t *cp) {
    size_t n = strlen(s), adv;
    *cp = tok_utf8_decode((const unsigned char *)s, n, &adv);
    return n && *cp != 0xFFFFFFFFu && adv == n;
}

bool tok_json_int(const cJSON *v, int64_t lo, int64_t hi, int64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= (double)lo && d <= (double)hi)) return false;  /* also NaN */
    int64_t x = (int64_t)d;                                  /* in range: defined */
    if ((double)x != d) return false;                         /* a fraction */
    *out = x;
    return true;
}

/* Sequence inside Sequence: real files nest at most two deep; cJSON alone would allow ~500. */
enum { TOK_MAX_NESTING = 16 };

static wick_status too_deep(const char *file, const char *path) {
    return err_set(WICK_ERR_FORMAT, "%s: %s: Sequences nested deeper than %d levels", file, path,
                   TOK_MAX_NESTING);
}

static wick_status unsupported(const char *file, const char *path, const cJSON *o) {
    const char *ty = cJSON_IsObject(o) ? jtype(o) : NULL;
    if (!ty) return err_set(WICK_ERR_FORMAT, "%s: %s: expected an object with a \"type\"", file, path);
    return err_set(WICK_ERR_UNSUPPORTED, "%s: %s: unsupported type '%s'", file, path, ty);
}

/* Reads {"String": s} or {"Regex": r} into a compiled regex. */
static wick_status read_pattern(const char *file, const char *path, const cJSON *o, tok_regex *re,
                                char **literal) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    const char *s = jstr(p, "String"), *r = jstr(p, "Regex");
    char err[512];
    if (!s && !r)
        return err_set(WICK_ERR_FORMAT, "%s: %s.pattern: expected {\"String\": ...} or {\"Regex\": ...}", file, path);
    if (literal && s) {
        *literal = dupstr(s);
        return *literal ? WICK_OK : err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
    }
    if (!tok_regex_compile(re, s ? s : r, s != NULL, err, sizeof err))
        return err_set(WICK_ERR_FORMAT, "%s: %s.pattern: %s", file, path, err);
    return WICK_OK;
}

static bool read_behavior(const char *s, tok_split_behavior *b) {
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                  "Contiguous"};
    for (int i = 0; i < 5; i++)
        if (s && strcmp(s, names[i]) == 0) {
            *b = (tok_split_behavior)i;
            return true;
        }
    return false;
}

static wick_status read_metaspace(const char *file, const char *path, const cJSON *o, char repl[8],
                                  tok_prepend *pp) {
    const char *r = jstr(o, "replacement");
    if (!r) r = "\xE2\x96\x81";
    uint32_t cp;
    if (!one_char(r, &cp))  /* "" made the splitting loop stand still */
        return err_set(WICK_ERR_FORMAT, "%s: %s.replacement: expected one character", file, path);
    strcpy(repl, r);
    const char *sch = jstr(o, "prepend_scheme");
    if (sch) {
        if (strcmp(sch, "always") == 0) *pp = PREPEND_ALWAYS;
        else if (strcmp(sch, "first") == 0) *pp = PREPEND_FIRST;
        else if (strcmp(sch, "never") == 0) *pp = PREPEND_NEVER;
        else return err_set(WICK_ERR_FORMAT, "%s: %s.prepend_scheme: unknown '%s'", file, path, sch);
    } else {
        *pp = jbool(o, "add_prefix_space", true) ? PREPEND_ALWAYS : PREPEND_NEVER;
    }
    return WICK_OK;
}

static wick_status read_norm(const char *file, const char *path, const cJSON *o, tok_norm *nm,
                             int depth) {
    memset(nm, 0, sizeof *nm);
    const char *ty = cJSON_IsObject(o) ? jtype(o) : NULL;
    if (!ty) return unsupported(file, path, o);
    char sub[256];
    if (!strcmp(ty, "NFC")) nm->kind = NORM_NFC;
    else if (!strcmp(ty, "NFD")) nm->kind = NORM_NFD;
    else if (!strcmp(ty, "NFKC")) nm->kind = NORM_NFKC;
    else if (!strcmp(ty, "NFKD")) nm->kind = NORM_NFKD;
    else if (!strcmp(ty, "Lowercase")) nm->kind = NORM_LOWER;
    else if (!strcmp(ty, "StripAccents")) nm->kind = NORM_STRIP_ACCENTS;
    else if (!strcmp(ty, "Strip")) {
        nm->kind = NORM_STRIP;
        nm->left = jbool(o, "strip_left", true);
        nm->right = jbool(o, "strip_right", true);
    } else if (!strcmp(ty, "Prepend")) {
        nm->kind = NORM_PREPEND;
        const char *p = jstr(o, "prepend");
        if (!p) return err_set(WICK_ERR_FORMAT, "%s: %s.prepend: missing string", file, path);
        nm->str = dupstr(p);
    } else if (!strcmp(ty, "Replace")) {
        nm->kind = NORM_REPLACE;
        const char *c = jstr(o, "content");
        if (!c) return err_set(WICK_ERR_FORMAT, "%s: %s.content: missing string", file, path);
        nm->str2 = dupstr(c);
        wick_status st = read_pattern(file, path, o, &nm->re, &nm->str);
        if (st) return st;
    } else if (!strcmp(ty, "BertNormalizer")) {
        nm->kind = NORM_BERT;
        nm->clean_text = jbool(o, "clean_text", true);
        nm->chinese = jbool(o, "handle_chinese_chars", true);
        nm->lowercase = jbool(o, "lowercase", true);
        nm->strip_accents = jbool(o, "strip_accents", nm->lowercase);  /* null: follows lowercase */
    } else if (!strcmp(ty, "Precompiled")) {
        nm->kind = NORM_PRECOMPILED;
        const char *b = jstr(o, "precompiled_charsmap");
        snprintf(sub, sizeof sub, "%s.precompiled_charsmap", path);
        if (!b) return err_set(WICK_ERR_FORMAT, "%s: %s: expected a base64 string", file, sub);
        return tok_charsmap_parse(file, sub, b, &nm->cmap);
    } else if (!strcmp(ty, "Sequence")) {
        nm->kind = NORM_SEQ;
        if (depth >= TOK_MAX_NESTING) return too_deep(file, path);
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "normalizers");
        if (!cJSON_IsArray(arr)) return err_set(WICK_ERR_FORMAT, "%s: %s.normalizers: expected an array", file, path);
        int n = cJSON_GetArraySize(arr);
        nm->sub = calloc(n ? n : 1, sizeof *nm->sub);
        if (!nm->sub) return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
        int i = 0;
        for (const cJSON *e = arr->child; e && i < n; e = e->next, i++) {  /* not GetArrayItem: O(n²) */
            snprintf(sub, sizeof sub, "%s.normalizers[%d]", path, i);
            wick_status st = read_norm(file, sub, e, &nm->sub[i], depth + 1);
            nm->nsub = i + 1;
            if (st) return st;
        }
    } else {
        return unsupported(file, path, o);
    }
    return WICK_OK;
}

wick_status tok_read_norm(const char *file, const char *path, const cJSON *o, tok_norm *nm) {
    return read_norm(file, path, o, nm, 0);
}

/* HF Whitespace is \w+|[^\w\s]+ in Rust's regex, whose Unicode \w is Alphabetic, marks, Nd,
 * Pc and Join_Control (PCRE2's UCP \w is L, N and underscore: it split Devanagari vowel signs
 * and ZWJ emoji sequences off their words and joined "i²"), and whose \s is White_Space.
 * Then the GPT-2 word pattern (ByteLevel use_regex). */
#define RUST_W "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}"
static const char *RE_WHITESPACE = "[" RUST_W "]+|[^" RUST_W "\\p{White_Space}]+";
static const char *RE_GPT2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static wick_status read_pre(const char *file, const char *path, const cJSON *o, tok_pre *pre,
                            int depth) {
    memset(pre, 0, sizeof *pre);
    const char *ty = cJSON_IsObject(o) ? jtype(o) : NULL;
    if (!ty) return unsupported(file, path, o);
    char sub[256], err[512];
    if (!strcmp(ty, "ByteLevel")) {
        pre->kind = PRE_BYTELEVEL;
        pre->add_prefix_space = jbool(o, "add_prefix_space", true);
        pre->use_regex = jbool(o, "use_regex", true);
        if (pre->use_regex && !tok_regex_compile(&pre->re, RE_GPT2, false, err, sizeof err))
            return err_set(WICK_ERR_INTERNAL, "%s: %s: %s", file, path, err);
    } else if (!strcmp(ty, "Split")) {
        pre->kind = PRE_SPLIT;
        if (!read_behavior(jstr(o, "behavior"), &pre->behavior))
            return err_set(WICK_ERR_FORMAT, "%s: %s.behavior: unknown or missing", file, path);
        pre->invert = jbool(o, "invert", false);
        return read_pattern(file, path, o, &pre->re, NULL);
    } else if (!strcmp(ty, "Metaspace")) {
        pre->kind = PRE_METASPACE;
        pre->split = jbool(o, "split", true);
        return read_metaspace(file, path, o, pre->repl, &pre->prepend);
    } else if (!strcmp(ty, "Whitespace")) {
        pre->kind = PRE_WHITESPACE;
        if (!tok_regex_compile(&pre->re, RE_WHITESPACE, false, err, sizeof err))
            return err_set(WICK_ERR_INTERNAL, "%s: %s: %s", file, path, err);
    } else if (!strcmp(ty, "WhitespaceSplit")) {
        pre->kind = PRE_WSSPLIT;
    } else if (!strcmp(ty, "BertPreTokenizer")) {
        pre->kind = PRE_BERT;
    } else if (!strcmp(ty, "Punctuation")) {
        pre->kind = PRE_PUNCT;
        const char *b = jstr(o, "behavior");
        pre->behavior = SPLIT_ISOLATED;
        if (b && !read_behavior(b, &pre->behavior))
            return err_set(WICK_ERR_FORMAT, "%s: %s.behavior: unknown '%s'", file, path, b);
    } else if (!strcmp(ty, "Digits")) {
        pre->kind = PRE_DIGITS;
        pre->individual_digits = jbool(o, "individual_digits", false);
    } else if (!strcmp(ty, "Sequence")) {
        pre->kind = PRE_SEQ;
        if (depth >= TOK_MAX_NESTING) return too_deep(file, path);
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "pretokenizers");
        if (!cJSON_IsArray(arr)) return err_set(WICK_ERR_FORMAT, "%s: %s.pretokenizers: expected an array", file, path);
        int n = cJSON_GetArraySize(arr);
        pre->sub = calloc(n ? n : 1, sizeof *pre->sub);
        if (!pre->sub) return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
        int i = 0;
        for (const cJSON *e = arr->child; e && i < n; e = e->next, i++) {
            snprintf(sub, sizeof sub, "%s.pretokenizers[%d]", path, i);
            wick_status st = read_pre(file, sub, e, &pre->sub[i], depth + 1);
            pre->nsub = i + 1;
            if (st) return st;
        }
    } else {
        return unsupported(file, path, o);
    }
    return WICK_OK;
}

wick_status tok_read_pre(const char *file, const char *path, const cJSON *o, tok_pre *pre) {
    return read_pre(file, path, o, pre, 0);
}

/* Decoding runs the stages as a chain of calls (tok_decode.c), so their number is bounded. */
enum { TOK_MAX_DECODERS = 64 };

/* Strip start/stop (HF: counts of characters to strip): real files use 0 or 1. */
enum { TOK_MAX_STRIP = 1024 };

static wick_status add_dec(const char *file, const char *path, tok_dec **list, int *n, tok_dec d) {
    if (*n >= TOK_MAX_DECODERS)
        return err_set(WICK_ERR_FORMAT, "%s: %s: more than %d decoders in all", file, path,
                       TOK_MAX_DECODERS);
    tok_dec *nl = realloc(*list, (size_t)(*n + 1) * sizeof *nl);
    if (!nl) return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
    *list = nl;
    nl[(*n)++] = d;
    return WICK_OK;
}

static wick_status read_dec(const char *file, const char *path, const cJSON *o, tok_dec **list,
                            int *n, int depth) {
    const char *ty = cJSON_IsObject(o) ? jtype(o) : NULL;
    if (!ty) return unsupported(file, path, o);
    tok_dec d;
    memset(&d, 0, sizeof d);
    char sub[256];
    wick_status st = WICK_OK;
    if (!strcmp(ty, "ByteLevel")) d.kind = DEC_BYTELEVEL;
    else if (!strcmp(ty, "ByteFallback")) d.kind = DEC_BYTEFALLBACK;
    else if (!strcmp(ty, "Fuse")) d.kind = DEC_FUSE;
    else if (!strcmp(ty, "Metaspace")) {
        d.kind = DEC_METASPACE;
        st = read_metaspace(file, path, o, d.repl, &d.prepend);
    } else if (!strcmp(ty, "Strip")) {
        d.kind = DEC_STRIP;
        const char *c = jstr(o, "content");
        d.content = ' ';
        if (c && !one_char(c, &d.content))
            return err_set(WICK_ERR_FORMAT, "%s: %s.content: expected one character", file, path);
        static const char *keys[2] = {"start", "stop"};
        for (int k = 0; k < 2; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, keys[k]);
            int64_t x = 0;
            if (v && !cJSON_IsNull(v) && !tok_json_int(v, 0, TOK_MAX_STRIP, &x))
                return err_set(WICK_ERR_FORMAT, "%s: %s.%s: expected an integer in [0, %d]", file,
                               path, keys[k], TOK_MAX_STRIP);
            *(k ? &d.stop : &d.start) = (int)x;
        }
    } else if (!strcmp(ty, "Replace")) {
        d.kind = DEC_REPLACE;
        const char *c = jstr(o, "content");
        if (!c) return err_set(WICK_ERR_FORMAT, "%s: %s.content: missing string", file, path);
        d.str2 = dupstr(c);
        st = read_pattern(file, path, o, &d.re, &d.str);
    } else if (!strcmp(ty, "WordPiece")) {
        d.kind = DEC_WORDPIECE;
        const char *p = jstr(o, "prefix");
        d.str = dupstr(p ? p : "##");
        d.cleanup = jbool(o, "cleanup", true);
    } else if (!strcmp(ty, "BPEDecoder")) {
        d.kind = DEC_BPE_SUFFIX;
        const char *p = jstr(o, "suffix");
        d.str = dupstr(p ? p : "</w>");
    } else if (!strcmp(ty, "Sequence")) {
        if (depth >= TOK_MAX_NESTING) return too_deep(file, path);
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "decoders");
        if (!cJSON_IsArray(arr)) return err_set(WICK_ERR_FORMAT, "%s: %s.decoders: expected an array", file, path);
        int i = 0;
        for (const cJSON *e = arr->child; e; e = e->next, i++) {
            snprintf(sub, sizeof sub, "%s.decoders[%d]", path, i);
            st = read_dec(file, sub, e, list, n, depth + 1);
            if (st) return st;
        }
        return WICK_OK;
    } else {
        return unsupported(file, path, o);
    }
    wick_status st2 = add_dec(file, path, list, n, d);
    if (st2) {
        tok_dec_free_list(&d, 1);
        free(NULL);
        return st2;
    }
    return st;
}

wick_status tok_read_dec(const char *file, const char *path, const cJSON *o, tok_dec **list, int *n) {
    return read_dec(file, path, o, list, n, 0);
}

/* Ids a post-processor may put before or after the sequence, and items of a template (real
 * ones: one or two each); every encode with add_special copies them. */
enum { TOK_MAX_POST_IDS = 256 };

static wick_status too_many_post(const char *file, const char *path) {
    return err_set(WICK_ERR_FORMAT, "%s: %s: more than %d special tokens or template items", file,
                   path, TOK_MAX_POST_IDS);
}

static wick_status append_ids(const char *file, const char *path, int32_t **arr, int *n, int32_t id) {
    if (*n >= TOK_MAX_POST_IDS) return too_many_post(file, path);
    int32_t *na = realloc(*arr, (size_t)(*n + 1) * sizeof *na);
    if (!na) return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
    *arr = na;
    na[(*n)++] = id;
    return WICK_OK;
}

/* Reads ["[CLS]", 101]. The id is checked against the vocabulary once it is complete
 * (tok_load.c). */
static bool pair_id(const cJSON *o, const char *key, int32_t *id) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    int64_t v;
    if (!cJSON_IsArray(a) || !tok_json_int(cJSON_GetArrayItem(a, 1), 0, INT32_MAX, &v)) return false;
    *id = (int32_t)v;
    return true;
}

static wick_status read_post(const char *file, const char *path, const cJSON *o, tok_post *pp,
                             int depth) {
    const char *ty = cJSON_IsObject(o) ? jtype(o) : NULL;
    if (!ty) return unsupported(file, path, o);
    char sub[256];
    pp->present = true;
    if (!strcmp(ty, "ByteLevel")) return WICK_OK;
    if (!strcmp(ty, "BertProcessing") || !strcmp(ty, "RobertaProcessing")) {
        int32_t cls, sep;
        if (!pair_id(o, "cls", &cls) || !pair_id(o, "sep", &sep))
            return err_set(WICK_ERR_FORMAT, "%s: %s: expected cls/sep as [token, id]", file, path);
        /* Later processors of a Sequence wrap the earlier ones' output. */
        if (pp->npre >= TOK_MAX_POST_IDS) return too_many_post(file, path);
        int32_t *np = malloc((size_t)(pp->npre + 1) * sizeof *np);
        if (!np) return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
        np[0] = cls;
        if (pp->npre) memcpy(np + 1, pp->pre, (size_t)pp->npre * sizeof *np);
        free(pp->pre);
        pp->pre = np;
        pp->npre++;
        return append_ids(file, path, &pp->post, &pp->npost, sep);
    }
    if (!strcmp(ty, "TemplateProcessing")) {
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(o, "single");
        const cJSON *specials = cJSON_GetObjectItemCaseSensitive(o, "special_tokens");
        if (!cJSON_IsArray(single)) return err_set(WICK_ERR_FORMAT, "%s: %s.single: expected an array", file, path);
        int32_t *before = NULL, *after = NULL;
        int nb = 0, na = 0;
        bool seen_seq = false;
        wick_status st = WICK_OK;
        int i = 0;
        for (const cJSON *it = single->child; !st && it; it = it->next, i++) {
            const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
            if (i >= TOK_MAX_POST_IDS) {  /* each item looks its token up in special_tokens */
                st = too_many_post(file, path);
                break;
            }
            if (cJSON_GetObjectItemCaseSensitive(it, "Sequence")) {
                seen_seq = true;
                continue;
            }
            const char *name = jstr(sp, "id");
            const cJSON *ent = cJSON_GetObjectItemCaseSensitive(specials, name ? name : "");
            const cJSON *ids = cJSON_GetObjectItemCaseSensitive(ent, "ids");
            if (!name || !cJSON_IsArray(ids)) {
                snprintf(sub, sizeof sub, "%s.single[%d]", path, i);
                st = err_set(WICK_ERR_FORMAT, "%s: %s: special token '%s' not in special_tokens",
                             file, sub, name ? name : "?");
                break;
            }
            for (const cJSON *v = ids->child; !st && v; v = v->next) {
                int64_t id;
                if (!tok_json_int(v, 0, INT32_MAX, &id))
                    st = err_set(WICK_ERR_FORMAT, "%s: %s.special_tokens['%s'].ids: expected "
                                 "non-negative integer ids", file, path, name);
                else if (seen_seq) st = append_ids(file, path, &after, &na, (int32_t)id);
                else st = append_ids(file, path, &before, &nb, (int32_t)id);
            }
        }
        if (!st) {
            for (int i = 0; !st && i < pp->npre; i++) st = append_ids(file, path, &before, &nb, pp->pre[i]);
            for (int i = 0; !st && i < na; i++) st = append_ids(file, path, &pp->post, &pp->npost, after[i]);
        }
        if (!st) {
            free(pp->pre);
            pp->pre = before;
            pp->npre = nb;
            before = NULL;
        }
        free(before);
        free(after);
        return st;
    }
    if (!strcmp(ty, "Sequence")) {
        if (depth >= TOK_MAX_NESTING) return too_deep(file, path);
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "processors");
        if (!cJSON_IsArray(arr)) return err_set(WICK_ERR_FORMAT, "%s: %s.processors: expected an array", file, path);
        int i = 0;
        for (const cJSON *e = arr->child; e; e = e->next, i++) {
            snprintf(sub, sizeof sub, "%s.processors[%d]", path, i);
            wick_status st = read_post(file, sub, e, pp, depth + 1);
            if (st) return st;
        }
        return WICK_OK;
    }
    return unsupported(file, path, o);
}

wick_status tok_read_post(const char *file, const char *path, const cJSON *o, tok_post *pp) {
    return read_post(file, path, o, pp, 0);
}
