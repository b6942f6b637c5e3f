/* kv.c — the paged KV cache of kv.h: block pool, reference counts, copy-on-write, and the
 * prefix cache (an open-addressing hash table from chain hash to block, plus a
 * least-recently-released list of cached blocks nobody holds).
 *
 * Block states: held (refs > 0, maybe registered), cached (refs == 0, registered: in the LRU
 * list and the table), free (refs == 0, unregistered: on the free stack). Allocation takes a
 * free block first, else evicts the oldest cached one. */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "kv/kv.h"

struct kv_pool {
    const kernel_table *K;
    wk_ctx *ctx;
    dtype dt;
    int n_layer, n_kv, head_dim, bs, n_blocks;
    size_t row_bytes, block_bytes, region_bytes; /* region: one layer's K (or V) blocks */
    char *k, *v;                                 /* [n_layer][n_blocks][block_bytes] each */
    bool prefix_cache;

    int32_t *refs;
    bool *reg;
    uint64_t *hash;       /* chain hash of a registered block */
    int32_t *toks;        /* (n_blocks, bs) ids of a registered block */
    int32_t *free_stk;
    int n_free;
    int32_t *lru_prev, *lru_next; /* cached blocks, oldest at lru_head */
    int lru_head, lru_tail, n_cached;
    int32_t *table;       /* hash table slots: block id or -1 */
    uint32_t table_mask;
    int64_t hits;
};

/* ---- hashing ---- */

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t block_hash(uint64_t parent, uint64_t salt, const int32_t *ids, int bs) {
    uint64_t h = mix64(parent ^ 0x9e3779b97f4a7c15ULL) ^ mix64(salt + 0x632be59bd9b4e019ULL);
    for (int i = 0; i < bs; i++) h = mix64(h ^ ((uint64_t)(uint32_t)ids[i] + 0x2545f4914f6cdd1dULL));
    return h ? h : 1;
}

/* ---- hash table (linear probing, backward-shift deletion) ---- */

static int32_t table_find(const kv_pool *p, uint64_t h) {
    for (uint32_t i = (uint32_t)h & p->table_mask;; i = (i + 1) & p->table_mask) {
        const int32_t b = p->table[i];
        if (b < 0) return -1;
        if (p->hash[b] == h) return b;
    }
}

static void table_insert(kv_pool *p, int32_t b) {
    uint32_t i = (uint32_t)p->hash[b] & p->table_mask;
    while (p->table[i] >= 0) i = (i + 1) & p->table_mask;
    p->table[i] = b;
}

static void table_remove(kv_pool *p, int32_t b) {
    uint32_t i = (uint32_t)p->hash[b] & p->table_mask;
    while (p->table[i] != b) i = (i + 1) & p->table_mask;
    p->table[i] = -1;
    /* shift back the entries of the run that follows, so every entry stays reachable */
    for (uint32_t j = (i + 1) & p->table_mask; p->table[j] >= 0; j = (j + 1) & p->table_mask) {
        const int32_t e = p->table[j];
        const uint32_t home = (uint32_t)p->hash[e] & p->table_mask;
        /* e may move to i when its home is not in (i, j] cyclically */
        const bool stays = i < j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            p->table[i] = e;
            p->table[j] = -1;
            i = j;
        }
    }
}

/* ---- block lists ---- */

static void lru_unlink(kv_pool *p, int32_t b) {
    const int32_t pr = p->lru_prev[b], nx = p->lru_next[b];
    if (pr >= 0) p->lru_next[pr] = nx;
    else p->lru_head = nx;
    if (nx >= 0) p->lru_prev[nx] = pr;
    else p->lru_tail = pr;
    p->n_cached--;
}

static void lru_push(kv_pool *p, int32_t b) {
    p->lru_prev[b] = p->lru_tail;
    p->lru_next[b] = -1;
    if (p->lru_tail >= 0) p->lru_next[p->lru_tail] = b;
    else p->lru_head = b;
    p->lru_tail = b;
    p->n_cached++;
}

static void unregister(kv_pool *p, int32_t b) {
    if (!p->reg[b]) return;
    table_remove(p, b);
    p->reg[b] = false;
}

/* A block to write into, or -1: free blocks first (most recently freed: its pages are
 * resident already), else the oldest cached one. */
static int32_t block_alloc(kv_pool *p) {
    int32_t b = -1;
    if (p->n_free > 0) {
        b = p->free_stk[--p->n_free];
    } else if (p->lru_head >= 0) {
        b = p->lru_head;
        lru_unlink(p, b);
        unregister(p, b);
    }
    if (b >= 0) p->refs[b] = 1;
    return b;
}

static void block_release(kv_pool *p, int32_t b) {
    if (--p->refs[b] > 0) return;
    if (p->reg[b]) lru_push(p, b);
    else p->free_stk[p->n_free++] = b;
}

static void block_retain(kv_pool *p, int32_t b) {
    if (p->refs[b]++ == 0) lru_unlink(p, b); /* it was cached, nobody held it */
}

/* ---- pool ---- */

wick_status kv_pool_create(const kernel_table *K, wk_ctx *ctx, dtype dt, int n_layer, int n_kv,
                           int head_dim, int block_size, int n_blocks, bool prefix_cache,
                           kv_pool **out) {
    *out = NULL;
    if (dt != DT_F32 && dt != DT_F16 && dt != DT_BF16 && dt != DT_Q8_0)
        return err_set(WICK_ERR_UNSUPPORTED, "KV cache type %s is not supported (f32, f16, bf16, "
                                             "q8_0)", dtype_name(dt));
    if (dt == DT_Q8_0 && head_dim % 32)
        return err_set(WICK_ERR_UNSUPPORTED, "KV cache type q8_0 needs head_dim to be a multiple "
                                             "of 32 (this model: %d); use f16", head_dim);
    if (block_size < 16 || block_size % 16 || block_size > 1024)
        return err_set(WICK_ERR_INVALID_ARG, "KV block size %d: need a multiple of 16 in "
                                             "[16, 1024]", block_size);
    if (n_blocks < 1 || n_blocks > (1 << 28) || n_layer < 1 || n_kv < 1 || head_dim < 1)
        return err_set(WICK_ERR_INVALID_ARG, "KV pool of %d blocks: need at least one", n_blocks);
    kv_pool *p = calloc(1, sizeof *p);
    if (!p) return err_set(WICK_ERR_NOMEM, "out of memory");
    p->K = K;
    p->ctx = ctx;
    p->dt = dt;
    p->n_layer = n_layer;
    p->n_kv = n_kv;
    p->head_dim = head_dim;
    p->bs = block_size;
    p->n_blocks = n_blocks;
    p->prefix_cache = prefix_cache;
    p->row_bytes = dtype_row_bytes(dt, head_dim);
    p->block_bytes = (size_t)n_kv * block_size * p->row_bytes;
    p->region_bytes = p->block_bytes * (size_t)n_blocks;
    const size_t total = p->region_bytes * (size_t)n_layer;
    p->k = K->buf_alloc(ctx, total);
    p->v = K->buf_alloc(ctx, total);
    uint32_t cap = 16;
    while (cap < 2u * (uint32_t)n_blocks) cap <<= 1;
    p->table_mask = cap - 1;
    p->refs = calloc((size_t)n_blocks, sizeof *p->refs);
    p->reg = calloc((size_t)n_blocks, sizeof *p->reg);
    p->hash = calloc((size_t)n_blocks, sizeof *p->hash);
    p->free_stk = malloc(sizeof *p->free_stk * (size_t)n_blocks);
    p->lru_prev = malloc(sizeof *p->lru_prev * (size_t)n_blocks);
    p->lru_next = malloc(sizeof *p->lru_next * (size_t)n_blocks);
    p->table = malloc(sizeof *p->table * cap);
    if (prefix_cache) p->toks = malloc(sizeof *p->toks * (size_t)n_blocks * block_size);
    if (!p->k || !p->v || !p->refs || !p->reg || !p->hash || !p->free_stk || !p->lru_prev ||
        !p->lru_next || !p->table || (prefix_cache && !p->toks)) {
        kv_pool_free(p);
        return err_set(WICK_ERR_NOMEM, "out of memory for a KV pool of %d blocks (%.1f MiB)",
                       n_blocks, 2.0 * (double)total / (1 << 20));
    }
    for (int i = 0; i < n_blocks; i++) p->free_stk[i] = n_blocks - 1 - i; /* 0 pops first */
    p->n_free = n_blocks;
    memset(p->table, 0xff, sizeof *p->table * cap);
    p->lru_head = p->lru_tail = -1;
    *out = p;
    return WICK_OK;
}

void kv_pool_free(kv_pool *p) {
    if (!p) return;
    const size_t total = p->region_bytes * (size_t)p->n_layer;
    if (p->k) p->K->buf_free(p->ctx, p->k, total);
    if (p->v) p->K->buf_free(p->ctx, p->v, total);
    free(p->refs);
    free(p->reg);
    free(p->hash);
    free(p->toks);
    free(p->free_stk);
    free(p->lru_prev);
    free(p->lru_next);
    free(p->table);
    free(p);
}

void kv_pool_layer(const kv_pool *p, int layer, wk_kv_layer *o) {
    o->k = p->k + (size_t)layer * p->region_bytes;
    o->v = p->v + (size_t)layer * p->region_bytes;
    o->dt = p->dt;
    o->block_size = p->bs;
    o->row_bytes = p->row_bytes;
    o->block_bytes = p->block_bytes;
}

int kv_pool_block_size(const kv_pool *p) { return p->bs; }

int kv_pool_available(const kv_pool *p) { return p->n_free + p->n_cached; }

void kv_pool_stats(const kv_pool *p, kv_stats *o) {
    o->n_blocks = p->n_blocks;
    o->block_size = p->bs;
    o->cached = p->n_cached;
    o->free = p->n_free;
    o->used = p->n_blocks - p->n_cached - p->n_free;
    o->hits = p->hits;
    o->bytes_per_block = (int64_t)p->block_bytes * p->n_layer * 2;
}

void kv_pool_clear_cache(kv_pool *p) {
    while (p->lru_head >= 0) {
        const int32_t b = p->lru_head;
        lru_unlink(p, b);
        unregister(p, b);
        p->free_stk[p->n_free++] = b;
    }
}

/* ---- sequences ---- */

wick_status kv_seq_init(kv_seq *s, int max_tokens, uint64_t salt) {
    memset(s, 0, sizeof *s);
    if (max_tokens < 1) max_tokens = 1;
    const int max_blocks = max_tokens / 16 + 2; /* enough for any block size >= 16 */
    s->blocks = malloc(sizeof *s->blocks * (size_t)max_blocks);
    s->hashes = malloc(sizeof *s->hashes * (size_t)max_blocks);
    s->ids = malloc(sizeof *s->ids * (size_t)max_tokens);
    if (!s->blocks || !s->hashes || !s->ids) {
        free(s->blocks), free(s->hashes), free(s->ids);
        memset(s, 0, sizeof *s);
        return err_set(WICK_ERR_NOMEM, "out of memory for a sequence of %d tokens", max_tokens);
    }
    s->max_tokens = max_tokens;
    s->salt = salt;
    return WICK_OK;
}

void kv_seq_free(kv_pool *p, kv_seq *s) {
    if (!s) return;
    if (p) kv_seq_truncate(p, s, 0);
    free(s->blocks);
    free(s->hashes);
    free(s->ids);
    memset(s, 0, sizeof *s);
}

void kv_seq_truncate(kv_pool *p, kv_seq *s, int n) {
    if (n < 0) n = 0;
    if (n > s->n_tokens) return;
    const int keep = (n + p->bs - 1) / p->bs;
    while (s->n_blocks > keep) block_release(p, s->blocks[--s->n_blocks]);
    s->n_tokens = n;
    if (s->n_hashed > n / p->bs) s->n_hashed = n / p->bs;
}

void kv_seq_set_salt(kv_seq *s, uint64_t salt) { s->salt = salt; }

uint64_t kv_first_block_hash(const kv_pool *p, uint64_t salt, const int32_t *ids, int n) {
    if (n <= p->bs) return 0;
    return block_hash(0, salt, ids, p->bs);
}

int kv_seq_attach_prefix(kv_pool *p, kv_seq *s, const int32_t *ids, int n) {
    if (!p->prefix_cache || s->n_tokens != 0) return 0;
    const int bs = p->bs;
    uint64_t h = 0;
    int nb = 0;
    while ((nb + 1) * bs <= n - 1 && (nb + 1) * bs <= s->max_tokens) {
        const int32_t *blk = ids + (size_t)nb * bs;
        h = block_hash(h, s->salt, blk, bs);
        const int32_t b = table_find(p, h);
        if (b < 0 || memcmp(p->toks + (size_t)b * bs, blk, sizeof *blk * (size_t)bs) != 0) break;
        block_retain(p, b);
        s->blocks[nb] = b;
        s->hashes[nb] = h;
        nb++;
    }
    s->n_blocks = s->n_hashed = nb;
    s->n_tokens = nb * bs;
    if (s->n_tokens) memcpy(s->ids, ids, sizeof *ids * (size_t)s->n_tokens);
    p->hits += nb;
    return s->n_tokens;
}

wick_status kv_seq_reserve(kv_pool *p, kv_seq *s, int n) {
    if (n <= 0) return WICK_OK;
    if ((int64_t)s->n_tokens + n > s->max_tokens)
        return err_set(WICK_ERR_CONTEXT_FULL, "context full: %d tokens + %d new > %d",
                       s->n_tokens, n, s->max_tokens);
    const int bs = p->bs;
    const int need_blocks = (s->n_tokens + n + bs - 1) / bs;
    int fresh = need_blocks - s->n_blocks;
    /* the partial last block is written next: it must be this sequence's alone */
    int32_t last = -1;
    bool cow = false;
    if (s->n_tokens % bs) {
        last = s->blocks[s->n_blocks - 1];
        if (p->refs[last] > 1) cow = true;
    }
    if (fresh + (cow ? 1 : 0) > kv_pool_available(p))
        return err_set(WICK_ERR_NOMEM, "the KV cache is full: %d more blocks needed, %d "
                                       "available", fresh + (cow ? 1 : 0), kv_pool_available(p));
    if (last >= 0) {
        if (cow) {
            const int32_t nb = block_alloc(p);
            for (int l = 0; l < p->n_layer; l++) {
                const size_t o = (size_t)l * p->region_bytes;
                p->K->buf_copy(p->ctx, p->k + o + (size_t)nb * p->block_bytes,
                               p->k + o + (size_t)last * p->block_bytes, p->block_bytes);
                p->K->buf_copy(p->ctx, p->v + o + (size_t)nb * p->block_bytes,
                               p->v + o + (size_t)last * p->block_bytes, p->block_bytes);
            }
            block_release(p, last);
            s->blocks[s->n_blocks - 1] = nb;
        } else {
            unregister(p, last); /* its one holder is about to change it */
        }
    }
    for (int i = 0; i < fresh; i++) s->blocks[s->n_blocks++] = block_alloc(p);
    return WICK_OK;
}

void kv_seq_commit(kv_pool *p, kv_seq *s, const int32_t *ids, int n) {
    if (n <= 0) return;
    memcpy(s->ids + s->n_tokens, ids, sizeof *ids * (size_t)n);
    s->n_tokens += n;
    if (!p->prefix_cache) return;
    const int bs = p->bs;
    while ((s->n_hashed + 1) * bs <= s->n_tokens) {
        const int i = s->n_hashed;
        const int32_t *blk = s->ids + (size_t)i * bs;
        const uint64_t h = block_hash(i ? s->hashes[i - 1] : 0, s->salt, blk, bs);
        s->hashes[i] = h;
        s->n_hashed++;
        const int32_t b = s->blocks[i];
        if (p->reg[b]) continue;                /* attached from the cache */
        if (table_find(p, h) >= 0) continue;    /* an equal block is registered already */
        p->reg[b] = true;
        p->hash[b] = h;
        memcpy(p->toks + (size_t)b * bs, blk, sizeof *blk * (size_t)bs);
        table_insert(p, b);
    }
}
