/* lora_mod.h — what a LoRA module is to the decoder: the projections of a decoder layer that
 * adapters may target, and one adapted projection's A, B and scale. lora/ builds adapters out
 * of these (reading, writing, training them); the model only applies them, so this header is
 * all the model knows of LoRA (no include of lora/ from model/). */
#ifndef WICK_MODEL_LORA_MOD_H
#define WICK_MODEL_LORA_MOD_H
#include "kernels/kernels.h"

/* The projections an adapter may target, in decoder order. */
enum { LORA_Q, LORA_K, LORA_V, LORA_O, LORA_GATE, LORA_UP, LORA_DOWN, LORA_N_PROJ };

typedef struct lora_pair {
    wk_weight A;        /* (r, in) f32; A.data == NULL: this (layer, proj) is not adapted */
    wk_weight B;        /* (out, r) f32 */
    float scale;        /* α/r or α/√r for this module (patterns applied), before the caller's
                           multiplier */
    dtype file_dt;      /* dtype of lora_A / lora_B in the file, written back by save */
} lora_pair;

/* Rows [row0, row0 + n) of a batch apply the adapter whose (n_layer, LORA_N_PROJ) modules are
 * `pairs`, each scaled by its own scale × mult: y += scale·mult·((x·Aᵀ)·Bᵀ). */
typedef struct lora_run {
    int row0, n;
    const lora_pair *pairs;
    float mult;
} lora_run;

#endif
