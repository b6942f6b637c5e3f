/* fileio_write.c — crash-safe output: atomic single files and atomic folder replacement.
 *
 * The one rule for every file wick writes: the bytes go to a hidden temporary sibling of the
 * target, are fsync'ed, the temporary is renamed over the target and the directory is
 * fsync'ed. A reader (or a crash, or SIGKILL at any instruction) therefore sees either the
 * complete previous output or the complete new one, never a mix or a truncated file.
 *
 * Temporary names are "<dir>/.<name>.wick-tmp-<pid>-<seq>" (hidden, so loaders that list a
 * folder do not see them; the pid says which process owns it, seq tells apart the writers
 * of one process). A run killed before its rename leaves one behind; every writer first
 * sweeps the directory it writes into and removes the temporaries whose process is gone
 * (kill(pid, 0) fails with ESRCH), so the next successful run leaves nothing behind. Live
 * processes' temporaries are never touched, so concurrent writers do not break each other
 * (the last rename wins).
 *
 * Folders (a model folder, a PEFT folder, a training checkpoint) are written as a whole: the
 * new folder is built in a temporary sibling folder, every file in it fsync'ed, then the two
 * folders are swapped with one renameat2(RENAME_EXCHANGE) (one rename when there was no
 * folder) and the previous tree, now under the temporary name, is deleted. Entries of the
 * previous folder that the new one does not write (a README, checkpoint-N subfolders of a
 * training run) are carried into the new folder first, as hard links (copies where a link
 * is refused), so replacing a folder never loses them. On file systems without
 * RENAME_EXCHANGE the swap is two renames: the previous folder is moved to
 * ".<name>.wick-old-<pid>-<seq>" and the new one into place; between the two the path is
 * briefly absent, and a run killed there has its previous folder renamed back by the next
 * sweep.
 *
 * Refused (with a message): replacing the current working folder or one that contains it
 * (the process, and the shell it was started from, would be left in the deleted previous
 * tree: write to a subfolder), a folder that holds a mount point (its contents would be
 * copied), and a mount point itself (rename cannot).
 *
 * Not here: network file systems shared by several hosts (pids are per host), and several
 * processes writing one folder at the same time (each swap is atomic, but a folder write
 * that carries over entries of a folder another process is replacing may carry stale ones). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/fileio.h"

#define TMP_TAG ".wick-tmp-"
#define OLD_TAG ".wick-old-"

static atomic_uint g_seq;

/* ---- names ---- */

/* Splits a path (trailing '/' removed) into a malloc'd directory and a pointer to its last
 * component inside *norm (also malloc'd). Fails for "/" and for paths whose last component
 * is "." or ".." after resolving them. */
static wick_status split_path(const char *path, char **norm, char **dir, const char **base) {
    *norm = *dir = NULL;
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    char *p = strndup(path, n);
    if (!p) return err_set(WICK_ERR_NOMEM, "%s: out of memory", path);
    const char *slash = strrchr(p, '/');
    const char *b = slash ? slash + 1 : p;
    if (!strcmp(b, ".") || !strcmp(b, "..")) { /* "out/." names the folder "out" itself */
        char *r = realpath(p, NULL);
        free(p);
        if (!r) return err_set(WICK_ERR_IO, "%s: cannot resolve: %s", path, strerror(errno));
        p = r;
        slash = strrchr(p, '/');
        b = slash ? slash + 1 : p;
    }
    if (!slash) *dir = strdup(".");
    else if (slash == p) *dir = strdup("/");
    else *dir = strndup(p, (size_t)(slash - p));
    if (!*b) {
        free(p);
        free(*dir);
        *dir = NULL;
        return err_set(WICK_ERR_INVALID_ARG, "%s: not a file or folder name", path);
    }
    if (!*dir) {
        free(p);
        return err_set(WICK_ERR_NOMEM, "%s: out of memory", path);
    }
    *norm = p;
    *base = b;
    return WICK_OK;
}

/* "<dir>/.<base><tag><pid>-<seq>", malloc'd. */
static char *sibling(const char *dir, const char *base, const char *tag) {
    unsigned seq = atomic_fetch_add(&g_seq, 1u);
    size_t n = strlen(dir) + strlen(base) + 64;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/.%s%s%ld-%u", dir, base, tag, (long)getpid(), seq);
    return s;
}

/* When `name` is ".<base><tag><pid>-<seq>", returns the pid and the length of <base>; else 0. */
static long parse_sibling(const char *name, const char *tag, size_t *base_len) {
    if (name[0] != '.') return 0;
    const char *t = NULL;
    for (const char *p = strstr(name + 1, tag); p; p = strstr(p + 1, tag)) t = p;
    if (!t || t == name + 1) return 0;
    const char *q = t + strlen(tag);
    char *end;
    long pid = strtol(q, &end, 10);
    if (end == q || *end != '-' || pid <= 0) return 0;
    q = end + 1;
    strtoul(q, &end, 10);
    if (end == q || *end) return 0;
    *base_len = (size_t)(t - name - 1);
    return pid;
}

bool fileio_is_temp_name(const char *name) {
    size_t bl;
    return parse_sibling(name, TMP_TAG, &bl) || parse_sibling(name, OLD_TAG, &bl);
}

static bool pid_gone(long pid) {
    if (pid == (long)getpid()) return false;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* ---- removal, sync ---- */

/* Removes `name` under dirfd, recursively for a folder (never following symlinks). Best
 * effort: what cannot be removed stays (the next sweep tries again). */
static void rm_rf_at(int dirfd, const char *name) {
    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT) return;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) rm_rf_at(fd, e->d_name);
    closedir(d);
    unlinkat(dirfd, name, AT_REMOVEDIR);
}

void fileio_remove_tree(const char *path) { rm_rf_at(AT_FDCWD, path); }

static void fsync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

void fileio_sweep_stale(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    bool changed = false;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t bl;
        long pid;
        if ((pid = parse_sibling(e->d_name, TMP_TAG, &bl)) && pid_gone(pid)) {
            rm_rf_at(fd, e->d_name);
            changed = true;
        } else if ((pid = parse_sibling(e->d_name, OLD_TAG, &bl)) && pid_gone(pid)) {
            /* a folder swap killed between its two renames: the previous folder comes back
               when nothing took its place, else it is stale */
            char base[NAME_MAX + 1];
            struct stat st;
            snprintf(base, sizeof base, "%.*s", (int)bl, e->d_name + 1);
            if (fstatat(fd, base, &st, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT)
                renameat(fd, e->d_name, fd, base);
            else
                rm_rf_at(fd, e->d_name);
            changed = true;
        }
    }
    /* readdir after unlink/rename of the current entry is defined (entries may or may not be
       returned again); a missed one is removed by the next sweep */
    closedir(d);
    if (changed) fsync_path(dir);
}

/* ---- single files ---- */

wick_status atomic_file_open(const char *path, atomic_file *af) {
    memset(af, 0, sizeof *af);
    char *norm, *dir;
    const char *base;
    wick_status st = split_path(path, &norm, &dir, &base);
    if (st) return st;
    fileio_sweep_stale(dir);
    af->tmp = sibling(dir, base, TMP_TAG);
    af->path = norm;
    free(dir);
    if (!af->tmp) {
        free(af->path);
        memset(af, 0, sizeof *af);
        return err_set(WICK_ERR_NOMEM, "%s: out of memory", path);
    }
    int fd = open(af->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) {
        /* a replaced file keeps its permission bits */
        struct stat old;
        if (stat(af->path, &old) == 0 && S_ISREG(old.st_mode)) fchmod(fd, old.st_mode & 07777);
        af->f = fdopen(fd, "wb");
        if (!af->f) close(fd);
    }
    if (!af->f) {
        st = err_set(WICK_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        if (fd >= 0) unlink(af->tmp);
        free(af->tmp);
        free(af->path);
        memset(af, 0, sizeof *af);
        return st;
    }
    return WICK_OK;
}

wick_status atomic_file_write(atomic_file *af, const void *data, size_t n) {
    if (n && fwrite(data, 1, n, af->f) != n)
        return err_set(WICK_ERR_IO, "%s: write failed: %s", af->tmp, strerror(errno));
    return WICK_OK;
}

void atomic_file_abort(atomic_file *af) {
    if (af->f) fclose(af->f);
    if (af->tmp) unlink(af->tmp);
    free(af->tmp);
    free(af->path);
    memset(af, 0, sizeof *af);
}

wick_status atomic_file_commit(atomic_file *af) {
    wick_status st = WICK_OK;
    if (fflush(af->f) != 0 || fsync(fileno(af->f)) != 0)
        st = err_set(WICK_ERR_IO, "%s: flush failed: %s", af->tmp, strerror(errno));
    if (fclose(af->f) != 0 && st == WICK_OK)
        st = err_set(WICK_ERR_IO, "%s: close failed: %s", af->tmp, strerror(errno));
    af->f = NULL;
    if (st == WICK_OK && rename(af->tmp, af->path) != 0)
        st = err_set(WICK_ERR_IO, "%s: cannot move into place: %s", af->path, strerror(errno));
    if (st != WICK_OK) {
        atomic_file_abort(af);
        return st;
    }
    char *dir = path_dirname(af->path);
    if (dir) fsync_path(dir);
    free(dir);
    free(af->tmp);
    free(af->path);
    memset(af, 0, sizeof *af);
    return WICK_OK;
}

wick_status file_write_atomic(const char *path, const void *data, size_t n) {
    atomic_file af;
    wick_status st = atomic_file_open(path, &af);
    if (st) return st;
    st = atomic_file_write(&af, data, n);
    if (st) {
        atomic_file_abort(&af);
        return st;
    }
    return atomic_file_commit(&af);
}

/* ---- folders ---- */

wick_status dir_txn_begin(const char *dir, dir_txn *t) {
    memset(t, 0, sizeof *t);
    char *norm, *parent;
    const char *base;
    wick_status st = split_path(dir, &norm, &parent, &base);
    if (st) return st;
    struct stat s;
    if (lstat(norm, &s) == 0 && S_ISLNK(s.st_mode)) {
        /* replace the folder the link points to, not the link */
        char *r = realpath(norm, NULL);
        free(norm);
        free(parent);
        if (!r) return err_set(WICK_ERR_IO, "%s: cannot resolve: %s", dir, strerror(errno));
        st = split_path(r, &norm, &parent, &base);
        free(r);
        if (st) return st;
    }
    char *cwd = getcwd(NULL, 0), *real = realpath(norm, NULL);
    const size_t rl = real ? strlen(real) : 0;
    const bool holds_cwd = cwd && real && !strncmp(cwd, real, rl) &&
                           (cwd[rl] == 0 || cwd[rl] == '/' || rl == 1);
    free(cwd);
    free(real);
    if (stat(norm, &s) == 0 && !S_ISDIR(s.st_mode)) {
        st = err_set(WICK_ERR_IO, "%s: exists and is not a folder", dir);
    } else if (holds_cwd) {
        st = err_set(WICK_ERR_INVALID_ARG, "%s: is (or contains) the current folder, which "
                     "cannot be replaced as a whole; write to a subfolder", dir);
    } else if (!dir_exists(parent)) {
        st = err_set(WICK_ERR_IO, "%s: the parent folder %s does not exist", dir, parent);
    } else {
        fileio_sweep_stale(parent);
        t->stage = sibling(parent, base, TMP_TAG);
        if (!t->stage) st = err_set(WICK_ERR_NOMEM, "%s: out of memory", dir);
        else if (mkdir(t->stage, 0777) != 0)
            st = err_set(WICK_ERR_IO, "%s: cannot create %s: %s", dir, t->stage, strerror(errno));
    }
    if (st) {
        free(t->stage);
        free(norm);
        free(parent);
        memset(t, 0, sizeof *t);
        return st;
    }
    t->dir = norm;
    t->parent = parent;
    return WICK_OK;
}

void dir_txn_abort(dir_txn *t) {
    if (t->stage) fileio_remove_tree(t->stage);
    free(t->stage);
    free(t->dir);
    free(t->parent);
    memset(t, 0, sizeof *t);
}

/* Copies regular file `name` from sfd to dfd (mode kept, fsync'ed). 0 on success. */
static int copy_at(int sfd, int dfd, const char *name, mode_t mode) {
    int in = openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0) return -1;
    int out = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode & 07777);
    if (out < 0) {
        close(in);
        return -1;
    }
    char buf[1 << 16];
    ssize_t r;
    int rc = 0;
    while ((r = read(in, buf, sizeof buf)) != 0) {
        if (r < 0) {
            if (errno == EINTR) continue;
            rc = -1;
            break;
        }
        for (ssize_t o = 0; o < r;) {
            ssize_t w = write(out, buf + o, (size_t)(r - o));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                rc = -1;
                break;
            }
            o += w;
        }
        if (rc) break;
    }
    if (!rc && fsync(out) != 0) rc = -1;
    close(in);
    if (close(out) != 0) rc = -1;
    return rc;
}

/* Puts every entry of folder sfd that folder dfd lacks into dfd: files as hard links (copies
 * where linking fails), folders recreated with their contents carried the same way, symlinks
 * recreated. Temporaries of wick writers are left out. fsyncs dfd. path: for messages. */
static wick_status carry_over(int sfd, int dfd, const char *path, int depth) {
    if (depth > 64) return err_set(WICK_ERR_UNSUPPORTED, "%s: folders nested too deep", path);
    int sfd2 = dup(sfd);
    DIR *d = sfd2 >= 0 ? fdopendir(sfd2) : NULL;
    if (!d) {
        if (sfd2 >= 0) close(sfd2);
        return err_set(WICK_ERR_IO, "%s: cannot list: %s", path, strerror(errno));
    }
    wick_status st = WICK_OK;
    struct dirent *e;
    while (!st && (e = readdir(d))) {
        const char *n = e->d_name;
        struct stat s;
        if (!strcmp(n, ".") || !strcmp(n, "..") || fileio_is_temp_name(n)) continue;
        if (fstatat(dfd, n, &s, AT_SYMLINK_NOFOLLOW) == 0) continue; /* written anew */
        if (fstatat(sfd, n, &s, AT_SYMLINK_NOFOLLOW) != 0) continue; /* gone meanwhile */
        if (S_ISREG(s.st_mode)) {
            if (linkat(sfd, n, dfd, n, 0) != 0 && copy_at(sfd, dfd, n, s.st_mode) != 0)
                st = err_set(WICK_ERR_IO, "%s/%s: cannot keep it in the new folder: %s", path, n,
                             strerror(errno));
        } else if (S_ISDIR(s.st_mode)) {
            int a = -1, b = -1;
            struct stat top;
            if (fstat(sfd, &top) == 0 && top.st_dev != s.st_dev) {
                st = err_set(WICK_ERR_UNSUPPORTED, "%s/%s: a mount point; a folder holding one "
                             "cannot be replaced as a whole", path, n);
            } else if (mkdirat(dfd, n, s.st_mode & 07777) != 0 ||
                (a = openat(sfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
                (b = openat(dfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
                st = err_set(WICK_ERR_IO, "%s/%s: cannot keep it in the new folder: %s", path, n,
                             strerror(errno));
            } else {
                size_t pl = strlen(path) + strlen(n) + 2;
                char *sub = malloc(pl);
                if (!sub) st = err_set(WICK_ERR_NOMEM, "out of memory");
                else {
                    snprintf(sub, pl, "%s/%s", path, n);
                    st = carry_over(a, b, sub, depth + 1);
                    free(sub);
                }
            }
            if (a >= 0) close(a);
            if (b >= 0) close(b);
        } else if (S_ISLNK(s.st_mode)) {
            char target[PATH_MAX];
            ssize_t k = readlinkat(sfd, n, target, sizeof target - 1);
            if (k < 0 || (target[k] = 0, symlinkat(target, dfd, n) != 0))
                st = err_set(WICK_ERR_IO, "%s/%s: cannot keep the link in the new folder: %s",
                             path, n, strerror(errno));
        } else {
            st = err_set(WICK_ERR_UNSUPPORTED, "%s/%s: a special file (not a file, folder or "
                         "link) cannot be kept when the folder is replaced", path, n);
        }
    }
    closedir(d);
    if (!st && fsync(dfd) != 0)
        st = err_set(WICK_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    return st;
}

/* Swaps two paths atomically; -1 with errno EINVAL/ENOSYS/... where unsupported. */
static int exchange(const char *a, const char *b) {
#ifdef RENAME_EXCHANGE
    return renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
#else
    errno = ENOSYS;
    return -1;
#endif
}

wick_status dir_txn_commit(dir_txn *t) {
    wick_status st = WICK_OK;
    struct stat s;
    const bool had = stat(t->dir, &s) == 0;
    if (had && !S_ISDIR(s.st_mode)) st = err_set(WICK_ERR_IO, "%s: exists and is not a folder", t->dir);
    int sfd = had && !st ? open(t->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    int dfd = open(t->stage, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (!st && (dfd < 0 || (had && sfd < 0)))
        st = err_set(WICK_ERR_IO, "%s: cannot open: %s", t->dir, strerror(errno));
    if (!st && had) {
        st = carry_over(sfd, dfd, t->dir, 0);
        if (!st) fchmod(dfd, s.st_mode & 07777);
    } else if (!st && fsync(dfd) != 0) {
        st = err_set(WICK_ERR_IO, "%s: fsync failed: %s", t->stage, strerror(errno));
    }
    if (sfd >= 0) close(sfd);
    if (dfd >= 0) close(dfd);
    if (!st && !had) {
        if (rename(t->stage, t->dir) != 0)
            st = err_set(WICK_ERR_IO, "%s: cannot rename %s into place: %s", t->dir, t->stage,
                         strerror(errno));
        else {
            free(t->stage);
            t->stage = NULL;
        }
    } else if (!st) {
        if (exchange(t->stage, t->dir) == 0) {
            fsync_path(t->parent);
            fileio_remove_tree(t->stage); /* the previous folder, now under the temp name */
            free(t->stage);
            t->stage = NULL;
        } else if (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) {
            /* no RENAME_EXCHANGE here: previous folder aside, new one in, previous removed */
            char *base = strrchr(t->dir, '/');
            char *old = sibling(t->parent, base ? base + 1 : t->dir, OLD_TAG);
            if (!old) st = err_set(WICK_ERR_NOMEM, "out of memory");
            else if (rename(t->dir, old) != 0)
                st = err_set(WICK_ERR_IO, "%s: cannot move it aside: %s", t->dir, strerror(errno));
            else if (rename(t->stage, t->dir) != 0) {
                st = err_set(WICK_ERR_IO, "%s: cannot rename %s into place: %s", t->dir,
                             t->stage, strerror(errno));
                rename(old, t->dir);
            } else {
                fsync_path(t->parent);
                fileio_remove_tree(old);
                free(t->stage);
                t->stage = NULL;
            }
            free(old);
        } else {
            const int e = errno;
            st = err_set(WICK_ERR_IO, "%s: cannot swap in %s: %s%s", t->dir, t->stage,
                         strerror(e), e == EXDEV || e == EBUSY
                                          ? " (a mount point cannot be replaced: write into a "
                                            "folder inside it)" : "");
        }
    }
    if (!st) fsync_path(t->parent);
    dir_txn_abort(t); /* removes the stage when it is still there (a failure) */
    return st;
}
