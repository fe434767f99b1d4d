package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/onestone/onestone/ingest"
)

func init() {
	register(command{
		name:    "lag",
		summary: "print a consumer group's committed offsets, the end offsets and the lag per partition",
		usage: `onestone lag --brokers HOST:PORT --topic events --group trainer [--json]
onestone lag --brokers HOST:PORT --topics impressions,clicks,conversions --group trainer

Reads without joining the group or committing. After a stream's checkpoint
is committed, its offsets are the group's committed offsets (the journal's
and the checkpoint's position; for a stream of three topics, --topics,
each topic's): docs/operations.md.`,
		flags: lagFlags,
	})
}

func lagFlags(fs *flag.FlagSet) runFunc {
	var brokers []string
	listVar(fs, &brokers, "brokers", "Kafka `host:port` addresses (required)")
	topic := fs.String("topic", "events", "topic")
	var topics []string
	listVar(fs, &topics, "topics", "several topics read by one group, e.g. a joined stream's `impressions,clicks,conversions` (instead of --topic)")
	group := fs.String("group", "trainer", "consumer group")
	asJSON := fs.Bool("json", false, "print a JSON array, one object per partition")
	return func(ctx context.Context, out, _ io.Writer, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected arguments %q", args)
		}
		if len(brokers) == 0 {
			return usagef("--brokers is required")
		}
		if len(topics) == 0 {
			topics = []string{*topic}
		}
		var ls []ingest.PartitionLag
		for _, t := range topics {
			l, err := ingest.GroupLag(ctx, brokers, *group, t)
			if err != nil {
				return err
			}
			ls = append(ls, l...)
		}
		if *asJSON {
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			return enc.Encode(ls)
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
		several := len(topics) > 1
		if several {
			fmt.Fprint(tw, "topic\t")
		}
		fmt.Fprintln(tw, "partition\tcommitted\tend\tlag\t")
		var c, e, l int64
		for _, p := range ls {
			committed := "-"
			if p.Committed >= 0 {
				committed = fmt.Sprint(p.Committed)
				c += p.Committed
			}
			e += p.End
			l += p.Lag
			if several {
				fmt.Fprintf(tw, "%s\t", p.Topic)
			}
			fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t\n", p.Partition, committed, p.End, p.Lag)
		}
		if several {
			fmt.Fprint(tw, "\t")
		}
		fmt.Fprintf(tw, "total\t%d\t%d\t%d\t\n", c, e, l)
		return tw.Flush()
	}
}
