package stdwork

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/onestone/onestone/serving"
)

func TestRequest(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	body := Request(r, 3, `"top_k":2`)
	var doc struct {
		Context    map[string]any   `json:"context"`
		Candidates []map[string]any `json:"candidates"`
		TopK       int              `json:"top_k"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if len(doc.Context) != Fields/2+Dense || len(doc.Candidates) != 3 || len(doc.Candidates[0]) != Fields/2 || doc.TopK != 2 {
		t.Fatalf("request %s", body)
	}
}

// TestManifestServes: the std manifest and model make a bundle that
// passes serving's checks and scores a std request.
func TestManifestServes(t *testing.T) {
	m, model, err := Manifest(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := serving.FillSampleScores(m, model, nil); err != nil {
		t.Fatal(err)
	}
	b, err := serving.NewBundle(m, model, nil)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := serving.NewScorer(b, serving.ScorerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := sc.ScoreBody(context.Background(), Request(rand.New(rand.NewPCG(1, 1)), 20, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Release()
	if len(resp.Results) != 20 || len(resp.Objectives) != 3 {
		t.Fatalf("%d results, objectives %v", len(resp.Results), resp.Objectives)
	}
}
