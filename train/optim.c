/* optim.c — AdamW exactly as torch.optim.AdamW (single-tensor path, amsgrad off, no
 * maximize), learning-rate schedules as transformers' get_*_schedule_with_warmup, and
 * gradient clipping by global norm as torch.nn.utils.clip_grad_norm_.
 *
 * torch's update at step t (1-based), element-wise in f32 with the scalars computed in double
 * and rounded to f32 where torch passes them to a float kernel:
 *   p ← p·(1 − lr·wd)
 *   m ← m + (1−β1)·(g − m)              (lerp, weight 1−β1 < 0.5)
 *   v ← β2·v + (1−β2)·g²
 *   p ← p − (lr/(1−β1^t)) · m / (√v / √(1−β2^t) + eps)
 * Parameter groups: tensors marked decay get the weight decay, the others (norms, biases in
 * full training) none, as torch with two groups (weight_decay=wd and 0).
 * Not here: other optimizers, fused / multi-tensor variants. */
#include <math.h>

#include "train/train.h"

float train_lr_at(const wick_train_params *p, int64_t step) {
    const double s = (double)step, w = (double)p->warmup_steps;
    if (p->warmup_steps > 0 && step < p->warmup_steps) return (float)(p->lr * (s / w));
    switch (p->schedule) {
    case WICK_LR_LINEAR: {
        const double span = (double)p->total_steps - w;
        if (span <= 0) return 0.0f;
        double f = ((double)p->total_steps - s) / span;
        return (float)(p->lr * (f > 0 ? f : 0));
    }
    case WICK_LR_COSINE: {
        const double span = (double)p->total_steps - w;
        if (span <= 0) return 0.0f;
        double prog = (s - w) / span;
        if (prog > 1) prog = 1;
        double f = 0.5 * (1.0 + cos(M_PI * prog));
        return (float)(p->lr * (f > 0 ? f : 0));
    }
    default:
        return p->lr;
    }
}

float train_adamw_step(wick_trainer *tr, float lr) {
    const wick_train_params *p = &tr->p;
    const size_t n = tr->n_params;
    float *g = tr->grad;

    /* global norm (in double, like the sum of per-tensor norms torch takes) */
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
    const float norm = (float)sqrt(ss);
    if (p->max_grad_norm > 0) {
        const float coef = p->max_grad_norm / (norm + 1e-6f);
        if (coef < 1.0f)
            for (size_t i = 0; i < n; i++) g[i] *= coef;
    }

    tr->step++;
    const double t = (double)tr->step;
    const double bc1 = 1.0 - pow((double)p->beta1, t);
    const double bc2 = 1.0 - pow((double)p->beta2, t);
    const float decay = (float)(1.0 - (double)lr * (double)p->weight_decay);
    const float step_size = (float)((double)lr / bc1);
    const float bc2_sqrt = (float)sqrt(bc2);
    const float w1 = (float)(1.0 - (double)p->beta1);
    const float b2 = p->beta2, w2 = (float)(1.0 - (double)p->beta2);
    const float eps = p->eps;
    for (int k = 0; k < tr->n_tensors; k++) {
        const train_tensor *tt = &tr->tensors[k];
        float *w = tt->p, *m = tr->m + tt->off, *v = tr->v + tt->off;
        const float *gk = g + tt->off;
        const float dk = tt->decay ? decay : 1.0f;   /* torch skips the multiply at wd 0 */
        for (size_t i = 0; i < tt->n; i++) {
            const float gi = gk[i];
            if (tt->decay) w[i] *= dk;
            m[i] = m[i] + w1 * (gi - m[i]);
            v[i] = v[i] * b2 + w2 * gi * gi;
            const float denom = sqrtf(v[i]) / bc2_sqrt + eps;
            w[i] = w[i] + (-step_size) * (m[i] / denom);
        }
    }
    return norm;
}
