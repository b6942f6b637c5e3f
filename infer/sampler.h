/* sampler.h — turning one vector of logits into one token: logit bias, repetition / frequency /
 * presence penalties, temperature, top-k, typical-p, top-p, min-p, and a seeded random draw.
 *
 * It does NOT run the model, decode text, handle stop strings or EOS: the generator does that on
 * top of this API. It allocates everything in sampler_create(); nothing allocates per token.
 *
 * Usage (one sequence):
 *
 *     sampler_params p = sampler_params_default();
 *     p.temperature = 0.7f; p.top_p = 0.9f; p.seed = 42;
 *     sampler *s = NULL;
 *     if (sampler_create(&p, n_vocab, &s) != WICK_OK) ... wick_last_error() ...
 *     sampler_accept_prompt(s, prompt_ids, n_prompt);
 *     for (;;) {
 *         ... logits = forward(...) ...               // n_vocab floats, caller-owned
 *         sampled_token t;
 *         if (sampler_sample(s, logits, &t) != WICK_OK) break;
 *         sampler_accept(s, t.id);                     // record it for the penalties
 *     }
 *     sampler_free(s);
 *
 * Processing order (fixed; the same as Hugging Face / llama.cpp in spirit):
 *   1. logit_bias            logit[id] += bias (duplicates add up; -INFINITY bans the token)
 *   2. repetition_penalty    HF semantics, each distinct token of prompt + generated output once
 *                            (optionally only the last repetition_last_n of them): a positive logit
 *                            is divided by the penalty, a negative one multiplied.
 *   3. frequency/presence    OpenAI semantics over GENERATED tokens only (not the prompt):
 *                            logit -= count * frequency_penalty + (count > 0) * presence_penalty.
 *   -- if temperature == 0: greedy, the argmax (ties -> lowest id); steps 4..8 are skipped and no
 *      random number is consumed.
 *   4. temperature           z = logit / temperature
 *   5. top_k                 keep the k highest z; ties at the boundary are broken by lower id,
 *                            so exactly min(k, #non-banned) tokens stay (HF keeps all ties).
 *   6. typical_p             (Meister et al.) over the renormalised survivors: entropy H, score
 *                            |-log p - H|, keep the lowest-score tokens (ties: lower id) until their
 *                            mass reaches typical_p.
 *   7. top_p                 over the renormalised survivors, sorted by z desc (ties: lower id): keep
 *                            the shortest prefix whose mass reaches top_p (>= 1 token).
 *   8. min_p                 keep tokens with p >= min_p * max p over the survivors, i.e.
 *                            z >= z_max + ln(min_p): relative to the max probability AFTER
 *                            temperature (as in HF).
 *   9. draw                  one uniform double from xoshiro256** decides among the survivors in
 *                            proportion to exp(z - z_max).
 * Every stage always keeps at least one token. Tokens whose processed logit is -INFINITY are never
 * sampled and never counted as survivors.
 *
 * Probabilities reported in sampled_token:
 *   prob/logprob          of the chosen token under the FINAL distribution (after truncation and
 *                         renormalisation). For greedy: softmax of the processed logits at
 *                         temperature 1, evaluated at the argmax.
 *   full_logprob          of the chosen token under the processed, temperature-scaled distribution
 *                         BEFORE truncation (temperature 1 for greedy).
 *   top[]                 the n_logprobs most likely tokens of that same pre-truncation
 *                         distribution, sorted by logprob desc (ties: lower id), so tokens cut by
 *                         top-k still get finite logprobs. (OpenAI reports the raw model
 *                         distribution; ours includes bias, penalties and temperature.)
 *
 * Performance: no full sort of the vocabulary. One vectorised pass computes exp(). top-k (and
 * the n_logprobs alternatives) gather the candidates above a threshold estimated from a strided
 * subsample (checked exactly; when the estimate fails, a count histogram over d finds the
 * boundary) and select them exactly with a stable recursive histogram selection. top-p and
 * typical-p over the whole vocabulary never list their survivors: a histogram of MASS per key
 * bucket (sampler_hist.c) finds the bucket where the kept prefix ends, only that bucket is
 * gathered and selected exactly, and the kept set becomes a rule "key < K, or key == K and
 * id <= I" that the draw evaluates on the fly. Stages after them (top-p after typical-p, a
 * min-p tighter than the top-p boundary) list the survivors and continue on the list.
 * AVX-512 CPUs scan the max, gather candidates (compress) and find the greedy argmax with
 * sampler_avx512.c; weights always come from the AVX2 (or SSE) exp. Sums of weights use
 * partial sums (per bucket, per chunk, four chains), so they may differ from one chain in the
 * last bits; the drawn id changes only if the draw falls within that rounding of a boundary.
 * See bench/bench_sampler.c.
 *
 * Draw order: the uniform u times the survivors' total mass picks the first survivor whose
 * running sum of exp(z - z_max) exceeds it. When top-p / typical-p (and min-p no tighter than
 * the top-p boundary) run on the whole vocabulary, survivors are walked in ascending id order;
 * after top-k or a listing stage, in the (deterministic) order the selection leaves the list.
 * A rounding shortfall takes the last survivor of positive weight. Same inputs and seed give
 * the same ids; ids for a seed changed when the whole-vocabulary path was introduced.
 *
 * Threads: a sampler is used by one thread at a time; different samplers are independent.
 */
#ifndef WICK_INFER_SAMPLER_H
#define WICK_INFER_SAMPLER_H

#include <stdint.h>

#include "wick.h"

typedef struct sampler_logit_bias {
    int32_t id;
    float bias; /* added to the logit; -INFINITY bans; NaN and +INFINITY are rejected */
} sampler_logit_bias;

typedef struct sampler_params {
    float temperature;        /* >= 0, finite. 0 = greedy. Default 1. */
    int top_k;                /* >= 0. 0 = off. Default 0. */
    float top_p;              /* in (0, 1]. 1 = off. Default 1. */
    float min_p;              /* in [0, 1]. 0 = off. Default 0. */
    float typical_p;          /* in (0, 1]. 1 = off. Default 1. */
    float repetition_penalty; /* > 0, finite. 1 = off. Default 1. */
    int repetition_last_n;    /* >= 0: window over prompt + output; 0 = all tokens. Default 0. */
    float frequency_penalty;  /* finite (may be negative). 0 = off. Default 0. */
    float presence_penalty;   /* finite (may be negative). 0 = off. Default 0. */
    const sampler_logit_bias *logit_bias; /* n_logit_bias entries; copied by sampler_create */
    int n_logit_bias;         /* >= 0. Default 0. */
    uint64_t seed;            /* seeds xoshiro256** through splitmix64. Default 0. */
    int n_logprobs;           /* >= 0 alternatives reported per token (clamped to n_vocab).
                                 Default 0. */
} sampler_params;

/* The documented defaults above: plain sampling from the model distribution. */
sampler_params sampler_params_default(void);

/* Checks every field against n_vocab (ids of logit_bias included). WICK_ERR_INVALID_ARG with a
 * message naming the field on failure. */
wick_status sampler_params_validate(const sampler_params *p, int n_vocab);

typedef struct sampler_alt {
    int32_t id;
    float logprob; /* under the pre-truncation distribution (see the header comment) */
} sampler_alt;

typedef struct sampled_token {
    int32_t id;
    float logit;        /* the raw logit of `id` as passed in, before any processing */
    float prob;         /* under the final distribution (see header comment) */
    float logprob;      /* log(prob), computed without rounding through prob */
    float full_logprob; /* under the processed, temperature-scaled, untruncated distribution */
    int n_top;          /* number of entries in top: min(n_logprobs, n_vocab) */
    const sampler_alt *top; /* owned by the sampler, valid until its next sample/free */
} sampled_token;

typedef struct sampler sampler;

/* Validates `p` and allocates all scratch for a vocabulary of n_vocab (>= 1) tokens. The
 * logit_bias array is copied. On failure *out is NULL. */
wick_status sampler_create(const sampler_params *p, int n_vocab, sampler **out);

/* Frees the sampler; NULL is ignored. */
void sampler_free(sampler *s);

/* The per-sample scratch (vocabulary-sized work arrays, ~30 bytes per id). A sampler made by
 * sampler_create has its own; samplers made with sampler_create_ext(…, shared, …) use
 * `shared` instead, which is safe when they sample one at a time (an engine samples its
 * generations one after another on its driver thread), and saves that memory per sampler.
 * The scratch must outlive every sampler using it. Penalty histories (another ~25 bytes per
 * id) are allocated only when their penalty is in use. */
typedef struct sampler_scratch sampler_scratch;
wick_status sampler_scratch_create(int n_vocab, sampler_scratch **out);
void sampler_scratch_free(sampler_scratch *x);
wick_status sampler_create_ext(const sampler_params *p, int n_vocab, sampler_scratch *shared,
                               sampler **out);

/* Starts a new sequence: forgets the penalty history and reseeds the generator from params.seed,
 * so that the same inputs again give the same tokens. */
void sampler_reset(sampler *s);

/* Reseeds the random generator only (history untouched). */
void sampler_set_seed(sampler *s, uint64_t seed);

/* Records prompt tokens: they count for the repetition penalty only. Ids outside [0, n_vocab)
 * are rejected (WICK_ERR_INVALID_ARG) before anything is recorded. */
wick_status sampler_accept_prompt(sampler *s, const int32_t *ids, int n);

/* Records one generated token: it counts for repetition, frequency and presence penalties. */
wick_status sampler_accept(sampler *s, int32_t id);

/* Applies steps 1-3 (bias and penalties) to logits[0..n_vocab) in place. Exposed for callers that
 * want the processed logits (and for tests); sampler_sample() calls it itself. */
void sampler_apply_penalties(sampler *s, float *logits);

/* Samples one token from logits[0..n_vocab) (caller-owned). On return the array holds the logits
 * after steps 1-3 (bias and penalties), not temperature-scaled. Does not record the token: call
 * sampler_accept() for that. Errors (WICK_ERR_INVALID_ARG): a NaN or +INFINITY logit (after bias
 * and penalties), or every token banned (-INFINITY). After an error *out is untouched, the random
 * state has not advanced, and logits may have been modified by steps 1-3. */
wick_status sampler_sample(sampler *s, float *logits, sampled_token *out);

/* Internals shared between sampler.c and sampler_select.c. -------------------------------- */

/* One surviving token during truncation. */
typedef struct sampler_cand {
    float key; /* sort key, ascending = better */
    float d;   /* (logit - max logit) / temperature, <= 0 */
    float w;   /* exp(d) */
    int32_t id;
} sampler_cand;

/* Number of mass/count thresholds computed in the exp pass (see sampler_select.c). */
#define SAMPLER_LADDER 8

typedef struct sampler_exp_stats {
    double z;      /* sum of exp(d) over the vocabulary */
    double s;      /* sum of exp(d) * d */
    double mass[SAMPLER_LADDER]; /* (estimated) sum of exp(d) over d >= sampler_ladder[j] */
    int64_t count[SAMPLER_LADDER]; /* (estimated) number of tokens with d >= sampler_ladder[j] */
} sampler_exp_stats;

extern const float sampler_ladder[SAMPLER_LADDER];

/* Block size of the per-block exp sums used to draw from the untruncated distribution. */
#define SAMPLER_BLOCK 64

/* d[i] = (x[i] - xmax) * inv_t (-INF where x is -INF), w[i] = exp(d[i]) (0 below -87),
 * block[b] = sum of w over block b; fills st->z and st->s, zeroes the ladder. n >= 1. */
void sampler_exp_pass(const float *x, int n, float xmax, float inv_t, float *d, float *w,
                      double *block, sampler_exp_stats *st);

/* The AVX2+FMA variant (sampler_avx2.c); sampler_exp_pass dispatches to it at run time. It
 * also accepts d == w == NULL (nothing stored, sums only); sampler_exp_pass_sums uses that. */
void sampler_exp_pass_avx2(const float *x, int n, float xmax, float inv_t, float *d, float *w,
                           double *block, sampler_exp_stats *st);

/* Estimates the ladder counts and masses of d/w from every stride-th element (scaled up by
 * stride; exact for stride 1) into st. Estimates only pick a starting gather threshold, which
 * the caller then verifies, so they never affect results. */
void sampler_ladder_pass(const float *d, const float *w, int n, int stride, sampler_exp_stats *st);

/* Like sampler_exp_pass without storing d and w (block is still filled); same sums. */
void sampler_exp_pass_sums(const float *x, int n, float xmax, float inv_t, float *d, float *w,
                           double *block, sampler_exp_stats *st);

/* Index of the first i with x[i] == v, or -1. */
int sampler_find_first(const float *x, int n, float v);
int sampler_find_first_avx512(const float *x, int n, float v);

/* *xmax = max of x[0..n) (n >= 1); returns nonzero when some x is NaN or +inf (*xmax is then
 * meaningless). Dispatches to the AVX-512 version when the CPU has it. */
int sampler_scan_max(const float *x, int n, float *xmax);
int sampler_scan_max_avx512(const float *x, int n, float *xmax);

/* Appends to c, in id order, {-d, d, w, id} for every i with d[i] >= thr and d[i] > -inf, and
 * returns the count (c has room for n). The AVX-512 compress version; sampler_gather_fast
 * calls it when the CPU has AVX-512 and returns 0 otherwise (the caller then runs the plain
 * loop), storing the count in *m when it returns 1. */
int sampler_gather_avx512(const float *d, const float *w, int n, float thr, sampler_cand *c);
int sampler_gather_fast(const float *d, const float *w, int n, float thr, sampler_cand *c, int *m);

/* Reorders c[0..n) so that its first r entries are the r best by (key asc, id asc), where r is
 * `target` when by_mass is false (clamped to n), and otherwise the shortest prefix whose summed w
 * reaches target (all n when the total falls short; at least 1). Stable for equal buckets.
 * tmp: scratch of n entries. Returns r. */
int sampler_select_prefix(sampler_cand *c, sampler_cand *tmp, int n, bool by_mass, double target);

/* Sorts c[0..n) by (key asc, id asc). */
void sampler_sort_cands(sampler_cand *c, int n);

/* ---- whole-vocabulary truncation by bucket histograms (sampler_hist.c) ---- */

/* Most buckets a histogram uses (a sampler allocates SAMPLER_HIST_MAX + 1 of each kind). */
#define SAMPLER_HIST_MAX 4096

/* A kept set without a list: token i (not banned) is kept iff key_i < key, or key_i == key
 * and i <= id, where key_i = -d[i] (mode 0) or |d[i] - center| (mode 1). */
typedef struct sampler_keep {
    int mode;
    float center;
    float key;
    int32_t id;
} sampler_keep;

/* The rule that keeps every token. */
void sampler_keep_all(sampler_keep *k);

/* Bucket count for a vocabulary of n (16 .. SAMPLER_HIST_MAX) and the key -> bucket scale. */
int sampler_hist_buckets(int n);
float sampler_hist_scale(int nb);

/* cnt[b] / mass[b] = number / summed w of the tokens whose key falls in bucket b (b < nb);
 * bucket nb holds the banned tokens (d = -inf). Either array may be NULL (not computed). Buckets are monotone in the key: every key of
 * bucket b is below every key of bucket b + 1, and equal keys share a bucket. */
void sampler_hist(const float *d, const float *w, int n, int mode, float center, float scale,
                  int nb, double *mass, int32_t *cnt);

/* Appends to c, in id order, {key, d, w, id} of every non-banned token whose bucket is in
 * [bmin, bmax]; returns the count. */
int sampler_gather_buckets(const float *d, const float *w, int n, int mode, float center,
                           float scale, int nb, int bmin, int bmax, sampler_cand *c);

/* Appends to c, in id order, {-d, d, w, id} of every non-banned token with d >= dmin kept by
 * both rules; returns the count. */
int sampler_gather_kept(const float *d, const float *w, int n, const sampler_keep *ka,
                        const sampler_keep *kb, float dmin, sampler_cand *c);

/* The id that the draw x in [0, kept mass) picks, walking the tokens kept by both rules in id
 * order: the first whose running sum of w exceeds x (positive weight only); the last kept token
 * of positive weight when rounding leaves x beyond the walked total; -1 if none is kept. */
int sampler_draw_kept(const float *d, const float *w, int n, const sampler_keep *ka,
                      const sampler_keep *kb, double x);

#endif
