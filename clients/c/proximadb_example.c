/* proximadb-c-example: talks to a ProximaDB daemon over REST with
 * Content-Type application/avro, using only the wire contract: the Avro
 * schemas in schemas/v<N>/ (*.avsc) (read at run time from -s) and the REST routes
 * (README "REST", GET /openapi.json). Built against Debian's libavro-dev and
 * libcurl (see build.sh). Nothing here comes from the Python package.
 *
 * It reads GET /health for the payload schema versions, picks the highest one
 * it has schemas for, creates a collection (POST /collections, JSON: that route
 * takes JSON only), inserts a batch as a `vector_insert` payload
 * (POST /collections/{c}/vectors/batch), searches it twice (without and with a
 * filter; POST /collections/{c}/search, Accept: application/avro) and decodes
 * the `search_result` payloads. From schema version 4 on the collection also
 * declares a named vector "title" (dimension 3), every record carries it, and a
 * third search ("title") names it in the SearchRequest's `using`. Output, one
 * line each (as the Go example):
 *
 *   schema_version <N>
 *   created <name> <dimension>
 *   inserted <count>
 *   hit <search> <rank> <id> <score> <distance> <metadata as JSON> <expires_at or ->
 *   done
 *
 * The payload frame (documented at the top of proximadb/codec/framing.pyx),
 * all integers little-endian:
 *
 *   u32 schema_version | u32 op_type_len | op_type (UTF-8) | Avro binary datum
 *
 * Usage: proximadb-c-example -u http://127.0.0.1:5678 -s schemas -c name
 *                            [-n 20] [-d 8] [-k 5] [-q 0]
 * Any error goes to stderr and exits 1.
 */
#include <avro.h>
#include <curl/curl.h>
#include <glob.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXPIRES_AT_REC0 INT64_C(4102444800000000) /* 2100-01-01, µs since the epoch */

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("proximadb-c-example: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

#define CHECK(call, what) do { if ((call) != 0) fail("%s: %s", (what), avro_strerror()); } while (0)

/* The records of the example batch: the same formulas as the Go example and the test. */
static float component(int i, int j) { return (float)((double)((i * 37 + j * 101 + i * j * 13) % 97) / 97.0 - 0.5); }
/* record i's named vector "title" (schema v4), TITLE_DIM components */
#define TITLE_DIM 3
static float title_component(int i, int j) { return (float)((double)((i * 13 + j * 7) % 11) / 11.0 - 0.5); }
static const char *lang(int i) { return i % 2 == 1 ? "en" : "de"; }

/* ------------------------------------------------------------------ buffers */

typedef struct { char *data; size_t len; } buf_t;

static void buf_add(buf_t *b, const void *p, size_t n) {
    b->data = realloc(b->data, b->len + n + 1);
    if (!b->data) fail("out of memory");
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static buf_t read_file(const char *path) {
    buf_t b = {0};
    char chunk[4096];
    size_t n;
    FILE *f = fopen(path, "rb");
    if (!f) fail("cannot read %s", path);
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) buf_add(&b, chunk, n);
    fclose(f);
    return b;
}

/* ------------------------------------------------------------------ schemas */

/* The text of schemas/v<N>/<file>.avsc with every reference to a record of
 * another file ("proximadb.v<N>.VectorRecord") replaced, the first time, by that
 * file's text: one self-contained schema for avro_schema_from_json. Passes repeat
 * until none inlines anything (an inlined record may refer to a third file's). */
static buf_t schema_text(const char *root, int version, const char *file) {
    char path[4096], pattern[4096];
    snprintf(path, sizeof path, "%s/v%d/%s.avsc", root, version, file);
    buf_t text = read_file(path);
    snprintf(pattern, sizeof pattern, "%s/v%d/*.avsc", root, version);
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0) fail("no schemas match %s", pattern);
    char *inlined = calloc(g.gl_pathc, 1);
    if (!inlined) fail("out of memory");
    for (int changed = 1; changed;) {
    changed = 0;
    for (size_t f = 0; f < g.gl_pathc; f++) {
        if (inlined[f]) continue;
        buf_t other = read_file(g.gl_pathv[f]);
        const char *name = strstr(other.data, "\"name\"");
        char ref[512], rec[256] = "";
        if (name && sscanf(name, "\"name\" : \"%255[^\"]\"", rec) != 1)
            sscanf(name, "\"name\": \"%255[^\"]\"", rec);
        snprintf(ref, sizeof ref, "\"proximadb.v%d.%s\"", version, rec);
        char *at = rec[0] ? strstr(text.data, ref) : NULL;
        if (at) {
            buf_t out = {0};
            buf_add(&out, text.data, (size_t)(at - text.data));
            buf_add(&out, other.data, other.len);
            buf_add(&out, at + strlen(ref), text.len - (size_t)(at - text.data) - strlen(ref));
            free(text.data);
            text = out;
            inlined[f] = 1;
            changed = 1;
        }
        free(other.data);
    }
    }
    free(inlined);
    globfree(&g);
    return text;
}

static avro_schema_t load_schema(const char *root, int version, const char *file) {
    buf_t text = schema_text(root, version, file);
    avro_schema_t schema;
    if (avro_schema_from_json_length(text.data, text.len, &schema) != 0)
        fail("schema %s v%d: %s", file, version, avro_strerror());
    free(text.data);
    return schema;
}

/* ------------------------------------------------------------------ HTTP */

typedef struct { long status; char content_type[128]; buf_t body; } http_resp_t;

static size_t on_body(char *p, size_t size, size_t n, void *user) {
    buf_add((buf_t *)user, p, size * n);
    return size * n;
}

static http_resp_t http(const char *method, const char *url, const char *content_type, const char *accept,
                        const void *body, size_t body_len) {
    http_resp_t r = {0};
    CURL *curl = curl_easy_init();
    struct curl_slist *headers = NULL;
    char header[256];
    if (!curl) fail("curl_easy_init failed");
    if (content_type) {
        snprintf(header, sizeof header, "Content-Type: %s", content_type);
        headers = curl_slist_append(headers, header);
    }
    if (accept) {
        snprintf(header, sizeof header, "Accept: %s", accept);
        headers = curl_slist_append(headers, header);
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r.body);
    if (body) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)body_len);
    }
    CURLcode rc = curl_easy_perform(curl);
    if (rc != CURLE_OK) fail("%s %s: %s", method, url, curl_easy_strerror(rc));
    char *ct = NULL;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &ct);
    if (ct) snprintf(r.content_type, sizeof r.content_type, "%s", ct);
    if (!r.body.data) buf_add(&r.body, "", 0);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return r;
}

static void expect_status(const http_resp_t *r, long status, const char *what) {
    if (r->status != status) fail("%s: HTTP %ld (expected %ld): %s", what, r->status, status, r->body.data);
}

/* ------------------------------------------------------------------ frames */

static void put_u32le(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}
static uint32_t get_u32le(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A payload frame around the Avro binary encoding of `datum`. */
static buf_t frame(int version, const char *op_type, avro_value_t *datum) {
    size_t size, op_len = strlen(op_type);
    CHECK(avro_value_sizeof(datum, &size), "sizing the datum");
    buf_t out = {0};
    unsigned char header[8];
    put_u32le(header, (uint32_t)version);
    put_u32le(header + 4, (uint32_t)op_len);
    buf_add(&out, header, 8);
    buf_add(&out, op_type, op_len);
    char *avro = malloc(size ? size : 1);
    avro_writer_t w = avro_writer_memory(avro, (int64_t)size);
    CHECK(avro_value_write(w, datum), "encoding the datum");
    avro_writer_free(w);
    buf_add(&out, avro, size);
    free(avro);
    return out;
}

/* ------------------------------------------------------------------ values */

static void field(avro_value_t *rec, const char *name, avro_value_t *out) {
    if (avro_value_get_by_name(rec, name, out, NULL) != 0) fail("no field %s: %s", name, avro_strerror());
}

/* Metadata value union: null | boolean | long | double | string | array<string>. */
enum { V_NULL, V_BOOLEAN, V_LONG, V_DOUBLE, V_STRING, V_STRINGS };

static void metadata_value(avro_value_t *map, const char *key, int branch, avro_value_t *out) {
    avro_value_t u;
    CHECK(avro_value_add(map, key, &u, NULL, NULL), key);
    CHECK(avro_value_set_branch(&u, branch, out), key);
}

static void fill_metadata(avro_value_t *map, int i) {
    avro_value_t v, item;
    char tag[16];
    metadata_value(map, "lang", V_STRING, &v);  CHECK(avro_value_set_string(&v, lang(i)), "lang");
    metadata_value(map, "rank", V_LONG, &v);    CHECK(avro_value_set_long(&v, i), "rank");
    metadata_value(map, "weight", V_DOUBLE, &v); CHECK(avro_value_set_double(&v, i * 0.25), "weight");
    metadata_value(map, "even", V_BOOLEAN, &v); CHECK(avro_value_set_boolean(&v, i % 2 == 0), "even");
    metadata_value(map, "note", V_NULL, &v);    CHECK(avro_value_set_null(&v), "note");
    metadata_value(map, "tags", V_STRINGS, &v);
    snprintf(tag, sizeof tag, "t%d", i % 3);
    CHECK(avro_value_append(&v, &item, NULL), "tags"); CHECK(avro_value_set_string(&item, tag), "tags");
    CHECK(avro_value_append(&v, &item, NULL), "tags"); CHECK(avro_value_set_string(&item, "all"), "tags");
}

static void print_json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static void print_value(avro_value_t *u) { /* a metadata value union */
    int disc;
    avro_value_t v;
    CHECK(avro_value_get_discriminant(u, &disc), "metadata value");
    CHECK(avro_value_get_current_branch(u, &v), "metadata value");
    const char *s; size_t n; int b; int64_t l; double d;
    switch (disc) {
    case V_NULL: printf("null"); break;
    case V_BOOLEAN: avro_value_get_boolean(&v, &b); printf(b ? "true" : "false"); break;
    case V_LONG: avro_value_get_long(&v, &l); printf("%lld", (long long)l); break;
    case V_DOUBLE: avro_value_get_double(&v, &d); printf("%.17g", d); break;
    case V_STRING: avro_value_get_string(&v, &s, &n); print_json_string(s); break;
    case V_STRINGS:
        avro_value_get_size(&v, &n);
        putchar('[');
        for (size_t i = 0; i < n; i++) {
            avro_value_t item; size_t len;
            avro_value_get_by_index(&v, i, &item, NULL);
            avro_value_get_string(&item, &s, &len);
            if (i) putchar(',');
            print_json_string(s);
        }
        putchar(']');
        break;
    default: fail("metadata value of unknown union branch %d", disc);
    }
}

static void print_metadata(avro_value_t *opt) { /* union {null, map<Value>} */
    int disc;
    avro_value_t map;
    size_t n;
    CHECK(avro_value_get_discriminant(opt, &disc), "metadata");
    if (disc == 0) { printf("null"); return; }
    CHECK(avro_value_get_current_branch(opt, &map), "metadata");
    avro_value_get_size(&map, &n);
    putchar('{');
    for (size_t i = 0; i < n; i++) {
        avro_value_t u; const char *key;
        avro_value_get_by_index(&map, i, &u, &key);
        if (i) putchar(',');
        print_json_string(key);
        putchar(':');
        print_value(&u);
    }
    putchar('}');
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv) {
    const char *url = "http://127.0.0.1:5678", *root = "schemas", *name = "c_example";
    int n = 20, dim = 8, k = 5, query = 0, opt;
    while ((opt = getopt(argc, argv, "u:s:c:n:d:k:q:")) != -1) {
        switch (opt) {
        case 'u': url = optarg; break;
        case 's': root = optarg; break;
        case 'c': name = optarg; break;
        case 'n': n = atoi(optarg); break;
        case 'd': dim = atoi(optarg); break;
        case 'k': k = atoi(optarg); break;
        case 'q': query = atoi(optarg); break;
        default: fail("usage: %s -u URL -s SCHEMAS_DIR -c COLLECTION [-n N] [-d DIM] [-k K] [-q RECORD]", argv[0]);
        }
    }
    if (n < 1 || dim < 1 || k < 1 || query < 0 || query >= n) fail("need n >= 1, dim >= 1, k >= 1, 0 <= q < n");
    if (!*name || strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(name))
        fail("collection name %s: this example takes only letters, digits, _ and - (it puts the name in a URL and JSON unescaped)", name);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char target[2048];

    /* ---- schema version: the highest the server speaks that schemas/ holds */
    snprintf(target, sizeof target, "%s/health", url);
    http_resp_t health = http("GET", target, NULL, NULL, NULL, 0);
    expect_status(&health, 200, "GET /health");
    const char *list = strstr(health.body.data, "\"schema_versions\":[");
    if (!list) fail("GET /health has no schema_versions: %s", health.body.data);
    int version = 0;
    for (char *p = (char *)list + strlen("\"schema_versions\":["); *p && *p != ']';) {
        long v = strtol(p, &p, 10);
        char dir[4096];
        struct stat st;
        snprintf(dir, sizeof dir, "%s/v%ld", root, v);
        if (stat(dir, &st) == 0 && v > version) version = (int)v;
        if (*p == ',') p++;
    }
    if (!version) fail("the server speaks schema versions %s; none of them is in %s", list, root);
    printf("schema_version %d\n", version);

    /* ---- create (JSON: POST /collections takes no Avro) */
    char json[1024];
    if (version >= 4)  /* a named vector "title" beside the default one */
        snprintf(json, sizeof json, "{\"name\":\"%s\",\"dimension\":%d,\"distance_metric\":\"euclidean\","
                 "\"vectors\":{\"title\":{\"dimension\":%d,\"distance_metric\":\"euclidean\"}}}", name, dim, TITLE_DIM);
    else
        snprintf(json, sizeof json, "{\"name\":\"%s\",\"dimension\":%d,\"distance_metric\":\"euclidean\"}", name, dim);
    snprintf(target, sizeof target, "%s/collections", url);
    http_resp_t created = http("POST", target, "application/json", NULL, json, strlen(json));
    expect_status(&created, 201, "POST /collections");
    printf("created %s %d\n", name, dim);

    /* ---- insert: op vector_insert, a VectorBatch datum */
    avro_schema_t batch_schema = load_schema(root, version, "vector_batch");
    avro_value_iface_t *batch_iface = avro_generic_class_from_schema(batch_schema);
    avro_value_t batch, v, records, rec, vec, item;
    CHECK(avro_generic_value_new(batch_iface, &batch), "VectorBatch");
    field(&batch, "upsert", &v); CHECK(avro_value_set_boolean(&v, 0), "upsert");
    field(&batch, "records", &records);
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "rec-%d", i);
        CHECK(avro_value_append(&records, &rec, NULL), "records");
        field(&rec, "id", &v); CHECK(avro_value_set_string(&v, id), "id");
        field(&rec, "vector", &vec);
        for (int j = 0; j < dim; j++) {
            CHECK(avro_value_append(&vec, &item, NULL), "vector");
            CHECK(avro_value_set_float(&item, component(i, j)), "vector");
        }
        field(&rec, "metadata", &v); fill_metadata(&v, i);
        field(&rec, "timestamp", &v); CHECK(avro_value_set_long(&v, 0), "timestamp"); /* 0: the server stamps it */
        if (version >= 2) {
            avro_value_t branch;
            field(&rec, "expires_at", &v);
            if (i == 0) { CHECK(avro_value_set_branch(&v, 1, &branch), "expires_at"); avro_value_set_long(&branch, EXPIRES_AT_REC0); }
            else { CHECK(avro_value_set_branch(&v, 0, &branch), "expires_at"); avro_value_set_null(&branch); }
        }
        if (version >= 4) {  /* named_vectors: map<array<float>> */
            avro_value_t title;
            field(&rec, "named_vectors", &v);
            CHECK(avro_value_add(&v, "title", &title, NULL, NULL), "named_vectors");
            for (int j = 0; j < TITLE_DIM; j++) {
                CHECK(avro_value_append(&title, &item, NULL), "title");
                CHECK(avro_value_set_float(&item, title_component(i, j)), "title");
            }
        }
    }
    buf_t payload = frame(version, "vector_insert", &batch);
    snprintf(target, sizeof target, "%s/collections/%s/vectors/batch", url, name);
    http_resp_t inserted = http("POST", target, "application/avro", NULL, payload.data, payload.len);
    expect_status(&inserted, 201, "POST vectors/batch (application/avro)");
    const char *count = strstr(inserted.body.data, "\"count\":");
    if (!count) fail("insert answer has no count: %s", inserted.body.data);
    printf("inserted %ld\n", strtol(count + strlen("\"count\":"), NULL, 10));

    /* ---- search: op vector_search (SearchRequest) in, op search_result (SearchResult) out */
    avro_schema_t req_schema = load_schema(root, version, "search_request");
    avro_schema_t res_schema = load_schema(root, version, "search_result");
    avro_value_iface_t *req_iface = avro_generic_class_from_schema(req_schema);
    avro_value_iface_t *res_iface = avro_generic_class_from_schema(res_schema);
    const char *labels[3] = {"all", "en", "title"};
    const char *filters[3] = {NULL, "{\"lang\": \"en\"}", NULL};
    int searches = version >= 4 ? 3 : 2;  /* "title": the named vector (v4) */
    for (int s = 0; s < searches; s++) {
        avro_value_t req, queries, q, branch;
        CHECK(avro_generic_value_new(req_iface, &req), "SearchRequest");
        field(&req, "queries", &queries);
        CHECK(avro_value_append(&queries, &q, NULL), "queries");
        int using_title = s == 2;
        for (int j = 0; j < (using_title ? TITLE_DIM : dim); j++) {
            CHECK(avro_value_append(&q, &item, NULL), "query");
            CHECK(avro_value_set_float(&item, using_title ? title_component(query, j) : component(query, j)), "query");
        }
        field(&req, "k", &v); CHECK(avro_value_set_int(&v, k), "k");
        field(&req, "filter", &v);
        if (filters[s]) { CHECK(avro_value_set_branch(&v, 1, &branch), "filter"); avro_value_set_string(&branch, filters[s]); }
        else { CHECK(avro_value_set_branch(&v, 0, &branch), "filter"); avro_value_set_null(&branch); }
        field(&req, "include_vectors", &v); avro_value_set_boolean(&v, 0);
        field(&req, "include_metadata", &v); avro_value_set_boolean(&v, 1);
        field(&req, "ef", &v); avro_value_set_branch(&v, 0, &branch); avro_value_set_null(&branch);
        field(&req, "nprobe", &v); avro_value_set_branch(&v, 0, &branch); avro_value_set_null(&branch);
        field(&req, "exact", &v); avro_value_set_boolean(&v, 0);
        if (version >= 4) {  /* v4: the named vector searched; null: the collection's default vector */
            field(&req, "using", &v);
            if (using_title) { CHECK(avro_value_set_branch(&v, 1, &branch), "using"); avro_value_set_string(&branch, "title"); }
            else { CHECK(avro_value_set_branch(&v, 0, &branch), "using"); avro_value_set_null(&branch); }
        }
        buf_t body = frame(version, "vector_search", &req);
        snprintf(target, sizeof target, "%s/collections/%s/search", url, name);
        http_resp_t found = http("POST", target, "application/avro", "application/avro", body.data, body.len);
        expect_status(&found, 200, "POST search (application/avro)");
        if (strncmp(found.content_type, "application/avro", 16) != 0)
            fail("search answered Content-Type %s, not application/avro", found.content_type);

        const unsigned char *p = (const unsigned char *)found.body.data;
        if (found.body.len < 8) fail("search answer of %zu bytes has no frame header", found.body.len);
        uint32_t got_version = get_u32le(p), op_len = get_u32le(p + 4);
        if (op_len < 1 || op_len > 64 || 8 + op_len > found.body.len) fail("bad op_type length %u", op_len);
        if ((int)got_version != version || op_len != strlen("search_result") || memcmp(p + 8, "search_result", op_len) != 0)
            fail("search answer is op %.*s version %u, expected search_result version %d", (int)op_len, p + 8, got_version, version);
        avro_value_t result, lists, hits;
        CHECK(avro_generic_value_new(res_iface, &result), "SearchResult");
        avro_reader_t r = avro_reader_memory((const char *)p + 8 + op_len, (int64_t)(found.body.len - 8 - op_len));
        CHECK(avro_value_read(r, &result), "decoding the SearchResult");
        avro_reader_free(r);
        size_t nlists, nhits;
        field(&result, "results", &lists);
        avro_value_get_size(&lists, &nlists);
        if (nlists != 1) fail("one query sent, %zu result lists received", nlists);
        avro_value_get_by_index(&lists, 0, &hits, NULL);
        avro_value_get_size(&hits, &nhits);
        for (size_t h = 0; h < nhits; h++) {
            avro_value_t hit, f;
            const char *id; size_t len; float score, distance;
            avro_value_get_by_index(&hits, h, &hit, NULL);
            field(&hit, "id", &f); avro_value_get_string(&f, &id, &len);
            field(&hit, "score", &f); avro_value_get_float(&f, &score);
            field(&hit, "distance", &f); avro_value_get_float(&f, &distance);
            printf("hit %s %zu %s %.9g %.9g ", labels[s], h, id, score, distance);
            field(&hit, "metadata", &f); print_metadata(&f);
            if (version >= 2) {
                int disc; int64_t at;
                field(&hit, "expires_at", &f); avro_value_get_discriminant(&f, &disc);
                if (disc == 1) { avro_value_get_current_branch(&f, &branch); avro_value_get_long(&branch, &at); printf(" %lld\n", (long long)at); }
                else printf(" -\n");
            } else printf(" -\n");
        }
        avro_value_decref(&result);
        avro_value_decref(&req);
        free(body.data); free(found.body.data);
    }
    puts("done");
    avro_value_decref(&batch);
    avro_value_iface_decref(batch_iface); avro_value_iface_decref(req_iface); avro_value_iface_decref(res_iface);
    avro_schema_decref(batch_schema); avro_schema_decref(req_schema); avro_schema_decref(res_schema);
    free(payload.data); free(health.body.data); free(created.body.data); free(inserted.body.data);
    curl_global_cleanup();
    return 0;
}
