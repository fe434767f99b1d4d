package stdwork

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"github.com/parquet-go/parquet-go"
)

// SpecFile is the name of the spec WriteEvents writes beside its data.
const SpecFile = "spec.yaml"

// EventsConfig configures WriteEvents.
type EventsConfig struct {
	// Dir is the output directory, created if missing. Required.
	Dir string
	// Rows is the number of events in all. Required, positive.
	Rows int64
	// Files is the number of files, train-NNNNN.parquet. Default: 1.
	Files int
	// Seed makes the output reproducible. Default: 0 (a valid seed).
	Seed uint64
}

// Validate reports whether the configuration is usable.
func (c EventsConfig) Validate() error {
	switch {
	case c.Dir == "":
		return fmt.Errorf("stdwork: EventsConfig.Dir is empty")
	case c.Rows <= 0:
		return fmt.Errorf("stdwork: EventsConfig.Rows %d is not positive", c.Rows)
	case c.Files < 0:
		return fmt.Errorf("stdwork: EventsConfig.Files %d is negative", c.Files)
	}
	return nil
}

// WriteEvents writes std training events as Parquet (zstd) files
// train-NNNNN.parquet in cfg.Dir, and the std spec (Spec) as SpecFile,
// and returns the files' paths. An event has the columns of the std spec
// with its labels: c0..c25 (int64 ids, skewed as Request's: field i
// exponential with mean 1000(i+1), so later fields touch more rows), d0..d12
// (float64, exponential with mean 10), click and conv (0 or 1). Clicks
// come at about 5% and conversions at about 20% of clicks, with
// probabilities that depend on c0, c13 and d0 so that a model has
// something to learn. It is the std workload as a stream of events
// (`onestone stddata`), for end-to-end measurements at std size.
func WriteEvents(ctx context.Context, cfg EventsConfig) ([]string, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Files == 0 {
		cfg.Files = 1
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("stdwork: %w", err)
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, SpecFile), []byte(Spec()), 0o644); err != nil {
		return nil, fmt.Errorf("stdwork: %w", err)
	}
	var paths []string
	for i := range cfg.Files {
		n := cfg.Rows / int64(cfg.Files)
		if int64(i) < cfg.Rows%int64(cfg.Files) {
			n++
		}
		p := filepath.Join(cfg.Dir, fmt.Sprintf("train-%05d.parquet", i))
		if err := writeEventFile(ctx, p, n, rand.New(rand.NewPCG(cfg.Seed, uint64(i)+0xe7e7))); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// eventColumns are the columns of an event, in the order of the values
// writeEventFile draws.
func eventColumns() []string {
	var cols []string
	for i := range Fields {
		cols = append(cols, "c"+strconv.Itoa(i))
	}
	for i := range Dense {
		cols = append(cols, "d"+strconv.Itoa(i))
	}
	return append(cols, "click", "conv")
}

// idEffect is a fixed effect in [-1, 1) of an id on the click logit.
func idEffect(id int64) float64 {
	h := uint64(id)*0x9e3779b97f4a7c15 + 0x632be59bd9b4e019
	h ^= h >> 31
	return float64(h%2048)/1024 - 1
}

func writeEventFile(ctx context.Context, path string, rows int64, r *rand.Rand) (err error) {
	g := parquet.Group{}
	cols := eventColumns()
	for _, c := range cols[:Fields] {
		g[c] = parquet.Int(64)
	}
	for _, c := range cols[Fields:] {
		g[c] = parquet.Leaf(parquet.DoubleType)
	}
	schema := parquet.NewSchema("std", g)
	index := make([]int, len(cols)) // column of cols[k] in the schema
	for k, c := range cols {
		leaf, ok := schema.Lookup(c)
		if !ok {
			return fmt.Errorf("stdwork: column %s missing from the event schema", c)
		}
		index[k] = leaf.ColumnIndex
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("stdwork: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("stdwork: %s: %w", path, cerr)
		}
	}()
	w := parquet.NewWriter(f, schema, parquet.Compression(&parquet.Zstd))
	buf := make([]parquet.Row, 4096)
	for i := range buf {
		buf[i] = make(parquet.Row, len(cols))
	}
	ids := make([]int64, Fields)
	for done := int64(0); done < rows; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := int(min(int64(len(buf)), rows-done))
		for _, row := range buf[:n] {
			for i := range Fields {
				ids[i] = int64(r.ExpFloat64() * float64(1000*(i+1)))
				row[index[i]] = parquet.Int64Value(ids[i]).Level(0, 0, index[i])
			}
			var d0 float64
			for i := range Dense {
				v := r.ExpFloat64() * 10
				if i == 0 {
					d0 = v
				}
				k := Fields + i
				row[index[k]] = parquet.DoubleValue(v).Level(0, 0, index[k])
			}
			logit := -3.2 + 1.2*idEffect(ids[0]) + 1.2*idEffect(ids[Fields/2]) + 0.4*(math.Log1p(d0)-2)
			var click, conv float64
			if r.Float64() < 1/(1+math.Exp(-logit)) {
				click = 1
				if r.Float64() < 1/(1+math.Exp(-(-1.4+idEffect(ids[Fields/2+1])))) {
					conv = 1
				}
			}
			k := Fields + Dense
			row[index[k]] = parquet.DoubleValue(click).Level(0, 0, index[k])
			row[index[k+1]] = parquet.DoubleValue(conv).Level(0, 0, index[k+1])
		}
		if _, err := w.WriteRows(buf[:n]); err != nil {
			return fmt.Errorf("stdwork: %s: %w", path, err)
		}
		done += int64(n)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("stdwork: %s: %w", path, err)
	}
	return nil
}
