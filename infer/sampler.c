/* sampler.c — sampler parameters, penalty history, the random generator and the sampling
 * pipeline described in sampler.h.
 *
 * It does not contain the vectorised exp pass or the prefix selection (sampler_select.c), and it
 * never allocates after sampler_create(): every buffer is sized for n_vocab up front (history
 * lists hold each distinct id at most once, so n_vocab entries always suffice).
 *
 * Random numbers: xoshiro256** (Blackman & Vigna), state filled by splitmix64 from the seed, one
 * 53-bit uniform double per sampled token.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "infer/sampler.h"

struct sampler {
    sampler_params p;
    int n_vocab;
    int n_top;               /* min(n_logprobs, n_vocab) */
    uint64_t rng[4];

    sampler_logit_bias *bias; /* (n_logit_bias) copy of p.logit_bias */
    float *bias_orig;         /* (n_logit_bias) logits before bias, from the last apply */

    /* Repetition history over prompt + output: count per id (inside the window), the distinct
     * ids with a nonzero count (lazily compacted), and a ring of the last N ids when windowed. */
    uint32_t *rep_count;      /* (n_vocab) */
    uint8_t *rep_inlist;      /* (n_vocab) */
    int32_t *rep_ids;         /* (n_vocab) */
    float *rep_orig;          /* (n_vocab) logits before the penalty, parallel to rep_ids */
    int n_rep;
    int32_t *ring;            /* (repetition_last_n) */
    int ring_len, ring_n, ring_pos;

    /* Generated tokens only, for frequency/presence. */
    uint32_t *gen_count;      /* (n_vocab) */
    int32_t *gen_ids;         /* (n_vocab) distinct ids with count > 0 */
    float *gen_orig;          /* (n_vocab) */
    int n_gen;
    bool rep_applied, gen_applied; /* which *_orig arrays hold data of the last apply */

    bool rep_on, gen_on;      /* the histories above exist (their penalty is in use) */

    /* Per-sample scratch: the sampler's own (own != NULL) or shared by samplers that are
     * used one at a time (an engine's). */
    sampler_scratch *own;
    float *d, *w;             /* (n_vocab) scaled logit minus max, exp of it */
    double *block;            /* (ceil(n_vocab / SAMPLER_BLOCK)) sums of w */
    sampler_cand *cand, *tmp; /* (n_vocab) */
    sampler_alt *top;         /* (n_top) */
    double *hmass;            /* (hnb + 1) per-bucket mass, see sampler_hist */
    int32_t *hcnt;            /* (hnb + 1) per-bucket count */
    int hnb;
    float hscale;
};

/* ---- random numbers --------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t s[4]) {
    uint64_t out = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return out;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(sampler *s) { return (double)(xoshiro_next(s->rng) >> 11) * 0x1.0p-53; }

void sampler_set_seed(sampler *s, uint64_t seed) {
    if (!s) return;
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
    /* splitmix64 never yields four zero words in a row, so the state is valid. */
}

/* ---- parameters ------------------------------------------------------------------------- */

sampler_params sampler_params_default(void) {
    sampler_params p;
    memset(&p, 0, sizeof p);
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.typical_p = 1.0f;
    p.repetition_penalty = 1.0f;
    p.repetition_last_n = 0;
    p.frequency_penalty = 0.0f;
    p.presence_penalty = 0.0f;
    p.logit_bias = NULL;
    p.n_logit_bias = 0;
    p.seed = 0;
    p.n_logprobs = 0;
    return p;
}

wick_status sampler_params_validate(const sampler_params *p, int n_vocab) {
    if (!p) return err_set(WICK_ERR_INVALID_ARG, "sampler: params is NULL");
    if (n_vocab < 1) return err_set(WICK_ERR_INVALID_ARG, "sampler: n_vocab %d must be >= 1", n_vocab);
    if (!(p->temperature >= 0.0f) || isinf(p->temperature))
        return err_set(WICK_ERR_INVALID_ARG, "sampler: temperature %g must be finite and >= 0",
                       (double)p->temperature);
    if (p->top_k < 0)
        return err_set(WICK_ERR_INVALID_ARG, "sampler: top_k %d must be >= 0 (0 = off)", p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return err_set(WICK_ERR_INVALID_ARG, "sampler: top_p %g must be in (0, 1] (1 = off)",
                       (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return err_set(WICK_ERR_INVALID_ARG, "sampler: min_p %g must be in [0, 1] (0 = off)",
                       (double)p->min_p);
    if (!(p->typical_p > 0.0f && p->typical_p <= 1.0f))
        return err_set(WICK_ERR_INVALID_ARG, "sampler: typical_p %g must be in (0, 1] (1 = off)",
                       (double)p->typical_p);
    if (!(p->repetition_penalty > 0.0f) || isinf(p->repetition_penalty))
        return err_set(WICK_ERR_INVALID_ARG,
                       "sampler: repetition_penalty %g must be finite and > 0 (1 = off)",
                       (double)p->repetition_penalty);
    if (p->repetition_last_n < 0)
        return err_set(WICK_ERR_INVALID_ARG, "sampler: repetition_last_n %d must be >= 0 (0 = all)",
                       p->repetition_last_n);
    if (!isfinite(p->frequency_penalty))
        return err_set(WICK_ERR_INVALID_ARG, "sampler: frequency_penalty %g must be finite",
                       (double)p->frequency_penalty);
    if (!isfinite(p->presence_penalty))
        return err_set(WICK_ERR_INVALID_ARG, "sampler: presence_penalty %g must be finite",
                       (double)p->presence_penalty);
    if (p->n_logit_bias < 0 || (p->n_logit_bias > 0 && !p->logit_bias))
        return err_set(WICK_ERR_INVALID_ARG, "sampler: logit_bias: %d entries but pointer %s",
                       p->n_logit_bias, p->logit_bias ? "set" : "NULL");
    for (int i = 0; i < p->n_logit_bias; i++) {
        const sampler_logit_bias *b = &p->logit_bias[i];
        if (b->id < 0 || b->id >= n_vocab)
            return err_set(WICK_ERR_INVALID_ARG, "sampler: logit_bias[%d]: id %d outside [0, %d)",
                           i, (int)b->id, n_vocab);
        if (isnan(b->bias) || b->bias == INFINITY)
            return err_set(WICK_ERR_INVALID_ARG,
                           "sampler: logit_bias[%d] (id %d): bias %g must be finite or -inf", i,
                           (int)b->id, (double)b->bias);
    }
    if (p->n_logprobs < 0)
        return err_set(WICK_ERR_INVALID_ARG, "sampler: n_logprobs %d must be >= 0", p->n_logprobs);
    return WICK_OK;
}

/* ---- lifetime --------------------------------------------------------------------------- */

struct sampler_scratch {
    int n_vocab;
    float *d, *w;
    double *block;
    sampler_cand *cand, *tmp;
    double *hmass;
    int32_t *hcnt;
};

void sampler_scratch_free(sampler_scratch *x) {
    if (!x) return;
    free(x->d);
    free(x->w);
    free(x->block);
    free(x->cand);
    free(x->tmp);
    free(x->hmass);
    free(x->hcnt);
    free(x);
}

wick_status sampler_scratch_create(int n_vocab, sampler_scratch **out) {
    *out = NULL;
    if (n_vocab < 1) return err_set(WICK_ERR_INVALID_ARG, "sampler scratch: n_vocab < 1");
    sampler_scratch *x = calloc(1, sizeof *x);
    if (!x) return err_set(WICK_ERR_NOMEM, "sampler: out of memory");
    const size_t nv = (size_t)n_vocab, nb = (nv + SAMPLER_BLOCK - 1) / SAMPLER_BLOCK;
    const int hnb = sampler_hist_buckets(n_vocab);
    x->n_vocab = n_vocab;
    x->d = malloc(nv * sizeof *x->d);
    x->w = malloc(nv * sizeof *x->w);
    x->block = malloc(nb * sizeof *x->block);
    x->cand = malloc(nv * sizeof *x->cand);
    x->tmp = malloc(nv * sizeof *x->tmp);
    x->hmass = malloc((size_t)(hnb + 1) * sizeof *x->hmass);
    x->hcnt = malloc((size_t)(hnb + 1) * sizeof *x->hcnt);
    if (!x->d || !x->w || !x->block || !x->cand || !x->tmp || !x->hmass || !x->hcnt) {
        sampler_scratch_free(x);
        return err_set(WICK_ERR_NOMEM, "sampler: out of memory for n_vocab %d", n_vocab);
    }
    *out = x;
    return WICK_OK;
}

void sampler_free(sampler *s) {
    if (!s) return;
    free(s->bias);
    free(s->bias_orig);
    free(s->rep_count);
    free(s->rep_inlist);
    free(s->rep_ids);
    free(s->rep_orig);
    free(s->ring);
    free(s->gen_count);
    free(s->gen_ids);
    free(s->gen_orig);
    free(s->top);
    sampler_scratch_free(s->own);
    free(s);
}

wick_status sampler_create_ext(const sampler_params *p, int n_vocab, sampler_scratch *shared,
                               sampler **out) {
    if (!out) return err_set(WICK_ERR_INVALID_ARG, "sampler_create: out is NULL");
    *out = NULL;
    wick_status st = sampler_params_validate(p, n_vocab);
    if (st != WICK_OK) return st;
    if (shared && shared->n_vocab != n_vocab)
        return err_set(WICK_ERR_INVALID_ARG, "sampler_create: scratch for %d ids, not %d",
                       shared->n_vocab, n_vocab);
    sampler *s = calloc(1, sizeof *s);
    if (!s) return err_set(WICK_ERR_NOMEM, "sampler_create: out of memory");
    s->p = *p;
    s->n_vocab = n_vocab;
    s->n_top = p->n_logprobs < n_vocab ? p->n_logprobs : n_vocab;
    size_t nv = (size_t)n_vocab;
    size_t nbias = (size_t)p->n_logit_bias;
    bool ok = true;
    s->bias = malloc((nbias ? nbias : 1) * sizeof *s->bias);
    s->bias_orig = malloc((nbias ? nbias : 1) * sizeof *s->bias_orig);
    ok = s->bias && s->bias_orig;
    /* penalty histories only for the penalties in use: a sampler without any needs no
       vocabulary-sized state of its own */
    s->rep_on = p->repetition_penalty != 1.0f;
    s->gen_on = p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f;
    if (s->rep_on) {
        s->rep_count = calloc(nv, sizeof *s->rep_count);
        s->rep_inlist = calloc(nv, 1);
        s->rep_ids = malloc(nv * sizeof *s->rep_ids);
        s->rep_orig = malloc(nv * sizeof *s->rep_orig);
        s->ring_len = p->repetition_last_n;
        s->ring = malloc((s->ring_len ? (size_t)s->ring_len : 1) * sizeof *s->ring);
        ok = ok && s->rep_count && s->rep_inlist && s->rep_ids && s->rep_orig && s->ring;
    }
    if (s->gen_on) {
        s->gen_count = calloc(nv, sizeof *s->gen_count);
        s->gen_ids = malloc(nv * sizeof *s->gen_ids);
        s->gen_orig = malloc(nv * sizeof *s->gen_orig);
        ok = ok && s->gen_count && s->gen_ids && s->gen_orig;
    }
    s->top = malloc((s->n_top ? (size_t)s->n_top : 1) * sizeof *s->top);
    if (ok && s->top && !shared && sampler_scratch_create(n_vocab, &s->own) == WICK_OK)
        shared = s->own;
    if (!ok || !s->top || !shared) {
        sampler_free(s);
        return err_set(WICK_ERR_NOMEM, "sampler_create: out of memory for n_vocab %d", n_vocab);
    }
    s->d = shared->d;
    s->w = shared->w;
    s->block = shared->block;
    s->cand = shared->cand;
    s->tmp = shared->tmp;
    s->hmass = shared->hmass;
    s->hcnt = shared->hcnt;
    s->hnb = sampler_hist_buckets(n_vocab);
    s->hscale = sampler_hist_scale(s->hnb);
    if (nbias) memcpy(s->bias, p->logit_bias, nbias * sizeof *s->bias);
    s->p.logit_bias = s->bias; /* the caller's array is not borrowed past this call */
    sampler_set_seed(s, p->seed);
    *out = s;
    return WICK_OK;
}

wick_status sampler_create(const sampler_params *p, int n_vocab, sampler **out) {
    return sampler_create_ext(p, n_vocab, NULL, out);
}

void sampler_reset(sampler *s) {
    if (!s) return;
    for (int i = 0; s->rep_on && i < s->n_rep; i++) {
        s->rep_count[s->rep_ids[i]] = 0;
        s->rep_inlist[s->rep_ids[i]] = 0;
    }
    for (int i = 0; s->gen_on && i < s->n_gen; i++) s->gen_count[s->gen_ids[i]] = 0;
    s->n_rep = s->n_gen = 0;
    s->ring_pos = s->ring_n = 0;
    s->rep_applied = s->gen_applied = false;
    sampler_set_seed(s, s->p.seed);
}

/* ---- history ---------------------------------------------------------------------------- */

/* Adds one id to the repetition history. With a window, the ring holds the last ring_n <=
 * ring_len ids, ring_pos is the slot written next (the oldest once full); an id leaving the
 * window decrements its count, and its list entry is dropped at the next compaction. */
static void rep_push(sampler *s, int32_t id) {
    if (!s->rep_on) return;
    if (s->ring_len > 0) {
        if (s->ring_n == s->ring_len) s->rep_count[s->ring[s->ring_pos]]--; /* oldest leaves */
        else s->ring_n++;
        s->ring[s->ring_pos] = id;
        s->ring_pos = (s->ring_pos + 1) % s->ring_len;
    }
    s->rep_count[id]++;
    if (!s->rep_inlist[id]) {
        s->rep_inlist[id] = 1;
        s->rep_ids[s->n_rep++] = id;
    }
}

wick_status sampler_accept_prompt(sampler *s, const int32_t *ids, int n) {
    if (!s || n < 0 || (n > 0 && !ids))
        return err_set(WICK_ERR_INVALID_ARG, "sampler_accept_prompt: NULL sampler/ids or n %d < 0",
                       n);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= s->n_vocab)
            return err_set(WICK_ERR_INVALID_ARG,
                           "sampler_accept_prompt: ids[%d] = %d outside [0, %d)", i, (int)ids[i],
                           s->n_vocab);
    for (int i = 0; i < n; i++) rep_push(s, ids[i]);
    return WICK_OK;
}

wick_status sampler_accept(sampler *s, int32_t id) {
    if (!s) return err_set(WICK_ERR_INVALID_ARG, "sampler_accept: sampler is NULL");
    if (id < 0 || id >= s->n_vocab)
        return err_set(WICK_ERR_INVALID_ARG, "sampler_accept: id %d outside [0, %d)", (int)id,
                       s->n_vocab);
    rep_push(s, id);
    if (s->gen_on && s->gen_count[id]++ == 0) s->gen_ids[s->n_gen++] = id;
    return WICK_OK;
}

/* ---- steps 1-3 -------------------------------------------------------------------------- */

void sampler_apply_penalties(sampler *s, float *logits) {
    for (int i = 0; i < s->p.n_logit_bias; i++) {
        int32_t id = s->bias[i].id;
        s->bias_orig[i] = logits[id];
        logits[id] += s->bias[i].bias;
    }
    /* Compact the repetition list (drop ids that left the window) before using it. */
    int k = 0;
    for (int i = 0; i < s->n_rep; i++) {
        int32_t id = s->rep_ids[i];
        if (s->rep_count[id] > 0) s->rep_ids[k++] = id;
        else s->rep_inlist[id] = 0;
    }
    s->n_rep = k;
    s->rep_applied = s->p.repetition_penalty != 1.0f;
    if (s->rep_applied) {
        float pen = s->p.repetition_penalty;
        for (int i = 0; i < s->n_rep; i++) {
            int32_t id = s->rep_ids[i];
            float v = logits[id];
            s->rep_orig[i] = v;
            logits[id] = v > 0.0f ? v / pen : v * pen;
        }
    }
    s->gen_applied = s->p.frequency_penalty != 0.0f || s->p.presence_penalty != 0.0f;
    if (s->gen_applied) {
        for (int i = 0; i < s->n_gen; i++) {
            int32_t id = s->gen_ids[i];
            s->gen_orig[i] = logits[id];
            logits[id] -= (float)s->gen_count[id] * s->p.frequency_penalty + s->p.presence_penalty;
        }
    }
}

/* The logit of `id` before steps 1-3: the first recorded original wins, in the order the
 * steps ran; an id no step touched still holds its raw value. */
static float raw_logit(const sampler *s, const float *logits, int32_t id) {
    for (int i = 0; i < s->p.n_logit_bias; i++)
        if (s->bias[i].id == id) return s->bias_orig[i];
    if (s->rep_applied)
        for (int i = 0; i < s->n_rep; i++)
            if (s->rep_ids[i] == id) return s->rep_orig[i];
    if (s->gen_applied)
        for (int i = 0; i < s->n_gen; i++)
            if (s->gen_ids[i] == id) return s->gen_orig[i];
    return logits[id];
}

/* ---- steps 4-9 -------------------------------------------------------------------------- */

/* Collects every non-banned token with d >= thr (thr = -INFINITY: all of them) in id order,
 * with key = -d (so ascending key = descending probability). Returns the count. */
static int gather_top(sampler *s, float thr) {
    const float *d = s->d, *w = s->w;
    sampler_cand *c = s->cand;
    int m = 0;
    if (sampler_gather_fast(d, w, s->n_vocab, thr, c, &m)) return m;
    /* Branch-free: in flat logits the test is a coin flip. c has room for n_vocab entries and
     * m <= i, so the unconditional store stays in bounds. */
    for (int i = 0; i < s->n_vocab; i++) {
        float di = d[i];
        c[m] = (sampler_cand){-di, di, w[i], i};
        m += di >= thr && di > -INFINITY;
    }
    return m;
}

/* Gathers (gather_top) the candidates above the tightest ladder threshold estimated to hold
 * at least k tokens, checks the count exactly and lowers the threshold while short; when the
 * ladder runs out, the count histogram (gather_topk) finds the boundary instead of gathering
 * the whole vocabulary. The result always contains the exact top-k of the vocabulary. */
static int gather_topk(sampler *s, int k);
static int gather_enough(sampler *s, const sampler_exp_stats *st, int k) {
    int j = 0;
    while (j < SAMPLER_LADDER && (double)st->count[j] < 2.0 * k + 16) j++;
    for (; j < SAMPLER_LADDER; j++) {
        int m = gather_top(s, sampler_ladder[j]);
        if (m >= k) return m;
    }
    return gather_topk(s, k);
}

/* Gathers, in id order, a superset of the exact top-k (key = -d): the count histogram over -d
 * says in which bucket the k-th best token lies, and every token of that bucket and the better
 * ones is taken (every non-banned token when fewer than k live). */
static int gather_topk(sampler *s, int k) {
    const int nb = s->hnb;
    sampler_hist(s->d, s->w, s->n_vocab, 0, 0.0f, s->hscale, nb, NULL, s->hcnt);
    int64_t cum = 0;
    int cb = nb - 1;
    for (int b = 0; b < nb; b++) {
        cum += s->hcnt[b];
        if (cum >= k) {
            cb = b;
            break;
        }
    }
    return sampler_gather_buckets(s->d, s->w, s->n_vocab, 0, 0.0f, s->hscale, nb, 0, cb, s->cand);
}

/* Exact shortest prefix of the whole vocabulary in (key asc, id asc) order (key of `mode`, see
 * sampler_keep) whose mass reaches target, as a keep rule: the mass histogram finds the boundary
 * bucket, and only that bucket is gathered and selected exactly. Returns the kept mass (the
 * histogram's buckets before the boundary plus the kept part of it). Uses s->cand / s->tmp. */
static double keep_prefix(sampler *s, int mode, float center, double target, sampler_keep *keep) {
    const int nb = s->hnb;
    sampler_hist(s->d, s->w, s->n_vocab, mode, center, s->hscale, nb, s->hmass, NULL);
    sampler_keep_all(keep);
    keep->mode = mode;
    keep->center = center;
    double cum = 0.0;
    int cb = -1;
    for (int b = 0; b < nb; b++) {
        /* an empty bucket has mass 0 and cum < target: it never qualifies */
        if (cum + s->hmass[b] >= target) {
            cb = b;
            break;
        }
        cum += s->hmass[b];
    }
    if (cb < 0) return cum; /* the total falls short (rounding): everything is kept */
    sampler_cand *c = s->cand;
    int m = sampler_gather_buckets(s->d, s->w, s->n_vocab, mode, center, s->hscale, nb, cb, cb, c);
    int r = sampler_select_prefix(c, s->tmp, m, true, target - cum);
    /* The rule's (key, id) is the worst kept entry: the first r are unordered. */
    int j = 0;
    for (int i = 1; i < r; i++)
        if (c[i].key > c[j].key || (c[i].key == c[j].key && c[i].id > c[j].id)) j = i;
    keep->key = c[j].key;
    keep->id = c[j].id;
    double kept = 0.0;
    for (int i = 0; i < r; i++) kept += c[i].w;
    return cum + kept;
}

/* Fills s->top with the n_top best tokens of the untruncated distribution. Uses s->cand. */
static void fill_top(sampler *s, const sampler_exp_stats *st, double log_z) {
    if (s->n_top == 0) return;
    int m = gather_enough(s, st, s->n_top);
    int r = sampler_select_prefix(s->cand, s->tmp, m, false, s->n_top);
    sampler_sort_cands(s->cand, r);
    for (int i = 0; i < s->n_top; i++) {
        /* r < n_top only when some tokens are banned: those report -inf and id -1. */
        s->top[i].id = i < r ? s->cand[i].id : -1;
        s->top[i].logprob = i < r ? (float)((double)s->cand[i].d - log_z) : -INFINITY;
    }
}

/* Four partial sums: one chain of dependent double adds over ~100k survivors would cost
 * ~4 cycles each. (Rounding differs from a single chain only in the last bits.) */
static double sum_w(const sampler_cand *c, int n) {
    double z0 = 0.0, z1 = 0.0, z2 = 0.0, z3 = 0.0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        z0 += c[i].w;
        z1 += c[i + 1].w;
        z2 += c[i + 2].w;
        z3 += c[i + 3].w;
    }
    for (; i < n; i++) z0 += c[i].w;
    return (z0 + z1) + (z2 + z3);
}

/* Sum of w * max(d, -87) over c (the typical-p entropy term), four partial sums as sum_w. */
static double sum_wd(const sampler_cand *c, int n) {
    double a[4] = {0.0, 0.0, 0.0, 0.0};
    int i = 0;
    for (; i + 4 <= n; i += 4)
        for (int u = 0; u < 4; u++) {
            float di = c[i + u].d < -87.0f ? -87.0f : c[i + u].d;
            a[u] += (double)c[i + u].w * di;
        }
    for (; i < n; i++) {
        float di = c[i].d < -87.0f ? -87.0f : c[i].d;
        a[0] += (double)c[i].w * di;
    }
    return (a[0] + a[1]) + (a[2] + a[3]);
}

/* Index into c of the token that the draw x in [0, sum of w) picks, walking c in order: the
 * first whose running sum exceeds x (positive weight only). Chunks of 64 are skipped whole
 * by their partial sum; the last positive weight is the rounding fallback. -1 if none. */
static int draw_cands(const sampler_cand *c, int n, double x) {
    double acc = 0.0;
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        double cs = sum_w(c + i, 64);
        if (x < acc + cs) break;
        acc += cs;
    }
    for (; i < n; i++) {
        acc += c[i].w;
        if (x < acc && c[i].w > 0.0f) return i;
    }
    for (i = n - 1; i >= 0; i--)
        if (c[i].w > 0.0f) return i;
    return -1;
}

wick_status sampler_sample(sampler *s, float *logits, sampled_token *out) {
    if (!s || !logits || !out)
        return err_set(WICK_ERR_INVALID_ARG, "sampler_sample: NULL sampler, logits or out");
    const int n = s->n_vocab;
    sampler_apply_penalties(s, logits);

    /* Max, and rejection of NaN / +inf, in one vectorisable pass. */
    float xmax;
    int bad = sampler_scan_max(logits, n, &xmax);
    if (bad) {
        for (int i = 0; i < n; i++)
            if (isnan(logits[i]) || logits[i] == INFINITY)
                return err_set(WICK_ERR_INVALID_ARG,
                               "sampler_sample: logits[%d] is %s after bias and penalties", i,
                               isnan(logits[i]) ? "NaN" : "+inf");
    }
    if (xmax == -INFINITY)
        return err_set(WICK_ERR_INVALID_ARG,
                       "sampler_sample: every one of the %d tokens is banned (logit -inf)", n);

    const bool greedy = s->p.temperature == 0.0f;
    float inv_t = greedy ? 1.0f : 1.0f / s->p.temperature;
    if (isinf(inv_t)) inv_t = FLT_MAX; /* denormal temperature: as peaked as floats allow */
    sampler_exp_stats st;
    /* Greedy without alternatives needs only the normaliser: skip storing d and w. */
    const bool sums_only = greedy && s->n_top == 0;
    if (sums_only) sampler_exp_pass_sums(logits, n, xmax, inv_t, s->d, s->w, s->block, &st);
    else sampler_exp_pass(logits, n, xmax, inv_t, s->d, s->w, s->block, &st);
    const double log_z = log(st.z); /* z >= 1: the max token has w = 1 */
    const sampler_params *p = &s->p;
    if (s->n_top > 0 || (!greedy && p->top_k > 0 && p->top_k < n))
        sampler_ladder_pass(s->d, s->w, n, n > 4096 ? 16 : 1, &st);
    fill_top(s, &st, log_z);

    int32_t id = -1;
    double w_set = st.z; /* normaliser of the final distribution */
    if (greedy) {
        id = sampler_find_first(logits, n, xmax);
    } else {
        /* The surviving set is implicit (every non-banned token) until a stage shrinks it;
         * then it lives in s->cand[0..nc). */
        /* The surviving set is implicit until a stage shrinks it: every non-banned token
         * (all), or the tokens two keep rules accept (implicit: top-p / typical-p over the
         * whole vocabulary, ka on -d, kb on the typicality), or a list in s->cand[0..nc). */
        bool all = true, implicit = false;
        sampler_keep ka, kb;
        sampler_keep_all(&ka);
        sampler_keep_all(&kb);
        double kmass = 0.0; /* mass of the implicit set */
        int nc = 0;
        if (p->top_k > 0 && p->top_k < n) {
            nc = gather_enough(s, &st, p->top_k);
            nc = sampler_select_prefix(s->cand, s->tmp, nc, false, p->top_k);
            all = false;
        }
        if (p->typical_p < 1.0f) {
            if (all) {
                /* mean of d = log Z - H: the "typical" d (exp-pass sums clamp d at -87 too) */
                float center = (float)(st.s / st.z);
                kmass = keep_prefix(s, 1, center, (double)p->typical_p * st.z, &kb);
                all = false;
                implicit = true;
            } else {
                double z = sum_w(s->cand, nc), sd = sum_wd(s->cand, nc);
                float center = (float)(sd / z);
                for (int i = 0; i < nc; i++) s->cand[i].key = fabsf(s->cand[i].d - center);
                nc = sampler_select_prefix(s->cand, s->tmp, nc, true, (double)p->typical_p * z);
                for (int i = 0; i < nc; i++) s->cand[i].key = -s->cand[i].d;
            }
        }
        if (p->top_p < 1.0f) {
            if (all) {
                kmass = keep_prefix(s, 0, 0.0f, (double)p->top_p * st.z, &ka);
                all = false;
                implicit = true;
            } else {
                if (implicit) { /* after typical-p: list its survivors */
                    nc = sampler_gather_kept(s->d, s->w, n, &ka, &kb, -INFINITY, s->cand);
                    implicit = false;
                }
                nc = sampler_select_prefix(s->cand, s->tmp, nc, true,
                                           (double)p->top_p * sum_w(s->cand, nc));
            }
        }
        if (p->min_p > 0.0f) {
            float lmin = logf(p->min_p);
            if (all) {
                nc = gather_top(s, lmin); /* the max of the full set has d = 0 */
                all = false;
            } else if (implicit && kb.mode == 0) {
                /* Only the top-p rule: its survivors include the max (d = 0) and all have
                 * d >= -ka.key, so min-p changes nothing unless its threshold is higher; then
                 * the survivors are exactly the tokens with d >= lmin. */
                if (lmin > -ka.key) {
                    nc = sampler_gather_kept(s->d, s->w, n, &ka, &kb, lmin, s->cand);
                    implicit = false;
                }
            } else {
                if (implicit) {
                    nc = sampler_gather_kept(s->d, s->w, n, &ka, &kb, -INFINITY, s->cand);
                    implicit = false;
                }
                float dmax = -INFINITY;
                for (int i = 0; i < nc; i++) dmax = s->cand[i].d > dmax ? s->cand[i].d : dmax;
                float thr = dmax + lmin;
                int k = 0;
                for (int i = 0; i < nc; i++)
                    if (s->cand[i].d >= thr) s->cand[k++] = s->cand[i];
                nc = k;
            }
        }

        double u = rng_uniform(s);
        if (all) {
            /* Draw from the whole vocabulary with the per-block sums of the exp pass. */
            double x = u * st.z, acc = 0.0;
            int nb = (n + SAMPLER_BLOCK - 1) / SAMPLER_BLOCK, b = 0;
            for (; b < nb - 1; b++) {
                if (x < acc + s->block[b]) break;
                acc += s->block[b];
            }
            int i0 = b * SAMPLER_BLOCK, i1 = i0 + SAMPLER_BLOCK < n ? i0 + SAMPLER_BLOCK : n;
            for (int i = i0; i < i1; i++) {
                if (s->w[i] > 0.0f) id = i; /* rounding fallback: last positive in the block */
                acc += s->w[i];
                if (x < acc && s->w[i] > 0.0f) break;
            }
            if (id < 0) /* a block of zero weight chosen through rounding: take the argmax */
                for (int i = 0; i < n && id < 0; i++)
                    if (s->d[i] == 0.0f) id = i;
        } else if (implicit) {
            w_set = kmass;
            id = sampler_draw_kept(s->d, s->w, n, &ka, &kb, u * kmass);
        } else {
            w_set = sum_w(s->cand, nc);
            int k = draw_cands(s->cand, nc, u * w_set);
            if (k >= 0) id = s->cand[k].id;
        }
    }
    if (id < 0 || !(w_set > 0.0))
        return err_set(WICK_ERR_INTERNAL, "sampler_sample: no token with positive weight");

    out->id = id;
    out->logit = raw_logit(s, logits, id);
    /* For greedy d[id] = 0 and w[id] = 1 exactly (logits[id] == xmax); d/w may be unset. */
    float d_id = greedy ? 0.0f : s->d[id], w_id = greedy ? 1.0f : s->w[id];
    out->logprob = (float)((double)d_id - log(w_set));
    out->prob = (float)((double)w_id / w_set);
    out->full_logprob = (float)((double)d_id - log_z);
    out->n_top = s->n_top;
    out->top = s->top;
    return WICK_OK;
}
