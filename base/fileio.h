/* fileio.h — read-only file mappings, whole-file reads, and crash-safe writes.
 * Read-only mappings are pre-faulted (MAP_POPULATE) when the file is under half the RAM.
 * Writers never leave a partial output behind, even when killed (fileio_write.c): a file is
 * written to a hidden temporary sibling "<dir>/.<name>.wick-tmp-<pid>-<seq>", fsync'ed and
 * renamed over <path> (then the directory is fsync'ed); a folder is built as such a sibling
 * and swapped in as a whole (dir_txn). Every writer first removes the temporaries that killed
 * processes left in the directory it writes into. */
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

/* Atomic writer of one file. Used for every file wick writes. */
typedef struct atomic_file {
    FILE *f;
    char *path;
    char *tmp;
} atomic_file;

/* Sweeps stale temporaries beside `path`, creates its temporary (a replaced file's permission
 * bits are kept). */
wick_status atomic_file_open(const char *path, atomic_file *af);
/* Writes n bytes; fails with WICK_ERR_IO (disk full ...). */
wick_status atomic_file_write(atomic_file *af, const void *data, size_t n);
/* Flushes, fsyncs, renames into place (and fsyncs the directory). Always releases af. */
wick_status atomic_file_commit(atomic_file *af);
/* Removes the temp file and releases af. */
void atomic_file_abort(atomic_file *af);

/* One-shot atomic write of a buffer. */
wick_status file_write_atomic(const char *path, const void *data, size_t n);

/* Atomic replacement of a whole folder (model folder, PEFT folder, checkpoint):
 *
 *     dir_txn t;
 *     if ((st = dir_txn_begin(out_dir, &t))) return st;
 *     st = write_files_into(t.stage);          // any writers, e.g. file_write_atomic
 *     if (st) dir_txn_abort(&t); else st = dir_txn_commit(&t);
 *
 * begin: `dir` may exist (a folder; a symlink to one replaces the folder it points to) or
 * not (its parent must exist); creates the empty staging folder t.stage beside it.
 * commit: entries of the existing folder that the stage lacks are carried over (hard links,
 * or copies; subfolders recreated), the stage is fsync'ed and swapped in with one atomic
 * rename (renameat2 RENAME_EXCHANGE), the previous tree is removed and the parent fsync'ed.
 * At every moment `dir` is the complete previous folder or the complete new one. On failure
 * `dir` is as it was. Always releases t. abort: removes the stage, releases t.
 * Refused: the current working folder or one containing it (WICK_ERR_INVALID_ARG), a folder
 * holding a mount point (WICK_ERR_UNSUPPORTED), folders nested over 64 deep. */
typedef struct dir_txn {
    char *dir;     /* the folder being replaced (normalized) */
    char *parent;  /* its parent folder */
    char *stage;   /* write the new folder's files here */
} dir_txn;

wick_status dir_txn_begin(const char *dir, dir_txn *t);
wick_status dir_txn_commit(dir_txn *t);
void dir_txn_abort(dir_txn *t);

/* Removes, in folder `dir`, the temporaries of writers whose process no longer runs (and puts
 * back a folder a killed swap had moved aside). Best effort, never fails. */
void fileio_sweep_stale(const char *dir);
/* True when a directory entry name is a writer's temporary (".<name>.wick-tmp-<pid>-<n>" or
 * ".<name>.wick-old-<pid>-<n>"). */
bool fileio_is_temp_name(const char *name);
/* rm -rf that never follows symlinks; best effort. */
void fileio_remove_tree(const char *path);

#endif
