/* session.h — internal accessors of wick_session for the generator and the tests. */
#ifndef WICK_INFER_SESSION_H
#define WICK_INFER_SESSION_H
#include "model/layer.h"
#include "wick.h"

const wick_model *wick_session_model(const wick_session *s);

/* Number of leading ids of `ids` whose keys/values the session already holds, computed with
 * the adapter settings now in force (0 when those changed since position 0). */
int session_reusable_prefix(const wick_session *s, const int32_t *ids, int n);

/* Per-activation callback for tests: also "embed" and "final_norm" (layer −1). */
void session_set_trace(wick_session *s, layer_trace_fn fn, void *user);

#endif
