package serving

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/internal/s3test"
)

// publishRemote publishes a test bundle of seed to the bucket store s.
func publishRemote(t *testing.T, s *bundle.Bucket, seed uint64) string {
	t.Helper()
	m, model := testManifest(t, seed, 8)
	if err := FillSampleScores(m, model, nil); err != nil {
		t.Fatal(err)
	}
	v, err := bundle.Publish(context.Background(), s, m, model, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func currentVersion(s *Server) string {
	if cur := s.cur.Load(); cur != nil {
		return cur.sc.b.Manifest.Version
	}
	return ""
}

// TestServeFromObjectStore follows a bucket's latest pointer through a
// proxy that can take the store down: new versions are fetched, checked
// and swapped in; a corrupt one, a half-uploaded one and a store that is
// down or hangs leave the served model serving; the server catches up
// when the store is back. On one provider (s3test.One): how each
// provider's SDK fails, retries and times out is tested on each by
// bundle's TestBucketStoreDown and TestBucketStoreFailsMidUpload.
func TestServeFromObjectStore(t *testing.T) { s3test.One(t, testServeFromObjectStore) }

func testServeFromObjectStore(t *testing.T) {
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
	proxy := s3test.NewProxy(t, s3test.Open(t))

	cache := t.TempDir()
	s, err := NewServer(ServerConfig{Models: proxy.Rewrite(u), Cache: cache, Poll: -1, FetchTimeout: 5 * time.Second, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing published yet.
	if _, _, err := s.Reload(ctx); !errors.Is(err, bundle.ErrNoBundle) {
		t.Fatalf("empty store: %v, want ErrNoBundle", err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	req := testRequest(t, rand.New(rand.NewPCG(1, 2)), 4, "")
	score := func(when string) {
		t.Helper()
		if code, body, _ := post(t, ts.Client(), ts.URL+"/v1/score", req); code != http.StatusOK {
			t.Fatalf("%s: score: %d %s", when, code, body)
		}
	}

	v1 := publishRemote(t, pub, 1)
	if v, changed, err := s.Reload(ctx); err != nil || !changed || v != v1 {
		t.Fatalf("after publishing %s: %s %v %v", v1, v, changed, err)
	}
	score("v1")
	v2 := publishRemote(t, pub, 2)
	if v, _, err := s.Reload(ctx); err != nil || v != v2 {
		t.Fatalf("after publishing %s: %s %v", v2, v, err)
	}

	// A version whose weights were changed in the store after publishing:
	// refused by the checksums, v2 keeps serving.
	v3 := publishRemote(t, pub, 3)
	data, err := raw.ReadAll(ctx, v3+"/"+bundle.WeightsFile)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-1] ^= 1
	if err := raw.WriteAll(ctx, v3+"/"+bundle.WeightsFile, data, nil); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := s.Reload(ctx); v != v2 {
		t.Fatalf("with %s corrupt in the store: serving %s, want %s", v3, v, v2)
	}
	if _, err := os.Stat(filepath.Join(cache, v3)); !os.IsNotExist(err) {
		t.Fatalf("the corrupt version reached the cache: %v", err)
	}
	score("corrupt v3 in the store")

	// A half-uploaded version (files, no manifest) is not even seen.
	if err := raw.WriteAll(ctx, "v00000009/"+bundle.WeightsFile, []byte("half"), nil); err != nil {
		t.Fatal(err)
	}
	v4 := publishRemote(t, pub, 4)
	if v, _, err := s.Reload(ctx); err != nil || v != v4 {
		t.Fatalf("after publishing %s: %s %v", v4, v, err)
	}

	// The store goes down, then hangs: v4 keeps serving, the new version
	// is picked up once the store is back.
	for _, fault := range []struct {
		name string
		do   func()
	}{{"down", proxy.Down}, {"stalled", proxy.Stall}} {
		fault.do()
		want := currentVersion(s)
		next := publishRemote(t, pub, 5)
		start := time.Now()
		if v, _, _ := s.Reload(ctx); v != want {
			t.Fatalf("store %s: serving %s, want %s", fault.name, v, want)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Fatalf("store %s: the reload took %v, past FetchTimeout", fault.name, d)
		}
		score("store " + fault.name)
		// The poller backs off after the failure...
		if s.remote.next.IsZero() {
			t.Fatalf("store %s: no backoff after the failure", fault.name)
		}
		proxy.Up()
		// ...and an explicit Reload looks at once.
		if v, _, err := s.Reload(ctx); err != nil || v != next {
			t.Fatalf("store back after %s: serving %s, %v; want %s", fault.name, v, err, next)
		}
	}

	// The cache keeps the served version and one more; older ones go.
	ents, err := os.ReadDir(cache)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) > cachedVersions {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("the cache holds %v, want at most %d versions", names, cachedVersions)
	}
}

// TestServeFromObjectStorePoll: the poller picks a new version up by
// itself within a few poll intervals, on each provider: the serving
// test of a store that runs on all three.
func TestServeFromObjectStorePoll(t *testing.T) { s3test.Each(t, testServeFromObjectStorePoll) }

func testServeFromObjectStorePoll(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	u := s3test.URL(t)
	pub, err := bundle.OpenBucket(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	v1 := publishRemote(t, pub, 1)
	s, err := NewServer(ServerConfig{Models: u, Addr: "127.0.0.1:0", Poll: 50 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	cacheDir := s.models
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor := func(v string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for currentVersion(s) != v {
			if time.Now().After(deadline) {
				t.Fatalf("still serving %q after 30s, want %s", currentVersion(s), v)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor(v1)
	v2 := publishRemote(t, pub, 2)
	waitFor(v2)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cacheDir); !os.IsNotExist(err) {
		t.Fatalf("the temporary cache %s is still there after Run: %v", cacheDir, err)
	}
}
