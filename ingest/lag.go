package ingest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"
)

// PartitionLag is a consumer group's progress on one partition of a topic.
type PartitionLag struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	// Committed is the group's committed offset (the next event it will
	// read), -1 when the group has committed none on this partition.
	Committed int64 `json:"committed"`
	// End is the partition's end offset (the offset of the next event
	// produced).
	End int64 `json:"end"`
	// Lag is End - Committed (End when nothing is committed).
	Lag int64 `json:"lag"`
}

// GroupLag reads, for every partition of topic, the group's committed
// offset and the partition's end offset, ordered by partition. It only
// reads: it does not join the group or commit. This is how a stream's
// progress is checked from outside (onestone lag): after a checkpoint's
// commit the committed offsets are the checkpoint's.
func GroupLag(ctx context.Context, brokers []string, group, topic string) ([]PartitionLag, error) {
	if len(brokers) == 0 || group == "" || topic == "" {
		return nil, errors.New("ingest: group lag: brokers, group and topic are required")
	}
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: tr}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("ingest: group lag: metadata of %s: %w", topic, err)
	}
	var ps []int
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("ingest: group lag: topic %s: %w", topic, t.Error)
		}
		for _, p := range t.Partitions {
			ps = append(ps, p.ID)
		}
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("ingest: group lag: topic %s has no partitions", topic)
	}
	slices.Sort(ps)
	req := make([]kafka.OffsetRequest, len(ps))
	for i, p := range ps {
		req[i] = kafka.LastOffsetOf(p)
	}
	lo, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: req}})
	if err != nil {
		return nil, fmt.Errorf("ingest: group lag: end offsets of %s: %w", topic, err)
	}
	end := map[int]int64{}
	for _, p := range lo.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("ingest: group lag: end offset of %s partition %d: %w", topic, p.Partition, p.Error)
		}
		end[p.Partition] = p.LastOffset
	}
	start := make(map[int]int64, len(ps))
	for _, p := range ps {
		start[p] = 0
	}
	committed, err := groupOffsets(ctx, c, group, topic, start)
	if errors.Is(err, kafka.GroupIdNotFound) {
		committed, err = nil, nil // a group that never committed
	}
	if err != nil {
		return nil, fmt.Errorf("ingest: group lag: committed offsets of group %s: %w", group, err)
	}
	out := make([]PartitionLag, len(ps))
	for i, p := range ps {
		l := PartitionLag{Topic: topic, Partition: p, Committed: -1, End: end[p], Lag: end[p]}
		if o, ok := committed[p]; ok {
			l.Committed, l.Lag = o, end[p]-o
		}
		out[i] = l
	}
	return out, nil
}
