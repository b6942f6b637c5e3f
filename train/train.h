/* train.h — internals of the trainer (train/): the trainer object, the training forward /
 * backward over a batch (graph.c), the optimizer and schedules (optim.c) and the public API
 * with checkpoints (trainer.c).
 *
 * Two modes, one forward/backward:
 *  - LoRA: every lora_A (r, in) and lora_B (out, r) of the trained adapter lives in one f32
 *    block owned by the adapter (a->data), in (layer, proj, A then B) order. Base weights are
 *    frozen and never written.
 *  - full (wick_trainer_create_full): every weight of the model is trained. At creation the
 *    matrices are converted to f32 into one block the model owns from then on
 *    (wick_model.train_block) and the model's matrices point into it; norms and biases are
 *    the model's own f32 arrays, trained in place. A tied lm_head is the embedding: one
 *    parameter, two gradient contributions.
 * Either way the trainer lists its parameters as tensors (train_tensor: where the values are,
 * where its gradient and moments start in tr->grad / tr->m / tr->v, whether weight decay
 * applies), and the optimizer is a loop over that list.
 *
 * Not here: data loading and tokenization (cli/cmd_train.c), dropout (PEFT's default for
 * training examples is 0 and the golden has none), bf16 master weights. */
#ifndef WICK_TRAIN_TRAIN_H
#define WICK_TRAIN_TRAIN_H
#include <stdint.h>

#include "base/pool.h"
#include "lora/lora.h"
#include "model/model.h"
#include "wick.h"

/* One adapted (layer, projection): offsets of its A and B in the parameter block. */
typedef struct train_slot {
    int layer, proj;
    int r, in, out;
    size_t off_a, off_b;    /* floats into params / grads / moments */
    int group;              /* projections in this slot's module when it is the module's first
                               (1 unless fused, lora_group), 0 for a later member of a fused
                               module: it shares the first's A, its B rows follow the first's */
} train_slot;

/* One trainable tensor: n floats at p; its gradient and AdamW moments are tr->grad/m/v + off.
 * name: the Hugging Face / PEFT key it is saved under. */
typedef struct train_tensor {
    float *p;
    size_t n, off;
    int64_t rows, cols;     /* cols 0 for a vector */
    bool decay;             /* weight decay applies (matrices; not norms or biases) */
    bool plus_one;          /* p holds 1 + w where files hold w (Gemma's norms) */
    float **g;              /* the trainer's pointer to this tensor's gradient (tr->g_embd,
                               tr->lg[l].w[q], ...), set to tr->grad + off once grad exists */
    char name[128];
} train_tensor;

/* Gradient destinations of one layer in full mode (pointers into tr->grad; NULL = the model
 * has no such parameter, e.g. no q bias on LLaMA). */
typedef struct train_layer_grads {
    float *w[LORA_N_PROJ];  /* (out, in) of q, k, v, o, gate, up, down */
    float *b[LORA_N_PROJ];  /* (out) biases */
    float *attn_norm, *mlp_norm;
    float *post_attn_norm, *post_mlp_norm; /* (d) Gemma's block-output norms, else NULL */
    float *q_norm, *k_norm;  /* (hd) per-head q/k norm weights (Qwen3, Gemma 3), else NULL;
                                (n_head·hd), (n_kv·hd) over the whole projection (OLMoE) */
    float *router;           /* (E, d) a mixture-of-experts layer's router, else NULL */
    float **exp;             /* (3·E) its experts' gate [e], up [E + e], down [2E + e]: (fe, d),
                                (fe, d), (d, fe); NULL without experts */
} train_layer_grads;

/* Activations kept by the forward for the backward of one layer (rows N = batch·seq_len). */
typedef struct train_layer_acts {
    float *x_in;            /* (N, d) residual entering the layer */
    float *xn1;             /* (N, d) attention RMSNorm output */
    float *q, *k, *v;       /* (N, qd), (N, kvd) x2, q/k after RoPE */
    float *q_raw, *k_raw;   /* (N, qd), (N, kvd): q/k before the per-head norm (qk_norm), else NULL */
    float *o_raw, *d_raw;   /* (N, d) x2: Gemma's block outputs before their norms, else NULL */
    float *p;               /* (batch, n_head, T, T) attention probabilities */
    float *att;             /* (N, qd) attention output (o_proj input) */
    float *x_mid;           /* (N, d) residual after the attention block */
    float *xn2;             /* (N, d) MLP RMSNorm output */
    float *g, *u, *h;       /* (N, ff) gate, up (pre-activation), silu(g)·u */
    float *t[LORA_N_PROJ];  /* (N, r) x·Aᵀ of each adapted projection (NULL if not adapted) */
    /* a mixture-of-experts layer (else NULL): router softmax (N, E), the k choices of each row
       and their weights (N, k), and per choice the expert's gate / up (N·k, ff_expert) and
       output before its weight (N·k, d) */
    float *moe_p, *moe_w, *moe_g, *moe_u, *moe_y;
    int32_t *moe_sel;
} train_layer_acts;

struct wick_trainer {
    wick_model *model;
    wick_adapter *adapter;      /* one reference held */
    wick_train_params p;
    wk_pool *pool;
    wk_ctx ctx;                 /* kernel context: the pool */

    bool full;                  /* full-parameter training (adapter NULL) */
    train_slot *slots;          /* LoRA mode: the adapted projections */
    int n_slots;
    train_tensor *tensors;      /* every trainable tensor, both modes */
    int n_tensors;
    size_t n_params;            /* floats in all tensors */
    float *params;              /* LoRA: = adapter->data (tensors point into it); full: NULL */
    float *grad, *m, *v;        /* (n_params) each, tensor by tensor */
    train_layer_grads *lg;      /* full mode: (n_layer) */
    float *g_embd, *g_head;     /* full mode: embedding and untied lm_head (NULL when tied) */
    float *g_final_norm;
    int64_t step;               /* optimizer steps taken */
    int micro;                  /* micro-batches accumulated toward the next step */
    float last_lr, last_grad_norm;

    /* activation arena for the last shape (grown when a larger batch comes) */
    int cap_rows, cap_T, cap_B;
    float *arena;
    size_t arena_floats;
    train_layer_acts *acts;     /* (n_layer) */
    float *x_final, *xn_final;  /* (N, d) */
    float *logits;              /* (N, vocab); becomes dlogits in the backward */
    float *rope_cos, *rope_sin, *rope_nsin;  /* (T, hd/2) */
    /* backward scratch */
    float *dx, *dxn, *dq, *dk, *dv, *datt, *dg, *du, *dh, *dt, *wrow;
    float *ds;                  /* (T, T) attention backward scratch */
    float *dk_raw;              /* (N, kvd) gradient at k before its per-head norm (qk_norm) */
    float *ds2;                 /* (T, T) recomputed scores for soft-capping's backward, or NULL */
    float *rope_cos_l, *rope_sin_l, *rope_nsin_l; /* Gemma 3 sliding layers' tables, or NULL */
    int32_t *pos;               /* (N) position of each row: row i of a sequence is at i */
    /* mixture of experts: the forward's gather buffers (N, d) x2, (N) x2; the backward's
       per-expert input gradient (N, d) and weighted output gradient (N, d), the gradients of
       the choices' weights (N, k) and of the router logits (N, E); NULL without experts */
    float *moe_x, *moe_y, *moe_wrow, *moe_dx, *moe_dy, *moe_dw, *moe_dl;
    int32_t *moe_rows, *moe_sidx, *moe_choice, *moe_off; /* the forward's plan (layer.h) */
};

/* Forward (and, when `backward`, backward accumulating grad_scale·dL/dθ into tr->grad) over
 * `batch` sequences of seq_len ids. labels: NULL = ids; else aligned with ids, the token at t
 * is predicted from positions < t (HF shift), -100 ignored. *loss = mean cross-entropy over the
 * predicted tokens, *n_targets their count (0 gives loss 0 and no gradient). logits_out
 * (optional): (batch·seq_len, vocab) copy of the logits. Ids are range-checked. */
wick_status train_forward_backward(wick_trainer *tr, const int32_t *ids, const int32_t *labels,
                                   int batch, int seq_len, bool backward, float grad_scale,
                                   float *loss, int64_t *n_targets, float *logits_out);

/* Learning rate of optimizer step `step` (0-based) under the trainer's schedule. */
float train_lr_at(const wick_train_params *p, int64_t step);

/* One AdamW step (torch semantics) on every tensor with tr->grad at learning rate lr (weight
 * decay only on tensors marked decay); clips the gradient by global norm first when
 * p.max_grad_norm > 0. Returns the pre-clip norm. */
float train_adamw_step(wick_trainer *tr, float lr);

#endif
