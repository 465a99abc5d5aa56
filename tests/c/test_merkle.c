/* Merkle trees for sync: two replicas written differently agree on every
 * node; the known-answer root matches the Rust test (the wire format is the
 * same bytes through C); differing leaves name the keys to send, and a
 * sync driven by them (each side iterating only its pairs of those leaves,
 * edgestore_iter_merkle_leaves) makes the trees equal; bad arguments write
 * nothing. */
#include "test_util.h"

#define DEPTH 2u

static char *hex(const uint8_t *h, char out[65]) {
    int i;
    for (i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", h[i]);
    return out;
}

/* The tree of `ns` in `db` (snapshot when non-NULL), malloc'd. */
static uint8_t *tree_of(edgestore_db *db, edgestore_snapshot *snap, const char *ns,
                        uint32_t depth, uint64_t *entries) {
    size_t count = 0;
    uint8_t *nodes;
    CHECK_OK(edgestore_merkle_node_count(depth, &count));
    nodes = (uint8_t *)malloc(count * 32);
    CHECK(nodes != NULL);
    if (snap)
        CHECK_OK(edgestore_snapshot_merkle_tree(snap, B(ns), depth, nodes, count * 32, entries));
    else
        CHECK_OK(edgestore_merkle_tree(db, B(ns), depth, nodes, count * 32, entries));
    return nodes;
}

static void put_key(edgestore_db *db, int i, const char *value) {
    char key[32];
    snprintf(key, sizeof key, "key-%05d", i);
    CHECK_OK(edgestore_put(db, B("ns"), B(key), B(value)));
}

/* Pairs of `ns` in `db` whose leaf is marked in `leaves`, counted with a
 * whole-namespace scan and edgestore_merkle_leaf_of: the reference the
 * engine's leaf iterator is checked against. */
static size_t count_by_scan(edgestore_db *db, const unsigned char *leaves) {
    edgestore_iter *it = NULL;
    const uint8_t *k, *v;
    size_t kl, vl, n = 0;
    edgestore_status st;
    uint32_t leaf;
    CHECK_OK(edgestore_iter_prefix(db, B("ns"), NULL, 0, &it));
    while ((st = edgestore_iter_next(it, &k, &kl, &v, &vl)) == EDGESTORE_OK) {
        CHECK_OK(edgestore_merkle_leaf_of(k, kl, DEPTH, &leaf));
        n += leaves[leaf];
    }
    CHECK(st == EDGESTORE_DONE);
    CHECK_OK(edgestore_iter_free(it));
    return n;
}

/* Copies to `dst` the pairs of `src` in the `n` leaves `list`, deleting
 * those of dst in the same leaves that src lacks: both ends of a sync, each
 * reading only its pairs of those leaves. */
static size_t send_leaves(edgestore_db *src, edgestore_db *dst, const uint32_t *list, size_t n,
                          const unsigned char *leaves) {
    edgestore_iter *it = NULL;
    const uint8_t *k, *v;
    size_t kl, vl, sent = 0;
    edgestore_status st;
    uint32_t leaf;
    CHECK_OK(edgestore_iter_merkle_leaves(dst, B("ns"), DEPTH, list, n, &it));
    while ((st = edgestore_iter_next(it, &k, &kl, &v, &vl)) == EDGESTORE_OK) {
        uint8_t *got = NULL;
        size_t len = 0;
        edgestore_status g;
        CHECK_OK(edgestore_merkle_leaf_of(k, kl, DEPTH, &leaf));
        CHECK(leaves[leaf]);
        g = edgestore_get(src, B("ns"), k, kl, &got, &len);
        if (g == EDGESTORE_NOT_FOUND) {
            CHECK_OK(edgestore_delete(dst, B("ns"), k, kl));
        } else {
            CHECK_OK(g);
            CHECK_OK(edgestore_value_free(got));
        }
    }
    CHECK(st == EDGESTORE_DONE);
    CHECK_OK(edgestore_iter_free(it));
    CHECK_OK(edgestore_iter_merkle_leaves(src, B("ns"), DEPTH, list, n, &it));
    while ((st = edgestore_iter_next(it, &k, &kl, &v, &vl)) == EDGESTORE_OK) {
        CHECK_OK(edgestore_merkle_leaf_of(k, kl, DEPTH, &leaf));
        CHECK(leaves[leaf]);
        CHECK_OK(edgestore_put(dst, B("ns"), k, kl, v, vl));
        sent++;
    }
    CHECK(st == EDGESTORE_DONE);
    CHECK_OK(edgestore_iter_free(it));
    CHECK(sent == count_by_scan(src, leaves));
    return sent;
}

int main(void) {
    char *dir = make_tempdir("merkle");
    char *pa = path_join(dir, "a"), *pb = path_join(dir, "b"), *pk = path_join(dir, "kat");
    edgestore_options *opts = test_options(1);
    edgestore_db *a, *b, *kat;
    edgestore_snapshot *snap = NULL;
    uint8_t *ta, *tb, *ts;
    uint64_t ea = 0, eb = 0, es = 0;
    size_t count = 0, sent, i;
    uint32_t leaf = 0;
    unsigned char leaves[256];
    uint32_t list[256];
    size_t n_list = 0;
    char h[65];
    uint8_t small[32];
    edgestore_compaction_stats st;

    CHECK_OK(edgestore_merkle_node_count(1, &count));
    CHECK(count == 17);
    CHECK_OK(edgestore_merkle_node_count(4, &count));
    CHECK(count == 69905);
    CHECK_OK(edgestore_merkle_node_count(DEPTH, &count));
    CHECK(count == 273);

    /* The known answer of core/src/merkle.rs: ("k1", "v1"), ("k2", ""). */
    kat = open_db(pk, opts);
    CHECK_OK(edgestore_put(kat, B("ns"), B("k1"), B("v1")));
    CHECK_OK(edgestore_put(kat, B("ns"), B("k2"), (const uint8_t *)"", 0));
    ta = tree_of(kat, NULL, "ns", 1, &ea);
    CHECK(ea == 2);
    CHECK(strcmp(hex(ta, h), "3996ef4e76afe7279a9fb4ba4f626b5759b4845afbd8f29c811192f38e3c0395") == 0);
    free(ta);
    CHECK_OK(edgestore_close(kat));

    /* Same live contents, different histories. */
    a = open_db(pa, opts);
    b = open_db(pb, opts);
    for (i = 0; i < 2000; i++) put_key(a, (int)i, "v");
    for (i = 2000; i-- > 0;) {
        char key[32];
        snprintf(key, sizeof key, "key-%05d", (int)i);
        CHECK_OK(edgestore_put(b, B("ns"), B(key), B("old")));
        CHECK_OK(edgestore_put_with_ttl(b, B("ns"), B(key), B("v"), 86400));
    }
    CHECK_OK(edgestore_put_with_ttl(b, B("ns"), B("short-lived"), B("x"), 5));
    CHECK_OK(edgestore_flush_to_segments(b));
    CHECK_OK(edgestore_advance_clock(b, 10));
    CHECK_OK(edgestore_compact(b, &st));
    ta = tree_of(a, NULL, "ns", DEPTH, &ea);
    tb = tree_of(b, NULL, "ns", DEPTH, &eb);
    CHECK(ea == 2000 && eb == 2000);
    CHECK(memcmp(ta, tb, count * 32) == 0);

    /* A snapshot's tree stays the data it reads. */
    CHECK_OK(edgestore_snapshot_new(a, &snap));
    put_key(a, 5, "changed");
    put_key(a, 2500, "added");
    CHECK_OK(edgestore_delete(a, B("ns"), B("key-01000")));
    ts = tree_of(NULL, snap, "ns", DEPTH, &es);
    CHECK(es == 2000 && memcmp(ts, tb, count * 32) == 0);
    free(ts);
    CHECK_OK(edgestore_snapshot_free(snap));

    /* Sync b from a through the differing leaves only. */
    free(ta);
    ta = tree_of(a, NULL, "ns", DEPTH, &ea);
    CHECK(memcmp(ta, tb, 32) != 0);
    memset(leaves, 0, sizeof leaves);
    {
        size_t first = 17; /* (16^2 - 1) / 15: the first leaf of a depth-2 tree */
        size_t differ = 0;
        for (i = 0; i < 256; i++) {
            if (memcmp(ta + 32 * (first + i), tb + 32 * (first + i), 32) != 0) {
                leaves[i] = 1;
                list[n_list++] = (uint32_t)i;
                differ++;
            }
        }
        CHECK(differ >= 1 && differ <= 3);
    }
    CHECK_OK(edgestore_merkle_leaf_of(B("key-00005"), DEPTH, &leaf));
    CHECK(leaves[leaf]);
    CHECK_OK(edgestore_merkle_leaf_of(B("key-02500"), DEPTH, &leaf));
    CHECK(leaves[leaf]);
    sent = send_leaves(a, b, list, n_list, leaves);
    CHECK(sent >= 2 && sent < 100);
    free(tb);
    tb = tree_of(b, NULL, "ns", DEPTH, &eb);
    CHECK(eb == ea && memcmp(ta, tb, count * 32) == 0);

    /* Bad arguments: nothing written, a clear status. */
    memset(small, 0xAB, sizeof small);
    ea = 77;
    CHECK_STATUS(edgestore_merkle_tree(a, B("ns"), DEPTH, small, sizeof small, &ea),
                 EDGESTORE_BUFFER_TOO_SMALL);
    CHECK_LAST_ERROR_HAS("needs 8736 bytes");
    CHECK(small[0] == 0xAB && small[31] == 0xAB && ea == 77);
    CHECK_STATUS(edgestore_merkle_tree(a, B("ns"), 0, small, sizeof small, &ea),
                 EDGESTORE_INVALID_ARGUMENT);
    CHECK_STATUS(edgestore_merkle_tree(a, B("ns"), 5, tb, count * 32, &ea),
                 EDGESTORE_INVALID_ARGUMENT);
    CHECK_STATUS(edgestore_merkle_tree(a, B("ns"), DEPTH, NULL, count * 32, &ea),
                 EDGESTORE_INVALID_ARGUMENT);
    CHECK_STATUS(edgestore_merkle_tree(a, B("ns"), DEPTH, tb, count * 32, NULL),
                 EDGESTORE_INVALID_ARGUMENT);
    CHECK_STATUS(edgestore_merkle_tree(NULL, B("ns"), DEPTH, tb, count * 32, &ea),
                 EDGESTORE_INVALID_ARGUMENT);
    CHECK_STATUS(edgestore_merkle_tree(a, NULL, 3, DEPTH, tb, count * 32, &ea),
                 EDGESTORE_INVALID_ARGUMENT);
    CHECK_STATUS(edgestore_merkle_node_count(0, &count), EDGESTORE_INVALID_ARGUMENT);
    CHECK_STATUS(edgestore_merkle_node_count(1, NULL), EDGESTORE_INVALID_ARGUMENT);
    CHECK_STATUS(edgestore_merkle_leaf_of(B("k"), 5, &leaf), EDGESTORE_INVALID_ARGUMENT);
    CHECK_STATUS(edgestore_merkle_leaf_of(NULL, 1, 1, &leaf), EDGESTORE_INVALID_ARGUMENT);
    CHECK_STATUS(edgestore_merkle_leaf_of(B("k"), 1, NULL), EDGESTORE_INVALID_ARGUMENT);
    CHECK(ea == 77);
    CHECK_STATUS(edgestore_snapshot_merkle_tree(NULL, B("ns"), DEPTH, tb, count * 32, &ea),
                 EDGESTORE_INVALID_ARGUMENT);
    {
        /* The leaf iterator: no leaves, no pairs; a snapshot's pairs are
         * its data; bad arguments leave *iter_out alone. */
        edgestore_iter *it = NULL, *const sentinel = (edgestore_iter *)&leaf;
        const uint8_t *k, *v;
        size_t kl, vl, before = 0, after = 0;
        uint32_t bad_leaf = 256, key5_leaf = 0;
        edgestore_status s;
        CHECK_OK(edgestore_iter_merkle_leaves(a, B("ns"), DEPTH, NULL, 0, &it));
        CHECK(edgestore_iter_next(it, &k, &kl, &v, &vl) == EDGESTORE_DONE);
        CHECK_OK(edgestore_iter_free(it));
        CHECK_OK(edgestore_merkle_leaf_of(B("key-00005"), DEPTH, &key5_leaf));
        CHECK_OK(edgestore_snapshot_new(a, &snap));
        put_key(a, 5, "after the snapshot");
        CHECK_OK(edgestore_delete(a, B("ns"), B("key-00005")));
        CHECK_OK(edgestore_snapshot_iter_merkle_leaves(snap, B("ns"), DEPTH, &key5_leaf, 1, &it));
        CHECK_OK(edgestore_snapshot_free(snap));
        while ((s = edgestore_iter_next(it, &k, &kl, &v, &vl)) == EDGESTORE_OK) before++;
        CHECK(s == EDGESTORE_DONE);
        CHECK_OK(edgestore_iter_free(it));
        CHECK_OK(edgestore_iter_merkle_leaves(a, B("ns"), DEPTH, &key5_leaf, 1, &it));
        while ((s = edgestore_iter_next(it, &k, &kl, &v, &vl)) == EDGESTORE_OK) after++;
        CHECK(s == EDGESTORE_DONE);
        CHECK_OK(edgestore_iter_free(it));
        CHECK(before >= 1 && after + 1 == before);
        it = sentinel;
        CHECK_STATUS(edgestore_iter_merkle_leaves(a, B("ns"), DEPTH, &bad_leaf, 1, &it),
                     EDGESTORE_INVALID_ARGUMENT);
        CHECK_LAST_ERROR_HAS("merkle leaf 256");
        CHECK_STATUS(edgestore_iter_merkle_leaves(a, B("ns"), 0, list, 1, &it),
                     EDGESTORE_INVALID_ARGUMENT);
        CHECK_STATUS(edgestore_iter_merkle_leaves(a, B("ns"), 5, NULL, 0, &it),
                     EDGESTORE_INVALID_ARGUMENT);
        CHECK_STATUS(edgestore_iter_merkle_leaves(a, B("ns"), DEPTH, NULL, 1, &it),
                     EDGESTORE_INVALID_ARGUMENT);
        CHECK_STATUS(edgestore_iter_merkle_leaves(a, B("ns"), DEPTH, list, SIZE_MAX, &it),
                     EDGESTORE_INVALID_ARGUMENT);
        CHECK_STATUS(edgestore_iter_merkle_leaves(a, NULL, 3, DEPTH, list, 1, &it),
                     EDGESTORE_INVALID_ARGUMENT);
        CHECK_STATUS(edgestore_iter_merkle_leaves(NULL, B("ns"), DEPTH, list, 1, &it),
                     EDGESTORE_INVALID_ARGUMENT);
        CHECK_STATUS(edgestore_snapshot_iter_merkle_leaves(NULL, B("ns"), DEPTH, list, 1, &it),
                     EDGESTORE_INVALID_ARGUMENT);
        CHECK_STATUS(edgestore_snapshot_iter_merkle_leaves((edgestore_snapshot *)b, B("ns"), DEPTH,
                                                           list, 1, &it),
                     EDGESTORE_INVALID_ARGUMENT);
        CHECK_STATUS(edgestore_snapshot_iter_merkle_leaves(snap, B("ns"), DEPTH, list, 1, &it),
                     EDGESTORE_CLOSED);
        CHECK(it == sentinel);
        CHECK_STATUS(edgestore_iter_merkle_leaves(a, B("ns"), DEPTH, list, 1, NULL),
                     EDGESTORE_INVALID_ARGUMENT);
    }
    CHECK_OK(edgestore_close(a));
    {
        edgestore_iter *it = NULL;
        CHECK_STATUS(edgestore_iter_merkle_leaves(a, B("ns"), DEPTH, list, 1, &it),
                     EDGESTORE_CLOSED);
        CHECK(it == NULL);
    }
    CHECK_STATUS(edgestore_merkle_tree(a, B("ns"), DEPTH, tb, count * 32, &ea), EDGESTORE_CLOSED);
    CHECK(ea == 77);

    free(ta);
    free(tb);
    CHECK_OK(edgestore_close(b));
    CHECK_OK(edgestore_options_free(opts));
    remove_tree(dir);
    free(pa);
    free(pb);
    free(pk);
    free(dir);
    printf("merkle: ok (%zu pairs sent)\n", sent);
    return 0;
}
