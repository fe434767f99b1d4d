package bundle

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/internal/tensorfile"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
)

// Checkpoint is the training state a checkpoint holds beside its bundle
// files. trainer.json holds it as JSON but for the optimizer tensors
// (State.Dense.Tensors, State.Sparse.Tensors, State.Sparse.Counts), which
// optimizer.bin holds.
type Checkpoint struct {
	// State is the trainer's: step, optimizers, loss weighting.
	State mtl.TrainerState `json:"state"`
	// Epoch is the epoch training resumes in (batch training).
	Epoch int `json:"epoch"`
	// Position is where in its data training resumes (an ingest.Position
	// as JSON: a Parquet file and row, or Kafka offsets).
	Position json.RawMessage `json:"position"`
	// Examples counts the examples trained on.
	Examples int64 `json:"examples"`
	// BestKey is the best validation key so far and Best the bundle
	// directory published with it. A BestKey of -Inf (none yet) is
	// written as -math.MaxFloat64: JSON has no infinities.
	BestKey float64 `json:"best_key"`
	Best    string  `json:"best_bundle,omitempty"`
	// Frozen records that the shared part was frozen (--freeze-shared):
	// a resume freezes it again before restoring the optimizer.
	Frozen bool `json:"frozen,omitempty"`
	// Files are more files of the training state, written into the
	// checkpoint with the others and checksummed in its manifest (a
	// stream's join state). Read them with ReadCheckpointFile.
	Files []File `json:"-"`
}

// Name prefixes of the optimizer tensors in optimizer.bin.
const (
	denseTensors  = "dense/"
	sparseTensors = "sparse/"
)

// WriteCheckpoint publishes model, the id maps of its exact tables ids
// (Write), its manifest m and the training state ck as a new version of s (a checkpoint store: Checkpoints), then removes
// all but the newest keep checkpoints (Prune; keep <= 0 keeps all). It
// returns the version's name, also when only the pruning failed.
func WriteCheckpoint(ctx context.Context, s Store, m *Manifest, model *mmoe.Model, ids *features.IDTables, ck *Checkpoint, keep int) (string, error) {
	tf := *ck
	if math.IsInf(tf.BestKey, -1) {
		tf.BestKey = -math.MaxFloat64
	}
	st := ck.State
	extra := append(idsFile(ids),
		File{Name: OptimizerFile, Write: func(w io.Writer) error {
			t := tensorfile.Tensors{F32: map[string][]float32{}, I32: map[string][]int32{}}
			for k, v := range st.Dense.Tensors {
				t.F32[denseTensors+k] = v
			}
			for k, v := range st.Sparse.Tensors {
				t.F32[sparseTensors+k] = v
			}
			for k, v := range st.Sparse.Counts {
				t.I32[sparseTensors+k] = v
			}
			return tensorfile.Write(w, t)
		}},
		jsonFile(TrainerFile, &tf),
	)
	extra = append(extra, ck.Files...)
	v, err := write(ctx, s, m, model, extra)
	if err != nil {
		return "", err
	}
	return v, Prune(ctx, s, keep)
}

// ReadCheckpointFile opens one of the checkpoint's Files after verifying it
// against the manifest's checksum (Verify). The caller closes it.
func ReadCheckpointFile(dir, name string) (*os.File, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	if err := Verify(dir, m, name); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	return f, nil
}

// ReadCheckpoint reads the training state of the checkpoint in dir:
// trainer.json, with the optimizer tensors of optimizer.bin put back into
// State. Both are verified against the checksums of the manifest
// (Verify) first. The manifest and weights are read as a bundle's
// (ReadManifest, ReadModel).
func ReadCheckpoint(dir string) (*Checkpoint, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	for _, name := range []string{TrainerFile, OptimizerFile} {
		if err := Verify(dir, m, name); err != nil {
			return nil, err
		}
	}
	var ck Checkpoint
	data, err := os.ReadFile(filepath.Join(dir, TrainerFile))
	if err == nil {
		err = json.Unmarshal(data, &ck)
	}
	if err != nil {
		return nil, fmt.Errorf("bundle: %s: %w", TrainerFile, err)
	}
	f, err := os.Open(filepath.Join(dir, OptimizerFile))
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	t, err := tensorfile.Read(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("bundle: %s: %w", OptimizerFile, err)
	}
	st := &ck.State
	st.Dense.Tensors, st.Sparse.Tensors, st.Sparse.Counts = map[string][]float32{}, map[string][]float32{}, map[string][]int32{}
	for k, v := range t.F32 {
		if name, ok := strings.CutPrefix(k, denseTensors); ok {
			st.Dense.Tensors[name] = v
		} else if name, ok := strings.CutPrefix(k, sparseTensors); ok {
			st.Sparse.Tensors[name] = v
		}
	}
	for k, v := range t.I32 {
		if name, ok := strings.CutPrefix(k, sparseTensors); ok {
			st.Sparse.Counts[name] = v
		}
	}
	return &ck, nil
}
