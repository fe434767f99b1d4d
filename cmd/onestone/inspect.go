package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/onestone/onestone/ingest"
)

func init() {
	register(command{
		name:    "inspect",
		summary: "print the schema, rows, row groups, codecs and null counts of Parquet files",
		usage:   "onestone inspect [--json] FILE_OR_GLOB...",
		flags:   inspectFlags,
	})
}

func inspectFlags(fs *flag.FlagSet) runFunc {
	asJSON := fs.Bool("json", false, "print a JSON array of file descriptions")
	return func(ctx context.Context, out, _ io.Writer, args []string) error {
		if len(args) == 0 {
			return usagef("no file given")
		}
		paths, err := ingest.ExpandPaths(args)
		if err != nil {
			return err
		}
		infos := make([]*ingest.ParquetFileInfo, 0, len(paths))
		for _, p := range paths {
			if err := ctx.Err(); err != nil {
				return err
			}
			info, err := ingest.InspectParquet(p)
			if err != nil {
				return err
			}
			infos = append(infos, info)
		}
		if *asJSON {
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			return enc.Encode(infos)
		}
		for i, info := range infos {
			if i > 0 {
				fmt.Fprintln(out)
			}
			printInfo(out, info)
		}
		return nil
	}
}

func printInfo(out io.Writer, info *ingest.ParquetFileInfo) {
	fmt.Fprintf(out, "%s\n", info.Path)
	fmt.Fprintf(out, "  size %d bytes, %d rows, %d row groups, codecs %s\n", info.Size, info.Rows, len(info.RowGroups), strings.Join(info.Codecs, ","))
	if info.CreatedBy != "" {
		fmt.Fprintf(out, "  created by %s\n", info.CreatedBy)
	}
	groups := make([]string, len(info.RowGroups))
	for i, n := range info.RowGroups {
		groups[i] = fmt.Sprint(n)
	}
	if len(groups) > 12 {
		groups = append(groups[:6], "...", groups[len(groups)-1])
	}
	fmt.Fprintf(out, "  rows per row group: %s\n", strings.Join(groups, " "))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  column\tphysical\tlogical\trepetition\tarrow\tnulls\tencodings\tcompressed")
	for _, c := range info.Columns {
		logical := c.Logical
		if logical == "" {
			logical = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\n", c.Path, c.Physical, logical, c.Repetition, c.Arrow, c.Nulls, strings.Join(c.Encodings, ","), c.CompressedBytes)
	}
	tw.Flush()
}
