package ingest_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/onestone/onestone/ingest"
	"github.com/parquet-go/parquet-go"
)

func ExampleParquetSource() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	type event struct {
		UserID int64    `parquet:"user_id"`
		Device string   `parquet:"device,dict"`
		Tags   []string `parquet:"tags,list"`
		Click  int32    `parquet:"click"`
	}
	rows := []event{{1, "ios", []string{"a", "b"}, 1}, {2, "web", nil, 0}, {3, "ios", []string{"c"}, 0}}
	if err := parquet.WriteFile(filepath.Join(dir, "part-0.parquet"), rows); err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	src, err := ingest.NewParquetSource(ctx, ingest.ParquetConfig{
		Paths:     []string{filepath.Join(dir, "*.parquet")},
		Columns:   []string{"user_id", "tags", "click"},
		BatchSize: 2,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	fmt.Println(src.Schema())
	for rec, err := range ingest.Records(ctx, src) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(rec.NumRows(), rec.Column(1), src.Position().Row)
		rec.Release()
	}
	// Output:
	// schema:
	//   fields: 3
	//     - user_id: type=int64, nullable
	//     - tags: type=list<item: utf8, nullable>, nullable
	//     - click: type=int32, nullable
	// 2 [["a" "b"] []] 2
	// 1 [["c"]] 0
}
