package serving

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onestone/onestone/bundle"
)

// Faults a bundle can have, each applied to a published version's
// directory.

// truncateWeights cuts the weights file in half.
func truncateWeights(t *testing.T, dir string) {
	t.Helper()
	p := filepath.Join(dir, bundle.WeightsFile)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
}

// hugeTable makes the manifest's spec ask for 2,000,000,000 user_id
// buckets (checksums resealed: a writer's bug, not a corruption).
func hugeTable(t *testing.T, dir string) {
	t.Helper()
	p := filepath.Join(dir, bundle.ManifestFile)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	huge := strings.Replace(string(data), `user_id, kind: categorical, buckets: 1000}`, `user_id, kind: categorical, buckets: 2000000000}`, 1)
	if huge == string(data) {
		t.Fatal("no user_id buckets in the manifest")
	}
	resealManifest(t, dir, []byte(huge))
}

// serve runs s on a loopback listener until the test ends and returns its
// base URL.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return "http://" + ln.Addr().String()
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// servedVersion is what /readyz names, or "" when nothing is served.
func servedVersion(t *testing.T, url string) string {
	t.Helper()
	code, b := get(t, url+"/readyz")
	if code != 200 {
		return ""
	}
	return strings.TrimSpace(strings.TrimPrefix(string(b), "ready "))
}

// TestServerStartsOnNewestValid: at start-up the newest versions are bad
// (truncated weights, a table of 2,000,000,000 rows); the server serves
// the newest valid one, and /v1/model and /metrics say which versions it
// refused and why.
func TestServerStartsOnNewestValid(t *testing.T) {
	root := t.TempDir()
	writeTestBundle(t, root, 1)
	writeTestBundle(t, root, 2)
	truncateWeights(t, writeTestBundle(t, root, 3))
	hugeTable(t, writeTestBundle(t, root, 4))
	s, err := NewServer(ServerConfig{Models: root, Poll: -1, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, s)
	waitUntil(t, "a model served", func() bool { return servedVersion(t, url) != "" })
	if v := servedVersion(t, url); v != "v00000002" {
		t.Fatalf("serving %s, want v00000002", v)
	}
	code, b := get(t, url+"/v1/model")
	var info ModelInfo
	if code != 200 || json.Unmarshal(b, &info) != nil {
		t.Fatalf("/v1/model: %d %s", code, b)
	}
	if info.Version != "v00000002" || info.Behind != 2 || len(info.Refused) != 2 {
		t.Fatalf("/v1/model: version %s, %d behind, refused %+v", info.Version, info.Behind, info.Refused)
	}
	for i, want := range []struct{ version, reason, err string }{
		{"v00000004", "too_large", "the budget is"},
		{"v00000003", "checksum", "truncated or still being copied"},
	} {
		r := info.Refused[i]
		if r.Version != want.version || r.Reason != want.reason || !strings.Contains(r.Error, want.err) || r.Attempts != 1 {
			t.Errorf("refused[%d] = %+v, want %s %s %q", i, r, want.version, want.reason, want.err)
		}
	}
	code, b = get(t, url+"/metrics")
	for _, want := range []string{
		`onestone_model_refused{reason="checksum",version="v00000003"} 1`,
		`onestone_model_refused{reason="too_large",version="v00000004"} 1`,
		`onestone_model_refused_total 2`,
		`onestone_model_versions_behind 2`,
		`onestone_model_reloads_total 1`,
	} {
		if code != 200 || !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// Removing the bad versions by hand clears the state; the served
	// version is then the newest.
	os.RemoveAll(filepath.Join(root, "v00000004"))
	os.RemoveAll(filepath.Join(root, "v00000003"))
	if v, changed, err := s.Reload(context.Background()); v != "v00000002" || changed || err != nil {
		t.Fatalf("reload after the removal: %s %v %v", v, changed, err)
	}
	if code, b = get(t, url+"/v1/model"); json.Unmarshal(b, &info) != nil || info.Behind != 0 || len(info.Refused) != 0 {
		t.Errorf("after the removal: %d %s", code, b)
	}
	mfs, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "onestone_model_versions_behind":
			if got := mf.GetMetric()[0].GetGauge().GetValue(); got != 0 {
				t.Errorf("versions behind %v", got)
			}
		case "onestone_model_refused":
			t.Errorf("refused versions after the removal: %v", mf.GetMetric())
		}
	}
}

// TestServerNoValidBundle: with every version bad, the server still
// starts, answers 503, and /v1/model lists the refusals.
func TestServerNoValidBundle(t *testing.T) {
	root := t.TempDir()
	truncateWeights(t, writeTestBundle(t, root, 1))
	s, err := NewServer(ServerConfig{Models: root, Poll: -1, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, s)
	waitUntil(t, "the refusal", func() bool { return testutilCounter(s, "onestone_model_refused_total") == 1 })
	code, b := get(t, url+"/v1/model")
	var doc struct {
		Error   string
		Refused []RefusedVersion
	}
	if code != 503 || json.Unmarshal(b, &doc) != nil || len(doc.Refused) != 1 || doc.Refused[0].Reason != "checksum" {
		t.Fatalf("/v1/model: %d %s", code, b)
	}
	if code, _ := get(t, url+"/readyz"); code != 503 {
		t.Fatalf("readyz %d", code)
	}
}

// TestServerRetriesChangedVersion: a version copied in place (not renamed
// into the root) is refused while half-copied, not tried again while its
// files do not change, and served once the copy completes.
func TestServerRetriesChangedVersion(t *testing.T) {
	root := t.TempDir()
	writeTestBundle(t, root, 1)
	src := writeTestBundle(t, t.TempDir(), 2)
	s, err := NewServer(ServerConfig{Models: root, Poll: 5 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, s)
	waitUntil(t, "v1 served", func() bool { return servedVersion(t, url) == "v00000001" })

	// The copy, stopped half-way through the weights. It is staged under
	// a name that is not a version and renamed into place, so the server
	// sees one state of it: written file by file in place, a poll could
	// catch it between files too, and each state it sees is a change.
	dst := filepath.Join(root, "v00000002")
	stage := filepath.Join(root, ".staging")
	if err := os.Mkdir(stage, 0o755); err != nil {
		t.Fatal(err)
	}
	weights, err := os.ReadFile(filepath.Join(src, bundle.WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{bundle.WeightsFile, bundle.ManifestSumFile, bundle.ManifestFile} {
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if name == bundle.WeightsFile {
			data = data[:len(data)/2]
		}
		if err := os.WriteFile(filepath.Join(stage, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(stage, dst); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the half copy refused", func() bool { return testutilCounter(s, "onestone_model_refused_total") == 1 })
	time.Sleep(100 * time.Millisecond) // 20 polls
	if n := testutilCounter(s, "onestone_model_refused_total"); n != 1 {
		t.Fatalf("refused %v times while unchanged, want once", n)
	}
	if v := servedVersion(t, url); v != "v00000001" {
		t.Fatalf("serving %s during the copy", v)
	}
	// The rest of the weights arrive.
	f, err := os.OpenFile(filepath.Join(dst, bundle.WeightsFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(weights[len(weights)/2:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "v2 served", func() bool { return servedVersion(t, url) == "v00000002" })
	_, b := get(t, url+"/v1/model")
	var info ModelInfo
	if json.Unmarshal(b, &info) != nil || len(info.Refused) != 0 || info.Behind != 0 {
		t.Fatalf("/v1/model after the copy: %s", b)
	}
}

// TestServerSurvivesPanic: a panic while loading a bundle is a refusal;
// the server keeps serving.
func TestServerSurvivesPanic(t *testing.T) {
	root := t.TempDir()
	writeTestBundle(t, root, 1)
	s, _ := newTestServer(t, root, ServerConfig{})
	bad := writeTestBundle(t, root, 2)
	loadHook = func(dir string) {
		if dir == bad {
			var m map[string]int
			m["boom"]++ // a nil map: a runtime panic
		}
	}
	defer func() { loadHook = nil }()
	v, changed, err := s.Reload(context.Background())
	if v != "v00000001" || changed || !errors.Is(err, ErrBundle) || !strings.Contains(err.Error(), "assignment to entry in nil map") {
		t.Fatalf("reload: %s %v %v", v, changed, err)
	}
	if st := s.state.Load(); len(st.refused) != 1 || st.refused[0].Reason != "panic" {
		t.Fatalf("refused %+v", st.refused)
	}
}
