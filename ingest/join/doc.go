// Package join joins three event streams — impressions, clicks and
// conversions — into labelled training examples, by event time, with state
// that is bounded and checkpointable.
//
// It sits between the raw messages and features.Transformer (it is part of
// ingest: it works on the messages' bytes, before any feature exists). Each
// example is the impression message as the ranker logged it, with the label
// keys added ({..., "click":1, "conversion":0}): an event of the single
// pre-joined topic's format, which the stream decodes and transforms exactly
// as it does today. The formats of the three inputs are in
// docs/streaming.md ("Event formats").
//
// # Windows and emission
//
// An impression waits up to ClickWindow (event time) for its click; a click
// at exactly the window's end counts. When the window closes without a
// click it is emitted as a Negative. A click is attributed to its
// impression and, with EmitClick (the default), the impression is emitted
// at once as a Click example with conversion 0: freshness does not wait for
// conversions. It then waits up to ConversionWindow after the click for its
// conversion; a conversion in the window emits it again as a Conversion
// example (click 1, conversion 1), the delayed positive. With EmitLabel a
// clicked impression is emitted once, as a Final example, when its
// conversion arrives or its conversion window closes: the labels are right
// but late (the oracle of the delayed-feedback comparison).
//
// With EmitClick every clicked impression is emitted with conversion 0
// first, even when its conversion arrived before its click (out of order
// across topics): then both rows are emitted at once. So in the emitted
// rows every conversion = 1 is a re-sent positive, which is what the
// trainer's delayed-feedback modes (mtl.DelayedResend, mtl.DelayedFNW)
// assume: the conversion task learns from the pair, the other tasks skip
// the re-sent row (the click is not counted twice), and fake-negative
// weighting corrects for the conversion = 0 row.
//
// # Watermarks
//
// Windows close by watermarks, not by arrival. Each partition's watermark is
// the largest event time it delivered minus Lateness; a topic's watermark is
// the smallest over its partitions, and never moves back. A pending
// impression closes when the clicks' watermark passes its window's end
// (strictly), a clicked one when the conversions' watermark passes its
// conversion window's end, and a click or conversion that waits for its
// impression (it came first) becomes an orphan when the impressions'
// watermark passes its time plus MaxSkew. Each window thus closes by the
// progress of the topic it waits for: when one topic lags (a restart, a
// slow partition), the others' events wait in the state instead of being
// misjudged, and an event that respects Lateness within its partition is
// never late, whatever the interleaving of the topics and partitions. The
// labels therefore depend only on the events' times and each partition's
// order, not on how the three topics were fetched.
//
// A partition that delivered no valid event for IdleTimeout (processing
// time) leaves its topic's minimum, so one stalled partition cannot hold
// every window open. When all of a topic's partitions are idle (or none was
// seen IdleTimeout after the start) the topic's watermark follows the
// smallest of the active topics', so a silent clicks topic still lets
// impressions close as negatives. The price: events of a partition that
// was idle and comes back behind its topic's watermark are late. Assign
// declares partitions that have not delivered yet, so they hold the
// watermark until they deliver or turn idle.
//
// # Bad input
//
// Nothing stops the join: every message it cannot use becomes a dead letter
// (ingest.DeadLetter, with a Reason* constant) and is counted in Stats:
// undecodable messages or ones without an id or time (ingest's reasons),
// times not after the epoch, times more than MaxFuture after the processing
// time, orphan clicks and conversions (no impression), duplicates (the
// first counts, the second is dropped), conversions whose impression closed
// without a click (not attributed: the policy is that a conversion needs a
// click in its window; one that comes before its click waits for the click
// while the click window is open), clicks more than MaxSkew before their
// impression or conversions before their click (clock skew; within MaxSkew
// they count as immediate), late events (after their window, or after the
// watermark closed it: dropped and counted, never trained), late
// impressions (behind their own topic's watermark) and events forgotten by
// the state cap. A closed impression id is remembered (a tombstone) for
// Retention after its window so that late and duplicate events are told
// apart from orphans; after that they count as orphans.
//
// # Bounded state
//
// The state holds, per impression id, a 64-byte entry (plus about 80 bytes
// of map slot and queue items) and, while it waits for a click or a
// conversion, the impression message (a few hundred bytes), in chunked
// arenas that free a chunk when its last message leaves. Stats.StateBytes
// accounts for it (TestStateBytesMatchesHeap checks it against the heap);
// BenchmarkPendingMemory measures about 425 B of heap per pending generated
// impression (messages of 280 B), so 1 M pending impressions take about
// 405 MiB. When StateBytes exceeds MaxStateBytes
// the join forgets the entry that has waited longest (by the event time it
// waits from): a pending impression is emitted early as a negative, a
// clicked one stops waiting for its conversion (with EmitLabel it is
// emitted as Final without conversion), a held click or conversion goes to
// the dead letters as evicted; each is counted (Stats.Evicted*) and its
// example flagged (Example.Evicted). Before any of these, tombstones whose
// click window is closed and whose impression the impressions' watermark
// has passed are forgotten (that only changes how later events of the id
// are classified: a duplicate impression is then late, a click or
// conversion an orphan; nothing is trained twice). Younger tombstones
// stay: forgetting one could let a duplicate impression in as a new one.
// Nothing else grows: ids leave when their windows close, and windows
// close even when a topic stalls (idle partitions).
//
// # Checkpoints
//
// The state is part of the stream's checkpoint, next to the weights, the
// optimizer state and the three topics' offsets, and the offsets it must go
// with are its own: Offsets returns, per topic partition, the offset after
// the last message Add consumed, and WriteTo saves them with the state.
// The invariant that makes a checkpoint exact is that, at every point
// between two Add calls, each message below those offsets is in exactly one
// of three places:
//
//   - in the emitted examples (and hence, once trained, in the model),
//   - in the state (an impression waiting for its click or conversion, a
//     click or conversion waiting for its impression, a tombstone that
//     remembers a closed id to catch duplicates and late events),
//   - or in the dead letters and the counters (which are in the state too).
//
// So the stream must (1) train every example an Add (or Advance) emitted
// before it writes a checkpoint, (2) write the join state (WriteTo) with
// the weights and optimizer state, taking the offsets from Offsets, and
// (3) on restart restore the state (ReadFrom) and read each partition from
// those offsets. Then, after a crash at any point:
//
//   - no label is lost: an event consumed after the checkpoint is read
//     again (its offset is above the saved one), and one consumed before is
//     either in the model or waiting in the restored state;
//   - no example is counted twice in the lineage: an example emitted after
//     the checkpoint died with the process that trained it (the restarted
//     model starts from the checkpoint) and is emitted again by the
//     replayed events; one emitted before is in the model and its entry
//     has moved on (a tombstone or a later state), so the replay cannot emit
//     it again;
//   - no conversion is applied twice: the entry records whether its
//     conversion was applied, in the same checkpoint as the model that
//     trained the delayed positive.
//
// Dead letters produced after the checkpoint are produced again by the
// replay (the dead-letter sink is at least once, as for the single topic).
// Restoring is deterministic: entries are saved in creation order and the
// queues order equal deadlines by it, so a restored join emits the same
// examples in the same order as one that never stopped, given the same
// messages (only idleness, which depends on processing time, can differ).
//
// # Throughput
//
// The join decodes only the id and the time of each message (with
// features.JSONDecoder, the one JSON scanner), hashes the id, and keeps
// state in a map, six heaps and the arenas; the steady state allocates
// nothing per message beyond the record of each Add. BenchmarkJoin and
// BenchmarkJoinTransform measure it alone and followed by the Transformer
// on the generated streams.
package join
