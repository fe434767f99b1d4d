package ingest

import (
	"fmt"
	"sort"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// ParquetFileInfo describes a Parquet file from its footer.
type ParquetFileInfo struct {
	Path      string `json:"path"`
	Size      int64  `json:"size_bytes"`
	Rows      int64  `json:"rows"`
	CreatedBy string `json:"created_by,omitempty"`
	// RowGroups holds the row count of each row group.
	RowGroups []int64 `json:"row_groups"`
	// Codecs are the compression codecs used by any column chunk, sorted.
	Codecs  []string            `json:"codecs"`
	Columns []ParquetColumnInfo `json:"columns"`
}

// ParquetColumnInfo describes one leaf column of a Parquet file.
type ParquetColumnInfo struct {
	// Path is the dotted path of the leaf ("user_tags.list.element").
	Path string `json:"path"`
	// Physical is the physical type (INT64, BYTE_ARRAY, ...).
	Physical string `json:"physical"`
	// Logical is the logical type annotation ("STRING", "INT(32,true)"), or "".
	Logical string `json:"logical,omitempty"`
	// Repetition lists the repetition of each node from the top-level
	// field down to the leaf ("optional/repeated/optional").
	Repetition string `json:"repetition"`
	// Arrow is the Arrow type ParquetSource reads the top-level column as,
	// or "unsupported: <reason>".
	Arrow string `json:"arrow"`
	// Nulls is the sum of the null counts of the column chunk statistics
	// (for lists it counts null lists, empty lists and null elements).
	Nulls int64 `json:"nulls"`
	// Encodings are the encodings used by the column chunks, sorted.
	Encodings []string `json:"encodings"`
	// CompressedBytes and UncompressedBytes sum the column chunks.
	CompressedBytes   int64 `json:"compressed_bytes"`
	UncompressedBytes int64 `json:"uncompressed_bytes"`
}

// InspectParquet reads the footer of a Parquet file and describes it. Errors
// name the file and wrap ErrCorrupt when it is not valid Parquet.
func InspectParquet(path string) (info *ParquetFileInfo, err error) {
	f, pf, err := openParquet(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	defer func() {
		if r := recover(); r != nil {
			info, err = nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, r)
		}
	}()
	md := pf.Metadata()
	info = &ParquetFileInfo{Path: path, Size: pf.Size(), Rows: md.NumRows, CreatedBy: md.CreatedBy}
	codecs := map[string]bool{}
	for _, rg := range md.RowGroups {
		info.RowGroups = append(info.RowGroups, rg.NumRows)
	}
	arrowOf := map[string]string{}
	for _, top := range pf.Root().Columns() {
		if lay, err := layoutOf(top); err != nil {
			arrowOf[top.Name()] = "unsupported: " + err.Error()
		} else {
			arrowOf[top.Name()] = lay.arrowType().String()
		}
	}
	var walk func(c *parquet.Column, reps []string)
	walk = func(c *parquet.Column, reps []string) {
		rep := "required"
		switch {
		case c.Optional():
			rep = "optional"
		case c.Repeated():
			rep = "repeated"
		}
		reps = append(reps, rep)
		if !c.Leaf() {
			for _, ch := range c.Columns() {
				walk(ch, reps)
			}
			return
		}
		ci := ParquetColumnInfo{
			Path:       strings.Join(c.Path(), "."),
			Physical:   c.Type().Kind().String(),
			Repetition: strings.Join(reps, "/"),
			Arrow:      arrowOf[c.Path()[0]],
		}
		if lt := c.Type().LogicalType(); lt != nil {
			ci.Logical = lt.String()
		}
		encs := map[string]bool{}
		leaf := c.Index()
		for _, rg := range md.RowGroups {
			if leaf >= len(rg.Columns) {
				continue
			}
			cm := rg.Columns[leaf].MetaData
			ci.Nulls += cm.Statistics.NullCount
			ci.CompressedBytes += cm.TotalCompressedSize
			ci.UncompressedBytes += cm.TotalUncompressedSize
			codecs[cm.Codec.String()] = true
			for _, e := range cm.Encoding {
				encs[e.String()] = true
			}
		}
		ci.Encodings = sortedKeys(encs)
		info.Columns = append(info.Columns, ci)
	}
	for _, top := range pf.Root().Columns() {
		walk(top, nil)
	}
	info.Codecs = sortedKeys(codecs)
	return info, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
