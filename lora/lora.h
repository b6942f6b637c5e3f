/* lora.h — LoRA adapters inside libwick: the in-memory adapter, the per-model registry, and
 * the helpers the decoder, the CLI and the tests share.
 *
 * An adapter holds, for every (layer, projection) it adapts, lora_A (r, in) and lora_B
 * (out, r) as f32 wk_weights (converted once at load, whatever the file dtype) and the
 * per-module scale α/r (or α/√r with rsLoRA, rank_pattern / alpha_pattern applied). The
 * decoder adds s·(x·Aᵀ)·Bᵀ after each adapted projection (unmerged application). In precision
 * fast on a host model whose projections are not F32, the decoder reads bf16 copies of A and
 * B made at registration (lora_adapter_compact; saving, merging and training use the f32
 * ones).
 *
 * Lifetime: adapters are reference counted with an atomic counter. The registry holds one
 * reference; each session or engine generation that uses it holds one more, so unloading an
 * adapter still in use only drops the registry's reference and the memory goes when the last
 * user lets go. An adapter never points into the model, so it may
 * outlive the registry entry (but sessions, and hence adapters, never outlive the model).
 *
 * In-memory layout follows the base model: for a base loaded from a llama GGUF
 * (model->rope_interleaved) the rows of lora_B of q/k are in llama.cpp's permuted order,
 * like the base q/k weights; otherwise in Hugging Face order (adapter_gguf.c).
 *
 * Not here: DoRA, modules_to_save, bias training ("lora_only"/"all"), embedding or lm_head
 * adapters. */
#ifndef WICK_LORA_LORA_H
#define WICK_LORA_LORA_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/lora_mod.h"
#include "wick.h"

/* "self_attn.q_proj", ..., "mlp.down_proj" (module path below model.layers.N). */
extern const char *const lora_module_path[LORA_N_PROJ];
/* "q_proj", ..., "down_proj". */
extern const char *const lora_proj_name[LORA_N_PROJ];

/* The module projection p belongs to, as PEFT names it: on a fused base (Phi-3) q/k/v are
 * one module (self_attn.qkv_proj) and gate/up another (mlp.gate_up_proj), whose LoRA is one A
 * and one B over the members' rows in order; elsewhere each projection is its own module.
 * Returns the number of member projections when p is the first of its module (path and name
 * set; either may be NULL), 0 for a later member (the module was reported at its first). */
static inline int lora_group(bool fused, int p, const char **path, const char **name) {
    static const char *const fp[2] = {"self_attn.qkv_proj", "mlp.gate_up_proj"};
    static const char *const fn[2] = {"qkv_proj", "gate_up_proj"};
    int f = -1, count = 1;
    if (fused && p >= LORA_Q && p <= LORA_V) {
        if (p != LORA_Q) return 0;
        f = 0, count = 3;
    } else if (fused && (p == LORA_GATE || p == LORA_UP)) {
        if (p != LORA_GATE) return 0;
        f = 1, count = 2;
    }
    if (path) *path = f < 0 ? lora_module_path[p] : fp[f];
    if (name) *name = f < 0 ? lora_proj_name[p] : fn[f];
    return count;
}

/* Whether the g members of a fused module, first its first member's pair (pairs in
 * projection order, as wick_adapter.pairs holds them), are adapted as one module: none of
 * them adapted, or all with one A (same shape and values). Otherwise false, with *bad (when
 * not NULL) the first member (1..g-1) that differs. The trainer and the adapter writer refuse
 * anything else on a fused base. */
static inline bool lora_module_one_a(const lora_pair *first, int g, int *bad) {
    for (int m = 1; m < g; m++) {
        const wk_weight *a0 = &first->A, *am = &first[m].A;
        if (!a0->data && !am->data) continue;
        if (!a0->data || !am->data || am->rows != a0->rows || am->cols != a0->cols ||
            memcmp(am->data, a0->data, sizeof(float) * (size_t)(a0->rows * a0->cols))) {
            if (bad) *bad = m;
            return false;
        }
    }
    return true;
}


struct wick_adapter {
    atomic_int refs;
    uint64_t uid;        /* unique per adapter object for the process (lora_next_uid) */
    bool fused;          /* the base fuses q/k/v and gate/up (Phi-3): each fused module is
                            adapted whole, its members' pairs hold equal A and their B rows
                            in the module's order (lora_group) */
    int qk_gguf_hd;      /* > 0: q/k lora_B rows are in llama.cpp's GGUF order (the adapter
                            was made for a base loaded from a llama GGUF); head_dim */
    char *name;          /* registry name (owned) */
    int n_layer;
    lora_pair *pairs;    /* (n_layer, LORA_N_PROJ) */
    int r_max;           /* largest rank of any pair (0 for an empty adapter) */
    float *data;         /* one block holding every A and B that had to be converted */
    struct st_set *st;   /* the adapter file, kept mapped when A/B point into it (F32) */
    void *config;        /* cJSON object of adapter_config.json as read (owned), for save */
    /* On a model whose kernel table is not a host table (a GPU): a copy of every A and B in
       one device block, and pairs pointing into it (what the forward pass applies); set when
       the adapter is registered, freed with it. NULL otherwise. */
    const kernel_table *dev_kern;
    void *dev_data;
    size_t dev_bytes;
    lora_pair *dev_pairs;
    /* On a host model in precision fast whose projections are not F32: a bf16 copy of every
       A and B (rounded to nearest even) and pairs pointing into it, what the forward pass
       applies once published — half the bytes a decode step streams per adapter
       (lora_adapter_compact makes it on a background thread, so loading does not wait for it;
       until then the forward pass applies the f32 pairs). half_off, set once training starts
       on the adapter (its f32 A/B change), sends the forward pass back to the f32 pairs for
       good; the copy is freed with the adapter (a pass may still be reading it). */
    uint16_t *half_data;
    _Atomic(lora_pair *) half_pairs;
    atomic_bool half_off;
    atomic_int half_state; /* LORA_HALF_* */
};

enum { LORA_HALF_NONE, LORA_HALF_RUNNING, LORA_HALF_DONE, LORA_HALF_FAILED };

static inline const lora_pair *lora_get(const wick_adapter *a, int layer, int proj) {
    return &a->pairs[(size_t)layer * LORA_N_PROJ + proj];
}

/* The pairs the kernels read: the device copies on a device model, else the bf16 copies
 * while they are in use, else the f32 ones. */
static inline const lora_pair *lora_adapter_kpairs(const wick_adapter *a) {
    if (a->dev_pairs) return a->dev_pairs;
    const lora_pair *h = atomic_load_explicit(&a->half_pairs, memory_order_acquire);
    if (h && !atomic_load_explicit(&a->half_off, memory_order_acquire)) return h;
    return a->pairs;
}

/* Starts making the bf16 copies (half_pairs) when `model` is a host model in precision fast
 * and its projection weights are not F32 (an F32 base is the user asking for f32
 * arithmetic); no-op otherwise, when started before, or with WICK_LORA_BF16=0 in the
 * environment (an A/B switch for benchmarks). The copy is made on a detached thread that
 * holds a reference to `a` and reads only `a` (made here if no thread can start); out of
 * memory leaves `a` without copies (half_state FAILED), which only costs speed. */
void lora_adapter_compact(wick_adapter *a, const struct wick_model *model);
/* Waits until a compaction lora_adapter_compact started has finished (tests, benchmarks). */
void lora_adapter_compact_wait(wick_adapter *a);

/* From now on the forward pass applies `a`'s f32 A/B (the trainer calls this before it
 * changes them). */
static inline void lora_adapter_full_precision(wick_adapter *a) {
    atomic_store_explicit(&a->half_off, true, memory_order_release);
}

/* Copies every A and B of `a` into K's memory (dev_pairs) when K is not a host table; no-op
 * otherwise. WICK_ERR_NOMEM (or the device's error) leaves `a` without device copies. */
wick_status lora_adapter_upload(wick_adapter *a, const kernel_table *K);

/* A process-unique id for a new adapter object (never 0): sessions remember which adapter
 * their cached keys/values were computed with, and a freed adapter's address may be reused. */
uint64_t lora_next_uid(void);

/* A new adapter (refs = 1, fresh uid) for `model` with n_layer × LORA_N_PROJ empty pairs and
 * one block of n_floats f32 for converted A/B data; r_max as given. NULL when out of memory
 * (nothing left allocated). */
wick_adapter *lora_adapter_new(const wick_model *model, int n_layer, size_t n_floats, int r_max);

void lora_adapter_retain(wick_adapter *a);
/* Drops one reference; the last one frees the adapter. NULL is ignored. */
void lora_adapter_release(wick_adapter *a);

/* Reads a PEFT folder and checks it against `model` (not registered; refs = 1). */
wick_status lora_adapter_read(const wick_model *model, const char *dir, wick_adapter **out);

/* Same as lora_adapter_read for an adapter_config.json text (config_len bytes) and an
 * adapter_model.safetensors image (st_len bytes) held in memory. Every tensor is copied (the
 * adapter never points into st_data), so both buffers may be freed once this returns. Used by
 * the fuzz harnesses. */
wick_status lora_adapter_read_mem(const wick_model *model, const char *config_json,
                                  size_t config_len, const void *st_data, size_t st_len,
                                  wick_adapter **out);

/* adapter_config.json parsed and checked without a model (adapter_config.c): config fields
 * wick cannot honour are refused by name; r and rank_pattern values must be integers in
 * [1, INT_MAX], lora_alpha and alpha_pattern values finite with |α| <= FLT_MAX; every regex
 * (a string target_modules, pattern keys) compiles. `where` names the file in messages. */
typedef struct lora_config lora_config;
struct cJSON;
wick_status lora_config_parse(const char *json, size_t len, const char *where,
                              lora_config **out);
void lora_config_free(lora_config *c);
const char *lora_config_where(const lora_config *c);
/* Is module `name` ("model.layers.3.self_attn.q_proj") targeted? 1 yes, 0 no, -1 error
 * (a regex that exceeds the match step limit; message set). */
int lora_config_targets(const lora_config *c, const char *name);
/* target_modules when it is a list of names (array of strings), NULL when it is a regex. */
const struct cJSON *lora_config_target_list(const lora_config *c);
/* Rank of module `name` (rank_pattern, else r); *from_pattern (may be NULL) tells which. */
wick_status lora_config_module(const lora_config *c, const char *name, int *rank,
                               bool *from_pattern);
/* Scale of module `name` with rank `rank` (>= 1): α/r or α/√r, alpha_pattern applied. */
wick_status lora_config_scale(const lora_config *c, const char *name, int rank, float *scale);
/* Hands over the parsed JSON (the caller frees it with cJSON_Delete); c stays only freeable. */
struct cJSON *lora_config_take_json(lora_config *c);

/* Writes `a` as a PEFT folder (adapter_config.json + adapter_model.safetensors) at out_dir,
 * replacing the folder as a whole (base/fileio.h dir_txn; other files in it are kept).
 * base_name: base_model_name_or_path to write when the adapter has none. */
wick_status lora_adapter_write(const wick_adapter *a, const char *out_dir, const char *base_name);
/* The same two files written (each atomically) into the existing folder `dir`, e.g. the stage
 * of a dir_txn that also receives other files (wick_trainer_save). */
wick_status lora_adapter_write_files(const wick_adapter *a, const char *dir,
                                     const char *base_name);

/* Reads a llama.cpp GGUF LoRA file and checks it against `model` (not registered; refs = 1).
 * lora_adapter_read calls it for a path that is a regular file. */
wick_status lora_adapter_read_gguf(const wick_model *model, const char *path, wick_adapter **out);
/* Same for a GGUF image of `len` bytes in memory (copied: data may be freed afterwards). */
wick_status lora_adapter_read_gguf_mem(const wick_model *model, const void *data, size_t len,
                                       wick_adapter **out);

/* Writes `a` (in `model`'s layout) as a llama.cpp GGUF LoRA file at `path` (atomic). */
wick_status lora_adapter_write_gguf(const wick_model *model, const wick_adapter *a,
                                    const char *path);

/* Row permutation of q/k projection outputs between Hugging Face order and llama.cpp's GGUF
 * order (per head of head_dim rows): the source row that destination row `row` takes when
 * converting to GGUF order (to_gguf) or back to HF order (!to_gguf). */
int64_t lora_qk_row(int64_t row, int head_dim, bool to_gguf);

/* A random adapter for benchmarks and tests: rank r on the projections in `proj_mask`
 * (bit LORA_Q ...), A ~ U(-1/√in, 1/√in), B ~ U(-b, b) with b = 0.02, seeded, lora_alpha
 * = alpha. refs = 1, not registered. */
wick_status lora_adapter_random(const wick_model *model, int r, float alpha, unsigned proj_mask,
                                uint64_t seed, wick_adapter **out);

/* Registers `a` under `name` (which must be new), taking over the caller's reference (on
 * success only). The registry lives in the model's extension slot (model.h), created on first
 * use. On a model on a device, `a`'s matrices are copied there first (lora_adapter_upload). */
wick_status lora_registry_add(wick_model *model, wick_adapter *a, const char *name);
/* Looks `name` up and returns it with one more reference (release it), or NULL. */
wick_adapter *lora_registry_get(const wick_model *model, const char *name);

/* Frees a handle made by wick_model_merge_adapter (its free_self hook). */
void lora_merged_free(wick_model *model);

/* The widest LoRA rank any registered adapter of `model` has (0 without adapters). */
int lora_registry_max_rank(const wick_model *model);

#endif
