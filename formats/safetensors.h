/* safetensors.h — reading (mmap, zero-copy) and writing safetensors files.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON header
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"k": "v"}}, then the data section; offsets are relative to its start.
 *
 * Reading validates everything before any tensor is handed out: header length vs file size,
 * JSON syntax, entries are objects with known dtype, integer non-negative shape, offsets
 * begin <= end inside the data section, (end - begin) == product(shape) * dtype size,
 * no two tensors overlap, no duplicate names. Each failure is a WICK_ERR_FORMAT whose message
 * names the file and the tensor/field.
 *
 * A `st_set` is one or more files (a sharded checkpoint) seen as one name -> tensor map. */
#ifndef WICK_FORMATS_SAFETENSORS_H
#define WICK_FORMATS_SAFETENSORS_H
#include <stdint.h>

#include "base/dtype.h"
#include "base/fileio.h"
#include "wick.h"

#define ST_MAX_DIMS 8

typedef struct st_tensor {
    const char *name;      /* owned by the set */
    dtype dt;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    const void *data;      /* points into the read-only mapping; NULL when nbytes == 0 */
    size_t nbytes;
    int file;              /* index of the file in the set */
} st_tensor;

typedef struct st_set st_set;

/* Opens one .safetensors file. On success *out owns the mapping until st_close; tensor data
 * pointers are aligned only as well as the file aligns them. On failure *out is NULL. */
wick_status st_open(const char *path, st_set **out);

/* Same as st_open for a safetensors image of `len` bytes at `data`, named `name` in messages
 * (NULL: "safetensors (in memory)"). Zero-copy: tensor data pointers point into `data`, which
 * must outlive the set. The one code path behind st_open, exposed for fuzzing and tests. */
wick_status st_open_mem(const void *data, size_t len, const char *name, st_set **out);

/* Opens a model folder: `dir`/model.safetensors, or the shards listed by
 * `dir`/model.safetensors.index.json ("weight_map": name -> file; each listed tensor must be
 * in the file the index names). WICK_ERR_IO naming both candidates when neither exists. */
wick_status st_open_dir(const char *dir, st_set **out);

void st_close(st_set *s);

/* Hands the file pages wholly inside [p, p + n) back to the page cache (madvise
 * MADV_DONTNEED) when that range lies inside one of s's file mappings; they are read from the
 * file again if touched. For tensor data a loader has copied elsewhere (packed layouts). Does
 * nothing for a set opened on the caller's memory (st_open_mem) or a range outside s. */
void st_release_pages(const st_set *s, const void *p, size_t n);

/* Iteration order: files in set order (shards sorted by file name), then header order
 * within a file. st_at returns NULL for i outside [0, st_count). */
int st_count(const st_set *s);
const st_tensor *st_at(const st_set *s, int i);
/* Tensor by name (hash lookup), NULL when absent. */
const st_tensor *st_find(const st_set *s, const char *name);
/* Value of a "__metadata__" string entry of the first file, or NULL. */
const char *st_metadata(const st_set *s, const char *key);
/* Path of file i of the set (for messages). */
const char *st_file_path(const st_set *s, int i);

/* Writing. Tensors are written back to back in the given order (the layout the reference
 * implementation writes and its reader demands); the header is padded with spaces so the data
 * section starts at a multiple of 8 bytes of the file. A tensor therefore starts 8-aligned
 * only when the tensors before it have sizes that are multiples of 8.
 * Metadata: optional key/value string pairs (n_meta may be 0), written as "__metadata__".
 * Fails with WICK_ERR_INVALID_ARG (NULL name or data with a nonzero size, duplicate name or
 * metadata key, bad dtype/ndim/shape) before creating anything, WICK_ERR_IO on write errors.
 * Atomic: temp file + fsync + rename; no partial file is left on failure. */
typedef struct st_write_tensor {
    const char *name;
    dtype dt;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;      /* product(shape) * dtype_size(dt) bytes */
} st_write_tensor;

wick_status st_write(const char *path, const st_write_tensor *tensors, int n,
                     const char *const *meta_keys, const char *const *meta_values, int n_meta);

#endif
