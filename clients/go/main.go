// Command proximadb-go-example talks to a ProximaDB daemon over gRPC using only
// the wire contract: proto/proximadb/v1/proximadb.proto (compiled by protoc at
// build time, see build.sh) and the Avro schemas in schemas/v<N>/*.avsc (read
// at run time from -schemas). Nothing here comes from the Python package.
//
// It asks Health for the payload schema versions, picks the highest one it also
// has schemas for, creates a collection, inserts a batch as a `vector_insert`
// payload frame (a VectorBatch datum), searches it twice (without and with a
// filter) and decodes the `search_result` frames. From schema version 4 on the
// collection also declares a named vector "title" (dimension 3), every record
// carries it, and a third search ("title") names it in the SearchRequest's
// `using`. Output, one line each:
//
//	schema_version <N>
//	created <name> <dimension>
//	inserted <count>
//	hit <search> <rank> <id> <score> <distance> <metadata as JSON> <expires_at or ->
//	done
//
// Scores and distances are printed with the fewest digits that read back as
// the same float32. Any error goes to stderr and exits 1.
//
// The payload frame (documented at the top of proximadb/codec/framing.pyx),
// all integers little-endian:
//
//	u32 schema_version | u32 op_type_len | op_type (UTF-8) | Avro binary datum
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io/ioutil"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/linkedin/goavro" // Debian: /usr/share/gocode (v2 API)
	"google.golang.org/grpc"

	pb "proximadbclient/pb"
)

// The records of the example batch: the same formulas as the C example and the test.
func vectorOf(i, dim int) []float32 {
	v := make([]float32, dim)
	for j := 0; j < dim; j++ {
		v[j] = float32(float64((i*37+j*101+i*j*13)%97)/97.0 - 0.5)
	}
	return v
}

// titleOf is record i's named vector "title" (schema v4).
func titleOf(i int) []interface{} {
	v := make([]interface{}, TitleDim)
	for j := 0; j < TitleDim; j++ {
		v[j] = float32(float64((i*13+j*7)%11)/11.0 - 0.5)
	}
	return v
}

// TitleDim is the dimension of the named vector "title".
const TitleDim = 3

func lang(i int) string {
	if i%2 == 1 {
		return "en"
	}
	return "de"
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "proximadb-go-example: "+format+"\n", args...)
	os.Exit(1)
}

// ---------------------------------------------------------------- schemas

// schemaSet is every record of one schemas/v<N>/ folder, by full name.
type schemaSet struct {
	version int
	byName  map[string]map[string]interface{} // "VectorBatch" -> parsed .avsc
	ns      string
}

func loadSchemas(root string, version int) (*schemaSet, error) {
	dir := filepath.Join(root, fmt.Sprintf("v%d", version))
	files, err := filepath.Glob(filepath.Join(dir, "*.avsc"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no .avsc files in %s", dir)
	}
	set := &schemaSet{version: version, byName: map[string]map[string]interface{}{}}
	for _, f := range files {
		raw, err := ioutil.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var rec map[string]interface{}
		if err := json.Unmarshal(raw, &rec); err != nil {
			return nil, fmt.Errorf("%s: %v", f, err)
		}
		name, _ := rec["name"].(string)
		set.ns, _ = rec["namespace"].(string)
		set.byName[name] = rec
	}
	return set, nil
}

// inline replaces a reference to a record defined in another file (a string
// such as "proximadb.v2.VectorRecord") with that record's definition, the
// first time it is met, so one self-contained schema reaches the Avro library.
func (s *schemaSet) inline(node interface{}, defined map[string]bool) interface{} {
	switch n := node.(type) {
	case string:
		short := strings.TrimPrefix(n, s.ns+".")
		if rec, ok := s.byName[short]; ok && !defined[short] {
			return s.inline(rec, defined)
		}
		return n
	case []interface{}:
		out := make([]interface{}, len(n))
		for i, item := range n {
			out[i] = s.inline(item, defined)
		}
		return out
	case map[string]interface{}:
		if name, ok := n["name"].(string); ok && n["type"] == "record" {
			defined[name] = true
		}
		out := map[string]interface{}{}
		for k, v := range n {
			if k == "type" || k == "items" || k == "values" || k == "fields" {
				out[k] = s.inline(v, defined)
			} else {
				out[k] = v
			}
		}
		return out
	}
	return node
}

func (s *schemaSet) codec(record string) (*goavro.Codec, error) {
	rec, ok := s.byName[record]
	if !ok {
		return nil, fmt.Errorf("schemas v%d have no record %s", s.version, record)
	}
	text, err := json.Marshal(s.inline(rec, map[string]bool{}))
	if err != nil {
		return nil, err
	}
	return goavro.NewCodec(string(text))
}

// ---------------------------------------------------------------- frames

func frame(version int, opType string, datum []byte) []byte {
	out := make([]byte, 8, 8+len(opType)+len(datum))
	binary.LittleEndian.PutUint32(out[0:4], uint32(version))
	binary.LittleEndian.PutUint32(out[4:8], uint32(len(opType)))
	out = append(out, opType...)
	return append(out, datum...)
}

func unframe(payload []byte) (int, string, []byte, error) {
	if len(payload) < 8 {
		return 0, "", nil, fmt.Errorf("payload of %d bytes is shorter than the 8-byte frame header", len(payload))
	}
	version := int(binary.LittleEndian.Uint32(payload[0:4]))
	n := int(binary.LittleEndian.Uint32(payload[4:8]))
	if n < 1 || n > 64 || 8+n > len(payload) {
		return 0, "", nil, fmt.Errorf("bad op_type length %d in a payload of %d bytes", n, len(payload))
	}
	return version, string(payload[8 : 8+n]), payload[8+n:], nil
}

// ---------------------------------------------------------------- values

// unionValue is the value of a decoded union: goavro gives nil for null and
// {"<branch type>": value} otherwise (here: boolean, long, double, string,
// array of strings, map).
func unionValue(u interface{}) interface{} {
	if branch, ok := u.(map[string]interface{}); ok && len(branch) == 1 {
		for _, v := range branch {
			return v
		}
	}
	return u
}

// metadataValue is a SearchHit's metadata (union {null, map<Value>}) with every
// Value union unwrapped, ready for encoding/json (which sorts the keys).
func metadataValue(field interface{}) interface{} {
	m, ok := unionValue(field).(map[string]interface{})
	if !ok {
		return nil
	}
	out := make(map[string]interface{}, len(m))
	for key, value := range m {
		out[key] = unionValue(value)
	}
	return out
}

func metadataOf(i int) map[string]interface{} {
	tags := []interface{}{"t" + strconv.Itoa(i%3), "all"}
	return map[string]interface{}{
		"lang":   goavro.Union("string", lang(i)),
		"rank":   goavro.Union("long", int64(i)),
		"weight": goavro.Union("double", float64(i)*0.25),
		"even":   goavro.Union("boolean", i%2 == 0),
		"tags":   goavro.Union("array", tags),
		"note":   goavro.Union("null", nil),
	}
}

func f32(x interface{}) string {
	return strconv.FormatFloat(float64(x.(float32)), 'g', -1, 32)
}

// ---------------------------------------------------------------- main

func main() {
	target := flag.String("grpc", "127.0.0.1:5679", "the daemon's gRPC address host:port")
	schemaRoot := flag.String("schemas", "schemas", "the schemas/ folder (v<N>/*.avsc)")
	collection := flag.String("collection", "go_example", "collection to create")
	n := flag.Int("n", 20, "records to insert")
	dim := flag.Int("dim", 8, "dimension")
	k := flag.Int("k", 5, "hits per search")
	query := flag.Int("query", 0, "search with the vector of this record")
	expiresAt := flag.Int64("expires-at", 4102444800000000, "expires_at of record 0 (µs since the epoch; v2 only)")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, *target, grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		fail("cannot connect to %s: %v", *target, err)
	}
	defer conn.Close()
	client := pb.NewProximaDBClient(conn)

	health, err := client.Health(ctx, &pb.HealthRequest{})
	if err != nil {
		fail("Health: %v", err)
	}
	version := 0
	for _, v := range health.SchemaVersions {
		if _, err := os.Stat(filepath.Join(*schemaRoot, fmt.Sprintf("v%d", v))); err == nil && int(v) > version {
			version = int(v)
		}
	}
	if version == 0 {
		fail("the server speaks schema versions %v; none of them is in %s", health.SchemaVersions, *schemaRoot)
	}
	schemas, err := loadSchemas(*schemaRoot, version)
	if err != nil {
		fail("%v", err)
	}
	fmt.Printf("schema_version %d\n", version)

	create := &pb.CreateCollectionRequest{Name: *collection, Dimension: uint32(*dim), DistanceMetric: "euclidean"}
	if version >= 4 {
		create.VectorsJson = fmt.Sprintf(`{"title": {"dimension": %d, "distance_metric": "euclidean"}}`, TitleDim)
	}
	info, err := client.CreateCollection(ctx, create)
	if err != nil {
		fail("CreateCollection %q: %v", *collection, err)
	}
	fmt.Printf("created %s %d\n", info.Name, info.Dimension)

	// ---- insert: op vector_insert, a VectorBatch datum
	batchCodec, err := schemas.codec("VectorBatch")
	if err != nil {
		fail("VectorBatch schema: %v", err)
	}
	records := make([]interface{}, *n)
	for i := 0; i < *n; i++ {
		vec := make([]interface{}, *dim)
		for j, x := range vectorOf(i, *dim) {
			vec[j] = x
		}
		rec := map[string]interface{}{
			"id": fmt.Sprintf("rec-%d", i), "vector": vec, "metadata": metadataOf(i),
			"timestamp": int64(0), // 0: the server stamps it
		}
		if version >= 2 {
			rec["expires_at"] = goavro.Union("null", nil)
			if i == 0 {
				rec["expires_at"] = goavro.Union("long", *expiresAt)
			}
		}
		if version >= 4 {
			rec["named_vectors"] = map[string]interface{}{"title": titleOf(i)}
		}
		records[i] = rec
	}
	datum, err := batchCodec.BinaryFromNative(nil, map[string]interface{}{"upsert": false, "records": records})
	if err != nil {
		fail("encoding the VectorBatch: %v", err)
	}
	inserted, err := client.Insert(ctx, &pb.PayloadRequest{Collection: *collection, Payload: frame(version, "vector_insert", datum)})
	if err != nil {
		fail("Insert: %v", err)
	}
	fmt.Printf("inserted %d\n", inserted.Count)

	// ---- search: op vector_search (SearchRequest) in, op search_result (SearchResult) out
	reqCodec, err := schemas.codec("SearchRequest")
	if err != nil {
		fail("SearchRequest schema: %v", err)
	}
	resCodec, err := schemas.codec("SearchResult")
	if err != nil {
		fail("SearchResult schema: %v", err)
	}
	q := make([]interface{}, *dim)
	for j, x := range vectorOf(*query, *dim) {
		q[j] = x
	}
	searches := []struct {
		label  string
		filter interface{}
		using  string // a named vector (v4); "": the default vector
	}{
		{"all", goavro.Union("null", nil), ""},
		{"en", goavro.Union("string", `{"lang": "en"}`), ""},
	}
	if version >= 4 {
		searches = append(searches, struct {
			label  string
			filter interface{}
			using  string
		}{"title", goavro.Union("null", nil), "title"})
	}
	for _, s := range searches {
		request := map[string]interface{}{
			"queries": []interface{}{q}, "k": int32(*k), "filter": s.filter,
			"include_vectors": false, "include_metadata": true,
			"ef": goavro.Union("null", nil), "nprobe": goavro.Union("null", nil), "exact": false,
		}
		if s.using != "" {
			request["queries"] = []interface{}{titleOf(*query)}
			request["using"] = goavro.Union("string", s.using)
		}
		body, err := reqCodec.BinaryFromNative(nil, request)
		if err != nil {
			fail("encoding the SearchRequest: %v", err)
		}
		resp, err := client.Search(ctx, &pb.PayloadRequest{Collection: *collection, Payload: frame(version, "vector_search", body)})
		if err != nil {
			fail("Search (%s): %v", s.label, err)
		}
		gotVersion, op, resDatum, err := unframe(resp.Payload)
		if err != nil {
			fail("search answer: %v", err)
		}
		if op != "search_result" || gotVersion != version {
			fail("search answer is op %q version %d, expected search_result version %d", op, gotVersion, version)
		}
		native, rest, err := resCodec.NativeFromBinary(resDatum)
		if err != nil {
			fail("decoding the SearchResult: %v", err)
		}
		if len(rest) != 0 {
			fail("%d bytes left after the SearchResult datum", len(rest))
		}
		results := native.(map[string]interface{})["results"].([]interface{})
		if len(results) != 1 {
			fail("one query sent, %d result lists received", len(results))
		}
		for rank, h := range results[0].([]interface{}) {
			hit := h.(map[string]interface{})
			md, _ := json.Marshal(metadataValue(hit["metadata"]))
			expires := "-"
			if e, ok := unionValue(hit["expires_at"]).(int64); ok {
				expires = strconv.FormatInt(e, 10)
			}
			fmt.Printf("hit %s %d %s %s %s %s %s\n", s.label, rank, hit["id"], f32(hit["score"]), f32(hit["distance"]), md, expires)
		}
	}
	fmt.Println("done")
}
