package pipelines

import (
	"fmt"
	"strings"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/ingest"
)

// checkTaskColumns refuses, before any training, a spec whose tasks name a
// label or mask column that the first data file lacks, naming the task and
// its key (a missing column would otherwise surface as a schema error of
// the reader, naming neither). The reader checks the other files.
func checkTaskColumns(s *features.Spec, data []string) error {
	paths, err := ingest.ExpandPaths(data)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return nil
	}
	info, err := ingest.InspectParquet(paths[0])
	if err != nil {
		return err
	}
	have := map[string]bool{}
	var names []string
	for _, c := range info.Columns {
		top, _, _ := strings.Cut(c.Path, ".")
		if !have[top] {
			have[top] = true
			names = append(names, top)
		}
	}
	for _, t := range s.Tasks {
		for _, k := range []struct{ key, col string }{{"label", t.Label}, {"mask", t.Mask}} {
			if k.col != "" && !have[k.col] {
				return fmt.Errorf("pipelines: spec: task %q: %s: column %q is not in the data (%s has %s): %w", t.Name, k.key, k.col, paths[0], strings.Join(names, ", "), ErrSpecColumns)
			}
		}
	}
	return nil
}
