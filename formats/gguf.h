/* gguf.h — reading (mmap, zero-copy) and writing GGUF files, versions 2 and 3.
 *
 * Format (little-endian): "GGUF", u32 version, u64 tensor count, u64 key/value count; the
 * key/values (string key, u32 value type, value); the tensor infos (string name, u32 n_dims,
 * u64 ne[n_dims] with ne[0] the fastest-varying dimension = columns, u32 ggml type, u64 offset
 * relative to the data section); padding to `general.alignment` (u32, default 32); the data
 * section. Strings are u64 length + bytes (no NUL). Arrays are u32 element type + u64 count +
 * elements (arrays may nest).
 *
 * Reading validates every count, length, type, shape, offset and alignment against the file
 * before anything is handed out; each failure is a WICK_ERR_FORMAT (WICK_ERR_UNSUPPORTED for
 * a tensor type wick has no kernels for) naming the file and the key or tensor.
 * Not here: what the keys mean (model/model_gguf.c), quantization (kernels/quant.h). */
#ifndef WICK_FORMATS_GGUF_H
#define WICK_FORMATS_GGUF_H
#include <stdbool.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/fileio.h"
#include "wick.h"

typedef enum gguf_type {
    GGUF_U8 = 0, GGUF_I8 = 1, GGUF_U16 = 2, GGUF_I16 = 3, GGUF_U32 = 4, GGUF_I32 = 5,
    GGUF_F32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_U64 = 10,
    GGUF_I64 = 11, GGUF_F64 = 12, GGUF_TYPE_COUNT_
} gguf_type;

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

typedef struct gguf_value gguf_value;
struct gguf_value {
    gguf_type type;
    union {
        uint64_t u;   /* U8, U16, U32, U64, BOOL (0/1) */
        int64_t i;    /* I8, I16, I32, I64 */
        double f;     /* F32, F64 */
        struct { const char *s; uint64_t len; } str;                  /* STRING (no NUL) */
        struct { gguf_type type; uint64_t n; gguf_value *items; } arr; /* ARRAY */
    };
};

typedef struct gguf_kv {
    char *key;          /* NUL-terminated copy */
    gguf_value v;
} gguf_kv;

typedef struct gguf_tensor {
    char *name;         /* NUL-terminated copy */
    dtype dt;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];   /* ne[0] = columns (fastest varying); unused dims are 1 */
    uint64_t offset;    /* in the data section */
    const void *data;   /* in the mapping; aligned to the file's alignment */
    size_t nbytes;
} gguf_tensor;

typedef struct gguf_file {
    mapfile mf;
    uint32_t version;
    int64_t n_kv, n_tensors;
    gguf_kv *kv;
    gguf_tensor *tensors;
    uint32_t alignment;
    uint64_t data_offset;
    gguf_kv **kv_by_key;          /* (n_kv) sorted by key, for look-ups */
    gguf_tensor **t_by_name;      /* (n_tensors) sorted by name */
} gguf_file;

/* ggml type id <-> dtype; -1 / DT_COUNT_ when wick does not support it. */
int gguf_dtype_from_ggml(uint32_t ggml_type);
uint32_t gguf_ggml_from_dtype(dtype dt);

/* Opens and validates a GGUF file. On failure *out is NULL.
 * Work and memory are bounded by the file: every count (key/values, tensors, array elements,
 * string bytes) is checked against the bytes left before anything is allocated for it, so
 * the parsed metadata takes at most ~32 bytes of memory per byte of file (a u8 array element
 * becomes a 32-byte gguf_value); parsing is O(n log n) in the number of entries; arrays nest at
 * most 8 deep. Tensor data is never copied. */
wick_status gguf_open(const char *path, gguf_file **out);
/* Same for a GGUF image of `len` bytes at `data`, named `name` in messages (NULL: "GGUF (in
 * memory)"). Zero-copy: data must outlive the gguf_file. The one parser behind gguf_open,
 * exposed for fuzzing and tests. */
wick_status gguf_open_mem(const void *data, size_t len, const char *name, gguf_file **out);
void gguf_close(gguf_file *g);

const gguf_kv *gguf_find_kv(const gguf_file *g, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name);

/* Typed look-ups. Each returns false when the key is absent; a present key of the wrong type
 * sets a WICK_ERR_FORMAT message naming the file and key in *st (st may be NULL to ignore). */
bool gguf_get_int(const gguf_file *g, const char *key, int64_t *out, wick_status *st);
bool gguf_get_float(const gguf_file *g, const char *key, double *out, wick_status *st);
bool gguf_get_bool(const gguf_file *g, const char *key, bool *out, wick_status *st);
/* String value as a malloc'd NUL-terminated copy (free it). */
bool gguf_get_str(const gguf_file *g, const char *key, char **out, wick_status *st);
/* Array value: elements must have type `elem` (or any when elem == GGUF_TYPE_COUNT_). */
const gguf_value *gguf_get_arr(const gguf_file *g, const char *key, gguf_type elem,
                               wick_status *st);

/* Writing. Tensors are laid out in the given order, each at an offset that is a multiple of
 * the alignment (general.alignment among kvs, else 32), zero-padded. data must hold
 * dtype_row_bytes(dt, ne[0]) * ne[1] * ne[2] * ne[3] bytes. Everything is validated before a
 * byte is written (WICK_ERR_INVALID_ARG); atomic (temp + fsync + rename), no partial file on
 * failure. */
typedef struct gguf_write_tensor {
    const char *name;
    dtype dt;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    const void *data;
} gguf_write_tensor;

wick_status gguf_write(const char *path, const gguf_kv *kvs, int n_kv,
                       const gguf_write_tensor *tensors, int n_tensors);

/* Value constructors for writers (strings are not copied). */
static inline gguf_value gguf_v_u32(uint32_t x) { gguf_value v = {.type = GGUF_U32}; v.u = x; return v; }
static inline gguf_value gguf_v_i32(int32_t x) { gguf_value v = {.type = GGUF_I32}; v.i = x; return v; }
static inline gguf_value gguf_v_f32(float x) { gguf_value v = {.type = GGUF_F32}; v.f = x; return v; }
static inline gguf_value gguf_v_bool(bool x) { gguf_value v = {.type = GGUF_BOOL}; v.u = x; return v; }
gguf_value gguf_v_str(const char *s);

#endif
