/* gen_opts.c — see gen_opts.h. */
#include "cli/gen_opts.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/fileio.h"

void gen_opts_init(gen_opts *o) {
    memset(o, 0, sizeof *o);
    o->p = wick_gen_params_default();
    o->p.stop_strings = o->stops;
    o->p.stop_ids = o->stop_ids;
    o->kernels = "auto";
}

void gen_opts_usage(FILE *f) {
    fprintf(f,
            "generation options:\n"
            "  -n, --max-tokens N     new tokens at most (default 256; 0 = until context full)\n"
            "  --min-tokens N         EOS/stop ids banned before N tokens (default 0)\n"
            "  --temp T               temperature, 0 = greedy (default 0.8)\n"
            "  --top-k K              (default 40; 0 = off)\n"
            "  --top-p P              (default 0.95; 1 = off)\n"
            "  --min-p P              (default 0.05; 0 = off)\n"
            "  --typical-p P          (default 1 = off)\n"
            "  --repeat-penalty R     HF repetition penalty (default 1 = off)\n"
            "  --repeat-last-n N      window of the repetition penalty (default 0 = all)\n"
            "  --frequency-penalty F, --presence-penalty P   OpenAI penalties (default 0)\n"
            "  --seed S               random seed (default 0)\n"
            "  --stop STR             stop string (repeatable, up to %d); escapes \\n \\t \\\\ \\uXXXX\n"
            "                         in --stop, -p and --system are interpreted\n"
            "  --raw                  take --stop, -p and --system values literally\n"
            "  --stop-id ID           stop token id (repeatable)\n"
            "  --ignore-eos           do not stop at the model's EOS ids\n"
            "  --json-schema FILE     structured output: the text is JSON valid against this\n"
            "                         JSON Schema (compact; keys in schema order)\n"
            "  --json-object          structured output: any JSON object\n"
            "  --logprobs N           report N alternatives per token (0..20)\n"
            "  --keep-special         include special tokens in the text (--skip-special: the\n"
            "                         default, drop them)\n"
            "  -t, --threads N        worker threads (default: all CPUs)\n"
            "  --ctx N                context size (default min(model max, 4096))\n"
            "  --kv-type T            KV cache elements: f32 (default, exact), f16, bf16, q8_0\n"
            "  --kernels auto|ref     kernel table\n"
            "  --device cpu|cuda[:N]  where the model runs (default cpu)\n"
            "  --precision fast|exact fast (default): BF16 prefill GEMMs round activations to\n"
            "                         bf16 where the CPU has AVX512_BF16; exact: f32 products\n"
            "  --spec-ngram N         speculative decoding by prompt lookup: propose the ids that\n"
            "                         followed the last N ids (1..8) earlier in the text\n"
            "  --draft-model M        speculative decoding with a draft model (same token ids)\n"
            "  --spec-k K             proposals verified per pass (1..16, default 4)\n", GEN_OPTS_MAX_STOPS);
}

static int want_float(const char *cmd, const char *opt, const char *v, float *out) {
    double d;
    if (!cli_parse_float(cmd, opt, v, &d)) return -1;
    *out = (float)d;
    return 1;
}

static int want_int(const char *cmd, const char *opt, const char *v, long lo, long hi, int *out) {
    long x;
    if (!cli_parse_int(cmd, opt, v, lo, hi, &x)) return -1;
    *out = (int)x;
    return 1;
}

bool gen_opts_finish(gen_opts *o, const char *cmd) {
    if (o->raw) return true;
    for (int k = 0; k < o->p.n_stop_strings; k++) {
        if (!(o->owned[k] = cli_unescape(o->stops[k]))) {
            fprintf(stderr, "wick %s: out of memory\n", cmd);
            return false;
        }
        if (!o->owned[k][0]) {
            fprintf(stderr, "wick %s: --stop \"%s\" is empty\n", cmd, o->stops[k]);
            return false;
        }
        o->stops[k] = o->owned[k];
    }
    return true;
}

void gen_opts_free(gen_opts *o) {
    for (int k = 0; k < GEN_OPTS_MAX_STOPS; k++) free(o->owned[k]);
    memset(o->owned, 0, sizeof o->owned);
}

int gen_opts_parse(gen_opts *o, const char *cmd, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    wick_gen_params *p = &o->p;
    int r = 0;
    if (!strcmp(a, "--ignore-eos")) {
        p->stop_on_eos = false;
        return 1;
    }
    if (!strcmp(a, "--keep-special") || !strcmp(a, "--skip-special")) {
        p->skip_special = a[2] == 's';   /* --skip-special is the default, accepted for symmetry */
        return 1;
    }
    if (!strcmp(a, "--raw")) {
        o->raw = true;
        return 1;
    }
    if (!strcmp(a, "--json-object")) {
        p->json_schema = "{\"type\":\"object\"}";
        return 1;
    }
    if (!v) return 0;
    if (!strcmp(a, "-n") || !strcmp(a, "--max-tokens")) r = want_int(cmd, a, v, 0, 1 << 24, &p->max_tokens);
    else if (!strcmp(a, "--min-tokens")) r = want_int(cmd, a, v, 0, 1 << 24, &p->min_tokens);
    else if (!strcmp(a, "--temp") || !strcmp(a, "--temperature")) r = want_float(cmd, a, v, &p->temperature);
    else if (!strcmp(a, "--top-k")) r = want_int(cmd, a, v, 0, 1 << 30, &p->top_k);
    else if (!strcmp(a, "--top-p")) r = want_float(cmd, a, v, &p->top_p);
    else if (!strcmp(a, "--min-p")) r = want_float(cmd, a, v, &p->min_p);
    else if (!strcmp(a, "--typical-p")) r = want_float(cmd, a, v, &p->typical_p);
    else if (!strcmp(a, "--repeat-penalty")) r = want_float(cmd, a, v, &p->repetition_penalty);
    else if (!strcmp(a, "--repeat-last-n")) r = want_int(cmd, a, v, 0, 1 << 30, &p->repetition_last_n);
    else if (!strcmp(a, "--frequency-penalty")) r = want_float(cmd, a, v, &p->frequency_penalty);
    else if (!strcmp(a, "--presence-penalty")) r = want_float(cmd, a, v, &p->presence_penalty);
    else if (!strcmp(a, "--logprobs")) r = want_int(cmd, a, v, 0, 20, &p->n_logprobs);
    else if (!strcmp(a, "--seed")) {
        long s;
        if (!cli_parse_int(cmd, a, v, 0, 0x7fffffffffffffffL, &s)) return -1;
        p->seed = (uint64_t)s;
        r = 1;
    } else if (!strcmp(a, "--stop") || !strcmp(a, "--stop-id")) {
        bool is_id = !strcmp(a, "--stop-id");
        int *n = is_id ? &p->n_stop_ids : &p->n_stop_strings;
        if (*n == GEN_OPTS_MAX_STOPS) {
            fprintf(stderr, "wick %s: at most %d %s options\n", cmd, GEN_OPTS_MAX_STOPS, a);
            return -1;
        }
        if (is_id) {
            long id;
            if (!cli_parse_int(cmd, a, v, 0, 0x7fffffff, &id)) return -1;
            o->stop_ids[(*n)++] = (int32_t)id;
        } else {
            o->stops[(*n)++] = v;
        }
        r = 1;
    } else if (!strcmp(a, "--json-schema")) {
        /* read once and kept for the life of the command */
        char *text = NULL;
        size_t len = 0;
        if (file_read_all(v, &text, &len) != WICK_OK) {
            fprintf(stderr, "wick %s: --json-schema %s: %s\n", cmd, v, wick_last_error());
            return -1;
        }
        if (wick_json_schema_check(text) != WICK_OK) {
            fprintf(stderr, "wick %s: --json-schema %s: %s\n", cmd, v, wick_last_error());
            free(text);
            return -1;
        }
        p->json_schema = text;
        r = 1;
    } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
        if (!cli_parse_int(cmd, a, v, 0, 1024, &o->threads)) return -1;
        r = 1;
    } else if (!strcmp(a, "--ctx")) {
        if (!cli_parse_int(cmd, a, v, 0, 1 << 24, &o->ctx)) return -1;
        r = 1;
    } else if (!strcmp(a, "--kernels")) {
        o->kernels = v;
        r = 1;
    } else if (!strcmp(a, "--device")) {
        o->device = v;
        r = 1;
    } else if (!strcmp(a, "--precision")) {
        if (strcmp(v, "fast") && strcmp(v, "exact")) {
            fprintf(stderr, "wick %s: --precision %s: expected fast or exact\n", cmd, v);
            return -1;
        }
        o->precision = v;
        r = 1;
    } else if (!strcmp(a, "--draft-model")) {
        o->draft_model = v;
        r = 1;
    } else if (!strcmp(a, "--spec-ngram")) {
        if (want_int(cmd, a, v, 1, 8, &o->p.spec_ngram) < 0) return -1;
        r = 1;
    } else if (!strcmp(a, "--spec-k")) {
        if (want_int(cmd, a, v, 1, 16, &o->p.spec_k) < 0) return -1;
        r = 1;
    } else if (!strcmp(a, "--kv-type")) {
        if (!strcmp(v, "f32")) o->kv_type = WICK_KV_F32;
        else if (!strcmp(v, "f16")) o->kv_type = WICK_KV_F16;
        else if (!strcmp(v, "bf16")) o->kv_type = WICK_KV_BF16;
        else if (!strcmp(v, "q8_0")) o->kv_type = WICK_KV_Q8_0;
        else {
            fprintf(stderr, "wick %s: --kv-type %s: expected f32, f16, bf16 or q8_0\n", cmd, v);
            return -1;
        }
        r = 1;
    }
    if (r == 1) (*i)++;
    return r;
}

static cJSON *num(double v) {
    /* JSON has no infinities: -inf logprobs are written as null */
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

void gen_print_json(FILE *f, const wick_token *t, const wick_tokenizer *tok, bool raw_tokens) {
    cJSON *o = cJSON_CreateObject();
    if (t->id >= 0) {
        cJSON_AddNumberToObject(o, "id", t->id);
        cJSON_AddStringToObject(o, "text", t->text);
        cJSON_AddItemToObject(o, "logit", num(t->logit));
        cJSON_AddItemToObject(o, "prob", num(t->prob));
        cJSON_AddItemToObject(o, "logprob", num(t->logprob));
        cJSON *arr = cJSON_AddArrayToObject(o, "top_logprobs");
        for (int i = 0; i < t->n_top; i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "id", t->top[i].id);
            char buf[512];
            const char *s = cli_token_text(tok, t->top[i].id, raw_tokens, buf, sizeof buf);
            if (s) cJSON_AddStringToObject(e, "token", s);
            cJSON_AddItemToObject(e, "logprob", num(t->top[i].logprob));
            cJSON_AddItemToArray(arr, e);
        }
        if (t->is_eos) cJSON_AddBoolToObject(o, "is_eos", 1);
        char *line = cJSON_PrintUnformatted(o);
        fprintf(f, "%s\n", line);
        free(line);
    } else if (t->text_len) {
        cJSON_AddStringToObject(o, "text", t->text);
        char *line = cJSON_PrintUnformatted(o);
        fprintf(f, "%s\n", line);
        free(line);
    }
    cJSON_Delete(o);
    if (t->finish != WICK_FINISH_NONE) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "finish_reason", wick_finish_reason_str(t->finish));
        cJSON_AddNumberToObject(e, "prompt_tokens", t->prompt_tokens);
        cJSON_AddNumberToObject(e, "cached_tokens", t->cached_tokens);
        cJSON_AddNumberToObject(e, "generated_tokens", t->generated_tokens);
        cJSON_AddNumberToObject(e, "prefill_ms", t->prefill_ms);
        cJSON_AddNumberToObject(e, "decode_ms", t->decode_ms);
        cJSON_AddNumberToObject(e, "prefill_tokens_per_s",
                                t->prefill_ms > 0 ? t->prompt_tokens / (t->prefill_ms / 1e3) : 0);
        /* the first generated token comes from the prefill's logits, so decode produced the
           other generated_tokens - 1 */
        cJSON_AddNumberToObject(e, "decode_tokens_per_s",
                                t->decode_ms > 0 && t->generated_tokens > 1
                                    ? (t->generated_tokens - 1) / (t->decode_ms / 1e3) : 0);
        char *line = cJSON_PrintUnformatted(e);
        fprintf(f, "%s\n", line);
        free(line);
        cJSON_Delete(e);
    }
    fflush(f);
}

void gen_print_speed(const wick_token *t) {
    fprintf(stderr, "\n[%s] prompt: %d tokens, %.1f ms (%.1f tok/s); generated: %d tokens, "
                    "%.1f ms (%.2f tok/s)\n",
            wick_finish_reason_str(t->finish), t->prompt_tokens, t->prefill_ms,
            t->prefill_ms > 0 ? t->prompt_tokens / (t->prefill_ms / 1e3) : 0.0,
            t->generated_tokens, t->decode_ms,
            t->decode_ms > 0 && t->generated_tokens > 1
                ? (t->generated_tokens - 1) / (t->decode_ms / 1e3) : 0.0);
    if (t->drafted_tokens > 0)
        fprintf(stderr, "[speculative] %d proposed, %d accepted (%.0f%%)\n", t->drafted_tokens,
                t->accepted_tokens, 100.0 * t->accepted_tokens / t->drafted_tokens);
}
