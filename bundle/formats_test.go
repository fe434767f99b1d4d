package bundle

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/mmoe"
)

// docsFormats is the format document, kept beside the code by these tests.
const docsFormats = "../docs/formats.md"

// TestFormatsDocVersion: the document states the format version written.
func TestFormatsDocVersion(t *testing.T) {
	doc, err := os.ReadFile(docsFormats)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("Format version: **%d**", FormatVersion); !strings.Contains(string(doc), want) {
		t.Errorf("%s does not say %q", docsFormats, want)
	}
}

// TestFormatsDocTensorExample builds the model of the document's tensor
// example from a spec and checks that every tensor listed there exists with
// the shape given, and that the listing misses only the tensors it says it
// elides (the second task's tower and head).
func TestFormatsDocTensorExample(t *testing.T) {
	doc, err := os.ReadFile(docsFormats)
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	start := strings.Index(text, "\nexperts.0.layers.0.weight [8 10]")
	if start < 0 {
		t.Fatalf("%s: the tensor example is gone", docsFormats)
	}
	block := text[start : start+strings.Index(text[start:], "```")]

	spec, err := features.ParseSpec(strings.NewReader(`fields:
  - {name: user_id, kind: categorical, buckets: 1000}
  - {name: item_id, kind: categorical, buckets: 1000, side: candidate}
  - {name: price, kind: numeric, transform: log1p, side: candidate}
tasks:
  - {name: ctr, kind: binary, label: click}
  - {name: cvr, kind: esmm, label: conv, parent: ctr}
`))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := features.NewTransformer(spec, nil, features.TransformerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := mmoe.Config{Arch: mmoe.ArchMMoE, Experts: 2, ExpertHidden: []int{8, 4}, Tower: []int{3}, EmbeddingDim: 4}
	model, err := mmoe.New(cfg, tr.Layout(), []string{"ctr", "cvr"})
	if err != nil {
		t.Fatal(err)
	}
	shapes := map[string]string{}
	for _, p := range model.Params() {
		shapes[p.Name] = fmt.Sprint(p.Shape)
	}
	for _, e := range model.Embeddings() {
		shapes[e.Name] = fmt.Sprint([]int{e.Rows, e.Dim})
	}

	listed := map[string]bool{}
	for _, m := range regexp.MustCompile(`([a-z_.0-9]+) +(\[[0-9 ]+\])`).FindAllStringSubmatch(block, -1) {
		name, shape := m[1], m[2]
		listed[name] = true
		if got, ok := shapes[name]; !ok {
			t.Errorf("the document lists %s, which the model does not have", name)
		} else if got != shape {
			t.Errorf("the document gives %s the shape %s, the model %s", name, shape, got)
		}
	}
	for name := range shapes {
		elided := strings.HasPrefix(name, "towers.cvr.") || strings.HasPrefix(name, "heads.cvr.")
		if !listed[name] && !elided {
			t.Errorf("the document's example misses %s %s", name, shapes[name])
		}
	}
}
