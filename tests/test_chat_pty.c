/* test_chat_pty.c — `wick chat` on a pseudo-terminal, as a person types at it: the libedit
 * prompt, a reply, the up arrow recalling the last line, Ctrl-R searching the history, /save
 * writing the conversation, Ctrl-D quitting, and the history file kept for the next session.
 * Model: models/kjv-demo (in the repository; completion mode, no chat template). */
#include "testutil.h"

#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/fileio.h"

typedef struct term { int fd; pid_t pid; char out[1 << 16]; size_t n; } term;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Reads until `needle` occurs `count` times in everything read so far (20 s at most). */
static bool read_until(term *t, const char *needle, int count) {
    const double end = now() + 20;
    for (;;) {
        int seen = 0;
        for (const char *p = t->out; (p = strstr(p, needle)); p += strlen(needle)) seen++;
        if (seen >= count) return true;
        if (now() > end || t->n + 1 >= sizeof t->out) return false;
        struct pollfd pf = {t->fd, POLLIN, 0};
        if (poll(&pf, 1, 200) <= 0) continue;
        ssize_t r = read(t->fd, t->out + t->n, sizeof t->out - 1 - t->n);
        if (r <= 0) return false;
        for (ssize_t i = 0; i < r; i++) /* NULs would end strstr early */
            if (!t->out[t->n + i]) t->out[t->n + i] = ' ';
        t->n += (size_t)r;
        t->out[t->n] = 0;
    }
}

static void type(term *t, const char *s) {
    assert_int_equal(write(t->fd, s, strlen(s)), (ssize_t)strlen(s));
    usleep(50000); /* a person types: libedit reads key by key */
}

static void spawn(term *t, const char *home) {
    memset(t, 0, sizeof *t);
    char model[4096];
    snprintf(model, sizeof model, "%s/models/kjv-demo", WICK_SOURCE_DIR);
    if (!dir_exists(model)) fail_msg("%s is missing", model);
    struct winsize ws = {24, 100, 0, 0};
    t->pid = forkpty(&t->fd, NULL, NULL, &ws);
    assert_true(t->pid >= 0);
    if (t->pid == 0) {
        setenv("HOME", home, 1);
        setenv("TERM", "xterm", 1);
        unsetenv("WICK_HISTORY");
        unsetenv("WICK_NO_EDIT");
        execl(WICK_BINARY_DIR "/wick", "wick", "chat", "-m", model, "-n", "3", "--temp", "0", "-t", "1",
              (char *)NULL);
        _exit(127);
    }
}

/* Waits for the child to exit (up to 30 s: under ASan on a loaded 2-core machine, freeing the
 * model and the leak check at exit took more than the 10 s this allowed before), then kills it. */
static int finish(term *t) {
    int status = 0;
    for (int i = 0; i < 300; i++) {
        pid_t r = waitpid(t->pid, &status, WNOHANG);
        if (r == t->pid) break;
        char buf[4096];
        struct pollfd pf = {t->fd, POLLIN, 0};
        if (poll(&pf, 1, 100) > 0 && read(t->fd, buf, sizeof buf) <= 0) usleep(10000);
        if (i == 299) {
            kill(t->pid, SIGKILL);
            waitpid(t->pid, &status, 0);
        }
    }
    close(t->fd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void test_chat_on_a_terminal(void **state) {
    (void)state;
    char *home = tu_mkdtemp();
    term t;
    spawn(&t, home);
    if (!read_until(&t, "> ", 1)) fail_msg("no prompt; output so far:\n%s", t.out);
    type(&t, "In the beginning\r");
    if (!read_until(&t, "tok/s]", 1)) fail_msg("no reply:\n%s", t.out);
    if (!read_until(&t, "> ", 2)) fail_msg("no second prompt:\n%s", t.out);
    /* the up arrow brings the line back; Enter sends it again */
    const size_t before = t.n;
    type(&t, "\033[A");
    if (!read_until(&t, "In the beginning", 3)) fail_msg("up arrow did not recall the line:\n%s", t.out + before);
    type(&t, "\r");
    if (!read_until(&t, "tok/s]", 2)) fail_msg("no second reply:\n%s", t.out);
    if (!read_until(&t, "> ", 3)) fail_msg("no third prompt:\n%s", t.out);
    /* Ctrl-R: incremental search of the history */
    type(&t, "\022");
    type(&t, "begin");
    type(&t, "\r");
    if (!read_until(&t, "tok/s]", 3)) fail_msg("Ctrl-R search did not send a line:\n%s", t.out);
    /* /save, then Ctrl-D */
    char path[4200], cmd[4300];
    snprintf(path, sizeof path, "%s/conv.json", home);
    snprintf(cmd, sizeof cmd, "/save %s\r", path);
    type(&t, cmd);
    if (!read_until(&t, "(saved ", 1)) fail_msg("/save said nothing:\n%s", t.out);
    type(&t, "\004");
    assert_int_equal(finish(&t), 0);
    char *data = NULL;
    size_t n = 0;
    assert_int_equal(file_read_all(path, &data, &n), WICK_OK);
    assert_non_null(strstr(data, "In the beginning"));
    free(data);
    /* the history outlives the session: a new one recalls the line with the up arrow */
    char hist[4200];
    snprintf(hist, sizeof hist, "%s/.wick_history", home);
    assert_int_equal(file_read_all(hist, &data, &n), WICK_OK);
    assert_non_null(strstr(data, "beginning"));
    free(data);
    spawn(&t, home);
    if (!read_until(&t, "> ", 1)) fail_msg("no prompt (second session):\n%s", t.out);
    type(&t, "\033[A"); /* the /save line */
    if (!read_until(&t, "/save", 1)) fail_msg("history not kept:\n%s", t.out);
    type(&t, "\033[A"); /* the line before it */
    if (!read_until(&t, "In the beginning", 1)) fail_msg("history not kept:\n%s", t.out);
    type(&t, "\r");
    if (!read_until(&t, "tok/s]", 1)) fail_msg("no reply (second session):\n%s", t.out);
    type(&t, "\004");
    assert_int_equal(finish(&t), 0);
    tu_rmdir_rf(home);
    free(home);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_chat_on_a_terminal)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
