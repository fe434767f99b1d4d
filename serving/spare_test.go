package serving

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/mmoe"
)

// storageOf is where m's first dense parameter and first embedding table
// live: two models with the same storageOf share their memory.
func storageOf(m *mmoe.Model) [2]*float32 {
	return [2]*float32{&m.Params()[0].Data[0], &m.Embeddings()[0].Data[0]}
}

// waitSpareIdle waits until no request uses the model s replaced last
// (load keeps requests coming, and -race makes them slow: a spare in use
// is not written, by design). A pinned spare stays pinned: no wait.
func waitSpareIdle(t *testing.T, s *Server) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		s.reloadMu.Lock()
		sp := s.spare
		idle := sp == nil || sp.pinned.Load() || sp.refs.Load() == 0
		s.reloadMu.Unlock()
		if idle {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the model replaced is still used 10 s after its last reload")
		}
	}
}

// streamServer serves a trainer's first snapshot on loopback, under
// requests kept going by load (stop ends them and returns the failures).
// The server loads nothing until the caller's Reload.
func streamServer(t *testing.T) (tr *trainer, s *Server, url string, stop func() (int64, string)) {
	t.Helper()
	root := t.TempDir()
	tr = newTrainer(t, bundle.NewDir(root))
	tr.publish(true)
	s, err := NewServer(ServerConfig{Models: root, Poll: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	url = serve(t, s)
	return tr, s, url, load(t, url)
}

// reloadStep trains, publishes a full version or a delta once the model
// s replaced last is idle, reloads s onto it and checks that s serves
// the trainer's weights to the bit; it returns the model served.
func reloadStep(t *testing.T, s *Server, tr *trainer, full bool) *mmoe.Model {
	t.Helper()
	waitSpareIdle(t, s)
	tr.train()
	v := tr.publish(full)
	if got, _, err := s.Reload(context.Background()); err != nil || got != v {
		t.Fatalf("reload: %s, %v; want %s", got, err, v)
	}
	sameWeights(t, s, tr.model)
	return s.cur.Load().sc.b.Model
}

// A server reserves a spare model's memory once it serves its first
// model, reads the next full version into it, and then each version into
// the memory of the model it replaced before, under requests that never
// fail: the weights served are the trainer's to the bit. A version
// refused after its weights were read into the spare (its sample does
// not score as recorded) leaves the model served serving, unchanged.
// With NoSpare the replaced model is not kept.
func TestServerSpare(t *testing.T) {
	tr, s, url, stop := streamServer(t)
	ctx := context.Background()
	var reserved *mmoe.Model
	for deadline := time.Now().Add(20 * time.Second); reserved == nil; time.Sleep(time.Millisecond) {
		s.reloadMu.Lock()
		reserved = s.reserved
		s.reloadMu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("no spare memory reserved 20 s after the first model was served")
		}
	}
	m1 := s.cur.Load().sc.b.Model
	if storageOf(reserved) == storageOf(m1) {
		t.Fatal("the reserved memory is the model's")
	}
	m2 := reloadStep(t, s, tr, true)
	if storageOf(m2) != storageOf(reserved) {
		t.Fatal("the second version was not read into the reserved memory")
	}
	if s.reserved != nil {
		t.Fatal("the reserved memory is still reserved once a model took it")
	}
	m3 := reloadStep(t, s, tr, true)
	if storageOf(m3) != storageOf(m1) {
		t.Fatal("the third version was not read into the first one's memory")
	}
	body := testRequest(t, rand.New(rand.NewPCG(1, 2)), 30, "")
	full, fullTS := newTestServer(t, tr.fullCopy(), ServerConfig{NoSpare: true})
	sameWeights(t, full, tr.model)
	want := scores(t, fullTS.URL, body)
	if got := scores(t, url, body); got != want {
		t.Fatalf("the version read into the spare scores\n%s\na server of its own\n%s", got, want)
	}

	// Weights that read well, with a sample of other scores: refused
	// after the read into the spare (m2's memory).
	served, err := m3.Clone()
	if err != nil {
		t.Fatal(err)
	}
	waitSpareIdle(t, s)
	saved := tr.model
	if tr.model, err = tr.model.Clone(); err != nil {
		t.Fatal(err)
	}
	tr.train()
	m := *tr.m
	m.Sample = append([]bundle.SampleEvent(nil), tr.m.Sample...)
	for i := range m.Sample {
		m.Sample[i].Scores = nil
	}
	if err := FillSampleScores(&m, saved, nil); err != nil { // not the weights published
		t.Fatal(err)
	}
	if _, err := bundle.Publish(ctx, tr.s, &m, tr.model, nil, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Reload(ctx); err == nil {
		t.Fatal("a version whose sample does not score as recorded loaded")
	}
	sameModel(t, m2, tr.model) // it was read into the spare, m2's memory
	if got := s.cur.Load().sc.b.Model; got != m3 {
		t.Fatal("the model served changed after a refused version")
	}
	sameModel(t, m3, served)
	if got := scores(t, url, body); got != want {
		t.Fatalf("after a refused version the server scores\n%s\nwant\n%s", got, want)
	}
	if storageOf(m2) == storageOf(m3) {
		t.Fatal("the model served shares the refused version's memory")
	}
	// The spare is given up, and memory reserved anew.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(time.Millisecond) {
		s.reloadMu.Lock()
		sp, res := s.spare, s.reserved
		s.reloadMu.Unlock()
		if sp != nil {
			t.Fatal("the spare is kept after a refused version was read into it")
		}
		if res != nil {
			if storageOf(res) == storageOf(m2) || storageOf(res) == storageOf(m3) {
				t.Fatal("the memory reserved after a refusal is not new")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no memory reserved 20 s after a refusal took the spare")
		}
	}
	if n, first := stop(); n > 0 {
		t.Fatalf("%d requests failed during the reloads; first: %s", n, first)
	}

	// NoSpare: the model replaced is not kept.
	tr.model = saved
	root2 := tr.fullCopy()
	ns, _ := newTestServer(t, root2, ServerConfig{NoSpare: true})
	tr.s = bundle.NewDir(root2)
	tr.parent = nil
	tr.train()
	v := tr.publish(true)
	if got, _, err := ns.Reload(ctx); err != nil || got != v {
		t.Fatalf("reload: %s, %v; want %s", got, err, v)
	}
	if ns.spare != nil || ns.reserved != nil {
		t.Fatal("NoSpare: a spare is kept")
	}
	sameWeights(t, ns, tr.model)
}

// A reload that asks for a spare while the first reservation is under
// way (every reload asks until memory is reserved) does not make the
// server reserve a second model's memory once the first is there: the
// reservation is counted once, in onestone_model_spare_reservations_total
// too.
func TestServerSpareReservedOnce(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	spareHook = func() {
		if calls.Add(1) == 1 {
			<-release
		}
	}
	t.Cleanup(func() { spareHook = nil })
	_, s, url, stop := streamServer(t)
	defer stop()
	for deadline := time.Now().Add(20 * time.Second); calls.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no reservation started 20 s after the first model was served")
		}
	}
	for range 3 { // no new version: each reload only asks for the spare again
		if _, changed, err := s.Reload(context.Background()); err != nil || changed {
			t.Fatalf("reload: changed %v, %v", changed, err)
		}
	}
	close(release)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(time.Millisecond) {
		s.reloadMu.Lock()
		done := s.reserved != nil
		s.reloadMu.Unlock()
		if done && len(s.wantSpare) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first reservation did not end, or the asks after it were not taken, in 20 s")
		}
	}
	// The asks were taken; a second reservation would start at once.
	time.Sleep(200 * time.Millisecond)
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d reservations, want 1", n)
	}
	if _, m := get(t, url+"/metrics"); !strings.Contains(string(m), "onestone_model_spare_reservations_total 1\n") {
		t.Fatal("/metrics does not count one spare reservation")
	}
}
