package mmoe

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func testModel(t testing.TB, cfg Config, heads ...string) *Model {
	t.Helper()
	if len(heads) == 0 {
		heads = []string{"ctr", "cvr"}
	}
	m, err := New(chained(cfg, heads), smallLayout(), heads)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func saved(t testing.TB, m *Model) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := m.SaveSafetensors(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func logitsOf(t testing.TB, m *Model, seed uint64) [][]float32 {
	t.Helper()
	b := randomBatch(smallLayout(), 9, rand.New(rand.NewPCG(seed, 1)))
	ws := m.NewWorkspace(b.Rows)
	if err := m.Forward(ws, b); err != nil {
		t.Fatal(err)
	}
	var out [][]float32
	for _, l := range ws.Logits {
		out = append(out, slices.Clone(l))
	}
	return out
}

func bitsEqual(a, b [][]float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for j := range a[i] {
			if math.Float32bits(a[i][j]) != math.Float32bits(b[i][j]) {
				return false
			}
		}
	}
	return true
}

func TestSafetensorsRoundTrip(t *testing.T) {
	for _, arch := range Archs {
		t.Run(arch, func(t *testing.T) {
			cfg := withExperts(Config{Arch: arch, EmbeddingDim: 4, ExpertHidden: []int{6, 5}, Tower: []int{3}, Seed: 1})
			a := testModel(t, cfg)
			cfg.Seed = 2
			b := testModel(t, cfg)
			if bitsEqual(logitsOf(t, a, 5), logitsOf(t, b, 5)) {
				t.Fatal("models with different seeds give the same logits")
			}
			if err := b.LoadSafetensors(bytes.NewReader(saved(t, a))); err != nil {
				t.Fatal(err)
			}
			if !bitsEqual(logitsOf(t, a, 5), logitsOf(t, b, 5)) {
				t.Fatal("logits differ after save and load")
			}
			if !bytes.Equal(saved(t, a), saved(t, b)) {
				t.Fatal("re-saved file differs")
			}
			// The same without an initialisation to overwrite.
			c, err := NewFromSafetensors(chained(cfg, []string{"ctr", "cvr"}), smallLayout(), []string{"ctr", "cvr"}, bytes.NewReader(saved(t, a)))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(saved(t, a), saved(t, c)) {
				t.Fatal("NewFromSafetensors: re-saved file differs")
			}
			file := saved(t, a)
			if _, err := NewFromSafetensors(chained(cfg, []string{"ctr", "cvr"}), smallLayout(), []string{"ctr", "cvr"}, bytes.NewReader(file[:len(file)-3])); !errors.Is(err, ErrFormat) {
				t.Fatalf("NewFromSafetensors of a truncated file: %v, want ErrFormat", err)
			}
			if _, err := NewFromSafetensors(cfg, smallLayout(), []string{"ctr"}, bytes.NewReader(file)); err == nil {
				t.Fatal("NewFromSafetensors took a file with a tensor the model lacks")
			}
			// CopyFrom: the same without the file.
			cfg.Seed = 3
			d := testModel(t, cfg)
			if err := d.CopyFrom(a); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(saved(t, a), saved(t, d)) {
				t.Fatal("CopyFrom: re-saved file differs")
			}
			wide := cfg
			wide.Tower = []int{4}
			one := testModel(t, wide)
			before := saved(t, one)
			if err := one.CopyFrom(a); err == nil {
				t.Fatal("CopyFrom took a model with other tower shapes")
			}
			if !bytes.Equal(before, saved(t, one)) {
				t.Fatal("a refused CopyFrom changed the model")
			}
		})
	}
}

// TestSafetensorsHeader parses the file without the package's reader.
func TestSafetensorsHeader(t *testing.T) {
	m := testModel(t, Config{Arch: ArchPLE, Experts: 2, EmbeddingDim: 3, ExpertHidden: []int{4, 3}, Seed: 3})
	f := saved(t, m)
	n := binary.LittleEndian.Uint64(f[:8])
	if n%8 != 0 || 8+n > uint64(len(f)) {
		t.Fatalf("header length %d (file %d bytes)", n, len(f))
	}
	var h map[string]json.RawMessage
	if err := json.Unmarshal(f[8:8+n], &h); err != nil {
		t.Fatalf("header is not valid JSON: %v", err)
	}
	data := f[8+n:]
	var meta map[string]string
	if err := json.Unmarshal(h["__metadata__"], &meta); err != nil || meta["format"] != "pt" || meta["arch"] != "ple" {
		t.Errorf("metadata %s (%v)", h["__metadata__"], err)
	}
	type entry struct {
		Dtype   string  `json:"dtype"`
		Shape   []int   `json:"shape"`
		Offsets []int64 `json:"data_offsets"`
	}
	var all []tensorRef
	for _, p := range m.Params() {
		all = append(all, tensorRef{p.Name, p.Shape, p.Data})
	}
	for _, e := range m.Embeddings() {
		all = append(all, tensorRef{e.Name, []int{e.Rows, e.Dim}, e.Data})
	}
	if len(h) != len(all)+1 {
		t.Errorf("header has %d entries, want %d tensors + metadata", len(h), len(all))
	}
	var spans [][2]int64
	for _, want := range all {
		var e entry
		if err := json.Unmarshal(h[want.name], &e); err != nil {
			t.Fatalf("%s: %v", want.name, err)
		}
		if e.Dtype != "F32" || !slices.Equal(e.Shape, want.shape) || len(e.Offsets) != 2 {
			t.Fatalf("%s: entry %+v, want F32 %v", want.name, e, want.shape)
		}
		if e.Offsets[1]-e.Offsets[0] != int64(4*len(want.data)) {
			t.Fatalf("%s: offsets %v for %d floats", want.name, e.Offsets, len(want.data))
		}
		for i, v := range want.data {
			got := math.Float32frombits(binary.LittleEndian.Uint32(data[e.Offsets[0]+int64(4*i):]))
			if got != v {
				t.Fatalf("%s[%d]: file %g, model %g", want.name, i, got, v)
			}
		}
		spans = append(spans, [2]int64{e.Offsets[0], e.Offsets[1]})
	}
	slices.SortFunc(spans, func(a, b [2]int64) int { return int(a[0] - b[0]) })
	var at int64
	for _, s := range spans {
		if s[0] != at {
			t.Fatalf("hole or overlap at byte %d", at)
		}
		at = s[1]
	}
	if at != int64(len(data)) {
		t.Fatalf("data section %d bytes, tensors cover %d", len(data), at)
	}
	for _, want := range []string{"levels.0.experts.1.layers.1.weight", "levels.0.task_experts.cvr.0.layers.0.bias", "levels.0.gates.shared.weight", "levels.1.gates.ctr.bias", "towers.cvr.layers.0.weight", "heads.ctr.weight", "embeddings.tags.weight"} {
		if _, ok := h[want]; !ok {
			t.Errorf("no tensor %s", want)
		}
	}
}

func TestSafetensorsErrors(t *testing.T) {
	base := Config{EmbeddingDim: 3, Experts: 2, ExpertHidden: []int{4, 3}, Seed: 1}
	good := saved(t, testModel(t, base))
	wider := base
	wider.ExpertHidden = []int{5, 3}
	hdrLen := int(binary.LittleEndian.Uint64(good[:8]))
	cases := []struct {
		name  string
		model *Model
		file  []byte
		want  string
	}{
		{"shape", testModel(t, wider), good, `tensor "experts.0.layers.0.weight": shape [4 12], the model has [5 12]`},
		{"missing", testModel(t, base, "ctr", "cvr", "ctcvr"), good, `tensor "gates.ctcvr.weight" [2 12] missing from the file`},
		{"extra", testModel(t, base, "ctr"), good, `tensor "gates.cvr.weight" is not a parameter of this model`},
		{"empty", testModel(t, base), nil, "reading the header length"},
		{"short-header", testModel(t, base), good[:8+hdrLen/2], "reading the"},
		{"truncated-data", testModel(t, base), good[:len(good)-5], fmt.Sprintf("file truncated: %d bytes, the header describes %d", len(good)-5, len(good))},
		{"trailing", testModel(t, base), append(slices.Clone(good), 0), "trailing bytes"},
		{"dtype", testModel(t, base), bytes.Replace(good, []byte(`"F32"`), []byte(`"F16"`), 1), `dtype "F16", want F32`},
		{"not-json", testModel(t, base), append(append(slices.Clone(good[:8]), bytes.Repeat([]byte("x"), hdrLen)...), good[8+hdrLen:]...), "header is not a JSON object"},
		{"huge-header", testModel(t, base), binary.LittleEndian.AppendUint64(nil, 1<<40), "exceeds"},
	}
	// Without io.Seeker the truncation is found while reading.
	cases = append(cases, struct {
		name  string
		model *Model
		file  []byte
		want  string
	}{"truncated-stream", testModel(t, base), good[:len(good)-5], `tensor "embeddings.cats.weight": data: file truncated`})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r io.Reader = bytes.NewReader(tc.file)
			if strings.HasSuffix(tc.name, "-stream") {
				r = struct{ io.Reader }{r}
			}
			err := tc.model.LoadSafetensors(r)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrFormat) || !strings.HasPrefix(err.Error(), "mmoe: safetensors: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q: want ErrFormat mentioning %q", err, tc.want)
			}
		})
	}
	// A header error, or a truncated file that can seek, leaves the model
	// unchanged.
	for _, tc := range []struct {
		m    *Model
		file []byte
	}{{testModel(t, wider), good}, {testModel(t, base), good[:len(good)-5]}} {
		tc.m.Params()[0].Data[0] = 42
		before := saved(t, tc.m)
		if err := tc.m.LoadSafetensors(bytes.NewReader(tc.file)); err == nil {
			t.Fatal("no error")
		}
		if !bytes.Equal(before, saved(t, tc.m)) {
			t.Error("failed load changed the model")
		}
	}
}

func TestLoadSafetensorsMatching(t *testing.T) {
	base := Config{EmbeddingDim: 3, Experts: 2, ExpertHidden: []int{4, 3}, Seed: 1}
	src := testModel(t, base)
	base.Seed = 9
	dst := testModel(t, base, "ctr", "cvr", "dwell")
	loaded, skipped, err := dst.LoadSafetensorsMatching(bytes.NewReader(saved(t, src)))
	if err != nil {
		t.Fatal(err)
	}
	// Every tensor of src fits (same experts and gates for ctr and cvr); the
	// dwell gate, tower and head keep their initial values.
	if len(loaded) != len(src.Params())+len(src.Embeddings()) {
		t.Errorf("loaded %d tensors, want %d", len(loaded), len(src.Params())+len(src.Embeddings()))
	}
	for _, s := range skipped {
		if !strings.Contains(s, "dwell") {
			t.Errorf("skipped %s", s)
		}
	}
	if len(skipped) == 0 {
		t.Error("nothing skipped")
	}
	a, b := logitsOf(t, src, 3), logitsOf(t, dst, 3)
	if !bitsEqual(a, b[:2]) {
		t.Error("the transferred heads give other logits")
	}
}

func FuzzLoadSafetensors(f *testing.F) {
	cfg := Config{EmbeddingDim: 2, Experts: 2, ExpertHidden: []int{3}, Tower: []int{}, Seed: 1}
	m := testModel(f, cfg)
	good := saved(f, m)
	f.Add(good)
	f.Add(good[:40])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := New(cfg, smallLayout(), []string{"ctr", "cvr"})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.LoadSafetensors(bytes.NewReader(data)); err != nil && !errors.Is(err, ErrFormat) {
			t.Fatalf("error %v does not wrap ErrFormat", err)
		}
	})
}
