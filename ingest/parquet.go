package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/parquet-go/parquet-go"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/internal/bufpool"
)

// Errors a caller may branch on; returned errors wrap them with the file,
// column and what was expected and found.
var (
	// ErrNoFiles: a path or glob of ParquetConfig.Paths matches no file.
	ErrNoFiles = errors.New("ingest: no parquet file matches")
	// ErrSchema: a projected column is missing, of an unsupported type, or of
	// a different type than in the first file.
	ErrSchema = errors.New("ingest: parquet schema mismatch")
	// ErrCorrupt: a file is not valid Parquet (truncated, bad footer, bad
	// page).
	ErrCorrupt = errors.New("ingest: corrupt parquet file")
	// ErrPosition: ParquetConfig.Start does not name a place in the files.
	ErrPosition = errors.New("ingest: bad parquet start position")
)

// DefaultBatchSize is the default number of rows per record batch.
const DefaultBatchSize = 8192

// ParquetConfig configures a ParquetSource.
type ParquetConfig struct {
	// Paths are files or glob patterns (filepath.Match syntax). Each glob is
	// expanded and its matches sorted; a pattern matching nothing is an
	// error. Files are read in the order given. A path may be an object
	// store URL (s3://BUCKET/KEY?endpoint=..., gs://BUCKET/KEY,
	// azblob://CONTAINER/KEY), with glob characters in the key's last
	// element; such a file is read through ranged requests
	// (objstore.go). A file:///abs/path URL is a local path.
	Paths []string
	// Columns is the projection: only these top-level columns are read, in
	// this order. Default: nil, all columns of the first file.
	Columns []string
	// BatchSize is the number of rows per record batch; the last batch may
	// be shorter. Batches span row groups and files. Default: 8192.
	BatchSize int
	// Allocator allocates the Arrow buffers. Default: memory.DefaultAllocator.
	Allocator memory.Allocator
	// Start is the position to resume from (File, RowGroup, Row), as
	// returned by Position. Default: the zero Position, the beginning.
	Start Position
	// Workers is the number of columns decoded at once inside Next, each
	// on its own goroutine (all of them have ended when Next returns).
	// Default: 1, everything on the calling goroutine.
	Workers int
	// Check, when set, finds the rows training cannot use (a label outside
	// its domain, a bad weight, a value beyond float32: see
	// features.RowError). Without SkipBadRows, Next fails on the first of
	// them with a *BadRow error naming the file, row group, row and
	// column. Default: nil (no checks).
	Check RowChecker
	// SkipBadRows makes Next leave the rows Check refuses out of its
	// batches, and tell OnBadRow. Default: false (they are errors).
	SkipBadRows bool
	// OnBadRow, when set, is called for each row SkipBadRows leaves out.
	OnBadRow func(BadRow)
	// Dictionary makes string (byte array) columns and the elements of
	// string lists dictionary-encoded Arrow arrays, dictionary<int32,
	// utf8> and list<dictionary<int32, utf8>>: each batch's dictionary
	// (one per column) holds the values its rows use, once each for a
	// dictionary-encoded Parquet page (a plain page adds its values as
	// they come), so a consumer can hash each value once
	// (features.Transformer does). Default: false, plain utf8.
	Dictionary bool
	// ReuseBuffers makes the source keep the buffers of the batches its
	// caller releases and fill the next batches in them (from Allocator),
	// so that a steady stream of batches allocates nothing: the caller
	// must then not use any slice or string of a batch's arrays after
	// releasing it (features.Transformer copies what it reads, so
	// training and evaluation can). Default: false (each batch in new
	// memory, which the garbage collector reclaims).
	ReuseBuffers bool
}

// BadRow is a row of a Parquet file that training cannot use, and the
// error Next returns for it without SkipBadRows. It wraps features.ErrValue.
type BadRow struct {
	// File, RowGroup and Row place it (Row within the row group).
	File     string
	RowGroup int
	Row      int64
	// Column, Fault and Detail are the features.RowError's.
	Column, Fault, Detail string
}

func (b *BadRow) Error() string {
	return fmt.Sprintf("ingest: %s: row group %d, row %d: column %q: %s (%s)", b.File, b.RowGroup, b.Row, b.Column, b.Detail, b.Fault)
}

// Unwrap returns features.ErrValue.
func (b *BadRow) Unwrap() error { return features.ErrValue }

// Validate reports whether the configuration is usable. It does not touch
// the file system.
func (c *ParquetConfig) Validate() error {
	if len(c.Paths) == 0 {
		return errors.New("ingest: ParquetConfig.Paths is empty")
	}
	for i, p := range c.Paths {
		if p == "" {
			return fmt.Errorf("ingest: ParquetConfig.Paths[%d] is empty", i)
		}
		if isURL(p) {
			if _, _, err := splitURL(p); err != nil {
				return fmt.Errorf("ingest: ParquetConfig.Paths[%d]: %w", i, err)
			}
			continue
		}
		if _, err := filepath.Match(localPath(p), ""); err != nil {
			return fmt.Errorf("ingest: ParquetConfig.Paths[%d] %q: %w", i, p, err)
		}
	}
	seen := make(map[string]bool, len(c.Columns))
	for i, name := range c.Columns {
		if name == "" {
			return fmt.Errorf("ingest: ParquetConfig.Columns[%d] is empty", i)
		}
		if seen[name] {
			return fmt.Errorf("ingest: ParquetConfig.Columns names %q twice", name)
		}
		seen[name] = true
	}
	if c.Workers < 0 {
		return fmt.Errorf("ingest: ParquetConfig.Workers %d is negative", c.Workers)
	}
	if c.BatchSize < 0 {
		return fmt.Errorf("ingest: ParquetConfig.BatchSize %d is negative", c.BatchSize)
	}
	if c.Start.RowGroup < 0 || c.Start.Row < 0 {
		return fmt.Errorf("%w: row group %d, row %d", ErrPosition, c.Start.RowGroup, c.Start.Row)
	}
	if c.Start.File == "" && (c.Start.RowGroup != 0 || c.Start.Row != 0) {
		return fmt.Errorf("%w: row group %d, row %d without a file", ErrPosition, c.Start.RowGroup, c.Start.Row)
	}
	return nil
}

// ExpandPaths expands files and glob patterns as ParquetConfig.Paths does:
// each pattern's matches sorted, in the order of the patterns. A pattern
// that matches nothing is an error wrapping ErrNoFiles.
func ExpandPaths(patterns []string) ([]string, error) {
	var out []string
	for _, p := range patterns {
		var m []string
		var err error
		if isURL(p) {
			m, err = expandURL(context.Background(), p)
		} else {
			m, err = filepath.Glob(localPath(p))
		}
		if err != nil {
			return nil, fmt.Errorf("ingest: path %q: %w", p, err)
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("%w: %q", ErrNoFiles, p)
		}
		sort.Strings(m)
		out = append(out, m...)
	}
	return out, nil
}

// ParquetSource streams Arrow record batches from Parquet files, reading
// only the projected columns, row group by row group and page by page, so
// its memory is bounded by one batch plus one page per column whatever the
// file size.
//
// Supported columns: boolean, int32, int64, float, double and byte array
// (read as utf8, including dictionary-encoded pages), required or optional,
// and lists of those (the 3-level LIST layout or a bare repeated field),
// produced as Arrow bool, int32, int64, float32, float64, utf8 and list<...>.
// Every field of Schema is nullable, so files that differ only in
// repetition read alike. Any compression parquet-go reads (snappy, gzip,
// zstd, ...) is accepted.
//
// With ParquetConfig.Workers > 1, Next decodes columns concurrently (the
// Allocator must then be safe for concurrent use, as memory.GoAllocator and
// memory.CheckedAllocator are).
//
// A ParquetSource is not safe for concurrent use.
type ParquetSource struct {
	mem       memory.Allocator
	batchSize int
	workers   int
	dict      bool             // ParquetConfig.Dictionary
	bufs      memory.Allocator // the column buffers': mem, or a bufpool.Pool of it
	paths     []string
	names     []string
	schema    *arrow.Schema
	cols      []*colReader

	fileIdx int
	file    io.Closer
	pf      *parquet.File
	rgs     []parquet.RowGroup
	rg      int
	rgRows  int64
	row     int64
	inRG    bool // a row group is open at (fileIdx, rg, row)

	errs   []error // per-column scratch of eachColumn
	pos    Position
	err    error // sticky error
	closed bool

	check    RowChecker
	skip     bool
	onBadRow func(BadRow)
	segs     []rowSeg // where the rows of the batch being read come from
	drop     []bool   // scratch of checkRows
}

// rowSeg is a run of a batch's rows: n rows of file, row group rg from row.
type rowSeg struct {
	file string
	rg   int
	row  int64
	n    int
}

var _ Source = (*ParquetSource)(nil)

// NewParquetSource expands cfg.Paths, checks that every file holds the
// projected columns with the same types, and positions the source at
// cfg.Start. ctx bounds only the opening.
func NewParquetSource(ctx context.Context, cfg ParquetConfig) (s *ParquetSource, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	paths, err := ExpandPaths(cfg.Paths)
	if err != nil {
		return nil, err
	}
	s = &ParquetSource{
		mem:       cfg.Allocator,
		batchSize: cfg.BatchSize,
		paths:     paths,
		names:     cfg.Columns,
		workers:   max(1, cfg.Workers),
		check:     cfg.Check,
		skip:      cfg.SkipBadRows,
		onBadRow:  cfg.OnBadRow,
		dict:      cfg.Dictionary,
	}
	if s.mem == nil {
		s.mem = memory.DefaultAllocator
	}
	if s.batchSize == 0 {
		s.batchSize = DefaultBatchSize
	}
	s.bufs = s.mem
	if cfg.ReuseBuffers {
		// Every byte handed over is written (acc), so no zeroing.
		s.bufs = bufpool.New(s.mem, false)
	}
	// Check every file's footer now, so a bad file fails at open.
	for i, p := range paths {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f, pf, err := openParquet(p)
		if err != nil {
			return nil, err
		}
		_, err = s.bind(p, pf, i == 0)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	if err := s.seek(cfg.Start); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// openParquet opens a file (or an object, when path is a URL) and reads
// its footer.
func openParquet(path string) (io.Closer, *parquet.File, error) {
	if isURL(path) {
		return openRemoteParquet(path)
	}
	return openLocalParquet(localPath(path))
}

func openLocalParquet(path string) (f *os.File, pf *parquet.File, err error) {
	f, err = os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("ingest: %w", err)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s: %v", ErrCorrupt, path, r)
		}
		if err != nil {
			f.Close()
			f, pf = nil, nil
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("ingest: %w", err)
	}
	pf, err = parquet.OpenFile(f, st.Size(), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, path, err)
	}
	return f, pf, nil
}

// bind maps the projected columns onto file pf. With first set it defines
// the schema; otherwise it checks pf against it.
func (s *ParquetSource) bind(path string, pf *parquet.File, first bool) ([]colLayout, error) {
	root := pf.Root()
	if first && s.names == nil {
		for _, c := range root.Columns() {
			s.names = append(s.names, c.Name())
		}
	}
	lays := make([]colLayout, len(s.names))
	for i, name := range s.names {
		top := root.Column(name)
		if top == nil {
			return nil, fmt.Errorf("%w: %s: column %q not found", ErrSchema, path, name)
		}
		lay, err := layoutOf(top)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: column %q: %w", ErrSchema, path, name, err)
		}
		lay.dict = s.dict && lay.kind == kindBytes
		lays[i] = lay
		if !first {
			want := s.schema.Field(i).Type
			if got := lay.arrowType(); !arrow.TypeEqual(want, got) {
				return nil, fmt.Errorf("%w: %s: column %q: want %s, found %s", ErrSchema, path, name, want, got)
			}
		}
	}
	if first {
		fields := make([]arrow.Field, len(lays))
		for i, l := range lays {
			fields[i] = arrow.Field{Name: s.names[i], Type: l.arrowType(), Nullable: true}
		}
		s.schema = arrow.NewSchema(fields, nil)
		s.cols = make([]*colReader, len(lays))
		for i, l := range lays {
			s.cols[i] = newColReader(s.bufs, s.names[i], l)
		}
	}
	return lays, nil
}

// Schema returns the Arrow schema of the projected columns, the same for
// every batch.
func (s *ParquetSource) Schema() *arrow.Schema { return s.schema }

// Files returns the expanded list of files read, in order.
func (s *ParquetSource) Files() []string { return append([]string(nil), s.paths...) }

// Position returns the place of the next unread row: the file, the row group
// and the row within it. After the last row it names the last file and its
// row-group count.
func (s *ParquetSource) Position() Position { return s.pos }

// seek positions the source at p (the zero Position is the beginning).
func (s *ParquetSource) seek(p Position) error {
	if p.File == "" {
		s.fileIdx = 0
		s.pos = Position{File: s.paths[0]}
		return s.openFile(0, 0, 0)
	}
	idx := -1
	for i, f := range s.paths {
		if filepath.Clean(f) == filepath.Clean(p.File) {
			idx = i
			break
		}
	}
	if idx < 0 {
		return fmt.Errorf("%w: file %q is not among the %d files of Paths", ErrPosition, p.File, len(s.paths))
	}
	return s.openFile(idx, p.RowGroup, p.Row)
}

// openFile opens file i and the row group rg at row, moving on to later
// files when rg is past the end.
func (s *ParquetSource) openFile(i, rg int, row int64) error {
	s.closeFile()
	s.fileIdx = i
	path := s.paths[i]
	f, pf, err := openParquet(path)
	if err != nil {
		return err
	}
	s.file, s.pf = f, pf
	lays, err := s.bind(path, pf, false)
	if err != nil {
		return err
	}
	for j, c := range s.cols {
		c.lay = lays[j]
	}
	s.rgs = pf.RowGroups()
	if rg > len(s.rgs) || (rg == len(s.rgs) && row != 0) {
		return fmt.Errorf("%w: %s has %d row groups, asked for row group %d row %d", ErrPosition, path, len(s.rgs), rg, row)
	}
	if rg < len(s.rgs) {
		if n := s.rgs[rg].NumRows(); row >= n && !(row == 0 && n == 0) {
			return fmt.Errorf("%w: %s row group %d has %d rows, asked for row %d", ErrPosition, path, rg, n, row)
		}
	}
	s.rg, s.row = rg, row
	s.pos = Position{File: path, RowGroup: rg, Row: row}
	return s.openRowGroup()
}

// openRowGroup opens s.rg at s.row, skipping empty row groups and moving to
// the next files at the end of this one. At the very end inRG stays false.
func (s *ParquetSource) openRowGroup() error {
	for s.rg < len(s.rgs) && s.rgs[s.rg].NumRows() == 0 {
		s.rg++
	}
	if s.rg >= len(s.rgs) {
		if s.fileIdx+1 >= len(s.paths) {
			s.pos = Position{File: s.paths[s.fileIdx], RowGroup: len(s.rgs)}
			s.inRG = false
			return nil
		}
		return s.openFile(s.fileIdx+1, 0, 0)
	}
	s.rgRows = s.rgs[s.rg].NumRows()
	chunks := s.rgs[s.rg].ColumnChunks()
	for _, c := range s.cols {
		if c.lay.leaf >= len(chunks) {
			return fmt.Errorf("%w: %s: row group %d has %d column chunks, column %q is leaf %d", ErrCorrupt, s.paths[s.fileIdx], s.rg, len(chunks), c.name, c.lay.leaf)
		}
		if err := c.startRowGroup(chunks[c.lay.leaf], s.row); err != nil {
			return fmt.Errorf("%w: %s: row group %d: column %q: %w", ErrCorrupt, s.paths[s.fileIdx], s.rg, c.name, err)
		}
	}
	s.inRG = true
	s.pos = Position{File: s.paths[s.fileIdx], RowGroup: s.rg, Row: s.row}
	return nil
}

// eachColumn runs fn on every column, on s.workers goroutines, and returns
// the first error, naming the file, row group and column. A panic in fn
// (parquet-go on corrupt input) becomes an error too.
func (s *ParquetSource) eachColumn(fn func(c *colReader) error) error {
	run := func(c *colReader) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%v", r)
			}
		}()
		return fn(c)
	}
	errs := s.errs[:0]
	for range s.cols {
		errs = append(errs, nil)
	}
	s.errs = errs
	if s.workers <= 1 || len(s.cols) == 1 {
		for i, c := range s.cols {
			if errs[i] = run(c); errs[i] != nil {
				break
			}
		}
	} else {
		var wg sync.WaitGroup
		var next atomic.Int32
		for range min(s.workers, len(s.cols)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= len(s.cols) {
						return
					}
					errs[i] = run(s.cols[i])
				}
			}()
		}
		wg.Wait()
	}
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("%w: %s: row group %d: column %q: %w", ErrCorrupt, s.paths[s.fileIdx], s.rg, s.cols[i].name, err)
		}
	}
	return nil
}

func (s *ParquetSource) closeFile() {
	for _, c := range s.cols {
		c.closePages()
	}
	if s.file != nil {
		s.file.Close()
	}
	s.file, s.pf, s.rgs, s.inRG = nil, nil, nil, false
}

// Next returns the next batch of up to BatchSize rows, or io.EOF after the
// last row. The caller must Release the batch. After an error other than
// io.EOF (or ctx's error) the source is unusable and returns the same
// error; Position still names the first row not delivered. With Check and
// SkipBadRows a batch holds fewer rows than it read (never none).
func (s *ParquetSource) Next(ctx context.Context) (arrow.RecordBatch, error) {
	for {
		prev := s.pos
		rec, err := s.read(ctx)
		if err != nil || s.check == nil {
			return rec, err
		}
		if rec, err = s.checkRows(rec); err != nil {
			s.pos, s.err = prev, err
			return nil, err
		}
		if rec.NumRows() > 0 {
			return rec, nil
		}
		rec.Release() // every row was bad
	}
}

// checkRows applies Check to rec: the first bad row is an error, or with
// SkipBadRows the bad rows are left out (rec is released).
func (s *ParquetSource) checkRows(rec arrow.RecordBatch) (arrow.RecordBatch, error) {
	n := int(rec.NumRows())
	if cap(s.drop) < n {
		s.drop = make([]bool, n)
	}
	drop := s.drop[:n]
	clear(drop)
	var bad []*features.RowError
	if _, err := s.check.CheckRows(rec, func(e *features.RowError) {
		if !drop[e.Row] {
			drop[e.Row] = true
			bad = append(bad, e)
		}
	}); err != nil {
		rec.Release()
		return nil, fmt.Errorf("ingest: %s: %w", s.paths[s.fileIdx], err)
	}
	if len(bad) == 0 {
		return rec, nil
	}
	slices.SortFunc(bad, func(a, b *features.RowError) int { return a.Row - b.Row })
	if !s.skip {
		rec.Release()
		return nil, s.badRow(bad[0])
	}
	if s.onBadRow != nil {
		for _, e := range bad {
			s.onBadRow(*s.badRow(e))
		}
	}
	return dropRows(rec, drop, s.mem)
}

// badRow places row e.Row of the batch just read.
func (s *ParquetSource) badRow(e *features.RowError) *BadRow {
	b := &BadRow{Column: e.Column, Fault: e.Fault, Detail: e.Detail}
	r := e.Row
	for _, g := range s.segs {
		if r < g.n {
			b.File, b.RowGroup, b.Row = g.file, g.rg, g.row+int64(r)
			break
		}
		r -= g.n
	}
	return b
}

// read reads the next batch of up to BatchSize rows (see Next).
func (s *ParquetSource) read(ctx context.Context) (rec arrow.RecordBatch, err error) {
	if s.closed {
		return nil, ErrClosed
	}
	if s.err != nil {
		return nil, s.err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	prev := s.pos
	s.segs = s.segs[:0]
	defer func() {
		if r := recover(); r != nil {
			rec = nil
			err = fmt.Errorf("%w: %s: row group %d: %v", ErrCorrupt, s.paths[s.fileIdx], s.rg, r)
		}
		if err != nil && err != io.EOF {
			// Rows of the failed batch were not delivered: Position stays
			// before them.
			s.pos = prev
			s.err = err
			for _, c := range s.cols {
				c.resetBatch()
			}
		}
	}()
	filled := 0
	for filled < s.batchSize && s.inRG {
		k := int(min(int64(s.batchSize-filled), s.rgRows-s.row))
		if err := s.eachColumn(func(c *colReader) error { return c.readRows(k) }); err != nil {
			return nil, err
		}
		s.segs = append(s.segs, rowSeg{file: s.paths[s.fileIdx], rg: s.rg, row: s.row, n: k})
		filled += k
		s.row += int64(k)
		s.pos.Row = s.row
		if s.row == s.rgRows {
			s.rg++
			s.row = 0
			if err := s.openRowGroup(); err != nil {
				return nil, err
			}
		}
	}
	if filled == 0 {
		return nil, io.EOF
	}
	arrs := make([]arrow.Array, len(s.cols))
	for i, c := range s.cols {
		c.index = i
	}
	s.eachColumn(func(c *colReader) error {
		d := c.arrayData()
		arrs[c.index] = array.MakeFromData(d)
		d.Release()
		c.resetBatch()
		return nil
	})
	rec = array.NewRecordBatch(s.schema, arrs, int64(filled))
	for _, a := range arrs {
		a.Release()
	}
	return rec, nil
}

// Close releases the open file. Next after Close returns ErrClosed. Close is
// idempotent.
func (s *ParquetSource) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	s.closeFile()
	for _, c := range s.cols {
		c.resetBatch() // drop buffers of a batch an error interrupted
	}
	if p, ok := s.bufs.(*bufpool.Pool); ok {
		p.Close()
	}
	return nil
}
