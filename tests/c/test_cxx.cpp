// The header used from C++: compiles, links and works (RAII wrapper sketch).
#include "edgestore.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n",   \
                         __FILE__, __LINE__, #cond, edgestore_last_error());     \
            std::exit(1);                                                        \
        }                                                                        \
    } while (0)

namespace {
struct Db {
    edgestore_db *h = nullptr;
    explicit Db(const std::string &path) { CHECK(edgestore_open(path.c_str(), nullptr, &h) == EDGESTORE_OK); }
    ~Db() { edgestore_close(h); }
    Db(const Db &) = delete;
    Db &operator=(const Db &) = delete;
    void put(const std::string &k, const std::string &v) {
        CHECK(edgestore_put(h, nullptr, 0, reinterpret_cast<const uint8_t *>(k.data()), k.size(),
                            reinterpret_cast<const uint8_t *>(v.data()), v.size()) == EDGESTORE_OK);
    }
    bool get(const std::string &k, std::string *out) {
        uint8_t *v = nullptr;
        size_t n = 0;
        edgestore_status st = edgestore_get(h, nullptr, 0, reinterpret_cast<const uint8_t *>(k.data()),
                                            k.size(), &v, &n);
        if (st == EDGESTORE_NOT_FOUND) return false;
        CHECK(st == EDGESTORE_OK);
        out->assign(reinterpret_cast<const char *>(v), n);
        CHECK(edgestore_value_free(v) == EDGESTORE_OK);
        return true;
    }
};
}  // namespace

int main() {
    char tmpl[] = "/tmp/edgestore-cxx-XXXXXX";
    CHECK(mkdtemp(tmpl) != nullptr);
    std::string dir(tmpl);
    {
        Db db(dir + "/db");
        db.put("hello", "world");
        std::string v;
        CHECK(db.get("hello", &v) && v == "world");
        CHECK(!db.get("nope", &v));
        edgestore_metrics m;
        CHECK(edgestore_get_metrics(db.h, &m) == EDGESTORE_OK && m.user_writes == 1);
    }
    CHECK(std::strcmp(edgestore_status_name(EDGESTORE_CLOSED), "EDGESTORE_CLOSED") == 0);
    std::string cmd = "rm -rf '" + dir + "'";
    CHECK(std::system(cmd.c_str()) == 0);
    std::printf("test_cxx: ok (edgestore %s)\n", edgestore_version());
    return 0;
}
