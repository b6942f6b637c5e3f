/* hello.c — the README's library example as a complete program: load a model folder (or
 * .gguf), stream a continuation of a prompt.
 *
 *     cc hello.c $(pkg-config --cflags --libs wick) -o hello
 *     ./hello models/kjv-demo "And God said" 40
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wick.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL PROMPT [N_TOKENS]\n", argv[0]);
        return 2;
    }
    wick_model *m = NULL;
    wick_session *s = NULL;
    wick_gen *g = NULL;
    if (wick_model_load(argv[1], NULL, &m) != WICK_OK ||
        wick_session_create(m, NULL, &s) != WICK_OK) {
        fprintf(stderr, "hello: %s\n", wick_last_error());
        wick_model_free(m);
        return 1;
    }
    int32_t ids[512];
    const int n = wick_tokenize(wick_model_tokenizer(m), argv[2], strlen(argv[2]), true, ids, 512);
    wick_gen_params p = wick_gen_params_default();
    p.max_tokens = argc > 3 ? atoi(argv[3]) : 32;
    p.temperature = 0;   /* greedy: the same text every run */
    if (n <= 0 || wick_gen_start(s, ids, n, &p, &g) != WICK_OK) {
        fprintf(stderr, "hello: %s\n", n <= 0 ? "the prompt does not tokenize" : wick_last_error());
        wick_session_free(s);
        wick_model_free(m);
        return 1;
    }
    fputs(argv[2], stdout);
    wick_token t;
    while (wick_gen_step(g, &t) == WICK_OK) fwrite(t.text, 1, t.text_len, stdout);
    fputc('\n', stdout);
    wick_gen_free(g);
    wick_session_free(s);
    wick_model_free(m);
    return 0;
}
