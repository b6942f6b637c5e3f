/* fileio.c — mmap, whole-file reads, atomic temp+fsync+rename writes. */
#include "base/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"

wick_status mapfile_open(const char *path, mapfile *out) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(WICK_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return err_set(WICK_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(WICK_ERR_IO, "%s: not a regular file", path);
    }
    out->size = (size_t)st.st_size;
    if (out->size > 0) {
        /* Pre-fault the mapping when it fits comfortably in RAM: one bulk operation instead
           of a page fault per 4 KiB on first touch (the forward pass or a LoRA load would take
           those faults anyway). Larger files are mapped lazily so they can page. */
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        int flags = MAP_PRIVATE;
        if (pages > 0 && psz > 0 && out->size <= (size_t)pages * (size_t)psz / 2)
            flags |= MAP_POPULATE;
        void *p = mmap(NULL, out->size, PROT_READ, flags, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return err_set(WICK_ERR_IO, "%s: cannot mmap %zu bytes: %s", path, out->size,
                           strerror(e));
        }
        out->data = p;
    }
    close(fd);
    out->path = strdup(path);
    if (!out->path) {
        mapfile_close(out);
        return err_set(WICK_ERR_NOMEM, "%s: out of memory", path);
    }
    return WICK_OK;
}

wick_status mapfile_borrow(const void *data, size_t size, const char *name, mapfile *out) {
    memset(out, 0, sizeof *out);
    if (!data && size) return err_set(WICK_ERR_INVALID_ARG, "%s: NULL buffer of %zu bytes",
                                      name ? name : "(memory)", size);
    out->data = size ? data : NULL;
    out->size = size;
    out->borrowed = true;
    out->path = strdup(name ? name : "(memory)");
    if (!out->path) return err_set(WICK_ERR_NOMEM, "out of memory");
    return WICK_OK;
}

void mapfile_close(mapfile *mf) {
    if (!mf) return;
    if (mf->data && !mf->borrowed) munmap((void *)mf->data, mf->size);
    free(mf->path);
    memset(mf, 0, sizeof *mf);
}

wick_status file_read_all(const char *path, char **out, size_t *len) {
    *out = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(WICK_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return err_set(WICK_ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                return err_set(WICK_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return err_set(WICK_ERR_IO, "%s: read error", path);
    }
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return WICK_OK;
}

bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

bool dir_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a > 0 && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

char *path_dirname(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

wick_status atomic_file_open(const char *path, atomic_file *af) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(path) + 32;
    af->tmp = malloc(n);
    af->path = strdup(path);
    if (!af->tmp || !af->path) {
        free(af->tmp);
        free(af->path);
        return err_set(WICK_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(af->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp, "wb");
    if (!af->f) {
        wick_status st = err_set(WICK_ERR_IO, "%s: cannot create: %s", af->tmp, strerror(errno));
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
        st = err_set(WICK_ERR_IO, "%s: rename to %s failed: %s", af->tmp, af->path,
                     strerror(errno));
    if (st != WICK_OK) {
        atomic_file_abort(af);
        return st;
    }
    char *dir = path_dirname(af->path);
    if (dir) {
        int fd = open(dir, O_RDONLY | O_DIRECTORY);
        if (fd >= 0) {
            fsync(fd);
            close(fd);
        }
        free(dir);
    }
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
