package mtl_test

import (
	"errors"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
)

var _ mtl.Model[*mmoe.Replica] = (*mmoe.Model)(nil)

// TestImportsNoModel checks what the package documentation says: the
// trainer depends on the Model interface, and the package imports no model
// package; of onestone's packages only features, internal/auc,
// internal/kernels (the optimizers' vectorised updates) and
// internal/rowindex (the merge of the workers' sparse gradients).
func TestImportsNoModel(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"github.com/onestone/onestone/features": true, "github.com/onestone/onestone/internal/auc": true,
		"github.com/onestone/onestone/internal/kernels": true, "github.com/onestone/onestone/internal/rowindex": true}
	fset := token.NewFileSet()
	n := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		n++
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(path, "github.com/onestone/onestone/") && !allowed[path] {
				t.Errorf("%s imports %s", name, path)
			}
		}
	}
	if n == 0 {
		t.Fatal("no source files found")
	}
}

// The wrappers below misreport a real model's layout; NewTrainer must
// refuse them with ErrShape instead of failing later in a step.
type zeroWidthTables struct{ *mmoe.Model }

func (z zeroWidthTables) EmbeddingTables() ([]string, [][]float32, []int) {
	names, values, dims := z.Model.EmbeddingTables()
	dims[0] = 0
	return names, values, dims
}

type missingNames struct{ *mmoe.Model }

func (m missingNames) DenseParams() ([]string, [][]float32) {
	names, values := m.Model.DenseParams()
	return names[1:], values
}

type shortReplica struct{ *mmoe.Replica }

func (r shortReplica) DenseGrads() [][]float32 {
	d := r.Replica.DenseGrads()
	return d[:len(d)-1]
}

type shortReplicas struct{ *mmoe.Model }

func (m shortReplicas) NewReplica(maxRows int) shortReplica {
	return shortReplica{m.Model.NewReplica(maxRows)}
}

func TestNewTrainerRefusesInconsistentModels(t *testing.T) {
	m, _ := newTrainer(t, 1)
	ts, err := mtl.NewTaskSet([]mtl.TaskConfig{{Name: "ctr", Kind: "binary", Label: "click"}, {Name: "cvr", Kind: "esmm", Label: "conversion", Parent: "ctr"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := mtl.TrainConfig{BatchSize: 8, Workers: 1}
	check := func(name string, tr *mtl.Trainer, err error) {
		t.Helper()
		if err == nil {
			tr.Close()
			t.Errorf("%s: accepted", name)
		} else if !errors.Is(err, mtl.ErrShape) {
			t.Errorf("%s: error %v, want ErrShape", name, err)
		}
	}
	tr, err := mtl.NewTrainer(zeroWidthTables{m}, ts, cfg)
	check("zero-width table", tr, err)
	tr, err = mtl.NewTrainer(missingNames{m}, ts, cfg)
	check("missing names", tr, err)
	tr, err = mtl.NewTrainer(shortReplicas{m}, ts, cfg)
	check("short replica", tr, err)
}
