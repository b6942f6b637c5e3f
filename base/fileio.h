/* fileio.h — read-only file mappings, whole-file reads, and atomic writes.
 * Read-only mappings are pre-faulted (MAP_POPULATE) when the file is under half the RAM.
 * Writers never leave a partial file behind: data goes to "<path>.tmp.<pid>", is fsync'ed,
 * then renamed over <path>; on any failure the temp file is removed. */
#ifndef WICK_BASE_FILEIO_H
#define WICK_BASE_FILEIO_H
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include "wick.h"

typedef struct mapfile {
    const unsigned char *data;  /* read-only mapping (NULL for an empty file) */
    size_t size;
    char *path;                 /* owned copy, for messages */
    bool borrowed;              /* data is the caller's buffer (mapfile_borrow): not unmapped */
} mapfile;

/* Maps `path` read-only. Fails with WICK_ERR_IO naming the path and errno text. */
wick_status mapfile_open(const char *path, mapfile *out);
/* Views `size` bytes at `data` (the caller's, which must outlive the view) as a mapfile named
 * `name` in messages, so parsers read memory and files through the same code. data may be
 * NULL only when size is 0 (then the view's data is NULL, as for an empty file). */
wick_status mapfile_borrow(const void *data, size_t size, const char *name, mapfile *out);
void mapfile_close(mapfile *mf);

/* Reads a whole file into a NUL-terminated malloc'd buffer (free with free()). */
wick_status file_read_all(const char *path, char **out, size_t *len);

bool file_exists(const char *path);
bool dir_exists(const char *path);

/* Joins a directory and a file name into a malloc'd path. Returns NULL on OOM. */
char *path_join(const char *dir, const char *name);
/* malloc'd directory part of a path ("." when there is none). */
char *path_dirname(const char *path);

/* Atomic writer. */
typedef struct atomic_file {
    FILE *f;
    char *path;
    char *tmp;
} atomic_file;

wick_status atomic_file_open(const char *path, atomic_file *af);
/* Writes n bytes; fails with WICK_ERR_IO (disk full ...). */
wick_status atomic_file_write(atomic_file *af, const void *data, size_t n);
/* Flushes, fsyncs, renames into place (and fsyncs the directory). Always releases af. */
wick_status atomic_file_commit(atomic_file *af);
/* Removes the temp file and releases af. */
void atomic_file_abort(atomic_file *af);

/* One-shot atomic write of a buffer. */
wick_status file_write_atomic(const char *path, const void *data, size_t n);

#endif
