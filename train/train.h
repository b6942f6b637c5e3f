/* train.h — internals of the LoRA trainer (train/): the trainer object, the training forward /
 * backward over a batch (graph.c), the optimizer and schedules (optim.c) and the public API
 * with checkpoints (trainer.c).
 *
 * Parameters: every lora_A (r, in) and lora_B (out, r) of the trained adapter lives in one
 * f32 block owned by the adapter (a->data), in (layer, proj, A then B) order; the trainer
 * keeps gradients and the two AdamW moments in blocks of the same layout, so the optimizer is
 * a loop over one array. Base weights are frozen and never written.
 *
 * Not here: data loading and tokenization (cli/cmd_train.c), dropout (PEFT's default for
 * training examples is 0 and the golden has none), training of biases, embeddings or norms. */
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
} train_slot;

/* Activations kept by the forward for the backward of one layer (rows N = batch·seq_len). */
typedef struct train_layer_acts {
    float *x_in;            /* (N, d) residual entering the layer */
    float *xn1;             /* (N, d) attention RMSNorm output */
    float *q, *k, *v;       /* (N, qd), (N, kvd) x2, q/k after RoPE */
    float *p;               /* (batch, n_head, T, T) attention probabilities */
    float *att;             /* (N, qd) attention output (o_proj input) */
    float *x_mid;           /* (N, d) residual after the attention block */
    float *xn2;             /* (N, d) MLP RMSNorm output */
    float *g, *u, *h;       /* (N, ff) gate, up (pre-activation), silu(g)·u */
    float *t[LORA_N_PROJ];  /* (N, r) x·Aᵀ of each adapted projection (NULL if not adapted) */
} train_layer_acts;

struct wick_trainer {
    wick_model *model;
    wick_adapter *adapter;      /* one reference held */
    wick_train_params p;
    wk_pool *pool;
    wk_ctx ctx;                 /* kernel context: the pool */

    train_slot *slots;
    int n_slots;
    size_t n_params;            /* floats in the block */
    float *params;              /* = adapter->data */
    float *grad, *m, *v;        /* (n_params) each */
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
    int32_t *pos;               /* (N) position of each row: row i of a sequence is at i */
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

/* One AdamW step (torch semantics) on tr->params with tr->grad at learning rate lr; clips the
 * gradient by global norm first when p.max_grad_norm > 0. Returns the pre-clip norm. */
float train_adamw_step(wick_trainer *tr, float lr);

#endif
