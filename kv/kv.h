/* kv.h — the paged KV cache: one pool of fixed-size blocks per engine (or session), block
 * tables per sequence, reference counting, copy-on-write and a prefix cache.
 *
 * Memory: the pool's K and V regions are backend buffers ([n_layer][n_blocks] blocks each,
 * kernels.h wk_kv_layer gives one layer's view). On the CPU they are reserved, not committed:
 * pages become resident as blocks are first written, and blocks are handed out lowest-number
 * first and reused most-recently-freed first, so resident memory follows the tokens held.
 *
 * A sequence (kv_seq) is a block table plus the token ids it holds. Positions [0, n_tokens)
 * are valid. Blocks are shared between sequences by reference counting:
 *   - prefix cache: a block whose block_size positions are all written is registered under a
 *     hash of (the previous block's hash, its token ids, the sequence's salt). The salt names
 *     everything else that changes the keys/values: the adapter (its uid) and its scale. A new
 *     sequence attaches the registered blocks of its longest matching prefix instead of
 *     recomputing them. Token ids are kept per block and compared on a hit, so a hash
 *     collision can never hand out wrong keys/values. Registered blocks nobody references
 *     stay cached (least recently released first out) until their memory is needed.
 *   - copy-on-write: a block is written in place only when this sequence is its one holder
 *     and it is not registered; otherwise the first write into it copies it to a fresh block.
 *
 * Not thread-safe: one pool is driven by one thread (the engine's stepping thread, or the
 * session's user). Not here: attention (kernels), scheduling (infer/engine.c). */
#ifndef WICK_KV_KV_H
#define WICK_KV_KV_H
#include <stdbool.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "wick.h"

typedef struct kv_pool kv_pool;

typedef struct kv_seq {
    int32_t *blocks;      /* block table: position p lives in blocks[p / block_size] */
    int n_blocks;         /* entries of `blocks` in use */
    int32_t *ids;         /* (max_tokens) token ids held, for hashing and prefix reuse */
    int n_tokens;         /* positions held: [0, n_tokens) */
    int max_tokens;       /* capacity of ids and, in blocks, of the table */
    uint64_t salt;        /* adapter identity and scale: blocks only match equal salts */
    uint64_t *hashes;     /* (max blocks) chain hash of each whole block, [0, n_hashed) */
    int n_hashed;         /* leading whole blocks hashed (and offered to the prefix cache) */
} kv_seq;

typedef struct kv_stats {
    int n_blocks, block_size;
    int used;             /* blocks referenced by at least one sequence */
    int cached;           /* registered blocks nobody references (reusable, evictable) */
    int free;             /* blocks never used or released unregistered */
    int64_t hits;         /* prefix-cache blocks attached instead of recomputed */
    int64_t bytes_per_block; /* K + V over all layers */
} kv_stats;

/* Creates a pool of n_blocks blocks of block_size positions (a multiple of 16) for n_layer
 * layers of n_kv heads of head_dim, elements of dt (DT_F32, DT_F16, DT_BF16 or DT_Q8_0 —
 * Q8_0 needs head_dim % 32 == 0). prefix_cache enables registration and lookup. The buffers
 * come from K's buf_alloc. */
wick_status kv_pool_create(const kernel_table *K, wk_ctx *ctx, dtype dt, int n_layer, int n_kv,
                           int head_dim, int block_size, int n_blocks, bool prefix_cache,
                           kv_pool **out);
void kv_pool_free(kv_pool *p);

/* View of layer l for the attention and kv_store kernels. */
void kv_pool_layer(const kv_pool *p, int layer, wk_kv_layer *out);
int kv_pool_block_size(const kv_pool *p);
void kv_pool_stats(const kv_pool *p, kv_stats *out);
/* Blocks a sequence could still obtain: free ones plus cached ones nobody holds. */
int kv_pool_available(const kv_pool *p);
/* Drops every cached block nobody holds (they become free). */
void kv_pool_clear_cache(kv_pool *p);

/* A new empty sequence able to hold max_tokens positions. */
wick_status kv_seq_init(kv_seq *s, int max_tokens, uint64_t salt);
/* Releases the sequence's blocks to the pool and frees its memory. */
void kv_seq_free(kv_pool *p, kv_seq *s);
/* Keeps positions [0, n) (n <= n_tokens) and releases blocks no longer needed. */
void kv_seq_truncate(kv_pool *p, kv_seq *s, int n);
/* Changes the salt of an empty sequence (adapter change). */
void kv_seq_set_salt(kv_seq *s, uint64_t salt);

/* For an empty sequence: attaches the registered blocks of the longest prefix of ids[0, n)
 * made only of whole blocks and leaving at least one id (the last) to compute, and records
 * those ids. Returns the number of positions attached (a multiple of block_size). */
int kv_seq_attach_prefix(kv_pool *p, kv_seq *s, const int32_t *ids, int n);

/* Hash of the first whole block of ids (with salt) as registration would compute it, or 0
 * when n <= block_size. Lets a scheduler notice two prompts about to compute the same block. */
uint64_t kv_first_block_hash(const kv_pool *p, uint64_t salt, const int32_t *ids, int n);

/* Makes positions [n_tokens, n_tokens + n) writable: allocates blocks, and copies a shared
 * partial last block (copy-on-write). All or nothing: WICK_ERR_NOMEM when the pool has too
 * few blocks (the sequence is unchanged), WICK_ERR_CONTEXT_FULL past max_tokens. */
wick_status kv_seq_reserve(kv_pool *p, kv_seq *s, int n);

/* Records that positions [n_tokens, n_tokens + n) now hold the keys/values of ids (after the
 * forward pass wrote them) and registers blocks that became whole. */
void kv_seq_commit(kv_pool *p, kv_seq *s, const int32_t *ids, int n);

#endif
