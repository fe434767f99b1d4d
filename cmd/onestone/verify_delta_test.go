package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/internal/s3test"
	"github.com/onestone/onestone/serving"
)

// The S3 test server starts on first use only.
func TestMain(m *testing.M) { os.Exit(s3test.Main(m)) }

// publishDeltaPair publishes the portable test bundle as a snapshot and a
// delta of it (one dense value and one row changed) to s.
func publishDeltaPair(t *testing.T, s bundle.Store) {
	t.Helper()
	ctx := context.Background()
	src, err := bundle.Resolve("../../serving/testdata/portable")
	if err != nil {
		t.Fatal(err)
	}
	b, err := serving.LoadBundle(src)
	if err != nil {
		t.Fatal(err)
	}
	snap := *b.Manifest
	if _, err := bundle.Publish(ctx, s, &snap, b.Model, nil, 0); err != nil {
		t.Fatal(err)
	}
	model, err := b.Model.Clone()
	if err != nil {
		t.Fatal(err)
	}
	model.Params()[0].Data[0] += 0.25
	e := model.Embeddings()[0]
	for k := range e.Dim {
		e.Data[e.Dim+k] += 0.5
	}
	m := *b.Manifest
	m.Sample = append([]bundle.SampleEvent(nil), m.Sample...)
	for i := range m.Sample {
		m.Sample[i].Scores = nil
	}
	if err := serving.FillSampleScores(&m, model, nil); err != nil {
		t.Fatal(err)
	}
	rows := make([][]int32, len(model.Embeddings()))
	rows[0] = []int32{1}
	if _, err := bundle.PublishDelta(ctx, s, &m, model, nil, &snap, rows, bundle.CodecNone, 0); err != nil {
		t.Fatal(err)
	}
}

// verify loads deltas through their chain, locally and from an object
// store (each provider's URL), and refuses a delta whose snapshot is
// corrupt or gone.
func TestVerifyDeltas(t *testing.T) {
	root := t.TempDir()
	publishDeltaPair(t, bundle.NewDir(root))
	out, errOut, code := onestone(t, "verify", root)
	if code != 0 || !strings.Contains(out, "delta of v00000001 (snapshot v00000001)") {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	s3test.Each(t, testVerifyDeltasObjectStore)

	p := filepath.Join(root, "v00000001", bundle.WeightsFile)
	data, _ := os.ReadFile(p)
	data[len(data)-3] ^= 1
	os.WriteFile(p, data, 0o644)
	out, errOut, code = onestone(t, "verify", "--json", root)
	if code != 1 || !strings.Contains(errOut, "2 of 2 versions refused") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var vs []verdict
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(vs) != 2 || vs[1].OK || !strings.Contains(vs[1].Error, "broken delta chain") {
		t.Fatalf("verdicts %+v", vs)
	}
}

func testVerifyDeltasObjectStore(t *testing.T) {
	ctx := context.Background()
	u := s3test.URL(t)
	scheme, _, _ := strings.Cut(u, "://")
	pub, err := bundle.OpenBucket(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	publishDeltaPair(t, pub)
	if out, errOut, code := onestone(t, "verify", u); code != 0 || !strings.Contains(out, "delta of v00000001") || !strings.Contains(out, scheme+"://") {
		t.Fatalf("verify %s: exit %d: %s%s", u, code, out, errOut)
	}
	raw, err := s3test.OpenURL(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := raw.Delete(ctx, "v00000001/"+bundle.WeightsFile); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := onestone(t, "verify", u); code != 1 || !strings.Contains(errOut, "2 of 2 versions refused") || !strings.Contains(out, "broken delta chain") {
		t.Fatalf("verify %s with the snapshot's weights gone: exit %d: %s%s", u, code, out, errOut)
	}
}
