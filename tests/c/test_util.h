/* Shared helpers for the edgestore C tests: CHECK macros that fail loudly
 * (file:line, the expression, the status name and edgestore_last_error()),
 * temporary directories and byte-string shorthands. */
#ifndef EDGESTORE_TEST_UTIL_H
#define EDGESTORE_TEST_UTIL_H

#if !defined(_XOPEN_SOURCE)
#define _XOPEN_SOURCE 700
#endif

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "edgestore.h"

#define FAIL_NOW(...)                                                      \
    do {                                                                   \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                    \
        fprintf(stderr, __VA_ARGS__);                                      \
        fprintf(stderr, "\n");                                             \
        exit(1);                                                           \
    } while (0)

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) FAIL_NOW("CHECK failed: %s", #cond);                  \
    } while (0)

/* Expects `expr` to return `want` (an edgestore_status). */
#define CHECK_STATUS(expr, want)                                           \
    do {                                                                   \
        int got_ = (int)(expr);                                            \
        int want_ = (int)(want);                                           \
        if (got_ != want_)                                                 \
            FAIL_NOW("%s returned %s, expected %s (last error: %s)", #expr, \
                     edgestore_status_name(got_), edgestore_status_name(want_), \
                     edgestore_last_error());                              \
    } while (0)

#define CHECK_OK(expr) CHECK_STATUS(expr, EDGESTORE_OK)

/* Expects (ptr, len) to hold exactly the NUL-terminated string `want`. */
#define CHECK_BYTES(ptr, len, want)                                        \
    do {                                                                   \
        size_t wl_ = strlen(want);                                         \
        if ((size_t)(len) != wl_ || (wl_ && memcmp((ptr), (want), wl_) != 0)) \
            FAIL_NOW("bytes %.*s (len %zu) != expected \"%s\"",            \
                     (int)(len), (const char *)(ptr), (size_t)(len), (want)); \
    } while (0)

/* Expects edgestore_last_error() to contain `needle`. */
#define CHECK_LAST_ERROR_HAS(needle)                                       \
    do {                                                                   \
        const char *le_ = edgestore_last_error();                          \
        if (le_ == NULL || strstr(le_, (needle)) == NULL)                  \
            FAIL_NOW("last error \"%s\" does not contain \"%s\"",          \
                     le_ ? le_ : "(null)", (needle));                      \
    } while (0)

/* A string literal or char* as the (const uint8_t *, size_t) pair the API takes. */
#define B(s) (const uint8_t *)(s), strlen(s)

static inline int rm_entry_(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes a directory tree (best effort). */
static inline void remove_tree(const char *path) {
    nftw(path, rm_entry_, 16, FTW_DEPTH | FTW_PHYS);
}

/* Creates a fresh temporary directory; caller frees the string. */
static inline char *make_tempdir(const char *tag) {
    const char *base = getenv("TMPDIR");
    char *path;
    size_t n;
    if (!base || !*base) base = "/tmp";
    n = strlen(base) + strlen(tag) + 32;
    path = (char *)malloc(n);
    CHECK(path != NULL);
    snprintf(path, n, "%s/edgestore-%s-XXXXXX", base, tag);
    CHECK(mkdtemp(path) != NULL);
    return path;
}

/* path + "/" + name, malloc'd. */
static inline char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = (char *)malloc(n);
    CHECK(p != NULL);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Opens a database at dir/name with default options. */
static inline edgestore_db *open_db(const char *path, const edgestore_options *opts) {
    edgestore_db *db = NULL;
    CHECK_OK(edgestore_open(path, opts, &db));
    CHECK(db != NULL);
    return db;
}

/* Options with a manual clock at a fixed start, buffered sync for speed. */
static inline edgestore_options *test_options(int manual_clock) {
    edgestore_options *o = NULL;
    CHECK_OK(edgestore_options_new(&o));
    CHECK_OK(edgestore_options_set_sync_mode(o, EDGESTORE_SYNC_BUFFERED));
    if (manual_clock) CHECK_OK(edgestore_options_set_manual_clock(o, INT64_C(1700000000000000000)));
    return o;
}

/* Reads ns/key and checks it equals `want` (NULL: expects NOT_FOUND). */
static inline void expect_value(edgestore_db *db, const char *ns, const char *key, const char *want) {
    uint8_t *v = NULL;
    size_t len = 0;
    if (want == NULL) {
        CHECK_STATUS(edgestore_get(db, B(ns), B(key), &v, &len), EDGESTORE_NOT_FOUND);
        CHECK(v == NULL);
        return;
    }
    CHECK_OK(edgestore_get(db, B(ns), B(key), &v, &len));
    CHECK(v != NULL);
    CHECK_BYTES(v, len, want);
    CHECK_OK(edgestore_value_free(v));
}

/* Drains an iterator into "key=value;" text (binary bytes as-is), checks that
 * it ends with EDGESTORE_DONE (and stays done), and frees it. */
static inline void collect_and_free(edgestore_iter *it, char *out, size_t cap) {
    const uint8_t *k = NULL, *v = NULL;
    size_t kl = 0, vl = 0, used = 0;
    edgestore_status st;
    out[0] = '\0';
    while ((st = edgestore_iter_next(it, &k, &kl, &v, &vl)) == EDGESTORE_OK) {
        CHECK(k != NULL && v != NULL);
        CHECK(used + kl + vl + 3 < cap);
        memcpy(out + used, k, kl);
        used += kl;
        out[used++] = '=';
        memcpy(out + used, v, vl);
        used += vl;
        out[used++] = ';';
        out[used] = '\0';
    }
    CHECK_STATUS(st, EDGESTORE_DONE);
    CHECK_STATUS(edgestore_iter_next(it, &k, &kl, &v, &vl), EDGESTORE_DONE);
    CHECK_OK(edgestore_iter_free(it));
}

#define CHECK_STR(got, want)                                               \
    do {                                                                   \
        if (strcmp((got), (want)) != 0)                                    \
            FAIL_NOW("got \"%s\", expected \"%s\"", (got), (want));    \
    } while (0)

#endif /* EDGESTORE_TEST_UTIL_H */
