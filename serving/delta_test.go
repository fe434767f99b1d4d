package serving

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/internal/s3test"
	"github.com/onestone/onestone/mmoe"
)

// trainer plays a stream: it changes a model as training would (every
// dense parameter, a few rows of each table) and publishes a snapshot
// or a delta of the version it published before, with the sample scores
// of the model as it is.
type trainer struct {
	t      *testing.T
	s      bundle.Store
	m      *bundle.Manifest
	model  *mmoe.Model
	parent *bundle.Manifest
	rng    *rand.Rand
	rows   [][]int32
	codec  string // of the deltas
}

func newTrainer(t *testing.T, s bundle.Store) *trainer {
	m, model := testManifest(t, 11, 8)
	return &trainer{t: t, s: s, m: m, model: model, rng: rand.New(rand.NewPCG(3, 4))}
}

// train changes the model as a step does and records the rows.
func (tr *trainer) train() {
	for _, p := range tr.model.Params() {
		for i := range p.Data {
			p.Data[i] += float32(tr.rng.NormFloat64() * 1e-2)
		}
	}
	embs := tr.model.Embeddings()
	if tr.rows == nil {
		tr.rows = make([][]int32, len(embs))
	}
	for f, e := range embs {
		seen := map[int32]bool{}
		for _, r := range tr.rows[f] {
			seen[r] = true
		}
		for range 3 {
			r := int32(tr.rng.IntN(e.Rows))
			for k := range e.Dim {
				e.Data[int(r)*e.Dim+k] += float32(tr.rng.NormFloat64() * 0.1)
			}
			if !seen[r] {
				seen[r] = true
				tr.rows[f] = append(tr.rows[f], r)
			}
		}
		sortRows(tr.rows[f])
	}
}

func sortRows(rs []int32) {
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j] < rs[j-1]; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

// publish publishes the model as a snapshot (full) or a delta.
func (tr *trainer) publish(full bool) string {
	tr.t.Helper()
	m := *tr.m
	m.Sample = append([]bundle.SampleEvent(nil), tr.m.Sample...)
	for i := range m.Sample {
		m.Sample[i].Scores = nil
	}
	if err := FillSampleScores(&m, tr.model, nil); err != nil {
		tr.t.Fatal(err)
	}
	var v string
	var err error
	if full || tr.parent == nil {
		v, err = bundle.Publish(context.Background(), tr.s, &m, tr.model, nil, 0)
	} else {
		v, err = bundle.PublishDelta(context.Background(), tr.s, &m, tr.model, nil, tr.parent, tr.rows, tr.codec, 0)
	}
	if err != nil {
		tr.t.Fatal(err)
	}
	tr.parent, tr.rows = &m, nil
	return v
}

// fullCopy writes the trainer's model as a full bundle in a new root.
func (tr *trainer) fullCopy() string {
	tr.t.Helper()
	root := tr.t.TempDir()
	saved := tr.s
	tr.s = bundle.NewDir(root)
	parent := tr.parent
	tr.publish(true)
	tr.s, tr.parent = saved, parent
	return root
}

// sameWeights fails unless the served model is the trainer's, bit for
// bit. (It does not pin the scorer as Server.Scorer does.)
func sameWeights(t *testing.T, s *Server, want *mmoe.Model) {
	t.Helper()
	sameModel(t, s.cur.Load().sc.b.Model, want)
}

// sameModel fails unless got's weights are want's, bit for bit.
func sameModel(t *testing.T, got, want *mmoe.Model) {
	t.Helper()
	for i, p := range got.Params() {
		w := want.Params()[i]
		for j := range p.Data {
			if math.Float32bits(p.Data[j]) != math.Float32bits(w.Data[j]) {
				t.Fatalf("served %s[%d] = %v, the trainer's %v", p.Name, j, p.Data[j], w.Data[j])
			}
		}
	}
	for i, e := range got.Embeddings() {
		w := want.Embeddings()[i]
		for j := range e.Data {
			if math.Float32bits(e.Data[j]) != math.Float32bits(w.Data[j]) {
				t.Fatalf("served %s[%d] = %v, the trainer's %v", e.Name, j, e.Data[j], w.Data[j])
			}
		}
	}
}

// scores posts body and returns the results without the version.
func scores(t *testing.T, url string, body []byte) string {
	t.Helper()
	code, b, _ := post(t, http.DefaultClient, url+"/v1/score", body)
	if code != 200 {
		t.Fatalf("score: %d %s", code, b)
	}
	var doc scoreDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	r, _ := json.Marshal(doc.Results)
	return string(r)
}

// load keeps requests going against url until stop is called, and
// returns the failures.
func load(t *testing.T, url string) (stop func() (int64, string)) {
	client := &http.Client{Transport: &http.Transport{}}
	var failures atomic.Int64
	var first atomic.Value
	first.Store("")
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 5))
			for {
				select {
				case <-done:
					return
				default:
				}
				resp, err := client.Post(url+"/v1/score", "application/json", bytes.NewReader(testRequest(t, r, 10, "")))
				if err != nil {
					failures.Add(1)
					first.CompareAndSwap("", err.Error())
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
					first.CompareAndSwap("", fmt.Sprintf("%d %s", resp.StatusCode, b))
				}
			}
		}()
	}
	return func() (int64, string) {
		close(done)
		wg.Wait()
		client.CloseIdleConnections()
		return failures.Load(), first.Load().(string)
	}
}

// A server on a local root applies deltas onto the model it serves: the
// weights are the trainer's to the bit, and it scores a request as a
// server of the same weights in a full bundle does. A delta whose chain
// is broken (its parent's delta file corrupt, then the parent gone) is
// refused, counted and logged while the model served keeps answering,
// until a snapshot comes.
func TestServerDeltaChain(t *testing.T) {
	root := t.TempDir()
	tr := newTrainer(t, bundle.NewDir(root))
	tr.publish(true)
	var logs syncBuffer
	s, err := NewServer(ServerConfig{Models: root, Poll: -1, Logger: newTextLogger(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, s)
	ctx := context.Background()
	stop := load(t, url)

	tr.train()
	tr.publish(false)
	tr.train()
	tr.train()
	v3 := tr.publish(false)
	if v, _, err := s.Reload(ctx); err != nil || v != v3 {
		t.Fatalf("reload: %s, %v; want %s", v, err, v3)
	}
	sameWeights(t, s, tr.model)
	full, fullTS := newTestServer(t, tr.fullCopy(), ServerConfig{})
	sameWeights(t, full, tr.model)
	body := testRequest(t, rand.New(rand.NewPCG(1, 2)), 30, "")
	want := scores(t, fullTS.URL, body)
	if got := scores(t, url, body); got != want {
		t.Fatalf("the delta chain scores\n%s\nthe full bundle\n%s", got, want)
	}

	// v4's delta file corrupt, v5 a delta of it.
	tr.train()
	v4 := tr.publish(false)
	tr.train()
	v5 := tr.publish(false)
	p := filepath.Join(root, v4, bundle.DeltaFile)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x10
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if v, _, err := s.Reload(ctx); v != v3 || err == nil || !strings.Contains(err.Error(), "broken delta chain") {
		t.Fatalf("reload with v4 corrupt: serving %s, %v; want %s and a broken chain", v, err, v3)
	}
	if n := testutilCounter(s, "onestone_model_delta_chain_refused_total"); n != 2 {
		t.Fatalf("chain refusals counted: %v, want 2 (v5 and v4)", n)
	}
	if got := scores(t, url, body); got != want {
		t.Fatal("the model served changed after a refused chain")
	}
	_, info := get(t, url+"/v1/model")
	if !strings.Contains(string(info), `"reason": "chain"`) {
		t.Fatalf("/v1/model does not give the refusals' reason: %s", info)
	}
	// The parent gone altogether.
	os.RemoveAll(filepath.Join(root, v4))
	if v, _, err := s.Reload(ctx); v != v3 || err == nil || !strings.Contains(err.Error(), v4) {
		t.Fatalf("reload with v4 missing: serving %s, %v", v, err)
	}
	tr.train()
	v6 := tr.publish(true)
	if v, _, err := s.Reload(ctx); err != nil || v != v6 {
		t.Fatalf("reload after the snapshot: %s, %v; want %s", v, err, v6)
	}
	sameWeights(t, s, tr.model)
	if n, first := stop(); n > 0 {
		t.Fatalf("%d requests failed during the reloads; first: %s", n, first)
	}
	if !strings.Contains(logs.String(), "broken delta chain") || !strings.Contains(logs.String(), v5) {
		t.Fatalf("the refusals are not logged:\n%s", logs.String())
	}
}

// A server that follows a stream's deltas applies each onto the model it
// served before the one it serves, in place, once no request uses it:
// after two deltas the models alternate, and the weights served are
// still the trainer's to the bit, as a full copy scores. A scorer handed
// out (Server.Scorer) is never written: its model is copied from again.
// A delta that fails on the spare model (corrupt) leaves the model
// served serving, and the next delta goes to a copy.
func TestServerDeltaInPlace(t *testing.T) {
	tr, s, url, stop := streamServer(t)
	root := tr.s.(*bundle.Dir).Root()
	ctx := context.Background()
	body := testRequest(t, rand.New(rand.NewPCG(1, 2)), 30, "")
	step := func() *mmoe.Model { t.Helper(); return reloadStep(t, s, tr, false) }
	if _, _, err := s.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	m0 := s.cur.Load().sc.b.Model
	m1 := step() // a copy of the snapshot's model
	m2 := step() // applied onto m0, the snapshot's model, once idle
	if m1 == m0 || m2 != m0 {
		t.Fatalf("models %p, %p, %p: want the third to be the first (in place)", m0, m1, m2)
	}
	if m3 := step(); m3 != m1 {
		t.Fatalf("model %p after 3 deltas, want %p (in place)", m3, m1)
	}
	full, fullTS := newTestServer(t, tr.fullCopy(), ServerConfig{})
	sameWeights(t, full, tr.model)
	if got, want := scores(t, url, body), scores(t, fullTS.URL, body); got != want {
		t.Fatalf("the deltas applied in place score\n%s\na full bundle\n%s", got, want)
	}

	// A scorer handed out pins its model.
	pinned := s.Scorer()
	held, err := pinned.b.Model.Clone()
	if err != nil {
		t.Fatal(err)
	}
	m5 := step()
	m6 := step()
	if m6 == pinned.b.Model || m5 == pinned.b.Model {
		t.Fatal("the model of a scorer handed out was written")
	}
	sameModel(t, pinned.b.Model, held)

	// A corrupt delta fails on the spare model; the next delta is
	// applied to a copy of the model served.
	tr.train()
	bad := tr.publish(false)
	p := filepath.Join(root, bad, bundle.DeltaFile)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-8] ^= 0x10
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	served := s.cur.Load().sc.b.Model
	waitSpareIdle(t, s)
	if _, _, err := s.Reload(ctx); err == nil {
		t.Fatal("a corrupt delta loaded")
	}
	sameModel(t, s.cur.Load().sc.b.Model, served)
	if s.spare != nil {
		t.Fatal("the spare model is kept after a failed delta")
	}
	tr.train()
	tr.parent = s.cur.Load().sc.b.Manifest // the next delta is of the version served
	tr.rows = allRows(tr.model)
	m8 := step()
	if m8 == served || m8 == m6 {
		t.Fatal("the delta after a failure was not applied to a copy")
	}
	if n, first := stop(); n > 0 {
		t.Fatalf("%d requests failed during the reloads; first: %s", n, first)
	}
}

// allRows lists every row of every table of model.
func allRows(model *mmoe.Model) [][]int32 {
	var rows [][]int32
	for _, e := range model.Embeddings() {
		r := make([]int32, e.Rows)
		for i := range r {
			r[i] = int32(i)
		}
		rows = append(rows, r)
	}
	return rows
}

// A server started on a root whose newest version is a delta reads the
// chain from the snapshot; a delta of the version it serves is applied
// to a copy of its model.
func TestServerStartsOnDelta(t *testing.T) {
	root := t.TempDir()
	tr := newTrainer(t, bundle.NewDir(root))
	tr.publish(true)
	for range 3 {
		tr.train()
		tr.publish(false)
	}
	s, _ := newTestServer(t, root, ServerConfig{})
	if v := s.Scorer().b.Manifest.Version; v != "v00000004" {
		t.Fatalf("serving %s", v)
	}
	sameWeights(t, s, tr.model)
	// The next delta applies onto the model served: the versions before
	// it are no longer read.
	for _, v := range []string{"v00000001", "v00000002", "v00000003"} {
		os.RemoveAll(filepath.Join(root, v))
	}
	tr.train()
	v5 := tr.publish(false)
	if v, _, err := s.Reload(context.Background()); err != nil || v != v5 {
		t.Fatalf("reload of a delta of the model served: %s, %v", v, err)
	}
	sameWeights(t, s, tr.model)
}

// A server on an object store fetches a delta's chain and applies it; a
// chain the store cannot give (a parent's delta file gone) is refused,
// counted and logged, the model served keeps serving, and the next
// snapshot is served. On one provider (s3test.One): the chain is read
// through bundle.Bucket, tested on each.
func TestServeDeltasFromObjectStore(t *testing.T) { s3test.One(t, testServeDeltasFromObjectStore) }

func testServeDeltasFromObjectStore(t *testing.T) {
	ctx := context.Background()
	u := s3test.URL(t)
	pub, err := bundle.OpenBucket(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	raw, err := s3test.OpenURL(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	tr := newTrainer(t, pub)
	tr.publish(true)
	tr.train()
	tr.publish(false)
	var logs syncBuffer
	s, err := NewServer(ServerConfig{Models: u, Poll: -1, Logger: newTextLogger(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, s)
	if v := servedVersion(t, url); v != "v00000002" {
		t.Fatalf("serving %q at the start, want the delta v00000002", v)
	}
	sameWeights(t, s, tr.model)
	tr.train()
	v3 := tr.publish(false)
	if v, _, err := s.Reload(ctx); err != nil || v != v3 {
		t.Fatalf("reload: %s, %v", v, err)
	}
	sameWeights(t, s, tr.model)

	tr.train()
	v4 := tr.publish(false)
	tr.train()
	tr.publish(false)
	if err := raw.Delete(ctx, v4+"/"+bundle.DeltaFile); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := s.Reload(ctx); v != v3 {
		t.Fatalf("serving %s with v4 broken in the store, want %s", v, v3)
	}
	if n := testutilCounter(s, "onestone_model_delta_chain_refused_total"); n != 1 {
		t.Fatalf("chain refusals counted: %v, want 1", n)
	}
	if !strings.Contains(logs.String(), "broken chain") {
		t.Fatalf("the refusal is not logged:\n%s", logs.String())
	}
	tr.train()
	v6 := tr.publish(true)
	if v, _, err := s.Reload(ctx); err != nil || v != v6 {
		t.Fatalf("reload after the snapshot: %s, %v; want %s", v, err, v6)
	}
	sameWeights(t, s, tr.model)
}

// syncBuffer is a bytes.Buffer for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTextLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
