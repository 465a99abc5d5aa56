/* Vector collections (edgestore_vector_*): recall of the HNSW and exact paths
 * against a brute force computed here, the requested metric is the one used,
 * f16 and i8 collections, metadata and key-prefix filters, batch put and
 * batch search, deletes / overwrites / TTL expiry never leaking (manual
 * clock), snapshots, reopening keeps the index, key-stride BUFFER_TOO_SMALL,
 * and every kind of bad input: a documented status, untouched out-params,
 * nothing written. */
#include "test_util.h"

#include <math.h>
#include <pthread.h>
#include <time.h>

#define INV EDGESTORE_INVALID_ARGUMENT
#define DIM 16
#define N 1000
#define KMAX 64
#define F32 EDGESTORE_VECTOR_F32
#define F16 EDGESTORE_VECTOR_F16
#define I8 EDGESTORE_VECTOR_I8

typedef struct {
    size_t count;
    size_t lens[KMAX];
    float dist[KMAX];
    uint8_t keys[KMAX][EDGESTORE_VECTOR_MAX_KEY_LEN];
} hits_t;

static float data[N][DIM];
static int state[N]; /* 0 live, 1 deleted, 2 expired; overwritten rows are live with new data */

/* ---- deterministic pseudo-random numbers ---- */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double unit(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static float gauss(void) {
    double s = 0;
    int i;
    for (i = 0; i < 6; i++) s += unit();
    return (float)(s - 3.0);
}

static void make_key(int i, char *out) { snprintf(out, 8, "v%05d", i); }

/* Index of a "v%05d" result key, or -1. */
static int key_index(const hits_t *h, size_t i) {
    char tmp[8];
    if (h->lens[i] != 6 || h->keys[i][0] != 'v') return -1;
    memcpy(tmp, h->keys[i], 6);
    tmp[6] = '\0';
    return atoi(tmp + 1);
}

static float l2(const float *a, const float *b, size_t dim) {
    float s = 0;
    size_t i;
    for (i = 0; i < dim; i++) s += (a[i] - b[i]) * (a[i] - b[i]);
    return s;
}
static float dot(const float *a, const float *b, size_t dim) {
    float s = 0;
    size_t i;
    for (i = 0; i < dim; i++) s += a[i] * b[i];
    return s;
}
static float cosine(const float *a, const float *b, size_t dim) {
    return 1.0f - dot(a, b, dim) / (sqrtf(dot(a, a, dim)) * sqrtf(dot(b, b, dim)));
}

static int close_to(float got, float want) {
    return fabsf(got - want) <= 1e-3f * (fabsf(want) > 1.0f ? fabsf(want) : 1.0f);
}

/* The true k nearest live rows to q (L2), optionally restricted to rows with
 * row % 10 == tag (tag >= 0). Writes indices, returns how many. */
static size_t brute(const float *q, size_t k, int tag, int *out) {
    static float best_d[KMAX];
    size_t n = 0, j;
    int i;
    for (i = 0; i < N; i++) {
        float d;
        if (state[i] != 0 || (tag >= 0 && i % 10 != tag)) continue;
        d = l2(q, data[i], DIM);
        if (n < k) n++;
        else if (d >= best_d[n - 1]) continue;
        for (j = n - 1; j > 0 && best_d[j - 1] > d; j--) {
            best_d[j] = best_d[j - 1];
            out[j] = out[j - 1];
        }
        best_d[j] = d;
        out[j] = i;
    }
    return n;
}

static edgestore_status search(edgestore_vector_collection *c, const float *q, size_t dim, size_t k,
                               const edgestore_vector_search_options *o, hits_t *h) {
    return edgestore_vector_search(c, q, F32, dim, 1.0f, k, o, &h->keys[0][0],
                                   EDGESTORE_VECTOR_MAX_KEY_LEN, h->lens, h->dist, &h->count);
}

/* Checks results are sorted, live, correctly measured (L2 against the
 * current data), and returns the recall against the brute force. */
static double check_hits(const hits_t *h, const float *q, size_t k, int tag) {
    int truth[KMAX];
    size_t nt = brute(q, k, tag, truth), i, j, found = 0;
    CHECK(h->count == nt);
    for (i = 0; i < h->count; i++) {
        int idx = key_index(h, i);
        CHECK(idx >= 0 && idx < N);
        if (state[idx] != 0) FAIL_NOW("dead vector v%05d (state %d) returned", idx, state[idx]);
        if (tag >= 0) CHECK(idx % 10 == tag);
        if (!close_to(h->dist[i], l2(q, data[idx], DIM)))
            FAIL_NOW("v%05d distance %g, expected %g", idx, h->dist[i], l2(q, data[idx], DIM));
        if (i > 0) CHECK(h->dist[i - 1] <= h->dist[i]);
        for (j = 0; j < nt; j++)
            if (truth[j] == idx) found++;
    }
    return nt ? (double)found / (double)nt : 1.0;
}

static void random_query(float *q) {
    int base = (int)(unit() * N), d;
    for (d = 0; d < DIM; d++) q[d] = data[base][d] + gauss() * 0.5f;
}

/* Average recall@10 of `queries` queries; with exact=1 every query must be exact. */
static double recall(edgestore_vector_collection *c, int queries, int exact, int tag) {
    edgestore_vector_search_options o;
    edgestore_vector_condition cond;
    static hits_t h;
    double sum = 0;
    int i;
    memset(&o, 0, sizeof o);
    memset(&cond, 0, sizeof cond);
    o.exact = (uint32_t)exact;
    if (tag >= 0) {
        cond.field = (const uint8_t *)"tag";
        cond.field_len = 3;
        cond.op = EDGESTORE_VECTOR_OP_EQ;
        cond.value.kind = EDGESTORE_META_I64;
        cond.value.int_value = tag;
        o.conditions = &cond;
        o.condition_count = 1;
    }
    for (i = 0; i < queries; i++) {
        float q[DIM];
        double r;
        random_query(q);
        CHECK_OK(search(c, q, DIM, 10, &o, &h));
        r = check_hits(&h, q, 10, tag);
        if (exact && r < 1.0) FAIL_NOW("exact search recall %g < 1", r);
        sum += r;
    }
    return sum / queries;
}

/* Fills data[] with clustered points and stores them with put_batch, with
 * metadata tag = i % 10 and even = (i % 2 == 0). */
static void fill(edgestore_vector_collection *c) {
    static float centers[20][DIM];
    static edgestore_vector_item items[250];
    static edgestore_vector_meta meta[250][2];
    static char keys[250][8];
    int i, d, start;
    for (i = 0; i < 20; i++)
        for (d = 0; d < DIM; d++) centers[i][d] = (float)(unit() * 20.0 - 10.0);
    for (i = 0; i < N; i++) {
        int cl = (int)(unit() * 20);
        for (d = 0; d < DIM; d++) data[i][d] = centers[cl][d] + gauss();
        state[i] = 0;
    }
    for (start = 0; start < N; start += 250) {
        for (i = 0; i < 250; i++) {
            int row = start + i;
            make_key(row, keys[i]);
            memset(&items[i], 0, sizeof items[i]);
            memset(meta[i], 0, sizeof meta[i]);
            meta[i][0].name = (const uint8_t *)"tag";
            meta[i][0].name_len = 3;
            meta[i][0].value.kind = EDGESTORE_META_I64;
            meta[i][0].value.int_value = row % 10;
            meta[i][1].name = (const uint8_t *)"even";
            meta[i][1].name_len = 4;
            meta[i][1].value.kind = EDGESTORE_META_BOOL;
            meta[i][1].value.int_value = row % 2 == 0;
            items[i].key = (const uint8_t *)keys[i];
            items[i].key_len = 6;
            items[i].data = data[row];
            items[i].metadata = meta[i];
            items[i].metadata_count = 2;
        }
        CHECK_OK(edgestore_vector_put_batch(c, items, 250, F32, DIM));
    }
}

/* Float to IEEE half for the small, exactly representable values used here. */
static uint16_t to_half(float x) {
    int e;
    float f;
    uint16_t sign = 0;
    if (x == 0.0f) return 0;
    if (x < 0) {
        sign = 0x8000;
        x = -x;
    }
    f = frexpf(x, &e); /* x = f * 2^e, f in [0.5, 1) */
    return (uint16_t)(sign | (uint16_t)((e - 1 + 15) << 10) |
                      (uint16_t)lrintf((f * 2.0f - 1.0f) * 1024.0f));
}

static void get_f32(edgestore_vector_collection *c, const char *key, float *out, size_t dim) {
    size_t got = 0;
    CHECK_OK(edgestore_vector_get(c, B(key), F32, out, dim, &got, NULL));
    CHECK(got == dim);
}

static void expect_gone(edgestore_vector_collection *c, const char *key) {
    float buf[DIM];
    size_t got = 777;
    CHECK_STATUS(edgestore_vector_get(c, B(key), F32, buf, DIM, &got, NULL), EDGESTORE_NOT_FOUND);
    CHECK(got == 777);
}

/* ------------------------------------------------------------------------ */

static void test_metrics_and_types(edgestore_db *db) {
    static const float v[4][3] = {{1, 0, 0}, {0, 2, 0}, {3, 4, 0}, {-1, -1, 5}};
    static const float q[3] = {1, 1, 0.5f};
    static const char *names[3] = {"l2", "cos", "ip"};
    static hits_t h;
    int m, i;
    for (m = 0; m < 3; m++) {
        edgestore_vector_collection *c = NULL;
        edgestore_vector_info info;
        char key[8];
        CHECK_OK(edgestore_vector_create(db, B("metrics"), B(names[m]), 3, (uint32_t)m, F32, NULL, &c));
        CHECK_OK(edgestore_vector_get_info(c, &info));
        CHECK(info.dim == 3 && info.metric == (uint32_t)m && info.dtype == F32);
        for (i = 0; i < 4; i++) {
            snprintf(key, sizeof key, "m%d", i);
            CHECK_OK(edgestore_vector_put(c, B(key), v[i], F32, 3, 0.0f, NULL, 0, 0));
        }
        CHECK_OK(search(c, q, 3, 4, NULL, &h));
        CHECK(h.count == 4);
        for (i = 0; i < 4; i++) {
            int idx = h.keys[i][1] - '0';
            float want = m == 0 ? l2(q, v[idx], 3) : m == 1 ? cosine(q, v[idx], 3) : -dot(q, v[idx], 3);
            CHECK(h.lens[i] == 2 && idx >= 0 && idx < 4);
            if (!close_to(h.dist[i], want))
                FAIL_NOW("metric %s: m%d distance %g, expected %g", names[m], idx, h.dist[i], want);
            if (i > 0) CHECK(h.dist[i - 1] <= h.dist[i]);
        }
        /* Creating again with the same configuration opens it. */
        CHECK_OK(edgestore_vector_free(c));
        CHECK_OK(edgestore_vector_create(db, B("metrics"), B(names[m]), 3, (uint32_t)m, F32, NULL, &c));
        CHECK_OK(edgestore_vector_free(c));
    }

    /* f16: stored and read back as bit patterns, or converted to f32. */
    {
        edgestore_vector_collection *c = NULL;
        uint16_t hv[4], back[4];
        float f[4], want[4] = {0.25f, -1.5f, 3.0f, 0.0f};
        size_t got = 0;
        float scale = 0;
        for (i = 0; i < 4; i++) hv[i] = to_half(want[i]);
        CHECK_OK(edgestore_vector_create(db, B("types"), B("half"), 4, EDGESTORE_VECTOR_L2, F16, NULL, &c));
        CHECK_OK(edgestore_vector_put(c, B("h"), hv, F16, 4, 0.0f, NULL, 0, 0));
        CHECK_STATUS(edgestore_vector_put(c, B("h2"), want, F32, 4, 0.0f, NULL, 0, 0), INV);
        CHECK_LAST_ERROR_HAS("element type f32");
        CHECK_OK(edgestore_vector_get(c, B("h"), F16, back, 4, &got, &scale));
        CHECK(got == 4 && memcmp(back, hv, sizeof hv) == 0 && scale == 1.0f);
        CHECK_OK(edgestore_vector_get(c, B("h"), F32, f, 4, &got, NULL));
        for (i = 0; i < 4; i++) CHECK(f[i] == want[i]);
        CHECK_STATUS(edgestore_vector_get(c, B("h"), I8, back, 4, &got, NULL), INV);
        CHECK_LAST_ERROR_HAS("stored as f16");
        /* A query of another element type is fine. */
        CHECK_OK(search(c, want, 4, 1, NULL, &h));
        CHECK(h.count == 1 && h.lens[0] == 1 && h.keys[0][0] == 'h' && close_to(h.dist[0], 0));
        /* Inf in f16 (0x7c00) is refused. */
        hv[2] = 0x7c00;
        CHECK_STATUS(edgestore_vector_put(c, B("inf"), hv, F16, 4, 0.0f, NULL, 0, 0), INV);
        CHECK_LAST_ERROR_HAS("infinite");
        expect_gone(c, "inf");
        CHECK_OK(edgestore_vector_free(c));
    }

    /* i8 with its scale. */
    {
        edgestore_vector_collection *c = NULL;
        float src[5] = {1.0f, -2.0f, 0.5f, 0.0f, 2.54f}, f[5];
        int8_t q8[5], back[5];
        float scale = 0, got_scale = 0;
        size_t got = 0;
        CHECK_OK(edgestore_vector_quantize_i8(src, 5, q8, &scale));
        CHECK(close_to(scale, 2.54f / 127.0f) && q8[4] == 127 && q8[1] == -100);
        CHECK_OK(edgestore_vector_create(db, B("types"), B("int8"), 5, EDGESTORE_VECTOR_COSINE, I8, NULL, &c));
        CHECK_OK(edgestore_vector_put(c, B("q"), q8, I8, 5, scale, NULL, 0, 0));
        CHECK_STATUS(edgestore_vector_put(c, B("bad"), q8, I8, 5, 0.0f, NULL, 0, 0), INV);
        CHECK_LAST_ERROR_HAS("scale");
        CHECK_STATUS(edgestore_vector_put(c, B("bad"), q8, I8, 5, -1.0f, NULL, 0, 0), INV);
        CHECK_STATUS(edgestore_vector_put(c, B("bad"), q8, I8, 5, (float)NAN, NULL, 0, 0), INV);
        CHECK_STATUS(edgestore_vector_put(c, B("bad"), q8, I8, 5, (float)INFINITY, NULL, 0, 0), INV);
        expect_gone(c, "bad");
        CHECK_OK(edgestore_vector_get(c, B("q"), I8, back, 5, &got, &got_scale));
        CHECK(got == 5 && memcmp(back, q8, 5) == 0 && got_scale == scale);
        CHECK_OK(edgestore_vector_get(c, B("q"), F32, f, 5, &got, &got_scale));
        CHECK(got_scale == 1.0f);
        for (i = 0; i < 5; i++) CHECK(close_to(f[i], src[i]) || fabsf(f[i] - src[i]) < scale);
        /* An i8 query searches the cosine collection; the distance to itself is ~0. */
        CHECK_STATUS(edgestore_vector_search(c, q8, I8, 5, 0.0f, 1, NULL, &h.keys[0][0],
                                             EDGESTORE_VECTOR_MAX_KEY_LEN, h.lens, h.dist, &h.count),
                     INV);
        CHECK_OK(edgestore_vector_search(c, q8, I8, 5, scale, 1, NULL, &h.keys[0][0],
                                         EDGESTORE_VECTOR_MAX_KEY_LEN, h.lens, h.dist, &h.count));
        CHECK(h.count == 1 && fabsf(h.dist[0]) < 1e-4f);
        /* Batch search with i8 queries takes one scale per query; a second
         * vector makes the order observable. */
        {
            int8_t qs[2][5], other[5] = {0, 0, 0, 100, 0};
            float scales[2] = {scale, 0.5f};
            size_t counts[2], lens[4];
            float dists[4];
            uint8_t keys[4][4];
            CHECK_OK(edgestore_vector_put(c, B("o"), other, I8, 5, 0.01f, NULL, 0, 0));
            memcpy(qs[0], q8, 5);
            memcpy(qs[1], other, 5);
            CHECK_OK(edgestore_vector_search_batch(c, qs, 2, I8, 5, scales, 2, NULL, &keys[0][0], 4, lens, dists,
                                                   counts));
            CHECK(counts[0] == 2 && counts[1] == 2);
            CHECK(keys[0][0] == 'q' && keys[2][0] == 'o' && dists[0] < dists[1] && dists[2] < dists[3]);
            CHECK(fabsf(dists[2]) < 1e-4f); /* cosine ignores the scale's magnitude */
            scales[1] = 0.0f;
            CHECK_STATUS(edgestore_vector_search_batch(c, qs, 2, I8, 5, scales, 2, NULL, &keys[0][0], 4, lens,
                                                       dists, counts),
                         INV);
            CHECK_LAST_ERROR_HAS("query 1");
        }
        /* NaN input to the quantiser is refused; out untouched. */
        src[2] = (float)NAN;
        back[0] = 42;
        CHECK_STATUS(edgestore_vector_quantize_i8(src, 5, back, &scale), INV);
        CHECK(back[0] == 42);
        CHECK_STATUS(edgestore_vector_quantize_i8(NULL, 5, back, &scale), INV);
        CHECK_STATUS(edgestore_vector_quantize_i8(src, 5, back, NULL), INV);
        CHECK_STATUS(edgestore_vector_quantize_i8(src, SIZE_MAX, back, &scale), INV);
        CHECK_OK(edgestore_vector_free(c));
    }
}

static void test_metadata_and_filters(edgestore_db *db) {
    edgestore_vector_collection *c = NULL;
    edgestore_vector_meta m[4];
    edgestore_meta_value v;
    edgestore_vector_search_options o;
    edgestore_vector_condition cond[3];
    static hits_t h;
    char str[8];
    float q[2] = {0, 0};
    int i;
    CHECK_OK(edgestore_vector_create(db, B("meta"), B("m"), 2, EDGESTORE_VECTOR_L2, F32, NULL, &c));
    /* 20 points on a line: key "a/NN" for even, "b/NN" for odd i;
     * n = i (I64), x = i / 2.0 (F64), name = "p<i%3>" (STR), odd (BOOL); every
     * fifth vector has no metadata. */
    for (i = 0; i < 20; i++) {
        char key[8], name[4];
        float p[2];
        p[0] = (float)i;
        p[1] = 0;
        snprintf(key, sizeof key, "%c/%02d", i % 2 ? 'b' : 'a', i);
        snprintf(name, sizeof name, "p%d", i % 3);
        memset(m, 0, sizeof m);
        m[0].name = (const uint8_t *)"n";
        m[0].name_len = 1;
        m[0].value.kind = EDGESTORE_META_I64;
        m[0].value.int_value = i;
        m[1].name = (const uint8_t *)"x";
        m[1].name_len = 1;
        m[1].value.kind = EDGESTORE_META_F64;
        m[1].value.float_value = i / 2.0;
        m[2].name = (const uint8_t *)"name";
        m[2].name_len = 4;
        m[2].value.kind = EDGESTORE_META_STR;
        m[2].value.str = (const uint8_t *)name;
        m[2].value.str_len = 2;
        m[3].name = (const uint8_t *)"odd";
        m[3].name_len = 3;
        m[3].value.kind = EDGESTORE_META_BOOL;
        m[3].value.int_value = i % 2;
        CHECK_OK(edgestore_vector_put(c, B(key), p, F32, 2, 0.0f, m, i % 5 == 4 ? 0 : 4, 0));
    }

    /* get_meta of every type. */
    CHECK_OK(edgestore_vector_get_meta(c, B("b/07"), B("n"), NULL, 0, &v));
    CHECK(v.kind == EDGESTORE_META_I64 && v.int_value == 7);
    CHECK_OK(edgestore_vector_get_meta(c, B("b/07"), B("x"), NULL, 0, &v));
    CHECK(v.kind == EDGESTORE_META_F64 && v.float_value == 3.5);
    CHECK_OK(edgestore_vector_get_meta(c, B("b/07"), B("odd"), NULL, 0, &v));
    CHECK(v.kind == EDGESTORE_META_BOOL && v.int_value == 1);
    memset(str, 'z', sizeof str);
    CHECK_OK(edgestore_vector_get_meta(c, B("b/07"), B("name"), (uint8_t *)str, sizeof str, &v));
    CHECK(v.kind == EDGESTORE_META_STR && v.str == (const uint8_t *)str && v.str_len == 2);
    CHECK(memcmp(str, "p1", 2) == 0 && str[2] == 'z');
    /* String too long for the buffer: needed length, buffer untouched. */
    memset(&v, 0, sizeof v);
    CHECK_STATUS(edgestore_vector_get_meta(c, B("b/07"), B("name"), (uint8_t *)str, 1, &v),
                 EDGESTORE_BUFFER_TOO_SMALL);
    CHECK(v.kind == EDGESTORE_META_STR && v.str_len == 2 && v.str == NULL && str[0] == 'p');
    CHECK_STATUS(edgestore_vector_get_meta(c, B("b/07"), B("name"), NULL, 0, &v),
                 EDGESTORE_BUFFER_TOO_SMALL);
    CHECK(v.str_len == 2);
    /* Missing field, missing key, vector without metadata. */
    v.int_value = 99;
    CHECK_STATUS(edgestore_vector_get_meta(c, B("b/07"), B("nope"), NULL, 0, &v), EDGESTORE_NOT_FOUND);
    CHECK_LAST_ERROR_HAS("no metadata field");
    CHECK_STATUS(edgestore_vector_get_meta(c, B("zz"), B("n"), NULL, 0, &v), EDGESTORE_NOT_FOUND);
    CHECK_LAST_ERROR_HAS("no live vector");
    CHECK_STATUS(edgestore_vector_get_meta(c, B("b/09"), B("n"), NULL, 0, &v), EDGESTORE_NOT_FOUND);
    CHECK(v.int_value == 99);
    CHECK_STATUS(edgestore_vector_get_meta(c, B("b/07"), B("n"), NULL, 0, NULL), INV);
    CHECK_STATUS(edgestore_vector_get_meta(c, B("b/07"), B("n"), NULL, 5, &v), INV);

    /* Key prefix. */
    memset(&o, 0, sizeof o);
    o.key_prefix = (const uint8_t *)"b/";
    o.key_prefix_len = 2;
    CHECK_OK(search(c, q, 2, 20, &o, &h));
    CHECK(h.count == 10);
    for (i = 0; i < 10; i++) CHECK(h.keys[i][0] == 'b' && h.keys[i][3] - '0' == (2 * i + 1) % 10);

    /* Each comparison against the meaning computed here (distance = i^2 gives the order). */
    {
        struct {
            uint32_t op;
            uint32_t kind;
            int64_t iv;
            double fv;
            const char *sv;
            const char *field;
        } cases[] = {
            {EDGESTORE_VECTOR_OP_EQ, EDGESTORE_META_I64, 6, 0, NULL, "n"},
            {EDGESTORE_VECTOR_OP_EQ, EDGESTORE_META_F64, 0, 6.0, NULL, "n"}, /* int == float by value */
            {EDGESTORE_VECTOR_OP_NE, EDGESTORE_META_I64, 6, 0, NULL, "n"},
            {EDGESTORE_VECTOR_OP_LT, EDGESTORE_META_I64, 6, 0, NULL, "n"},
            {EDGESTORE_VECTOR_OP_LE, EDGESTORE_META_I64, 6, 0, NULL, "n"},
            {EDGESTORE_VECTOR_OP_GT, EDGESTORE_META_F64, 0, 7.5, NULL, "x"},
            {EDGESTORE_VECTOR_OP_GE, EDGESTORE_META_F64, 0, 7.5, NULL, "x"},
            {EDGESTORE_VECTOR_OP_EQ, EDGESTORE_META_STR, 0, 0, "p2", "name"},
            {EDGESTORE_VECTOR_OP_EQ, EDGESTORE_META_BOOL, 1, 0, NULL, "odd"},
            {EDGESTORE_VECTOR_OP_EXISTS, 0, 0, 0, NULL, "name"},
            {EDGESTORE_VECTOR_OP_EQ, EDGESTORE_META_STR, 0, 0, "p2", "n"}, /* type mismatch */
        };
        size_t ci;
        for (ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
            size_t expect = 0;
            memset(&o, 0, sizeof o);
            memset(cond, 0, sizeof cond);
            cond[0].field = (const uint8_t *)cases[ci].field;
            cond[0].field_len = strlen(cases[ci].field);
            cond[0].op = cases[ci].op;
            cond[0].value.kind = cases[ci].kind;
            cond[0].value.int_value = cases[ci].iv;
            cond[0].value.float_value = cases[ci].fv;
            if (cases[ci].sv) {
                cond[0].value.str = (const uint8_t *)cases[ci].sv;
                cond[0].value.str_len = strlen(cases[ci].sv);
            }
            o.conditions = cond;
            o.condition_count = 1;
            o.exact = ci % 2; /* both plans */
            CHECK_OK(search(c, q, 2, 20, &o, &h));
            for (i = 0; i < 20; i++) {
                int has = i % 5 != 4, pass;
                switch (ci) {
                case 0: case 1: pass = has && i == 6; break;
                case 2: pass = !(has && i == 6); break;
                case 3: pass = has && i < 6; break;
                case 4: pass = has && i <= 6; break;
                case 5: pass = has && i / 2.0 > 7.5; break;
                case 6: pass = has && i / 2.0 >= 7.5; break;
                case 7: pass = has && i % 3 == 2; break;
                case 8: pass = has && i % 2 == 1; break;
                case 9: pass = has; break;
                default: pass = 0; break;
                }
                if (pass) {
                    int got;
                    CHECK(expect < h.count);
                    got = (h.keys[expect][2] - '0') * 10 + (h.keys[expect][3] - '0');
                    if (got != i) FAIL_NOW("case %zu: result %zu is %d, expected %d", ci, expect, got, i);
                    CHECK(close_to(h.dist[expect], (float)(i * i)));
                    expect++;
                }
            }
            if (h.count != expect) FAIL_NOW("case %zu: %zu results, expected %zu", ci, h.count, expect);
        }
    }

    /* ALL vs ANY, combined with a key prefix: n < 4 OR n >= 16, keys "a/". */
    memset(cond, 0, sizeof cond);
    cond[0].field = (const uint8_t *)"n";
    cond[0].field_len = 1;
    cond[0].op = EDGESTORE_VECTOR_OP_LT;
    cond[0].value.kind = EDGESTORE_META_I64;
    cond[0].value.int_value = 4;
    cond[1] = cond[0];
    cond[1].op = EDGESTORE_VECTOR_OP_GE;
    cond[1].value.int_value = 16;
    memset(&o, 0, sizeof o);
    o.conditions = cond;
    o.condition_count = 2;
    o.match_mode = EDGESTORE_VECTOR_MATCH_ANY;
    o.key_prefix = (const uint8_t *)"a/";
    o.key_prefix_len = 2;
    CHECK_OK(search(c, q, 2, 20, &o, &h));
    /* a/00 a/02 a/16 a/18 (a/04.. excluded; 14 and 19 lack metadata or are odd) */
    CHECK(h.count == 4);
    CHECK(memcmp(h.keys[0], "a/00", 4) == 0 && memcmp(h.keys[1], "a/02", 4) == 0);
    CHECK(memcmp(h.keys[2], "a/16", 4) == 0 && memcmp(h.keys[3], "a/18", 4) == 0);
    o.match_mode = EDGESTORE_VECTOR_MATCH_ALL;
    CHECK_OK(search(c, q, 2, 20, &o, &h));
    CHECK(h.count == 0);

    /* An explicit ef. */
    memset(&o, 0, sizeof o);
    o.ef = 500;
    CHECK_OK(search(c, q, 2, 3, &o, &h));
    CHECK(h.count == 3 && memcmp(h.keys[2], "a/02", 4) == 0);
    CHECK_OK(edgestore_vector_free(c));
}

/* Bad input to every entry point. Each failing call must leave its
 * out-parameters untouched and write nothing. */
static void test_bad_input(edgestore_db *db, edgestore_db *other_db) {
    edgestore_vector_collection *c = NULL, *sentinel = (edgestore_vector_collection *)&sentinel;
    edgestore_vector_collection *out = sentinel;
    edgestore_vector_index_params p;
    edgestore_vector_meta m[2];
    edgestore_vector_search_options o;
    edgestore_vector_condition cond;
    edgestore_vector_item items[3];
    edgestore_snapshot *snap = NULL;
    static hits_t h;
    float v[4] = {1, 2, 3, 4}, nan4[4] = {1, (float)NAN, 3, 4}, inf4[4] = {1, 2, (float)INFINITY, 4};
    float zero[4] = {0, 0, 0, 0}, buf[8];
    float big[EDGESTORE_VECTOR_MAX_DIM + 1];
    char long_key[EDGESTORE_VECTOR_MAX_KEY_LEN + 2];
    static char long_str[EDGESTORE_VECTOR_MAX_META_STR_LEN + 2];
    static edgestore_vector_meta many[EDGESTORE_VECTOR_MAX_META_FIELDS + 1];
    static edgestore_vector_condition many_cond[EDGESTORE_VECTOR_MAX_CONDITIONS + 1];
    float raw_storage[6];
    unsigned char *raw = (unsigned char *)raw_storage;
    size_t dim_out = 555, count = 555;
    int stack_var = 0;

    memset(big, 0, sizeof big);
    big[0] = 1;
    memset(long_key, 'k', sizeof long_key);
    memset(long_str, 's', sizeof long_str);

    /* ---- create / open ---- */
    CHECK_STATUS(edgestore_vector_create(NULL, B("ns"), B("c"), 4, EDGESTORE_VECTOR_COSINE, F32, NULL, &out), INV);
    CHECK_STATUS(edgestore_vector_create(db, B("ns"), B("c"), 4, EDGESTORE_VECTOR_COSINE, F32, NULL, NULL), INV);
    CHECK_LAST_ERROR_HAS("coll_out");
    CHECK_STATUS(edgestore_vector_create(db, B("ns"), B("c"), 0, EDGESTORE_VECTOR_COSINE, F32, NULL, &out), INV);
    CHECK_LAST_ERROR_HAS("dimension");
    CHECK_STATUS(edgestore_vector_create(db, B("ns"), B("c"), EDGESTORE_VECTOR_MAX_DIM + 1, EDGESTORE_VECTOR_COSINE, F32, NULL, &out), INV);
    CHECK_STATUS(edgestore_vector_create(db, B("ns"), B("c"), SIZE_MAX, EDGESTORE_VECTOR_COSINE, F32, NULL, &out), INV);
    CHECK_STATUS(edgestore_vector_create(db, B("ns"), B("c"), 4, 3, F32, NULL, &out), INV);
    CHECK_LAST_ERROR_HAS("unknown metric 3");
    CHECK_STATUS(edgestore_vector_create(db, B("ns"), B("c"), 4, 0xffffffffu, F32, NULL, &out), INV);
    CHECK_STATUS(edgestore_vector_create(db, B("ns"), B("c"), 4, EDGESTORE_VECTOR_L2, 3, NULL, &out), INV);
    CHECK_LAST_ERROR_HAS("unknown element type 3");
    CHECK_STATUS(edgestore_vector_create(db, B("ns"), NULL, 0, 4, EDGESTORE_VECTOR_L2, F32, NULL, &out), INV);
    CHECK_LAST_ERROR_HAS("collection name");
    CHECK_STATUS(edgestore_vector_create(db, B("ns"), NULL, 3, 4, EDGESTORE_VECTOR_L2, F32, NULL, &out), INV);
    CHECK_STATUS(edgestore_vector_create(db, B("ns"), (const uint8_t *)"c", SIZE_MAX, 4, EDGESTORE_VECTOR_L2, F32, NULL, &out), INV);
    CHECK_STATUS(edgestore_vector_create(db, (const uint8_t *)"ns", SIZE_MAX, B("c"), 4, EDGESTORE_VECTOR_L2, F32, NULL, &out), INV);
    CHECK_STATUS(edgestore_vector_create(db, B("ns"), (const uint8_t *)"\xff\xfe", 2, 4, EDGESTORE_VECTOR_L2, F32, NULL, &out), INV);
    CHECK_LAST_ERROR_HAS("UTF-8");
    CHECK_OK(edgestore_vector_index_params_default(&p));
    CHECK(p.hnsw_m >= 2 && p.hnsw_m <= 128 && p.ef_construction >= 1 && p.ef_search >= 1 &&
          p.max_graph_bytes > 0);
    {
        /* The defaults are what a collection created with NULL params gets. */
        edgestore_vector_info info;
        CHECK_OK(edgestore_vector_create(db, B("ns"), B("defaults"), 4, EDGESTORE_VECTOR_L2, F32, NULL, &c));
        CHECK_OK(edgestore_vector_get_info(c, &info));
        CHECK(memcmp(&info.params, &p, sizeof p) == 0);
        CHECK_OK(edgestore_vector_free(c));
        c = NULL;
    }
    p.hnsw_m = 1;
    CHECK_STATUS(edgestore_vector_create(db, B("ns"), B("c"), 4, EDGESTORE_VECTOR_L2, F32, &p, &out), INV);
    CHECK_LAST_ERROR_HAS("hnsw_m");
    CHECK_STATUS(edgestore_vector_index_params_default(NULL), INV);
    /* Wrong handle kinds and garbage. */
    CHECK_STATUS(edgestore_vector_create((edgestore_db *)&stack_var, B("ns"), B("c"), 4, EDGESTORE_VECTOR_L2, F32, NULL, &out), INV);
    CHECK(out == sentinel);
    CHECK_STATUS(edgestore_vector_open(db, B("ns"), B("c"), &out), EDGESTORE_NOT_FOUND);
    CHECK_LAST_ERROR_HAS("no vector collection");
    CHECK_STATUS(edgestore_vector_open(db, B("ns"), B(""), &out), INV);
    CHECK_STATUS(edgestore_vector_open(db, B("ns"), B("c"), NULL), INV);
    CHECK_STATUS(edgestore_vector_open(NULL, B("ns"), B("c"), &out), INV);
    CHECK(out == sentinel);

    CHECK_OK(edgestore_vector_create(db, B("ns"), B("c"), 4, EDGESTORE_VECTOR_COSINE, F32, NULL, &c));
    CHECK_STATUS(edgestore_vector_create(db, B("ns"), B("c"), 5, EDGESTORE_VECTOR_COSINE, F32, NULL, &out), INV);
    CHECK_LAST_ERROR_HAS("different configuration");
    CHECK_STATUS(edgestore_vector_create(db, B("ns"), B("c"), 4, EDGESTORE_VECTOR_L2, F32, NULL, &out), INV);
    CHECK(out == sentinel);
    CHECK_STATUS(edgestore_vector_get_info(c, NULL), INV);
    CHECK_STATUS(edgestore_vector_get_stats(c, NULL), INV);

    /* ---- put ---- */
    CHECK_STATUS(edgestore_vector_put(NULL, B("k"), v, F32, 4, 0, NULL, 0, 0), INV);
    CHECK_STATUS(edgestore_vector_put((edgestore_vector_collection *)db, B("k"), v, F32, 4, 0, NULL, 0, 0), INV);
    CHECK_LAST_ERROR_HAS("edgestore_db handle where an edgestore_vector_collection is expected");
    CHECK_STATUS(edgestore_vector_put(c, B("k"), v, F32, 3, 0, NULL, 0, 0), INV);
    CHECK_LAST_ERROR_HAS("dimension 3");
    CHECK_STATUS(edgestore_vector_put(c, B("k"), v, F32, 0, 0, NULL, 0, 0), INV);
    CHECK_STATUS(edgestore_vector_put(c, B("k"), big, F32, EDGESTORE_VECTOR_MAX_DIM + 1, 0, NULL, 0, 0), INV);
    CHECK_STATUS(edgestore_vector_put(c, B("k"), v, F32, SIZE_MAX, 0, NULL, 0, 0), INV);
    CHECK_LAST_ERROR_HAS("limit");
    CHECK_STATUS(edgestore_vector_put(c, B("k"), NULL, F32, 4, 0, NULL, 0, 0), INV);
    CHECK_STATUS(edgestore_vector_put(c, B("k"), v, F16, 4, 0, NULL, 0, 0), INV);
    CHECK_LAST_ERROR_HAS("element type f16");
    CHECK_STATUS(edgestore_vector_put(c, B("k"), v, 9, 4, 0, NULL, 0, 0), INV);
    CHECK_STATUS(edgestore_vector_put(c, B("k"), nan4, F32, 4, 0, NULL, 0, 0), INV);
    CHECK_LAST_ERROR_HAS("NaN");
    CHECK_STATUS(edgestore_vector_put(c, B("k"), inf4, F32, 4, 0, NULL, 0, 0), INV);
    CHECK_STATUS(edgestore_vector_put(c, B("k"), zero, F32, 4, 0, NULL, 0, 0), INV);
    CHECK_LAST_ERROR_HAS("zero vector");
    memcpy(raw + 1, v, sizeof v);
    CHECK_STATUS(edgestore_vector_put(c, B("k"), raw + 1, F32, 4, 0, NULL, 0, 0), INV);
    CHECK_LAST_ERROR_HAS("aligned");
    CHECK_STATUS(edgestore_vector_put(c, (const uint8_t *)long_key, EDGESTORE_VECTOR_MAX_KEY_LEN + 1, v, F32, 4, 0, NULL, 0, 0), INV);
    CHECK_LAST_ERROR_HAS("limit is 245");
    CHECK_STATUS(edgestore_vector_put(c, (const uint8_t *)long_key, SIZE_MAX, v, F32, 4, 0, NULL, 0, 0), INV);
    CHECK_STATUS(edgestore_vector_put(c, NULL, 1, v, F32, 4, 0, NULL, 0, 0), INV);
    /* Metadata. */
    memset(m, 0, sizeof m);
    m[0].name = (const uint8_t *)"f";
    m[0].name_len = 1;
    m[0].value.kind = EDGESTORE_META_F64;
    m[0].value.float_value = NAN;
    CHECK_STATUS(edgestore_vector_put(c, B("k"), v, F32, 4, 0, m, 1, 0), INV);
    CHECK_LAST_ERROR_HAS("NaN");
    m[0].value.kind = EDGESTORE_META_BOOL;
    m[0].value.int_value = 2;
    CHECK_STATUS(edgestore_vector_put(c, B("k"), v, F32, 4, 0, m, 1, 0), INV);
    CHECK_LAST_ERROR_HAS("expected 0 or 1");
    m[0].value.kind = 17;
    CHECK_STATUS(edgestore_vector_put(c, B("k"), v, F32, 4, 0, m, 1, 0), INV);
    CHECK_LAST_ERROR_HAS("unknown metadata type 17");
    m[0].value.kind = EDGESTORE_META_STR;
    m[0].value.str = (const uint8_t *)long_str;
    m[0].value.str_len = EDGESTORE_VECTOR_MAX_META_STR_LEN + 1;
    CHECK_STATUS(edgestore_vector_put(c, B("k"), v, F32, 4, 0, m, 1, 0), INV);
    m[0].value.str_len = SIZE_MAX;
    CHECK_STATUS(edgestore_vector_put(c, B("k"), v, F32, 4, 0, m, 1, 0), INV);
    m[0].value.str = NULL;
    m[0].value.str_len = 3;
    CHECK_STATUS(edgestore_vector_put(c, B("k"), v, F32, 4, 0, m, 1, 0), INV);
    m[0].value.str = (const uint8_t *)"\xc3\x28";
    m[0].value.str_len = 2;
    CHECK_STATUS(edgestore_vector_put(c, B("k"), v, F32, 4, 0, m, 1, 0), INV);
    CHECK_LAST_ERROR_HAS("UTF-8");
    m[0].value.kind = EDGESTORE_META_I64;
    m[0].name = (const uint8_t *)"\xff";
    CHECK_STATUS(edgestore_vector_put(c, B("k"), v, F32, 4, 0, m, 1, 0), INV);
    m[0].name = (const uint8_t *)long_str;
    m[0].name_len = EDGESTORE_VECTOR_MAX_META_NAME_LEN + 1;
    CHECK_STATUS(edgestore_vector_put(c, B("k"), v, F32, 4, 0, m, 1, 0), INV);
    m[0].name = (const uint8_t *)"f";
    m[0].name_len = 1;
    m[1] = m[0];
    CHECK_STATUS(edgestore_vector_put(c, B("k"), v, F32, 4, 0, m, 2, 0), INV);
    CHECK_LAST_ERROR_HAS("given twice");
    CHECK_STATUS(edgestore_vector_put(c, B("k"), v, F32, 4, 0, NULL, 1, 0), INV);
    CHECK_STATUS(edgestore_vector_put(c, B("k"), v, F32, 4, 0, m, SIZE_MAX, 0), INV);
    {
        int i;
        static char names[EDGESTORE_VECTOR_MAX_META_FIELDS + 1][4];
        for (i = 0; i <= EDGESTORE_VECTOR_MAX_META_FIELDS; i++) {
            snprintf(names[i], 4, "%d", i);
            many[i].name = (const uint8_t *)names[i];
            many[i].name_len = strlen(names[i]);
            many[i].value.kind = EDGESTORE_META_I64;
        }
        CHECK_STATUS(edgestore_vector_put(c, B("k"), v, F32, 4, 0, many, EDGESTORE_VECTOR_MAX_META_FIELDS + 1, 0), INV);
        CHECK_LAST_ERROR_HAS("limit is 64");
        /* The maximum is fine. */
        CHECK_OK(edgestore_vector_put(c, B("many"), v, F32, 4, 0, many, EDGESTORE_VECTOR_MAX_META_FIELDS, 0));
    }
    /* Nothing of the above was written. */
    expect_gone(c, "k");

    /* ---- batch put: atomic; a bad item in the middle writes nothing ---- */
    memset(items, 0, sizeof items);
    items[0].key = (const uint8_t *)"b0";
    items[0].key_len = 2;
    items[0].data = v;
    items[1] = items[0];
    items[1].key = (const uint8_t *)"b1";
    items[1].data = nan4;
    items[2] = items[0];
    items[2].key = (const uint8_t *)"b2";
    CHECK_STATUS(edgestore_vector_put_batch(c, items, 3, F32, 4), INV);
    CHECK_LAST_ERROR_HAS("items[1]");
    expect_gone(c, "b0");
    expect_gone(c, "b2");
    items[1].data = NULL;
    CHECK_STATUS(edgestore_vector_put_batch(c, items, 3, F32, 4), INV);
    items[0].data = items[1].data = items[2].data = big; /* room for 5 elements */
    CHECK_STATUS(edgestore_vector_put_batch(c, items, 3, F32, 5), INV);
    CHECK_LAST_ERROR_HAS("items[0]");
    items[0].data = items[1].data = items[2].data = v;
    CHECK_STATUS(edgestore_vector_put_batch(c, items, 3, I8, 4), INV);
    CHECK_STATUS(edgestore_vector_put_batch(c, NULL, 3, F32, 4), INV);
    CHECK_STATUS(edgestore_vector_put_batch(c, items, SIZE_MAX, F32, 4), INV);
    CHECK_STATUS(edgestore_vector_put_batch(NULL, items, 3, F32, 4), INV);
    expect_gone(c, "b0");
    CHECK_OK(edgestore_vector_put_batch(c, NULL, 0, F32, 4)); /* empty batch */
    CHECK_OK(edgestore_vector_put_batch(c, items, 3, F32, 4));
    get_f32(c, "b2", buf, 4);
    CHECK(buf[3] == 4);

    /* ---- get ---- */
    CHECK_STATUS(edgestore_vector_get(c, B("b0"), F32, buf, 3, &dim_out, NULL), EDGESTORE_BUFFER_TOO_SMALL);
    CHECK(dim_out == 4);
    dim_out = 555;
    CHECK_STATUS(edgestore_vector_get(c, B("b0"), F32, NULL, 0, &dim_out, NULL), EDGESTORE_BUFFER_TOO_SMALL);
    CHECK(dim_out == 4);
    dim_out = 555;
    CHECK_STATUS(edgestore_vector_get(c, B("b0"), F32, NULL, 4, &dim_out, NULL), INV);
    CHECK_STATUS(edgestore_vector_get(c, B("b0"), F32, buf, 4, NULL, NULL), INV);
    CHECK_STATUS(edgestore_vector_get(c, B("b0"), F32, raw + 1, 4, &dim_out, NULL), INV);
    CHECK_STATUS(edgestore_vector_get(c, B("b0"), F16, buf, 8, &dim_out, NULL), INV);
    CHECK_STATUS(edgestore_vector_get(c, B("b0"), 5, buf, 8, &dim_out, NULL), INV);
    CHECK_STATUS(edgestore_vector_get(c, (const uint8_t *)"b0", SIZE_MAX, F32, buf, 8, &dim_out, NULL), INV);
    CHECK(dim_out == 555);

    /* ---- search ---- */
    memset(&h, 0, sizeof h);
    h.count = 555;
#define S(q, dt, d, k, opt) \
    edgestore_vector_search(c, q, dt, d, 1.0f, k, opt, &h.keys[0][0], EDGESTORE_VECTOR_MAX_KEY_LEN, h.lens, h.dist, &h.count)
    CHECK_STATUS(S(v, F32, 4, 0, NULL), INV);
    CHECK_LAST_ERROR_HAS("k must be in 1..=10000, got 0");
    CHECK_STATUS(S(v, F32, 4, EDGESTORE_VECTOR_MAX_K + 1, NULL), INV);
    CHECK_STATUS(S(v, F32, 4, SIZE_MAX, NULL), INV);
    CHECK_STATUS(S(v, F32, 3, 1, NULL), INV);
    CHECK_LAST_ERROR_HAS("dimension 3");
    CHECK_STATUS(S(v, F32, SIZE_MAX, 1, NULL), INV);
    CHECK_STATUS(S(nan4, F32, 4, 1, NULL), INV);
    CHECK_LAST_ERROR_HAS("NaN");
    CHECK_STATUS(S(inf4, F32, 4, 1, NULL), INV);
    CHECK_STATUS(S(zero, F32, 4, 1, NULL), INV);
    CHECK_STATUS(S(NULL, F32, 4, 1, NULL), INV);
    CHECK_STATUS(S(raw + 1, F32, 4, 1, NULL), INV);
    CHECK_STATUS(S(v, 3, 4, 1, NULL), INV);
    CHECK_STATUS(edgestore_vector_search(c, v, F32, 4, 1.0f, 1, NULL, &h.keys[0][0], 245, h.lens, h.dist, NULL), INV);
    CHECK_STATUS(edgestore_vector_search(c, v, F32, 4, 1.0f, 1, NULL, &h.keys[0][0], 245, h.lens, NULL, &h.count), INV);
    CHECK_STATUS(edgestore_vector_search(c, v, F32, 4, 1.0f, 1, NULL, &h.keys[0][0], 245, NULL, h.dist, &h.count), INV);
    CHECK_STATUS(edgestore_vector_search(c, v, F32, 4, 1.0f, 1, NULL, NULL, 245, h.lens, h.dist, &h.count), INV);
    CHECK_STATUS(edgestore_vector_search(c, v, F32, 4, 1.0f, 2, NULL, &h.keys[0][0], SIZE_MAX, h.lens, h.dist, &h.count), INV);
    CHECK_LAST_ERROR_HAS("overflows");
    CHECK_STATUS(edgestore_vector_search(c, v, F32, 4, 1.0f, 1, NULL, &h.keys[0][0], 245, h.lens,
                                         (float *)(raw + 1), &h.count), INV);
    CHECK_STATUS(edgestore_vector_search(NULL, v, F32, 4, 1.0f, 1, NULL, &h.keys[0][0], 245, h.lens, h.dist, &h.count), INV);
    /* Options. */
    memset(&o, 0, sizeof o);
    o.match_mode = 2;
    CHECK_STATUS(S(v, F32, 4, 1, &o), INV);
    CHECK_LAST_ERROR_HAS("match_mode");
    o.match_mode = 0;
    o.exact = 2;
    CHECK_STATUS(S(v, F32, 4, 1, &o), INV);
    o.exact = 0;
    o.ef = 100001;
    CHECK_STATUS(S(v, F32, 4, 1, &o), INV);
    CHECK_LAST_ERROR_HAS("ef must be");
    o.ef = SIZE_MAX;
    CHECK_STATUS(S(v, F32, 4, 1, &o), INV);
    o.ef = 0;
    o.key_prefix_len = SIZE_MAX;
    CHECK_STATUS(S(v, F32, 4, 1, &o), INV);
    o.key_prefix_len = 1; /* NULL prefix with a length */
    CHECK_STATUS(S(v, F32, 4, 1, &o), INV);
    o.key_prefix_len = 0;
    memset(&cond, 0, sizeof cond);
    cond.field = (const uint8_t *)"f";
    cond.field_len = 1;
    cond.op = 7;
    o.conditions = &cond;
    o.condition_count = 1;
    CHECK_STATUS(S(v, F32, 4, 1, &o), INV);
    CHECK_LAST_ERROR_HAS("not an edgestore_vector_op");
    cond.op = EDGESTORE_VECTOR_OP_LT;
    cond.value.kind = EDGESTORE_META_F64;
    cond.value.float_value = NAN;
    CHECK_STATUS(S(v, F32, 4, 1, &o), INV);
    CHECK_LAST_ERROR_HAS("NaN");
    cond.value.kind = 9;
    CHECK_STATUS(S(v, F32, 4, 1, &o), INV);
    cond.value.kind = EDGESTORE_META_I64;
    cond.field_len = SIZE_MAX;
    CHECK_STATUS(S(v, F32, 4, 1, &o), INV);
    cond.field_len = 1;
    o.condition_count = SIZE_MAX;
    CHECK_STATUS(S(v, F32, 4, 1, &o), INV);
    o.conditions = many_cond;
    o.condition_count = EDGESTORE_VECTOR_MAX_CONDITIONS + 1;
    CHECK_STATUS(S(v, F32, 4, 1, &o), INV);
    o.conditions = NULL;
    o.condition_count = 1;
    CHECK_STATUS(S(v, F32, 4, 1, &o), INV);
    CHECK(h.count == 555); /* never written by a failing call */
    /* A huge k is fine when within the limit: fewer results than k. */
    {
        static hits_t big_h[EDGESTORE_VECTOR_MAX_K / KMAX + 1];
        static size_t lens[EDGESTORE_VECTOR_MAX_K];
        static float dists[EDGESTORE_VECTOR_MAX_K];
        CHECK_OK(edgestore_vector_search(c, v, F32, 4, 1.0f, EDGESTORE_VECTOR_MAX_K, NULL, &big_h[0].keys[0][0],
                                         EDGESTORE_VECTOR_MAX_KEY_LEN / 8, lens, dists, &count));
        CHECK(count == 4); /* many, b0, b1, b2 */
    }
    /* ---- batch search ---- */
    {
        float qs[8];
        size_t counts[2] = {555, 555};
        memcpy(qs, v, sizeof v);
        memcpy(qs + 4, nan4, sizeof nan4);
        CHECK_STATUS(edgestore_vector_search_batch(c, qs, 2, F32, 4, NULL, 2, NULL, &h.keys[0][0], 245, h.lens, h.dist, counts), INV);
        CHECK_LAST_ERROR_HAS("query 1");
        CHECK_STATUS(edgestore_vector_search_batch(c, qs, 0, F32, 4, NULL, 2, NULL, &h.keys[0][0], 245, h.lens, h.dist, counts), INV);
        CHECK_STATUS(edgestore_vector_search_batch(c, qs, SIZE_MAX, F32, 4, NULL, 2, NULL, &h.keys[0][0], 245, h.lens, h.dist, counts), INV);
        CHECK_STATUS(edgestore_vector_search_batch(c, qs, 2, I8, 4, NULL, 2, NULL, &h.keys[0][0], 245, h.lens, h.dist, counts), INV);
        CHECK_LAST_ERROR_HAS("scales");
        CHECK_STATUS(edgestore_vector_search_batch(c, NULL, 2, F32, 4, NULL, 2, NULL, &h.keys[0][0], 245, h.lens, h.dist, counts), INV);
        CHECK_STATUS(edgestore_vector_search_batch(c, qs, 2, F32, 4, NULL, 2, NULL, &h.keys[0][0], 245, h.lens, h.dist, NULL), INV);
        CHECK_STATUS(edgestore_vector_search_batch(c, qs, 1 << 20, F32, 4, NULL, 10000, NULL, &h.keys[0][0], SIZE_MAX / 2, h.lens, h.dist, counts), INV);
        CHECK(counts[0] == 555 && counts[1] == 555);
    }

    /* ---- snapshots from the wrong database, freed snapshots ---- */
    CHECK_OK(edgestore_snapshot_new(other_db, &snap));
    CHECK_STATUS(edgestore_vector_snapshot_search(c, snap, v, F32, 4, 1.0f, 1, NULL, &h.keys[0][0], 245, h.lens, h.dist, &h.count), INV);
    CHECK_LAST_ERROR_HAS("another database");
    CHECK_STATUS(edgestore_vector_snapshot_get(c, snap, B("b0"), F32, buf, 8, &dim_out, NULL), INV);
    CHECK_OK(edgestore_snapshot_free(snap));
    CHECK_STATUS(edgestore_vector_snapshot_search(c, snap, v, F32, 4, 1.0f, 1, NULL, &h.keys[0][0], 245, h.lens, h.dist, &h.count), EDGESTORE_CLOSED);
    CHECK_STATUS(edgestore_vector_snapshot_search(c, (edgestore_snapshot *)c, v, F32, 4, 1.0f, 1, NULL, &h.keys[0][0], 245, h.lens, h.dist, &h.count), INV);
    CHECK_STATUS(edgestore_vector_snapshot_search(c, NULL, v, F32, 4, 1.0f, 1, NULL, &h.keys[0][0], 245, h.lens, h.dist, &h.count), INV);
    CHECK(h.count == 555);

    /* ---- delete ---- */
    CHECK_STATUS(edgestore_vector_delete(c, (const uint8_t *)long_key, EDGESTORE_VECTOR_MAX_KEY_LEN + 1), INV);
    CHECK_STATUS(edgestore_vector_delete(c, NULL, 4), INV);
    CHECK_STATUS(edgestore_vector_delete(NULL, B("b0")), INV);
    CHECK_OK(edgestore_vector_delete(c, B("never-existed")));

    /* ---- use after free, double free, garbage handles ---- */
    CHECK_OK(edgestore_vector_free(c));
    CHECK_STATUS(edgestore_vector_put(c, B("k"), v, F32, 4, 0, NULL, 0, 0), EDGESTORE_CLOSED);
    CHECK_STATUS(S(v, F32, 4, 1, NULL), EDGESTORE_CLOSED);
    CHECK_STATUS(edgestore_vector_get(c, B("b0"), F32, buf, 8, &dim_out, NULL), EDGESTORE_CLOSED);
    CHECK_STATUS(edgestore_vector_delete(c, B("b0")), EDGESTORE_CLOSED);
    CHECK_STATUS(edgestore_vector_free(c), EDGESTORE_CLOSED);
    CHECK_STATUS(edgestore_vector_free((edgestore_vector_collection *)&stack_var), INV);
    CHECK_STATUS(edgestore_vector_free((edgestore_vector_collection *)(uintptr_t)0x1234560), INV);
    CHECK_OK(edgestore_vector_free(NULL));
    CHECK(dim_out == 555);
#undef S
}

/* Deletes, overwrites and TTL expiry, checked through many searches on the
 * HNSW collection, and snapshots that still see the old state. */
static void test_liveness_and_snapshots(edgestore_db *db, edgestore_vector_collection *c) {
    static float old_data[N][DIM];
    static hits_t h;
    edgestore_snapshot *s1 = NULL;
    char key[8];
    float got[DIM];
    size_t dim_out = 0;
    int i, d;
    edgestore_vector_search_options exact;
    memset(&exact, 0, sizeof exact);
    exact.exact = 1;
    memcpy(old_data, data, sizeof data);
    CHECK_OK(edgestore_snapshot_new(db, &s1));

    for (i = 0; i < N; i += 10) { /* 10% deleted */
        make_key(i, key);
        CHECK_OK(edgestore_vector_delete(c, B(key)));
        state[i] = 1;
    }
    for (i = 1; i < N; i += 10) { /* 10% overwritten far away */
        make_key(i, key);
        for (d = 0; d < DIM; d++) data[i][d] = old_data[i][d] + 50.0f;
        CHECK_OK(edgestore_vector_put(c, B(key), data[i], F32, DIM, 0, NULL, 0, 0));
    }
    for (i = 2; i < N; i += 10) { /* 10% given a 10 s TTL */
        make_key(i, key);
        CHECK_OK(edgestore_vector_put(c, B(key), data[i], F32, DIM, 0, NULL, 0, 10));
    }
    /* Before expiry, TTL'd vectors are found. */
    CHECK_OK(search(c, data[2], DIM, 1, NULL, &h));
    CHECK(h.count == 1 && key_index(&h, 0) == 2);
    CHECK_OK(edgestore_advance_clock(db, 10));
    for (i = 2; i < N; i += 10) state[i] = 2;

    /* No dead vector anywhere: exact and HNSW, also when the query is the
     * dead vector itself. */
    CHECK(recall(c, 30, 1, -1) == 1.0);
    CHECK(recall(c, 30, 0, -1) >= 0.85);
    for (i = 0; i < 40; i++) {
        CHECK_OK(search(c, old_data[i], DIM, 10, NULL, &h));
        check_hits(&h, old_data[i], 10, -1);
        make_key(i, key);
        if (i % 10 < 3 && i % 10 != 1) expect_gone(c, key);
    }
    /* Overwritten: the new vector is returned, the old position is empty. */
    get_f32(c, "v00011", got, DIM);
    CHECK(memcmp(got, data[11], sizeof got) == 0);

    /* The snapshot sees the collection as it was: deleted, overwritten and
     * expired vectors, at their old positions. */
    for (i = 0; i < 30; i++) {
        CHECK_OK(edgestore_vector_snapshot_search(c, s1, old_data[i], F32, DIM, 1.0f, 1, &exact, &h.keys[0][0],
                                                  EDGESTORE_VECTOR_MAX_KEY_LEN, h.lens, h.dist, &h.count));
        CHECK(h.count == 1);
        if (key_index(&h, 0) != i) FAIL_NOW("snapshot search for v%05d found v%05d", i, key_index(&h, 0));
        CHECK(close_to(h.dist[0], 0));
        make_key(i, key);
        CHECK_OK(edgestore_vector_snapshot_get(c, s1, B(key), F32, got, DIM, &dim_out, NULL));
        CHECK(dim_out == DIM && memcmp(got, old_data[i], sizeof got) == 0);
    }
    /* Filters through the snapshot. */
    {
        edgestore_vector_search_options o;
        memset(&o, 0, sizeof o);
        o.key_prefix = (const uint8_t *)"v0000";
        o.key_prefix_len = 5;
        CHECK_OK(edgestore_vector_snapshot_search(c, s1, old_data[0], F32, DIM, 1.0f, 20, &o, &h.keys[0][0],
                                                  EDGESTORE_VECTOR_MAX_KEY_LEN, h.lens, h.dist, &h.count));
        CHECK(h.count == 10); /* v00000..v00009, all alive then */
        CHECK_OK(search(c, old_data[0], DIM, 20, &o, &h));
        CHECK(h.count == 8); /* minus the deleted v00000 and the expired v00002; v00001 moved */
        for (i = 0; i < (int)h.count; i++) CHECK(key_index(&h, i) != 0 && key_index(&h, i) != 2);
        CHECK(key_index(&h, 7) == 1); /* the overwritten one is now the farthest */
    }
    /* A snapshot taken now does not see them. */
    {
        edgestore_snapshot *s2 = NULL;
        CHECK_OK(edgestore_snapshot_new(db, &s2));
        CHECK_OK(edgestore_vector_snapshot_search(c, s2, old_data[0], F32, DIM, 1.0f, 1, NULL, &h.keys[0][0],
                                                  EDGESTORE_VECTOR_MAX_KEY_LEN, h.lens, h.dist, &h.count));
        CHECK(h.count == 1 && key_index(&h, 0) != 0);
        CHECK_STATUS(edgestore_vector_snapshot_get(c, s2, B("v00000"), F32, got, DIM, &dim_out, NULL),
                     EDGESTORE_NOT_FOUND);
        CHECK_OK(edgestore_snapshot_free(s2));
    }
    CHECK_OK(edgestore_snapshot_free(s1));
}

static void test_batch_search_and_stride(edgestore_vector_collection *c) {
    enum { NQ = 12, K = 5 };
    static float qs[NQ][DIM];
    static hits_t single;
    static uint8_t keys[NQ * K][8];
    size_t lens[NQ * K], counts[NQ];
    float dists[NQ * K];
    int i, j;
    for (i = 0; i < NQ; i++) random_query(qs[i]);
    CHECK_OK(edgestore_vector_search_batch(c, qs, NQ, F32, DIM, NULL, K, NULL, &keys[0][0], 8, lens, dists, counts));
    for (i = 0; i < NQ; i++) {
        edgestore_vector_search_options o;
        memset(&o, 0, sizeof o);
        CHECK_OK(search(c, qs[i], DIM, K, &o, &single));
        CHECK(counts[i] == single.count);
        for (j = 0; j < (int)counts[i]; j++) {
            CHECK(lens[i * K + j] == single.lens[j]);
            CHECK(memcmp(keys[i * K + j], single.keys[j], 6) == 0);
            CHECK(dists[i * K + j] == single.dist[j]);
        }
    }
    /* Key stride too small: counts and lengths only, keys and distances untouched. */
    memset(keys, 0xab, sizeof keys);
    for (i = 0; i < NQ * K; i++) {
        dists[i] = -1.0f;
        lens[i] = 0;
    }
    CHECK_STATUS(edgestore_vector_search_batch(c, qs, NQ, F32, DIM, NULL, K, NULL, &keys[0][0], 3, lens, dists, counts),
                 EDGESTORE_BUFFER_TOO_SMALL);
    CHECK_LAST_ERROR_HAS("key_stride is 3");
    for (i = 0; i < NQ; i++) {
        CHECK(counts[i] == K);
        for (j = 0; j < K; j++) CHECK(lens[i * K + j] == 6 && dists[i * K + j] == -1.0f);
    }
    for (i = 0; i < NQ * K; i++)
        for (j = 0; j < 8; j++) CHECK(keys[i][j] == 0xab);
    /* key_stride 0 with NULL keys is a size query. */
    CHECK_STATUS(edgestore_vector_search(c, qs[0], F32, DIM, 1.0f, K, NULL, NULL, 0, lens, dists, counts),
                 EDGESTORE_BUFFER_TOO_SMALL);
    CHECK(counts[0] == K && lens[0] == 6);
}

/* ---- threads: searchers alongside a writer, then a close while searching ---- */
#define WRITES 150
#define SEARCHES 150

typedef struct {
    edgestore_vector_collection *c;
    int id;
    int closed_seen;
} thread_arg;

static void *vec_writer(void *p) {
    thread_arg *a = (thread_arg *)p;
    char key[8];
    float v[DIM];
    int i, d;
    for (i = 0; i < WRITES; i++) {
        snprintf(key, sizeof key, "w%05d", i);
        for (d = 0; d < DIM; d++) v[d] = data[(i * 7) % N][d] + 0.01f;
        CHECK_OK(edgestore_vector_put(a->c, B(key), v, F32, DIM, 0, NULL, 0, 0));
        if (i >= 10) {
            snprintf(key, sizeof key, "w%05d", i - 10);
            CHECK_OK(edgestore_vector_delete(a->c, B(key)));
        }
    }
    for (i = WRITES - 10; i < WRITES; i++) {
        snprintf(key, sizeof key, "w%05d", i);
        CHECK_OK(edgestore_vector_delete(a->c, B(key)));
    }
    return NULL;
}

static void *vec_searcher(void *p) {
    thread_arg *a = (thread_arg *)p;
    hits_t *h = (hits_t *)malloc(sizeof *h);
    float q[DIM];
    int i, d;
    size_t j;
    CHECK(h != NULL);
    for (i = 0; i < SEARCHES; i++) {
        int row = (i * 13 + a->id * 101) % N;
        for (d = 0; d < DIM; d++) q[d] = data[row][d];
        CHECK_OK(search(a->c, q, DIM, 10, NULL, h));
        CHECK(h->count == 10);
        for (j = 0; j < h->count; j++) {
            int idx = key_index(h, j);
            if (j > 0) CHECK(h->dist[j - 1] <= h->dist[j]);
            if (h->keys[j][0] == 'w') continue; /* the writer's, alive or dying now */
            CHECK(idx >= 0 && state[idx] == 0);
            CHECK(close_to(h->dist[j], l2(q, data[idx], DIM)));
        }
    }
    free(h);
    return NULL;
}

/* Searches until the database is closed under it: only OK or CLOSED. */
static void *vec_until_closed(void *p) {
    thread_arg *a = (thread_arg *)p;
    hits_t *h = (hits_t *)malloc(sizeof *h);
    float q[4] = {1, 2, 3, 4};
    CHECK(h != NULL);
    for (;;) {
        edgestore_status st = search(a->c, q, 4, 5, NULL, h);
        if (st == EDGESTORE_CLOSED) break;
        CHECK_OK(st);
        CHECK(h->count == 5);
    }
    a->closed_seen = 1;
    free(h);
    return NULL;
}

static void test_threads(edgestore_vector_collection *c, const char *dir) {
    pthread_t t[4];
    thread_arg args[4];
    static hits_t h;
    int i;
    for (i = 0; i < 4; i++) {
        args[i].c = c;
        args[i].id = i;
        args[i].closed_seen = 0;
        CHECK(pthread_create(&t[i], NULL, i == 0 ? vec_writer : vec_searcher, &args[i]) == 0);
    }
    for (i = 0; i < 4; i++) CHECK(pthread_join(t[i], NULL) == 0);
    /* Every writer vector was deleted: none is found, by either plan. */
    for (i = 0; i < 20; i++) {
        edgestore_vector_search_options o;
        size_t j;
        memset(&o, 0, sizeof o);
        o.exact = (uint32_t)(i % 2);
        CHECK_OK(search(c, data[(i * 7) % N], DIM, 10, &o, &h));
        for (j = 0; j < h.count; j++) CHECK(h.keys[j][0] == 'v');
    }

    /* Closing a database while threads search its collection. */
    {
        char *p = path_join(dir, "closing");
        edgestore_db *db = open_db(p, NULL);
        edgestore_vector_collection *cc = NULL;
        float v[4];
        int k;
        CHECK_OK(edgestore_vector_create(db, B("ns"), B("c"), 4, EDGESTORE_VECTOR_L2, F32, NULL, &cc));
        for (k = 0; k < 20; k++) {
            char key[8];
            v[0] = (float)k;
            v[1] = v[2] = v[3] = 1;
            snprintf(key, sizeof key, "c%02d", k);
            CHECK_OK(edgestore_vector_put(cc, B(key), v, F32, 4, 0, NULL, 0, 0));
        }
        for (i = 0; i < 2; i++) {
            args[i].c = cc;
            args[i].closed_seen = 0;
            CHECK(pthread_create(&t[i], NULL, vec_until_closed, &args[i]) == 0);
        }
        {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        CHECK_OK(edgestore_close(db));
        for (i = 0; i < 2; i++) {
            CHECK(pthread_join(t[i], NULL) == 0);
            CHECK(args[i].closed_seen);
        }
        CHECK_STATUS(edgestore_vector_put(cc, B("x"), v, F32, 4, 0, NULL, 0, 0), EDGESTORE_CLOSED);
        CHECK_OK(edgestore_vector_free(cc));
        free(p);
    }
}

int main(void) {
    char *dir = make_tempdir("vector");
    char *path = path_join(dir, "db");
    char *other_path = path_join(dir, "other");
    edgestore_options *opts = test_options(1);
    edgestore_db *db = open_db(path, opts);
    edgestore_db *other = open_db(other_path, opts);
    edgestore_vector_collection *c = NULL, *again = NULL;
    edgestore_vector_index_params p;
    edgestore_vector_stats st;
    static hits_t before[5], after;
    float probes[5][DIM];
    double r;
    int i;

    CHECK_OK(edgestore_options_free(opts));

    test_metrics_and_types(db);
    test_metadata_and_filters(db);
    test_bad_input(db, other);

    /* A collection big enough for the HNSW graph (exact_threshold lowered). */
    CHECK_OK(edgestore_vector_index_params_default(&p));
    p.exact_threshold = 100;
    p.ef_construction = 64;
    CHECK_OK(edgestore_vector_create(db, B("docs"), B("emb"), DIM, EDGESTORE_VECTOR_L2, F32, &p, &c));
    fill(c);
    CHECK_OK(edgestore_vector_get_stats(c, &st));
    CHECK(st.live == N && st.graph_inserts == N);
    r = recall(c, 50, 0, -1);
    printf("recall@10 (HNSW, ef 64) = %.3f\n", r);
    CHECK(r >= 0.9);
    CHECK(recall(c, 20, 1, -1) == 1.0);
    /* A 10%-selective metadata filter keeps recall. */
    r = recall(c, 20, 0, 3);
    printf("recall@10 (tag filter, 10%%) = %.3f\n", r);
    CHECK(r >= 0.9);
    CHECK_OK(edgestore_vector_get_stats(c, &st));
    CHECK(st.hnsw_searches > 0 && st.exact_searches > 0);

    /* A second handle on the same collection sees the same data. */
    CHECK_OK(edgestore_vector_open(db, B("docs"), B("emb"), &again));
    {
        edgestore_vector_info info;
        CHECK_OK(edgestore_vector_get_info(again, &info));
        CHECK(info.dim == DIM && info.params.exact_threshold == 100);
    }
    CHECK_OK(edgestore_vector_free(again));

    test_batch_search_and_stride(c);
    test_threads(c, dir);
    test_liveness_and_snapshots(db, c);

    /* Reopen keeps the index: loaded from its file, nothing re-linked. */
    for (i = 0; i < 5; i++) {
        random_query(probes[i]);
        CHECK_OK(search(c, probes[i], DIM, 10, NULL, &before[i]));
    }
    CHECK_OK(edgestore_close(db));
    CHECK_STATUS(search(c, probes[0], DIM, 10, NULL, &after), EDGESTORE_CLOSED);
    CHECK_LAST_ERROR_HAS("closed");
    CHECK_OK(edgestore_vector_free(c));
    {
        edgestore_options *o2 = test_options(1);
        CHECK_OK(edgestore_options_set_manual_clock(o2, INT64_C(1700000000000000000) + INT64_C(20000000000)));
        db = open_db(path, o2);
        CHECK_OK(edgestore_options_free(o2));
    }
    CHECK_OK(edgestore_vector_open(db, B("docs"), B("emb"), &c));
    CHECK_OK(edgestore_vector_get_stats(c, &st));
    printf("after reopen: live %llu, loaded_from_file %u, rebuilt %u, graph_inserts %llu\n",
           (unsigned long long)st.live, st.loaded_from_file, st.rebuilt_from_records,
           (unsigned long long)st.graph_inserts);
    CHECK(st.loaded_from_file == 1 && st.rebuilt_from_records == 0 && st.graph_inserts == 0);
    for (i = 0; i < 5; i++) {
        size_t j;
        CHECK_OK(search(c, probes[i], DIM, 10, NULL, &after));
        CHECK(after.count == before[i].count);
        for (j = 0; j < after.count; j++) {
            CHECK(after.lens[j] == before[i].lens[j]);
            CHECK(memcmp(after.keys[j], before[i].keys[j], after.lens[j]) == 0);
            CHECK(close_to(after.dist[j], before[i].dist[j]));
        }
        check_hits(&after, probes[i], 10, -1); /* still no dead vectors */
    }
    CHECK(recall(c, 20, 0, -1) >= 0.85);
    {
        edgestore_vector_info info;
        CHECK_OK(edgestore_vector_get_info(c, &info));
        CHECK(info.dim == DIM && info.metric == EDGESTORE_VECTOR_L2 && info.dtype == F32);
        CHECK(info.params.exact_threshold == 100 && info.params.ef_construction == 64);
    }
    CHECK_OK(edgestore_vector_persist_index(c));
    CHECK_OK(edgestore_vector_free(c));
    CHECK_OK(edgestore_close(db));
    CHECK_OK(edgestore_close(other));

    remove_tree(dir);
    free(path);
    free(other_path);
    free(dir);
    printf("test_vector: ok\n");
    return 0;
}
