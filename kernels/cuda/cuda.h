/* cuda.h — the CUDA kernel table (the .cu files of kernels/cuda) as seen from C: no CUDA type crosses
 * this header. Compiled only with -DWICK_CUDA=ON; C code reaches it through
 * kernels_select_device (kernels/select.c).
 *
 * The table fills every entry of kernels.h with device code for one GPU: buffers are device
 * memory (buf_alloc = cudaMalloc, zeroed), ops are kernels queued on wk_ctx.stream (a
 * cudaStream_t; NULL = the legacy default stream), and failures are collected per thread
 * and reported by the table's `sync` entry (the ops themselves return nothing).
 *
 * What crosses from the host on every call (a later milestone keeps them on the device):
 * the span tables of kv_store / attention (span records, the block ids of each span's
 * sequence, and a row -> span map) and the run descriptors of lora. They are packed on the
 * host and copied into per-thread device scratch; a pack equal to the previous one of the
 * same thread and stream is not copied again (a forward pass hands every layer the same
 * spans, so one copy per step serves all layers). softmax stays a host op, as kernels.h
 * defines it.
 *
 * Recorded passes (graph_begin / graph_end): the table records a pass as a CUDA graph on a
 * per-thread capture stream and replays it for later passes of the same key whose kernels,
 * launch shapes and upload layout are the same (a fingerprint of every launch is compared;
 * uploads are staged in the graph's own pinned memory), so a decode step costs one graph
 * launch instead of ~15 launches a layer. WICK_CUDA_GRAPHS=0 turns it off. */
#ifndef WICK_KERNELS_CUDA_H
#define WICK_KERNELS_CUDA_H
#include "kernels/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Devices a process may address (cuda:0 .. cuda:15). */
#define KERNELS_CUDA_MAX_DEVICES 16

/* The table of CUDA device `device`, after checking that the runtime finds it and that it
 * can run this build's code (compute capability 9.0 or newer). WICK_ERR_UNSUPPORTED when
 * there is no usable driver or device, or the device is too old; WICK_ERR_INVALID_ARG when
 * the index is out of range. Thread-safe. */
wick_status kernels_cuda_open(int device, const kernel_table **out);

#ifdef __cplusplus
}
#endif
#endif
