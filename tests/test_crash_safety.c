/* test_crash_safety.c — every output wick writes survives SIGKILL at any moment.
 *
 * For each writing command — `wick quantize` (one GGUF file), `wick convert` (a model folder),
 * `wick merge` (a model folder), `wick train --save-every` (checkpoint-N folders + the final
 * PEFT folder with trainer_state) and `wick train` alone (the adapter save) — the test runs
 * two configurations A and B to completion once (they give different outputs; their
 * fingerprints are the references), then 100 times starts the configuration the output does
 * not hold and SIGKILLs it after a random delay spread over the command's measured duration.
 * After every kill each output (the file or folder, and every checkpoint folder) must load
 * with the library and have the fingerprint of A or of B: the previous complete output or the
 * new complete one, never a mix (A and B differ in every file: a torn folder fails to load or
 * matches neither). After one more successful run no temporary is left anywhere.
 *
 * Fingerprint: FNV-1a of the logits of 8 fixed ids (one thread, so bit-exact run to run) of
 * the model, or of the training base with the adapter, plus the bytes of trainer_state.
 * The delays come from a fixed-seed generator; where a kill lands still depends on timing,
 * but the assertions hold wherever it lands, so the test cannot flake on timing. The work
 * folder is on /dev/shm when there is one: fsync is free there, which keeps 500 runs under a
 * minute, and rename / RENAME_EXCHANGE semantics are the same as on disk file systems.
 * Also unit checks of base/fileio_write.c: stale temporaries of dead processes are swept,
 * live ones kept, a folder moved aside by a killed swap is put back, folder replacement
 * keeps foreign files, a failed folder write leaves the old folder as it was, the current
 * folder is not replaced. */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/fileio.h"
#include "testutil.h"

#define ITERS 100
#define MAX_CK 4   /* checkpoint folders checked per training output */

static char g_wick[4096];

/* ---- helpers ---- */

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static char *cat(const char *a, const char *b) {
    char *p = path_join(a, b);
    assert_non_null(p);
    return p;
}

static void copy_into(const char *src_dir, const char *dst_dir, const char *name) {
    char *s = cat(src_dir, name), *d = cat(dst_dir, name), *buf;
    size_t n;
    if (file_read_all(s, &buf, &n) != WICK_OK) fail_msg("%s", wick_last_error());
    tu_write_file(d, buf, n);
    free(buf);
    free(s);
    free(d);
}

/* A work folder on /dev/shm when possible (see the file comment). */
static char *work_dir(void) {
    char tmpl[] = "/dev/shm/wick-crash-XXXXXX";
    if (dir_exists("/dev/shm") && mkdtemp(tmpl)) return strdup(tmpl);
    return tu_mkdtemp();
}

/* Number of writer temporaries anywhere under `dir`. */
static int count_temps(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (fileio_is_temp_name(e->d_name)) n++;
        char *p = cat(dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) n += count_temps(p);
        free(p);
    }
    closedir(d);
    return n;
}

static pid_t spawn(char *const argv[]) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        setenv("OPENBLAS_NUM_THREADS", "1", 1);
        execv(g_wick, argv);
        _exit(127);
    }
    return pid;
}

/* Runs to completion (must succeed); returns the wall time. */
static double run_full(char *const argv[]) {
    double t0 = now_s();
    pid_t pid = spawn(argv);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("wick %s failed (status %d)", argv[1], status);
    return now_s() - t0;
}

static void sleep_s(double d) {
    if (d <= 0) return;
    struct timespec ts = {(time_t)d, (long)((d - (time_t)d) * 1e9)};
    nanosleep(&ts, NULL);
}

/* Watches the folders an output's writer creates its temporaries in (the output's parent,
 * and the output itself when it is a folder: checkpoint-N stages live there). */
static int watch_open(const char *out) {
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    assert_true(fd >= 0);
    char *parent = path_dirname(out);
    assert_true(inotify_add_watch(fd, parent, IN_CREATE) >= 0);
    if (dir_exists(out)) inotify_add_watch(fd, out, IN_CREATE);
    free(parent);
    return fd;
}

/* Waits until a writer temporary is created under the watch or `pid` exits (then reaped
 * into *status, returns false). */
static bool wait_first_temp(int fd, pid_t pid, int *status) {
    char buf[4096] __attribute__((aligned(8)));
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 1) > 0) {
            ssize_t n = read(fd, buf, sizeof buf);
            for (ssize_t o = 0; n > 0 && o < n;) {
                const struct inotify_event *e = (const struct inotify_event *)(buf + o);
                if (e->len && fileio_is_temp_name(e->name)) return true;
                o += (ssize_t)(sizeof *e + e->len);
            }
        }
        if (waitpid(pid, status, WNOHANG) == pid) return false;
    }
}

/* Starts argv and SIGKILLs it: `after_temp` false: `delay` s after the start; true: `delay`
 * s after its first temporary appeared (the writing phase). Returns true when it had
 * finished by itself. */
static bool run_killed(char *const argv[], const char *out, bool after_temp, double delay) {
    int wfd = after_temp ? watch_open(out) : -1;
    pid_t pid = spawn(argv);
    int status;
    bool reaped = false;
    if (after_temp) reaped = !wait_first_temp(wfd, pid, &status);
    if (!reaped) {
        sleep_s(delay);
        kill(pid, SIGKILL);
    }
    if (wfd >= 0) close(wfd);
    if (reaped) {
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("wick %s failed (status %d)", argv[1], status);
        return true;
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFEXITED(status)) {
        if (WEXITSTATUS(status) != 0) fail_msg("wick %s failed (status %d)", argv[1], status);
        return true;
    }
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    return false;
}

/* Runs to completion, measuring the total time and the writing phase (first temporary to
 * exit). */
static void run_timed(char *const argv[], const char *out, double *total, double *writing) {
    int wfd = watch_open(out);
    double t0 = now_s(), t1;
    pid_t pid = spawn(argv);
    int status;
    if (wait_first_temp(wfd, pid, &status)) {
        t1 = now_s();
        assert_int_equal(waitpid(pid, &status, 0), pid);
    } else {
        t1 = now_s();
    }
    close(wfd);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("wick %s failed (status %d)", argv[1], status);
    *total = now_s() - t0;
    *writing = now_s() - t1;
}

/* ---- fingerprints ---- */

static const int32_t k_ids[8] = {1, 5, 9, 33, 70, 2, 64, 11};

static uint64_t logits_hash(const wick_model *m, const char *adapter) {
    wick_session_params sp = wick_session_params_default();
    sp.n_threads = 1;
    wick_session *s = NULL;
    if (wick_session_create(m, &sp, &s) != WICK_OK) fail_msg("session: %s", wick_last_error());
    if (adapter) assert_int_equal(wick_session_set_adapter(s, adapter, 1.0f), WICK_OK);
    wick_model_info info;
    assert_int_equal(wick_model_get_info(m, &info), WICK_OK);
    const size_t n = 8 * (size_t)info.n_vocab;
    float *lg = malloc(sizeof(float) * n);
    if (wick_session_eval(s, k_ids, 8, WICK_LOGITS_ALL, lg) != WICK_OK)
        fail_msg("eval: %s", wick_last_error());
    uint64_t h = fnv(0xcbf29ce484222325ull, lg, sizeof(float) * n);
    free(lg);
    wick_session_free(s);
    return h;
}

/* A model file or folder. Fails the test when it does not load. */
static uint64_t model_print(const char *path) {
    wick_model_params mp = wick_model_params_default();
    mp.load_tokenizer = false;
    wick_model *m = NULL;
    if (wick_model_load(path, &mp, &m) != WICK_OK)
        fail_msg("output %s does not load: %s", path, wick_last_error());
    uint64_t h = logits_hash(m, NULL);
    wick_model_free(m);
    return h;
}

/* A training output folder: the adapter on `base`, and trainer_state.safetensors. */
static uint64_t adapter_print(wick_model *base, const char *dir) {
    if (wick_adapter_load(base, dir, "ck") != WICK_OK)
        fail_msg("adapter %s does not load: %s", dir, wick_last_error());
    uint64_t h = logits_hash(base, "ck");
    assert_int_equal(wick_adapter_unload(base, "ck"), WICK_OK);
    char *sp = cat(dir, "trainer_state.safetensors"), *buf;
    size_t n;
    if (file_read_all(sp, &buf, &n) != WICK_OK) fail_msg("%s", wick_last_error());
    h = fnv(h, buf, n);
    free(buf);
    free(sp);
    return h;
}

/* ---- one command ---- */

typedef struct kcase {
    const char *name;
    char *out;          /* the output path */
    char **argv[2];     /* configurations A and B */
    wick_model *base;   /* training base (adapter outputs), else NULL */
    int n_ck;           /* checkpoint-1..n_ck folders inside out */
} kcase;

typedef struct fprint { uint64_t h[1 + MAX_CK]; } fprint;

static void take_print(const kcase *c, fprint *f) {
    memset(f, 0, sizeof *f);
    if (!c->base) {
        f->h[0] = model_print(c->out);
        return;
    }
    f->h[0] = adapter_print(c->base, c->out);
    for (int k = 1; k <= c->n_ck; k++) {
        char name[32];
        snprintf(name, sizeof name, "checkpoint-%d", k);
        char *d = cat(c->out, name);
        f->h[k] = adapter_print(c->base, d);
        free(d);
    }
}

/* Which of the references output j matches: 0 (A), 1 (B); fails otherwise. */
static int which(const kcase *c, const fprint *ref, const fprint *got, int j, int iter) {
    for (int r = 0; r < 2; r++)
        if (got->h[j] == ref[r].h[j]) return r;
    char ck[32] = "";
    if (j) snprintf(ck, sizeof ck, "/checkpoint-%d", j);
    fail_msg("%s, kill %d: %s%s is neither the previous nor the new complete output", c->name,
             iter, c->out, ck);
    return -1;
}

static void kill_loop(kcase *c, uint64_t seed) {
    fprint ref[2], got;
    double dur = 1e9, wdur = 1e9;
    for (int r = 0; r < 3; r++) {
        double t, w;
        run_timed(c->argv[r % 2], c->out, &t, &w);
        dur = t < dur ? t : dur;
        wdur = w < wdur ? w : wdur;
        if (r < 2) take_print(c, &ref[r]);
        assert_int_equal(count_temps(c->out), 0);
    }
    for (int j = 0; j <= c->n_ck; j++)
        if (ref[0].h[j] == ref[1].h[j]) fail_msg("%s: configurations A and B give the same output", c->name);
    int cur = 0, n_prev = 0, n_new = 0, n_done = 0, n_stale = 0;
    for (int i = 0; i < ITERS; i++) {
        /* a third of the kills anywhere in the run ([0, 1.1]·its fastest time), the others
           in the writing phase: [0, 1.1]·its fastest length after the first temporary
           appears (loading and computing come first and take most of a run) */
        double u = (double)(rng_next(&seed) >> 11) / 9007199254740992.0;
        const bool in_writing = i % 3 != 0;
        const double delay = 1.1 * u * (in_writing ? wdur : dur);
        const int next = 1 - cur;
        n_done += run_killed(c->argv[next], c->out, in_writing, delay);
        take_print(c, &got);
        const int w = which(c, ref, &got, 0, i);
        for (int j = 1; j <= c->n_ck; j++) which(c, ref, &got, j, i);
        n_prev += w == cur;
        n_new += w == next;
        char *parent = path_dirname(c->out);
        n_stale += count_temps(parent) > 0;
        free(parent);
        cur = w;
    }
    /* the next successful run cleans every temporary the killed runs left */
    run_full(c->argv[1 - cur]);
    take_print(c, &got);
    assert_true(which(c, ref, &got, 0, ITERS) == 1 - cur);
    char *parent = path_dirname(c->out);
    int left = count_temps(parent);
    free(parent);
    fprintf(stderr, "%s: %d kills (runs of %.0f ms, writing %.0f ms): output was the previous "
            "one %d times, the new one %d (%d runs had finished); temporaries left behind by %d "
            "kills, %d after the next successful run\n", c->name, ITERS, dur * 1e3, wdur * 1e3,
            n_prev, n_new, n_done, n_stale, left);
    assert_int_equal(left, 0);
}

/* ---- the commands ---- */

typedef struct world {
    char *root, *fix, *adapter, *qbase, *tm, *data;
} world;

static world g;

static int setup(void **state) {
    snprintf(g_wick, sizeof g_wick, "%s/wick", WICK_BINARY_DIR);
    if (access(g_wick, X_OK) != 0 || !tu_fixture_exists("tiny-qwen2") ||
        !tu_fixture_exists("tiny-qwen2-lora"))
        return 0; /* the tests skip */
    g.root = work_dir();
    g.fix = tu_fixture_path("tiny-qwen2");
    g.adapter = tu_fixture_path("tiny-qwen2-lora/adapter_a");
    g.qbase = cat(g.root, "base-q4_0.gguf");
    char *q[] = {"wick", "quantize", g.fix, g.qbase, "--type", "q4_0", NULL};
    run_full(q);
    /* a training base: tiny-qwen2 with a character-level BPE tokenizer (printable ASCII,
       ids 0..94 < its 1024-entry vocabulary, no merges) */
    g.tm = cat(g.root, "train-base");
    assert_int_equal(mkdir(g.tm, 0777), 0);
    copy_into(g.fix, g.tm, "config.json");
    copy_into(g.fix, g.tm, "model.safetensors");
    char tok[4096];
    size_t k = (size_t)snprintf(tok, sizeof tok, "{\"version\": \"1.0\", \"added_tokens\": [], "
                                "\"model\": {\"type\": \"BPE\", \"merges\": [], \"vocab\": {");
    for (int ch = 32; ch < 127; ch++)
        k += (size_t)snprintf(tok + k, sizeof tok - k, "%s\"%s%c\": %d", ch > 32 ? ", " : "",
                              ch == '"' || ch == '\\' ? "\\" : "", ch, ch - 32);
    snprintf(tok + k, sizeof tok - k, "}}}");
    char *tp = cat(g.tm, "tokenizer.json");
    tu_write_file(tp, tok, strlen(tok));
    free(tp);
    g.data = cat(g.root, "data.txt");
    const char *text = "the quick brown fox jumps over the lazy dog; pack my box with five "
                       "dozen liquor jugs. ";
    char big[4096] = "";
    for (int i = 0; i < 20; i++) strcat(big, text);
    tu_write_file(g.data, big, strlen(big));
    return 0;
}

static int teardown(void **state) {
    if (g.root) tu_rmdir_rf(g.root);
    free(g.root); free(g.fix); free(g.adapter); free(g.qbase); free(g.tm); free(g.data);
    return 0;
}

#define REQUIRE_WORLD()                                                                    \
    do {                                                                                   \
        if (!g.root) {                                                                     \
            if (tu_ci()) fail_msg("wick binary or tiny-qwen2 fixtures missing under CI");  \
            fprintf(stderr, "SKIP: %s or the tiny-qwen2 fixtures not found\n", g_wick);     \
            skip();                                                                        \
        }                                                                                  \
    } while (0)

static char *case_dir(const char *name) {
    char *d = cat(g.root, name);
    assert_int_equal(mkdir(d, 0777), 0);
    return d;
}

static void test_kill_quantize(void **state) {
    REQUIRE_WORLD();
    char *dir = case_dir("quantize");
    kcase c = {.name = "quantize", .out = cat(dir, "out.gguf")};
    char *a[] = {"wick", "quantize", g.fix, c.out, "--type", "q8_0", "--force", NULL};
    char *b[] = {"wick", "quantize", g.fix, c.out, "--type", "q4_0", "--force", NULL};
    c.argv[0] = a;
    c.argv[1] = b;
    kill_loop(&c, 1);
    free(c.out);
    free(dir);
}

static void test_kill_convert(void **state) {
    REQUIRE_WORLD();
    char *dir = case_dir("convert");
    kcase c = {.name = "convert", .out = cat(dir, "model")};
    char *a[] = {"wick", "convert", g.qbase, c.out, "--dtype", "f32", "--force", NULL};
    char *b[] = {"wick", "convert", g.qbase, c.out, "--dtype", "bf16", "--force", NULL};
    c.argv[0] = a;
    c.argv[1] = b;
    kill_loop(&c, 2);
    free(c.out);
    free(dir);
}

static void test_kill_merge(void **state) {
    REQUIRE_WORLD();
    char *dir = case_dir("merge");
    kcase c = {.name = "merge", .out = cat(dir, "merged")};
    char half[4200];
    snprintf(half, sizeof half, "%s:0.5", g.adapter);
    char *a[] = {"wick", "merge", "-m", g.qbase, "-a", g.adapter, "-o", c.out, "--force", NULL};
    char *b[] = {"wick", "merge", "-m", g.qbase, "-a", half, "-o", c.out, "--force", NULL};
    c.argv[0] = a;
    c.argv[1] = b;
    kill_loop(&c, 3);
    free(c.out);
    free(dir);
}

/* save_every 0: the adapter save alone; else checkpoints too. A and B differ in seed and
 * rank, so every file of the two differs and a mixed folder cannot load. */
static void train_case(const char *name, int save_every, uint64_t seed) {
    char *dir = case_dir(name);
    kcase c = {.name = name, .out = cat(dir, "adapter")};
    wick_model_params mp = wick_model_params_default();
    mp.load_tokenizer = false;
    assert_int_equal(wick_model_load(g.tm, &mp, &c.base), WICK_OK);
    char steps[8], every[8];
    snprintf(steps, sizeof steps, "%d", save_every ? MAX_CK : 2);
    snprintf(every, sizeof every, "%d", save_every);
    c.n_ck = save_every ? MAX_CK - 1 : 0; /* the last step's state is the final save */
    char *a[] = {"wick", "train", "-m", g.tm, "--data", g.data, "--out", c.out, "--steps", steps,
                 "--seq-len", "32", "-t", "1", "--seed", "1", "-r", "4", "--save-every", every,
                 NULL};
    char *b[] = {"wick", "train", "-m", g.tm, "--data", g.data, "--out", c.out, "--steps", steps,
                 "--seq-len", "32", "-t", "1", "--seed", "2", "-r", "8", "--save-every", every,
                 NULL};
    c.argv[0] = a;
    c.argv[1] = b;
    kill_loop(&c, seed);
    wick_model_free(c.base);
    free(c.out);
    free(dir);
}

static void test_kill_train_checkpoints(void **state) {
    REQUIRE_WORLD();
    train_case("train-save-every", 1, 4);
}

static void test_kill_adapter_save(void **state) {
    REQUIRE_WORLD();
    train_case("train-adapter", 0, 5);
}

/* ---- base/fileio_write.c unit checks ---- */

/* A pid that is not running (a reaped child's). */
static long dead_pid(void) {
    pid_t p = fork();
    assert_true(p >= 0);
    if (p == 0) _exit(0);
    waitpid(p, NULL, 0);
    return (long)p;
}

static void test_sweep_stale(void **state) {
    char *d = tu_mkdtemp();
    const long dead = dead_pid();
    char n_file[256], n_dir[256], n_live[256], n_old[256], n_old2[256];
    snprintf(n_file, sizeof n_file, "%s/.out.gguf.wick-tmp-%ld-0", d, dead);
    snprintf(n_dir, sizeof n_dir, "%s/.model.wick-tmp-%ld-3", d, dead);
    snprintf(n_live, sizeof n_live, "%s/.x.wick-tmp-%ld-1", d, (long)getpid());
    snprintf(n_old, sizeof n_old, "%s/.ada.wick-old-%ld-2", d, dead);   /* ada missing */
    snprintf(n_old2, sizeof n_old2, "%s/.kept.wick-old-%ld-4", d, dead); /* kept exists */
    tu_write_file(n_file, "x", 1);
    assert_int_equal(mkdir(n_dir, 0777), 0);
    char *inner = cat(n_dir, "model.safetensors");
    tu_write_file(inner, "y", 1);
    tu_write_file(n_live, "z", 1);
    assert_int_equal(mkdir(n_old, 0777), 0);
    char *ada_cfg = cat(n_old, "adapter_config.json");
    tu_write_file(ada_cfg, "{}", 2);
    assert_int_equal(mkdir(n_old2, 0777), 0);
    char *kept = cat(d, "kept");
    assert_int_equal(mkdir(kept, 0777), 0);
    /* user files that only look similar stay */
    char *u1 = cat(d, "notes.wick-tmp-1-1"), *u2 = cat(d, ".a.wick-tmp-x-1");
    tu_write_file(u1, "u", 1);
    tu_write_file(u2, "u", 1);

    char *target = cat(d, "new.bin");
    assert_int_equal(file_write_atomic(target, "data", 4), WICK_OK);
    assert_false(file_exists(n_file));
    assert_false(dir_exists(n_dir));
    assert_true(file_exists(n_live));         /* a live process's temporary */
    assert_false(dir_exists(n_old));
    char *ada = cat(d, "ada/adapter_config.json");
    assert_true(file_exists(ada));            /* put back: nothing had replaced it */
    assert_false(dir_exists(n_old2));         /* stale: "kept" exists */
    assert_true(dir_exists(kept));
    assert_true(file_exists(u1) && file_exists(u2));
    assert_true(file_exists(target));
    assert_true(fileio_is_temp_name(".out.gguf.wick-tmp-12-0"));
    assert_false(fileio_is_temp_name("out.gguf.wick-tmp-12-0"));
    assert_false(fileio_is_temp_name(".wick-tmp-12-0"));
    assert_false(fileio_is_temp_name(".out.wick-tmp-12-"));
    tu_rmdir_rf(d);
    free(d); free(inner); free(ada_cfg); free(kept); free(u1); free(u2); free(target); free(ada);
}

static void test_dir_txn(void **state) {
    char *d = tu_mkdtemp(), *out = cat(d, "out");
    char *f_cfg = cat(out, "config.json"), *f_readme = cat(out, "README.md");
    char *sub = cat(out, "checkpoint-1"), *f_sub = cat(sub, "a.bin"), *f_link = cat(out, "link");
    /* a fresh folder */
    dir_txn t;
    assert_int_equal(dir_txn_begin(out, &t), WICK_OK);
    char *p = cat(t.stage, "config.json");
    assert_int_equal(file_write_atomic(p, "old", 3), WICK_OK);
    free(p);
    assert_int_equal(dir_txn_commit(&t), WICK_OK);
    /* foreign entries beside it: a file, a subfolder, a symlink */
    tu_write_file(f_readme, "me", 2);
    assert_int_equal(mkdir(sub, 0777), 0);
    tu_write_file(f_sub, "sub", 3);
    assert_int_equal(symlink("config.json", f_link), 0);
    /* replace it: config.json new, the rest kept */
    assert_int_equal(dir_txn_begin(out, &t), WICK_OK);
    p = cat(t.stage, "config.json");
    assert_int_equal(file_write_atomic(p, "new", 3), WICK_OK);
    free(p);
    assert_int_equal(dir_txn_commit(&t), WICK_OK);
    char *buf;
    size_t n;
    assert_int_equal(file_read_all(f_cfg, &buf, &n), WICK_OK);
    assert_string_equal(buf, "new");
    free(buf);
    assert_int_equal(file_read_all(f_readme, &buf, &n), WICK_OK);
    assert_string_equal(buf, "me");
    free(buf);
    assert_int_equal(file_read_all(f_sub, &buf, &n), WICK_OK);
    assert_string_equal(buf, "sub");
    free(buf);
    char lk[64] = "";
    assert_int_equal(readlink(f_link, lk, sizeof lk - 1), 11);
    assert_string_equal(lk, "config.json");
    /* an aborted write leaves the folder as it was and no temporary */
    assert_int_equal(dir_txn_begin(out, &t), WICK_OK);
    p = cat(t.stage, "config.json");
    assert_int_equal(file_write_atomic(p, "bad", 3), WICK_OK);
    free(p);
    dir_txn_abort(&t);
    assert_int_equal(file_read_all(f_cfg, &buf, &n), WICK_OK);
    assert_string_equal(buf, "new");
    free(buf);
    assert_int_equal(count_temps(d), 0);
    /* the folder the process works in (or one above it) is not swapped away under it */
    char *cwd = getcwd(NULL, 0);
    assert_int_equal(chdir(sub), 0);
    assert_int_equal(dir_txn_begin(".", &t), WICK_ERR_INVALID_ARG);
    assert_int_equal(dir_txn_begin(out, &t), WICK_ERR_INVALID_ARG);
    assert_int_equal(chdir(cwd), 0);
    free(cwd);
    /* a file where the folder should be is refused; a missing parent is named */
    char *file = cat(d, "afile"), *orphan = cat(d, "no/such");
    tu_write_file(file, "f", 1);
    assert_int_equal(dir_txn_begin(file, &t), WICK_ERR_IO);
    assert_int_equal(dir_txn_begin(orphan, &t), WICK_ERR_IO);
    assert_non_null(strstr(wick_last_error(), "does not exist"));
    tu_rmdir_rf(d);
    free(d); free(out); free(f_cfg); free(f_readme); free(sub); free(f_sub); free(f_link);
    free(file); free(orphan);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sweep_stale),
        cmocka_unit_test(test_dir_txn),
        cmocka_unit_test(test_kill_quantize),
        cmocka_unit_test(test_kill_convert),
        cmocka_unit_test(test_kill_merge),
        cmocka_unit_test(test_kill_train_checkpoints),
        cmocka_unit_test(test_kill_adapter_save),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
