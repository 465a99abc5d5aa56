/* Compiled with -fsyntax-only as C99, C11 and C++11: edgestore.h must be
 * self-contained (nothing included before it) and warning-free. */
#include "edgestore.h"

#if !defined(EDGESTORE_VERSION_MAJOR) || !defined(EDGESTORE_VERSION_MINOR) || \
    !defined(EDGESTORE_VERSION_PATCH)
#error "version macros missing"
#endif

typedef int edgestore_ok_is_zero[EDGESTORE_OK == 0 ? 1 : -1];

int edgestore_header_check(void);
int edgestore_header_check(void) {
    edgestore_status st = EDGESTORE_OK;
    edgestore_metrics m;
    edgestore_compaction_stats s;
    edgestore_verify_report r;
    edgestore_db *db = 0;
    (void)m;
    (void)s;
    (void)r;
    (void)db;
    return (int)st + (int)sizeof(edgestore_ok_is_zero) - 1;
}
