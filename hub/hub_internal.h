/* hub_internal.h — the parts of hub.c that read what a server sends, exposed for the fuzz
 * harness (fuzz/fuzz_hub.c) and tests. */
#ifndef WICK_HUB_INTERNAL_H
#define WICK_HUB_INTERNAL_H
#include <stddef.h>

#include "wick.h"

/* Response headers hub.c keeps (ETags without quotes or W/). */
typedef struct hub_hdrs {
    char etag[160], linked_etag[160], commit[64], location[2048];
    long long size, linked_size;
} hub_hdrs;

/* One header line (libcurl's CURLOPT_HEADERFUNCTION contract; u is a hub_hdrs). */
size_t hub_header_line(char *d, size_t sz, size_t nm, void *u);

/* The revision JSON ({"sha": 40 hex, "siblings": [{"rfilename": ...}]}): the commit and the
 * files p's include patterns want (malloc'd array of malloc'd names), every name a relative
 * path without "." / ".." / empty components or control bytes. url names the source in
 * errors. */
wick_status hub_parse_revision(const char *json, size_t n, const wick_hub_params *p,
                               const char *url, char commit[64], char ***files, int *n_files);
#endif
