/* cmd_model.c — `wick info`, `wick logits`: inspect a model and dump its logits.
 * `wick generate` lives in cmd_generate.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/dtype.h"
#include "base/error.h"
#include "base/fileio.h"
#include "cli/cli.h"
#include "formats/safetensors.h"
#include "model/encoder.h"

static int usage_info(FILE *f) {
    fprintf(f, "usage: wick info MODEL_DIR|MODEL.gguf [--json]\n"
               "Shows architecture, parameter count, dtypes, bytes, context length and special ids.\n"
               "An encoder folder (BERT, XLM-RoBERTa, MPNet: E5, MiniLM, BGE ...) shows its shape and the\n"
               "embedding settings `wick embed` uses (dimension, pooling, normalisation, length).\n");
    return f == stdout ? 0 : 2;
}

static void print_ids(const char *label, const int32_t *ids, int n) {
    printf("%-18s", label);
    if (n == 0) printf("none");
    for (int i = 0; i < n; i++) printf("%s%d", i ? ", " : "", ids[i]);
    printf("\n");
}

/* The config.json of `path` describes a BERT, XLM-R or MPNet encoder (encoder_config_parse
 * accepts it); c filled then. */
static bool is_encoder(const char *path, encoder_config *c) {
    char *cfg = dir_exists(path) ? path_join(path, "config.json") : NULL, *text = NULL;
    size_t n = 0;
    bool yes = cfg && file_read_all(cfg, &text, &n) == WICK_OK &&
               encoder_config_parse(text, cfg, c) == WICK_OK;
    free(text);
    free(cfg);
    err_clear();
    return yes;
}

static const char *pooling_name(wick_pooling p) {
    return p == WICK_POOLING_CLS ? "cls" : p == WICK_POOLING_MAX ? "max"
         : p == WICK_POOLING_MEAN_SQRT_LEN ? "mean_sqrt_len"
         : p == WICK_POOLING_WEIGHTED_MEAN ? "weightedmean"
         : p == WICK_POOLING_LAST_TOKEN ? "lasttoken" : "mean";
}

/* `wick info` of an encoder folder: its shape and the embedder's effective settings. */
static int info_encoder(const char *path, bool json) {
    encoder_model *em = NULL;
    wick_embedder *e = NULL;
    if (encoder_load(path, &em) != WICK_OK) return cli_fail("info", "cannot load the encoder");
    if (wick_embedder_load(path, NULL, &e) != WICK_OK) {
        encoder_free(em);
        return cli_fail("info", "cannot load the encoder's embedding settings");
    }
    const encoder_config *c = &em->cfg;
    const char *dt = c->n_layer ? dtype_name(em->layers[0].wq.dt) : dtype_name(em->tok_embd.dt);
    const wick_tokenizer *tok = wick_embedder_tokenizer(e);
    if (json) {
        printf("{\"kind\": \"encoder\", \"architecture\": \"%s\", \"n_params\": %lld, "
               "\"weight_dtype\": \"%s\", \"n_vocab\": %d, \"n_embd\": %d, \"n_layer\": %d, "
               "\"n_head\": %d, \"head_dim\": %d, \"n_ff\": %d, \"n_ctx_train\": %d, "
               "\"n_types\": %d, \"layer_norm_eps\": %g, \"pad_id\": %d, \"pooler\": %s, "
               "\"embedding_dim\": %d, \"pooling\": \"%s\", \"normalize\": %s, "
               "\"max_length\": %d, \"tokenizer\": %s}\n",
               c->architecture, (long long)em->n_params, dt, c->n_vocab, c->n_embd, c->n_layer,
               c->n_head, c->head_dim, c->n_ff, c->n_pos, c->n_types, (double)c->ln_eps,
               c->pad_id, em->has_pooler ? "true" : "false", wick_embedder_dim(e),
               pooling_name(wick_embedder_pooling(e)),
               wick_embedder_normalize(e) ? "true" : "false",
               wick_embedder_max_length(e), tok ? "true" : "false");
    } else {
        printf("%-18s%s\n", "model", path);
        printf("%-18s%s (encoder: sentence embeddings with `wick embed`)\n", "architecture",
               c->architecture);
        printf("%-18s%lld (%.1f M)\n", "parameters", (long long)em->n_params, em->n_params / 1e6);
        printf("%-18s%s\n", "weight dtype", dt);
        printf("%-18s%d layers, hidden %d, ffn %d\n", "shape", c->n_layer, c->n_embd, c->n_ff);
        printf("%-18s%d heads, head_dim %d (bidirectional)\n", "attention", c->n_head,
               c->head_dim);
        printf("%-18s%d\n", "vocab", c->n_vocab);
        printf("%-18s%d\n", "max positions", c->n_pos);
        printf("%-18s%d\n", "token types", c->n_types);
        printf("%-18s%g\n", "layer_norm_eps", (double)c->ln_eps);
        printf("%-18s%s\n", "pooler", em->has_pooler ? "yes" : "no");
        printf("%-18sdim %d, %s pooling, %s, max length %d\n", "embeddings",
               wick_embedder_dim(e), pooling_name(wick_embedder_pooling(e)),
               wick_embedder_normalize(e) ? "L2-normalised" : "not normalised",
               wick_embedder_max_length(e));
        print_ids("pad id", &c->pad_id, c->pad_id >= 0);
        printf("%-18s%s\n", "tokenizer", tok ? "yes" : "none");
    }
    encoder_free(em);
    wick_embedder_free(e);
    return 0;
}

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return usage_info(stdout);
        else if (!strcmp(argv[i], "--json")) json = true;
        else if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc) path = argv[++i];
        else if (argv[i][0] != '-' && !path) path = argv[i];
        else {
            fprintf(stderr, "wick info: unknown option '%s'\n", argv[i]);
            return usage_info(stderr);
        }
    }
    if (!path) return usage_info(stderr);
    encoder_config ec;
    if (is_encoder(path, &ec)) return info_encoder(path, json);
    /* a sentence-transformers folder of a decoder (Qwen3-Embedding...): its embedding
       settings too; an untied one without lm_head loads only as an embedder */
    wick_embedder *emb = NULL;
    char *mj = path_join(path, "modules.json");
    if (mj && file_exists(mj) && wick_embedder_load(path, NULL, &emb) != WICK_OK) emb = NULL;
    free(mj);
    wick_model *m = NULL;
    wick_model_params mp = wick_model_params_default();
    if (wick_model_load(path, &mp, &m) != WICK_OK) {
        if (!emb) return cli_fail("info", "cannot load model");
        if (json)
            printf("{\"kind\": \"decoder embedder\", \"embedding_dim\": %d, \"pooling\": \"%s\", "
                   "\"normalize\": %s, \"max_length\": %d}\n", wick_embedder_dim(emb),
                   pooling_name(wick_embedder_pooling(emb)),
                   wick_embedder_normalize(emb) ? "true" : "false", wick_embedder_max_length(emb));
        else
            printf("%-18s%s\n%-18sdecoder without an LM head: embeddings only (`wick embed`)\n"
                   "%-18sdim %d, %s pooling, %snormalised, max length %d\n", "model", path,
                   "kind", "embedding", wick_embedder_dim(emb),
                   pooling_name(wick_embedder_pooling(emb)),
                   wick_embedder_normalize(emb) ? "" : "not ", wick_embedder_max_length(emb));
        wick_embedder_free(emb);
        return 0;
    }
    wick_model_info in;
    wick_model_get_info(m, &in);
    const wick_tokenizer *tok = wick_model_tokenizer(m);
    if (json) {
        printf("{\"kind\": \"decoder\", \"architecture\": \"%s\", \"n_params\": %lld, \"weight_dtype\": \"%s\", "
               "\"weight_bytes\": %lld, \"n_vocab\": %d, \"n_embd\": %d, \"n_layer\": %d, "
               "\"n_head\": %d, \"n_kv_head\": %d, \"head_dim\": %d, \"n_ff\": %d, "
               "\"n_ctx_train\": %d, \"rope_theta\": %g, \"rope_scaling\": \"%s\", "
               "\"sliding_window\": %d, \"tied_embeddings\": %s, \"bos_id\": %d, \"eos_ids\": [",
               in.architecture, (long long)in.n_params, in.weight_dtype,
               (long long)in.weight_bytes, in.n_vocab, in.n_embd, in.n_layer, in.n_head,
               in.n_kv_head, in.head_dim, in.n_ff, in.n_ctx_train, in.rope_theta,
               in.rope_scaling, in.sliding_window, in.tied_embeddings ? "true" : "false",
               in.bos_id);
        for (int i = 0; i < in.n_eos; i++) printf("%s%d", i ? ", " : "", in.eos_ids[i]);
        printf("], \"pad_id\": %d, \"tokenizer\": %s, \"kernels\": \"%s\"", in.pad_id,
               tok ? "true" : "false", in.kernels);
        printf(", \"decode_bytes\": %lld, \"rot_dim\": %d, \"n_expert\": %d, "
               "\"n_expert_used\": %d, \"n_ff_expert\": %d", (long long)in.decode_bytes,
               in.rot_dim, in.n_expert, in.n_expert_used, in.n_ff_expert);
        if (emb)
            printf(", \"embedding_dim\": %d, \"pooling\": \"%s\", \"normalize\": %s, "
                   "\"max_length\": %d", wick_embedder_dim(emb),
                   pooling_name(wick_embedder_pooling(emb)),
                   wick_embedder_normalize(emb) ? "true" : "false", wick_embedder_max_length(emb));
        printf("}\n");
    } else {
        printf("%-18s%s\n", "model", path);
        printf("%-18s%s\n", "architecture", in.architecture);
        printf("%-18s%lld (%.1f M)\n", "parameters", (long long)in.n_params, in.n_params / 1e6);
        printf("%-18s%s\n", "weight dtype", in.weight_dtype);
        printf("%-18s%lld (%.1f MiB)\n", "weight bytes", (long long)in.weight_bytes,
               in.weight_bytes / 1048576.0);
        printf("%-18s%d layers, hidden %d, ffn %d\n", "shape", in.n_layer, in.n_embd, in.n_ff);
        printf("%-18s%d query heads, %d KV heads, head_dim %d\n", "attention", in.n_head,
               in.n_kv_head, in.head_dim);
        if (in.rot_dim && in.rot_dim != in.head_dim)
            printf("%-18s%d of %d values a head\n", "partial rotary", in.rot_dim, in.head_dim);
        if (in.n_expert)
            printf("%-18s%d a block, %d chosen per token, width %d\n", "experts", in.n_expert,
                   in.n_expert_used, in.n_ff_expert);
        printf("%-18s%lld bytes a token (%.1f MiB%s)\n", "decode reads",
               (long long)in.decode_bytes, in.decode_bytes / 1048576.0,
               in.n_expert ? "; of the experts only the chosen ones" : "");
        printf("%-18s%d\n", "vocab", in.n_vocab);
        printf("%-18s%d\n", "context length", in.n_ctx_train);
        printf("%-18stheta %g, scaling %s\n", "rope", in.rope_theta, in.rope_scaling);
        if (in.sliding_window) printf("%-18s%d\n", "sliding window", in.sliding_window);
        printf("%-18s%s\n", "tied embeddings", in.tied_embeddings ? "yes" : "no");
        printf("%-18s%g\n", "rms_norm_eps", in.norm_eps);
        print_ids("bos id", &in.bos_id, in.bos_id >= 0);
        print_ids("eos ids", in.eos_ids, in.n_eos);
        print_ids("pad id", &in.pad_id, in.pad_id >= 0);
        printf("%-18s%s\n", "tokenizer", tok ? "yes" : "none");
        printf("%-18s%s\n", "kernels", in.kernels);
        if (emb)
            printf("%-18sdim %d, %s pooling, %snormalised, max length %d (`wick embed`)\n",
                   "embedding", wick_embedder_dim(emb), pooling_name(wick_embedder_pooling(emb)),
                   wick_embedder_normalize(emb) ? "" : "not ", wick_embedder_max_length(emb));
    }
    wick_embedder_free(emb);
    wick_model_free(m);
    return 0;
}

static int usage_logits(FILE *f) {
    fprintf(f, "usage: wick logits -m MODEL_DIR --ids 1,2,3 [--out FILE.safetensors] "
               "[--threads N] [--kernels auto|ref] [--device cpu|cuda[:N]] [--adapter DIR[:scale]]\n"
               "Runs one forward pass over the ids and writes an F32 tensor \"logits\" of shape\n"
               "[n_ids, vocab] (every position); prints the top-5 of the last position.\n"
               "--adapter applies a PEFT LoRA folder unmerged, scale multiplying its alpha/r.\n"
               "Top-5 tokens are shown decoded; --raw-tokens shows the vocabulary strings (Ġ ...).\n");
    return f == stdout ? 0 : 2;
}

int cmd_logits(int argc, char **argv) {
    const char *model = NULL, *ids_s = NULL, *out = NULL, *kern = "auto", *adapter = NULL;
    const char *device = NULL;
    long threads = 0;
    bool raw_tokens = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage_logits(stdout);
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has) model = argv[++i];
        else if (!strcmp(a, "--ids") && has) ids_s = argv[++i];
        else if (!strcmp(a, "--raw-tokens")) raw_tokens = true;
        else if ((!strcmp(a, "--out") || !strcmp(a, "-o")) && has) out = argv[++i];
        else if (!strcmp(a, "--kernels") && has) kern = argv[++i];
        else if (!strcmp(a, "--device") && has) device = argv[++i];
        else if ((!strcmp(a, "--adapter") || !strcmp(a, "-a")) && has) adapter = argv[++i];
        else if ((!strcmp(a, "--threads") || !strcmp(a, "-t")) && has) {
            if (!cli_parse_int("logits", a, argv[++i], 0, 1024, &threads)) return 2;
        } else {
            fprintf(stderr, "wick logits: unknown or incomplete option '%s'\n", a);
            return usage_logits(stderr);
        }
    }
    if (!model || !ids_s) return usage_logits(stderr);
    int32_t *ids = NULL;
    int n = cli_parse_ids("logits", ids_s, &ids);
    if (n < 0) return 2;
    if (n == 0) {
        fprintf(stderr, "wick logits: --ids is empty\n");
        free(ids);
        return 2;
    }
    wick_model_params mp = wick_model_params_default();
    mp.kernels = kern;
    mp.device = device;
    wick_model *m = NULL;
    if (wick_model_load(model, &mp, &m) != WICK_OK) {
        free(ids);
        return cli_fail("logits", "cannot load model");
    }
    wick_model_info in;
    wick_model_get_info(m, &in);
    wick_session_params sp = wick_session_params_default();
    sp.n_threads = (int)threads;
    if (n > 4096) sp.n_ctx = n;
    wick_session *s = NULL;
    int rc = 0;
    float *logits = NULL;
    if (wick_session_create(m, &sp, &s) != WICK_OK) {
        rc = cli_fail("logits", "cannot create session");
        goto out;
    }
    if (adapter && (rc = cli_use_adapter("logits", m, s, adapter))) goto out;
    logits = malloc(sizeof(float) * (size_t)n * in.n_vocab);
    if (!logits) {
        fprintf(stderr, "wick logits: out of memory for %d x %d logits\n", n, in.n_vocab);
        rc = 1;
        goto out;
    }
    if (wick_session_eval(s, ids, n, WICK_LOGITS_ALL, logits) != WICK_OK) {
        rc = cli_fail("logits", "forward pass failed");
        goto out;
    }
    if (out) {
        st_write_tensor t = {.name = "logits", .dt = DT_F32, .ndim = 2,
                             .shape = {n, in.n_vocab}, .data = logits};
        if (st_write(out, &t, 1, NULL, NULL, 0) != WICK_OK) {
            rc = cli_fail("logits", "cannot write output");
            goto out;
        }
    }
    const float *last = logits + (size_t)(n - 1) * in.n_vocab;
    int top[5];
    int k = in.n_vocab < 5 ? in.n_vocab : 5;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int v = 0; v < in.n_vocab; v++) {
            bool used = false;
            for (int u = 0; u < j; u++) used |= top[u] == v;
            if (!used && (best < 0 || last[v] > last[best])) best = v;
        }
        top[j] = best;
    }
    const wick_tokenizer *tok = wick_model_tokenizer(m);
    printf("top-%d at position %d:\n", k, n - 1);
    for (int j = 0; j < k; j++) {
        char buf[512];
        const char *str = cli_token_text(tok, top[j], raw_tokens, buf, sizeof buf);
        /* quoted, so a leading space or a newline token stays visible */
        if (!str) printf("  %8d  %12.6f\n", top[j], last[top[j]]);
        else if (raw_tokens) printf("  %8d  %12.6f  %s\n", top[j], last[top[j]], str);
        else {
            printf("  %8d  %12.6f  \"", top[j], last[top[j]]);
            for (const char *c = str; *c; c++)
                if (*c == '\n') fputs("\\n", stdout);
                else if (*c == '\t') fputs("\\t", stdout);
                else if (*c == '"' || *c == '\\') printf("\\%c", *c);
                else putchar(*c);
            printf("\"\n");
        }
    }
    if (out) printf("wrote logits [%d, %d] to %s\n", n, in.n_vocab, out);
out:
    free(logits);
    free(ids);
    wick_session_free(s);
    wick_model_free(m);
    return rc;
}
