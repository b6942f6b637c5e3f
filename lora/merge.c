/* merge.c — merged mode: a new model handle with W' = W + s·B·A in private copies of the
 * adapted matrices, and writing any model as a Hugging Face folder or a GGUF file
 * (wick_model_save, used by `wick merge`).
 *
 * Numerics: delta = B·A is computed in f32 by sgemm (OpenBLAS), a block of rows at a time,
 * then W'[o,i] = W[o,i] + s·delta[o,i] in f32 and rounded once to the base dtype (round to
 * nearest even for bf16/f16). PEFT computes B@A·s in the weight dtype and adds;
 * for f32 bases the two agree to a few ulps (the fixture's merged-vs-unmerged gap is 3.6e-7).
 * A block-quantized base (Q8_0, Q4_0, Q5_0, Q4_K, Q6_K) is dequantized row by row, merged in
 * f32 and requantized to the same block type with the reference quantizer
 * (quant_quantize_row), so the merged model keeps the base's size and kernels; the merge then
 * costs one more rounding of the adapted matrices at that type (test_lora_quant.c bounds it).
 * The base is never written to: "unmerge" is freeing the merged handle, so the original
 * weights are restored exactly by construction.
 *
 * Not here: keeping the merged matrices unrounded for a quantized base (they are requantized
 * like the base; a folder written from it holds the dequantized requantized values). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cblas.h>

#include "base/error.h"
#include "base/fileio.h"
#include "formats/safetensors.h"
#include "kernels/quant.h"
#include "lora/lora.h"
#include "model/gguf_tok.h"
#include "model/family.h"
#include "model/model.h"
#include "model/model_export.h"
#include "model/model_gguf.h"

static wk_weight *proj_weight(layer_weights *w, int p) {
    wk_weight *ws[LORA_N_PROJ] = {&w->wq, &w->wk, &w->wv, &w->wo,
                                  &w->w_gate, &w->w_up, &w->w_down};
    return ws[p];
}

#define MERGE_BLOCK 64 /* output rows per sgemm call */

/* Writes W + s·B·A into a new buffer in W's dtype: rows of dtype_row_bytes(dt, cols) bytes,
 * so block-quantized types get their block layout (requantized per row). NULL when out of
 * memory. */
static void *merge_matrix(const wk_weight *W, const lora_pair *p, float s) {
    const int64_t rows = W->rows, cols = W->cols, r = p->A.rows;
    const size_t rb = dtype_row_bytes(W->dt, cols);
    const bool quant = dtype_is_quant(W->dt);
    unsigned char *out = malloc(rb * (size_t)rows + 1);
    float *row = malloc(sizeof(float) * (size_t)(cols ? cols : 1));
    float *delta = malloc(sizeof(float) * (size_t)(cols ? cols : 1) * MERGE_BLOCK);
    if (!out || !row || !delta) {
        free(out);
        free(row);
        free(delta);
        return NULL;
    }
    const float *A = p->A.data, *B = p->B.data;
    for (int64_t o0 = 0; o0 < rows; o0 += MERGE_BLOCK) {
        const int64_t nb = rows - o0 < MERGE_BLOCK ? rows - o0 : MERGE_BLOCK;
        /* delta (nb, cols) = B[o0:o0+nb] (nb, r) · A (r, cols) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nb, (int)cols, (int)r, 1.0f,
                    B + o0 * r, (int)r, A, (int)cols, 0.0f, delta, (int)cols);
        for (int64_t b = 0; b < nb; b++) {
            const int64_t o = o0 + b;
            const float *d = delta + b * cols;
            kernels_row_to_f32(row, W, o);
            for (int64_t i = 0; i < cols; i++) row[i] += s * d[i];
            unsigned char *dst = out + rb * (size_t)o;
            if (quant) quant_quantize_row(W->dt, dst, row, cols);
            else if (W->dt == DT_F32) memcpy(dst, row, sizeof(float) * (size_t)cols);
            else
                for (int64_t i = 0; i < cols; i++) {
                    uint16_t h = W->dt == DT_BF16 ? f32_to_bf16(row[i]) : f32_to_f16(row[i]);
                    memcpy(dst + 2 * i, &h, 2);
                }
        }
    }
    free(row);
    free(delta);
    return out;
}

wick_status wick_model_merge_adapter(const wick_model *base, const char *name, float scale,
                                     wick_model **merged) {
    if (!merged) return err_set(WICK_ERR_INVALID_ARG, "wick_model_merge_adapter: merged is NULL");
    *merged = NULL;
    if (!base || !name)
        return err_set(WICK_ERR_INVALID_ARG, "wick_model_merge_adapter: NULL base or name");
    if (!kernels_is_host(base->kern)) /* the merged copies would be host matrices */
        return err_set(WICK_ERR_UNSUPPORTED, "wick_model_merge_adapter: the model is on %s; "
                       "merging runs on the CPU only in this version", base->kern->name);
    wick_adapter *a = lora_registry_get(base, name);
    if (!a) return err_set(WICK_ERR_NOT_FOUND, "no adapter named '%s' is loaded", name);
    const int L = base->cfg.n_layer;
    wick_model *m = calloc(1, sizeof *m);
    wick_status st = WICK_OK;
    if (!m) {
        st = err_set(WICK_ERR_NOMEM, "out of memory");
        goto out;
    }
    /* borrow everything, then replace layers and the adapted matrices */
    memcpy(m, base, sizeof *m);
    model_ext_init(m);  /* its own (empty) registry, never the base's */
    m->free_self = lora_merged_free;
    m->merged_bufs = NULL;
    m->n_merged_bufs = 0;
    m->merge_base = base->merge_base ? base->merge_base : base;
    m->path = NULL;
    m->layers = NULL;
    m->path = strdup(base->path);
    m->layers = malloc(sizeof *m->layers * (size_t)L);
    m->merged_bufs = calloc((size_t)L * LORA_N_PROJ, sizeof *m->merged_bufs);
    if (!m->path || !m->layers || !m->merged_bufs) {
        st = err_set(WICK_ERR_NOMEM, "out of memory");
        goto out;
    }
    memcpy(m->layers, base->layers, sizeof *m->layers * (size_t)L);
    for (int l = 0; l < L && !st; l++) {
        for (int p = 0; p < LORA_N_PROJ; p++) {
            const lora_pair *pr = lora_get(a, l, p);
            if (!pr->A.data) continue;
            wk_weight *W = proj_weight(&m->layers[l], p);
            if (!(dtype_is_quant(W->dt) || W->dt == DT_F32 || W->dt == DT_F16 ||
                  W->dt == DT_BF16) || (W->cols && !dtype_row_bytes(W->dt, W->cols))) {
                st = err_set(WICK_ERR_UNSUPPORTED, "layer %d %s: cannot merge into %s weights "
                             "of %lld columns", l, lora_proj_name[p], dtype_name(W->dt),
                             (long long)W->cols);
                break;
            }
            void *buf = merge_matrix(W, pr, pr->scale * scale);
            if (!buf) {
                st = err_set(WICK_ERR_NOMEM, "out of memory merging layer %d %s", l,
                             lora_proj_name[p]);
                break;
            }
            m->merged_bufs[m->n_merged_bufs++] = buf;
            W->data = buf;
        }
    }
out:
    lora_adapter_release(a);
    if (st) {
        wick_model_free(m);
        return st;
    }
    *merged = m;
    return WICK_OK;
}

/* Releases what a merged handle owns (called by wick_model_free). */
void lora_merged_free(wick_model *m) {
    for (int i = 0; i < m->n_merged_bufs; i++) free(m->merged_bufs[i]);
    free(m->merged_bufs);
    free(m->layers);
    free(m->path);
    model_ext_destroy(m);
    free(m);
}

static wick_status copy_file(const char *src_dir, const char *dst_dir, const char *name,
                             bool required) {
    char *src = path_join(src_dir, name), *dst = path_join(dst_dir, name);
    wick_status st = WICK_OK;
    if (!src || !dst) st = err_set(WICK_ERR_NOMEM, "out of memory");
    else if (!file_exists(src)) {
        if (required) st = err_set(WICK_ERR_IO, "%s: missing", src);
    } else {
        char *data = NULL;
        size_t n = 0;
        st = file_read_all(src, &data, &n);
        if (!st) st = file_write_atomic(dst, data, n);
        free(data);
    }
    free(src);
    free(dst);
    return st;
}

static bool ends_with_gguf(const char *s) {
    size_t n = strlen(s);
    return n >= 5 && strcasecmp(s + n - 5, ".gguf") == 0;
}

/* GGUF file: every matrix in its in-memory type (merged ones in the base's block type, no
 * requantization), the tokenizer metadata of the source (GGUF keys or tokenizer.json). */
static wick_status save_gguf(const wick_model *m, const char *path) {
    gguf_tok_meta tm;
    wick_status st = m->gguf ? gguf_tok_meta_from_gguf(m->gguf, &tm)
                             : gguf_tok_meta_from_folder(m->path, &tm);
    if (!st) st = gguf_tok_meta_pad(&tm, m->tok_embd.rows);
    if (st) {
        gguf_tok_meta_free(&tm);
        return st;
    }
    gguf_tok_meta_drop_ids(&tm);   /* the model's own bos/eos/pad are written */
    st = model_gguf_save(m, path, MODEL_GGUF_KEEP, tm.kv, tm.n);
    gguf_tok_meta_free(&tm);
    return st;
}

wick_status wick_model_save(const wick_model *m, const char *out_dir) {
    if (!m || !out_dir || !out_dir[0])
        return err_set(WICK_ERR_INVALID_ARG, "wick_model_save: NULL argument or empty path");
    if (ends_with_gguf(out_dir)) return save_gguf(m, out_dir);
    if (m->merge_base && family_get(m->cfg.arch)->fused) /* merged rows of one fused tensor */
        return err_set(WICK_ERR_UNSUPPORTED, "%s: saving a merged %s model is not supported yet (its "
                       "q/k/v and gate/up live in fused tensors)", out_dir, m->cfg.architecture);
    /* a GGUF source has no safetensors to copy: HF names, matrices dequantized/widened to the
       type model_export_default_dtype picks (BF16 for quantized), config and tokenizer rebuilt */
    if (m->gguf) return model_export_folder(m, out_dir, model_export_default_dtype(m));
    const int n = st_count(m->st);
    st_write_tensor *t = calloc((size_t)(n ? n : 1), sizeof *t);
    if (!t) return err_set(WICK_ERR_NOMEM, "out of memory");
    /* the folder is built beside out_dir and swapped in whole (base/fileio.h dir_txn) */
    dir_txn txn;
    wick_status st = dir_txn_begin(out_dir, &txn);
    if (st) {
        free(t);
        return st;
    }
    for (int i = 0; i < n; i++) {
        const st_tensor *s = st_at(m->st, i);
        t[i] = (st_write_tensor){.name = s->name, .dt = s->dt, .ndim = s->ndim, .data = s->data};
        memcpy(t[i].shape, s->shape, sizeof s->shape);
    }
    /* the matrices the model really uses (merged copies where there are some) */
    for (int l = 0; l < m->cfg.n_layer; l++) {
        for (int p = 0; p < LORA_N_PROJ; p++) {
            const wk_weight *W = proj_weight(&m->layers[l], p);
            char nm[128];
            snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", l, lora_module_path[p]);
            for (int i = 0; i < n; i++)
                if (!strcmp(t[i].name, nm)) t[i].data = W->data;
        }
    }
    char *wpath = path_join(txn.stage, "model.safetensors");
    const char *mk[] = {"format"}, *mv[] = {"pt"};
    st = wpath ? st_write(wpath, t, n, mk, mv, 1) : err_set(WICK_ERR_NOMEM, "out of memory");
    free(wpath);
    free(t);
    static const char *const extra[] = {"generation_config.json", "tokenizer.json",
                                        "tokenizer_config.json", "special_tokens_map.json",
                                        "vocab.txt", "merges.txt", "vocab.json",
                                        "chat_template.jinja", "added_tokens.json"};
    if (!st) st = copy_file(m->path, txn.stage, "config.json", true);
    for (size_t i = 0; !st && i < sizeof extra / sizeof extra[0]; i++)
        st = copy_file(m->path, txn.stage, extra[i], false);
    if (st) dir_txn_abort(&txn);
    else st = dir_txn_commit(&txn);
    return st;
}
