package bundle

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"gocloud.dev/blob"

	"github.com/onestone/onestone/internal/s3test"
)

// The Bucket tests run against a real server of each provider (S3, GCS,
// Azure: internal/s3test.Each).
func TestMain(m *testing.M) { os.Exit(s3test.Main(m)) }

// testBucket opens a Bucket on a fresh prefix of the test server, and the
// raw gocloud bucket on the same prefix for looking behind its back.
func testBucket(t *testing.T) (*Bucket, *blob.Bucket) {
	t.Helper()
	u := s3test.URL(t)
	b, err := OpenBucket(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	raw, err := s3test.OpenURL(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return b, raw
}

func TestOpenStore(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		loc  string
		want string // "dir:<path>", or an error substring
	}{
		{"models/live", "dir:models/live"},
		{"/abs/models", "dir:/abs/models"},
		{"file:///abs/models", "dir:/abs/models"},
		{"file://host/x", "want file:///absolute/dir"},
		{"ftp://b/p", "unsupported scheme"},
		{"s3://user:secret@b/p", "credentials do not go in the URL"},
		{"gs://user:secret@b/p", "credentials do not go in the URL"},
		{"azblob://account:secret@c/p", "credentials do not go in the URL"},
		{"s3:///p", "names no bucket"},
		{"azblob:///p", "names no bucket"},
		{"s3://b/p?prefix=q/", "both name a prefix"},
		{"gs://b/p?endpoint=ftp://secret@h", "endpoint= wants"},
	} {
		s, err := OpenStore(ctx, c.loc)
		if d, ok := strings.CutPrefix(c.want, "dir:"); ok {
			if err != nil {
				t.Errorf("%s: %v", c.loc, err)
			} else if dir, ok := s.(*Dir); !ok || dir.Root() != d {
				t.Errorf("%s: %v, want the directory %s", c.loc, s, d)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.loc, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: the error shows the credentials: %v", c.loc, err)
		}
	}
}

// TestBucketURLForms: the prefix may be the URL's path or prefix=, and
// both reach the same objects.
func TestBucketURLForms(t *testing.T) { s3test.Each(t, testBucketURLForms) }

func testBucketURLForms(t *testing.T) {
	ctx := context.Background()
	st := s3test.Open(t)
	u := s3test.URL(t) // cleans the prefix up
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	prefix := strings.TrimSuffix(pu.Query().Get("prefix"), "/")
	a, err := OpenBucket(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	// The path form: s3://bucket/prefix?endpoint=...
	pathURL := strings.Replace(st.URL(""), "://"+st.Bucket+"?", "://"+st.Bucket+"/"+prefix+"?", 1)
	b, err := OpenBucket(ctx, pathURL)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.String() != b.String() || !strings.HasSuffix(a.String(), prefix+"/") || strings.Contains(a.String(), "?") {
		t.Fatalf("names %q and %q, want both SCHEME://%s/%s/", a, b, st.Bucket, prefix)
	}
	v, err := a.NewVersion(ctx, []File{{Name: "w", Write: content("x")}, {Name: ManifestFile, Write: content("{}")}})
	if err != nil {
		t.Fatal(err)
	}
	if vs, err := b.Versions(ctx); err != nil || len(vs) != 1 || vs[0] != v {
		t.Fatalf("through the path form: %v %v, want [%s]", vs, err, v)
	}
}

// TestBucketPublishAndFetch: a model published to the bucket comes back
// through Fetch into a local store, where it reads as any local bundle.
func TestBucketPublishAndFetch(t *testing.T) { s3test.Each(t, testBucketPublishAndFetch) }

func testBucketPublishAndFetch(t *testing.T) {
	ctx := context.Background()
	b, raw := testBucket(t)
	m, model := testModel(t, 1)
	v, err := Publish(ctx, b, m, model, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if v != "v00000001" || m.Version != v {
		t.Fatalf("published %q (manifest %q), want v00000001", v, m.Version)
	}
	if got, err := b.Latest(ctx); err != nil || got != v {
		t.Fatalf("Latest = %q, %v; want %s", got, err, v)
	}
	p, err := b.ReadPointer(ctx)
	if err != nil || p.Publisher != b.Publisher() || p.Time.IsZero() {
		t.Fatalf("pointer %+v, %v", p, err)
	}
	// The objects of the version: the claim, the files, the manifest.
	var keys []string
	it := raw.List(nil)
	for {
		o, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, o.Key)
	}
	want := []string{"latest", v + "/" + claimFile, v + "/" + ManifestFile, v + "/" + ManifestSumFile, v + "/" + WeightsFile}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Fatalf("objects %v, want %v", keys, want)
	}

	if sm, err := ReadStoreManifest(ctx, b, v, Limits{}); err != nil || sm.Version != v || sm.Step != m.Step || sm.Files[WeightsFile] != m.Files[WeightsFile] {
		t.Fatalf("ReadStoreManifest: %+v, %v", sm, err)
	}
	if b.Path(v) != b.String()+v {
		t.Fatalf("Path(%s) = %s", v, b.Path(v))
	}

	local := NewDir(t.TempDir())
	dir, err := Fetch(ctx, b, v, local, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if dir != local.Path(v) {
		t.Fatalf("fetched into %s, want %s", dir, local.Path(v))
	}
	got, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mustJSON(t, got.Files), mustJSON(t, m.Files)) || got.Step != m.Step {
		t.Fatalf("fetched manifest %+v, want %+v", got, m)
	}
	if err := Verify(dir, got, WeightsFile); err != nil {
		t.Fatal(err)
	}
	// A second fetch finds it there.
	if d2, err := Fetch(ctx, b, v, local, Limits{}); err != nil || d2 != dir {
		t.Fatalf("second fetch: %s, %v", d2, err)
	}
}

// TestBucketFetchRefusesCorrupt: a file changed in the store, one missing,
// and a manifest changed without its checksum are refused, and nothing
// appears in the local store.
func TestBucketFetchRefusesCorrupt(t *testing.T) { s3test.Each(t, testBucketFetchRefusesCorrupt) }

func testBucketFetchRefusesCorrupt(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		spoil func(raw *blob.Bucket, v string) error
	}{
		{"weights changed", func(raw *blob.Bucket, v string) error {
			data, err := raw.ReadAll(ctx, v+"/"+WeightsFile)
			if err != nil {
				return err
			}
			data[len(data)/2] ^= 1
			return raw.WriteAll(ctx, v+"/"+WeightsFile, data, nil)
		}},
		{"weights truncated", func(raw *blob.Bucket, v string) error {
			data, err := raw.ReadAll(ctx, v+"/"+WeightsFile)
			if err != nil {
				return err
			}
			return raw.WriteAll(ctx, v+"/"+WeightsFile, data[:len(data)-1], nil)
		}},
		{"weights missing", func(raw *blob.Bucket, v string) error {
			return raw.Delete(ctx, v+"/"+WeightsFile)
		}},
		{"manifest changed", func(raw *blob.Bucket, v string) error {
			data, err := raw.ReadAll(ctx, v+"/"+ManifestFile)
			if err != nil {
				return err
			}
			return raw.WriteAll(ctx, v+"/"+ManifestFile, bytes.Replace(data, []byte(`"step": 7`), []byte(`"step": 8`), 1), nil)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, raw := testBucket(t)
			m, model := testModel(t, 1)
			v, err := Write(ctx, b, m, model, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.spoil(raw, v); err != nil {
				t.Fatal(err)
			}
			local := NewDir(t.TempDir())
			_, err = Fetch(ctx, b, v, local, Limits{})
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Fetch: %v, want ErrCorrupt", err)
			}
			if ents, _ := os.ReadDir(local.Root()); len(ents) != 0 {
				t.Fatalf("the local store holds %v after a refused fetch", ents)
			}
		})
	}
}

// TestBucketFetchLimit: a manifest over the budget is refused before it
// is read whole.
func TestBucketFetchLimit(t *testing.T) { s3test.Each(t, testBucketFetchLimit) }

func testBucketFetchLimit(t *testing.T) {
	ctx := context.Background()
	b, _ := testBucket(t)
	m, model := testModel(t, 1)
	v, err := Write(ctx, b, m, model, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Fetch(ctx, b, v, NewDir(t.TempDir()), Limits{MaxBytes: 100}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Fetch with a 100-byte budget: %v, want ErrTooLarge", err)
	}
}

// TestBucketHalfUploaded: a publisher that fails (or dies) half-way leaves
// a version that is never listed nor resolved, and the next publish takes
// the next number rather than reusing or duplicating it.
func TestBucketHalfUploaded(t *testing.T) { s3test.Each(t, testBucketHalfUploaded) }

func testBucketHalfUploaded(t *testing.T) {
	ctx := context.Background()
	b, raw := testBucket(t)
	if _, err := b.NewVersion(ctx, []File{{Name: "a", Write: content("a")}, {Name: ManifestFile, Write: content("{}")}}); err != nil {
		t.Fatal(err)
	}
	_, err := b.NewVersion(ctx, []File{
		{Name: "a", Write: content("a")},
		{Name: "b", Write: halfThenFail},
		{Name: ManifestFile, Write: content("{}")},
	})
	if err == nil || !strings.Contains(err.Error(), "v00000002") {
		t.Fatalf("failing publish: %v", err)
	}
	if ok, _ := raw.Exists(ctx, "v00000002/b"); ok {
		t.Error("the abandoned upload of b left an object")
	}
	if ok, _ := raw.Exists(ctx, "v00000002/"+ManifestFile); ok {
		t.Error("the failed version has a manifest")
	}
	if vs := versions(t, b); strings.Join(vs, " ") != "v00000001" {
		t.Fatalf("Versions = %v, want only v00000001", vs)
	}
	if v, err := Newest(ctx, b); err != nil || v != "v00000001" {
		t.Fatalf("Newest = %s, %v", v, err)
	}
	if err := b.SetLatest(ctx, "v00000002"); err == nil {
		t.Fatal("SetLatest accepted the incomplete version")
	}
	// A crashed publisher's files without a manifest: the same.
	if err := raw.WriteAll(ctx, "v00000003/"+WeightsFile, []byte("w"), nil); err != nil {
		t.Fatal(err)
	}
	v, err := b.NewVersion(ctx, []File{{Name: "a", Write: content("a")}, {Name: ManifestFile, Write: content("{}")}})
	if err != nil || v != "v00000004" {
		t.Fatalf("next publish: %s, %v; want v00000004", v, err)
	}
	if vs := versions(t, b); strings.Join(vs, " ") != "v00000001 v00000004" {
		t.Fatalf("Versions = %v", vs)
	}
}

// TestBucketManifestLast: the manifest is uploaded after every other file
// whatever its place in the list, so that a reader never sees a complete
// version missing a file.
func TestBucketManifestLast(t *testing.T) { s3test.Each(t, testBucketManifestLast) }

func testBucketManifestLast(t *testing.T) {
	ctx := context.Background()
	b, raw := testBucket(t)
	seen := make(chan bool, 1)
	_, err := b.NewVersion(ctx, []File{
		{Name: ManifestFile, Write: content("{}")},
		{Name: "after", Write: func(w io.Writer) error {
			ok, err := raw.Exists(ctx, "v00000001/"+ManifestFile)
			seen <- ok
			if err != nil {
				return err
			}
			_, err = w.Write([]byte("x"))
			return err
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if <-seen {
		t.Fatal("the manifest was in the store before the file after it")
	}
}

// TestBucketConcurrentPublishers: publishers racing for version numbers
// each get a distinct one, and every version is complete.
func TestBucketConcurrentPublishers(t *testing.T) { s3test.Each(t, testBucketConcurrentPublishers) }

func testBucketConcurrentPublishers(t *testing.T) {
	ctx := context.Background()
	u := s3test.URL(t)
	const n = 4
	got := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			b, err := OpenBucket(ctx, u)
			if err != nil {
				t.Error(err)
				return
			}
			defer b.Close()
			v, err := b.NewVersion(ctx, []File{{Name: "a", Write: content(b.Publisher())}, {Name: ManifestFile, Write: content("{}")}})
			if err != nil {
				t.Error(err)
			}
			got[i] = v
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, v := range got {
		if v == "" || seen[v] {
			t.Fatalf("versions %v: want %d distinct ones", got, n)
		}
		seen[v] = true
	}
	b := testBucketAt(t, u)
	if vs := versions(t, b); len(vs) != n {
		t.Fatalf("Versions = %v, want %d", vs, n)
	}
}

func testBucketAt(t *testing.T, u string) *Bucket {
	t.Helper()
	b, err := OpenBucket(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// TestBucketPointerRace: two publishers on one prefix. The second to
// publish after the first gets ErrConflict, and the pointer keeps the
// other's version; racing SetLatest calls on one old pointer: exactly one
// wins.
func TestBucketPointerRace(t *testing.T) { s3test.Each(t, testBucketPointerRace) }

func testBucketPointerRace(t *testing.T) {
	ctx := context.Background()
	u := s3test.URL(t)
	a := testBucketAt(t, u)
	b := testBucketAt(t, u)
	publish := func(s *Bucket) (string, error) {
		m, model := testModel(t, 1)
		return Publish(ctx, s, m, model, nil, 0)
	}
	if _, err := publish(a); err != nil {
		t.Fatal(err)
	}
	vb, err := publish(b) // b reads a's pointer, v1 < v2: fine
	if err != nil {
		t.Fatal(err)
	}
	// a last wrote v1; the pointer moved since: a must not overwrite it.
	va, err := publish(a)
	if !errors.Is(err, ErrConflict) || va != "v00000003" {
		t.Fatalf("a's publish after b's: %s, %v; want v00000003 and ErrConflict", va, err)
	}
	if l, _ := a.Latest(ctx); l != vb {
		t.Fatalf("latest %s after the refused publish, want b's %s", l, vb)
	}
	// A fresh publisher cannot move the pointer back.
	c := testBucketAt(t, u)
	if err := c.SetLatest(ctx, "v00000001"); !errors.Is(err, ErrConflict) {
		t.Fatalf("setting latest back to v00000001: %v, want ErrConflict", err)
	}

	// Publishers that began their versions on the same pointer race to
	// set it: exactly one wins each round, the others get ErrConflict.
	for round := range 5 {
		const n = 4
		vs := make([]string, n)
		ss := make([]*Bucket, n)
		for i := range n {
			ss[i] = testBucketAt(t, u)
			v, err := ss[i].NewVersion(ctx, []File{{Name: ManifestFile, Write: content("{}")}})
			if err != nil {
				t.Fatal(err)
			}
			vs[i] = v
		}
		var wg sync.WaitGroup
		errs := make([]error, n)
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				errs[i] = ss[i].SetLatest(ctx, vs[i])
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: publishers %d and %d both won", round, winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, ErrConflict):
				t.Fatalf("round %d: publisher %d: %v, want nil or ErrConflict", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no publisher won: %v", round, errs)
		}
		if l, err := ss[0].Latest(ctx); err != nil || l != vs[winner] {
			t.Fatalf("round %d: latest %s, %v; want the winner's %s", round, l, err, vs[winner])
		}
		// A loser stays fenced off.
		loser := (winner + 1) % n
		if err := ss[loser].SetLatest(ctx, vs[loser]); !errors.Is(err, ErrConflict) {
			t.Fatalf("round %d: the loser's second try: %v, want ErrConflict", round, err)
		}
	}
}

// TestBucketPrune: pruning keeps the newest versions and the one latest
// names, removes stale incomplete versions below the newest complete one,
// and leaves a fresh incomplete one (a publisher may be writing it).
func TestBucketPrune(t *testing.T) { s3test.Each(t, testBucketPrune) }

func testBucketPrune(t *testing.T) {
	ctx := context.Background()
	b, raw := testBucket(t)
	pub := func() string {
		v, err := b.NewVersion(ctx, []File{{Name: "a", Write: content("a")}, {Name: ManifestFile, Write: content("{}")}})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	v1 := pub()
	if err := b.SetLatest(ctx, v1); err != nil {
		t.Fatal(err)
	}
	// v2: incomplete, freshly claimed (a publisher may be writing it).
	if err := raw.WriteAll(ctx, "v00000002/"+claimFile, []byte("{}"), nil); err != nil {
		t.Fatal(err)
	}
	// v3: incomplete without a claim (a publisher that died before
	// claims existed, or a hand-made mess): stale.
	if err := raw.WriteAll(ctx, "v00000003/"+WeightsFile, []byte("w"), nil); err != nil {
		t.Fatal(err)
	}
	pub()
	pub()
	// v6: incomplete above the newest complete version.
	if err := raw.WriteAll(ctx, "v00000006/"+WeightsFile, []byte("w"), nil); err != nil {
		t.Fatal(err)
	}
	if err := Prune(ctx, b, 1); err != nil {
		t.Fatal(err)
	}
	all, complete, err := b.scan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// v1 kept (latest), v2 kept (fresh), v3 removed (stale), v4 pruned,
	// v5 kept (newest), v6 kept (above the newest).
	if got := strings.Join(all, " "); got != "v00000001 v00000002 v00000005 v00000006" {
		t.Fatalf("after Prune(1): %s (complete %v), want v00000001 v00000002 v00000005 v00000006", got, complete)
	}
	// Removing a version removes all its objects; removing it again is no error.
	if err := b.Remove(ctx, "v00000005"); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(ctx, "v00000005"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := raw.Exists(ctx, "v00000005/a"); ok {
		t.Fatal("v00000005/a survived Remove")
	}
}

// TestBucketStoreDown: with the store unreachable every operation fails
// within its context, and Fetch leaves nothing behind.
func TestBucketStoreDown(t *testing.T) {
	t.Parallel()
	s3test.Each(t, testBucketStoreDown)
}

func testBucketStoreDown(t *testing.T) {
	// The providers in parallel: the test waits on the SDKs' retries and
	// timeouts (about a minute on Azure), not on the CPU.
	t.Parallel()
	st := s3test.Open(t)
	dead := st
	dead.Endpoint = "http://127.0.0.1:1"
	// Each call may retry: the AWS SDK and objstore's GCS client 3 times
	// with short backoffs, the Azure SDK 4 times with delays from 0.8 s
	// doubling (about 6 s a call).
	budget := 20 * time.Second
	if st.Provider == "azure" {
		budget = time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	b, err := OpenBucket(ctx, dead.URL("p/"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Latest(ctx); err == nil {
		t.Error("Latest on a dead store: no error")
	}
	if _, err := b.Versions(ctx); err == nil {
		t.Error("Versions on a dead store: no error")
	}
	m, model := testModel(t, 1)
	if _, err := Publish(ctx, b, m, model, nil, 2); err == nil {
		t.Error("Publish on a dead store: no error")
	}
	local := NewDir(t.TempDir())
	if _, err := Fetch(ctx, b, "v00000001", local, Limits{}); err == nil {
		t.Error("Fetch from a dead store: no error")
	}
	if ents, _ := os.ReadDir(local.Root()); len(ents) != 0 {
		t.Errorf("the local store holds %v", ents)
	}
	if ctx.Err() != nil {
		t.Errorf("the calls took the whole %v context: the SDK's retries are not bounded", budget)
	}
}

// TestBucketStoreFailsMidUpload: the store goes down, or hangs, while a
// version's weights are being uploaded: the publish fails within its
// context, the pointer keeps the version before, no complete version
// appears, and once the store is back the next publish takes a new
// number.
func TestBucketStoreFailsMidUpload(t *testing.T) {
	t.Parallel()
	s3test.Each(t, testBucketStoreFailsMidUpload)
}

func testBucketStoreFailsMidUpload(t *testing.T) {
	t.Parallel() // as testBucketStoreDown: bound by the stores' timeouts
	for _, fault := range []string{"down", "stalled"} {
		t.Run(fault, func(t *testing.T) {
			ctx := context.Background()
			u := s3test.URL(t)
			proxy := s3test.NewProxy(t, s3test.Open(t))
			b := testBucketAt(t, proxy.Rewrite(u))
			direct := testBucketAt(t, u)
			m, model := testModel(t, 1)
			v1, err := Publish(ctx, b, m, model, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			// 12 MiB of weights, with the fault after the first 4 MiB
			// (past the SDK's first multipart part).
			chunk := bytes.Repeat([]byte{7}, 1<<20)
			big := func(w io.Writer) error {
				for i := range 12 {
					if i == 4 {
						if fault == "down" {
							proxy.Down()
						} else {
							proxy.Stall()
						}
					}
					if _, err := w.Write(chunk); err != nil {
						return err
					}
				}
				return nil
			}
			pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			start := time.Now()
			v, err := b.NewVersion(pctx, []File{{Name: WeightsFile, Write: big}, {Name: ManifestFile, Write: content("{}")}})
			if err == nil {
				t.Fatalf("the publish with the store %s succeeded: %s", fault, v)
			}
			if d := time.Since(start); d > 40*time.Second {
				t.Fatalf("the failing publish took %v", d)
			}
			proxy.Up()
			if vs := versions(t, direct); strings.Join(vs, " ") != v1 {
				t.Fatalf("complete versions %v after the failed upload, want [%s]", vs, v1)
			}
			if l, err := direct.Latest(ctx); err != nil || l != v1 {
				t.Fatalf("latest %s, %v; want %s", l, err, v1)
			}
			v3, err := Publish(ctx, b, m, model, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			if v3 != "v00000003" {
				t.Fatalf("the publish after the failed one took %s, want v00000003 (v00000002 is the failed one's)", v3)
			}
		})
	}
}

// TestBucketKeepsCredentialsOut: the credentials the provider's chain
// reads from the environment (the test servers' throwaway ones) appear in
// no object a publish writes (claim, files, manifest, pointer), nor in
// the Bucket's name or a version's path.
func TestBucketKeepsCredentialsOut(t *testing.T) { s3test.Each(t, testBucketKeepsCredentialsOut) }

func testBucketKeepsCredentialsOut(t *testing.T) {
	ctx := context.Background()
	b, raw := testBucket(t)
	var secrets []string
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AZURE_STORAGE_KEY"} {
		if v := os.Getenv(k); len(v) >= 8 {
			secrets = append(secrets, v)
		}
	}
	if len(secrets) == 0 {
		t.Skip("no credentials in the environment (the GCS emulator takes none)")
	}
	m, model := testModel(t, 1)
	v, err := Publish(ctx, b, m, model, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	texts := map[string]string{"name": b.String(), "path": b.Path(v)}
	it := raw.List(nil)
	for {
		o, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := raw.ReadAll(ctx, o.Key)
		if err != nil {
			t.Fatal(err)
		}
		texts[o.Key] = string(data)
	}
	if len(texts) < 5 {
		t.Fatalf("read %d texts, want the name, the path and at least the claim, manifest and pointer", len(texts))
	}
	for where, text := range texts {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s holds a credential", where)
			}
		}
	}
}
