/* fileio.c — mmap, whole-file reads, paths. Writing (atomic files and folders) is in
 * fileio_write.c. */
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
