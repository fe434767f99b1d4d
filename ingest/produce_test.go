package ingest

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/segmentio/kafka-go"
)

func TestRowEncoder(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "user_id", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "f", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "f32", Type: arrow.PrimitiveTypes.Float32},
		{Name: "u", Type: arrow.PrimitiveTypes.Uint64},
		{Name: "b", Type: arrow.FixedWidthTypes.Boolean},
		{Name: "l", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32), Nullable: true},
	}, nil)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	b.Field(0).(*array.Int64Builder).AppendValues([]int64{9007199254740993, 0}, []bool{true, false})
	b.Field(1).(*array.StringBuilder).AppendValues([]string{"a\"b\\c\n\x01é", "\xffz"}, nil)
	b.Field(2).(*array.Float64Builder).AppendValues([]float64{0.1, math.NaN()}, nil)
	b.Field(3).(*array.Float32Builder).AppendValues([]float32{0.1, -2}, nil)
	b.Field(4).(*array.Uint64Builder).AppendValues([]uint64{math.MaxUint64, 1}, nil)
	b.Field(5).(*array.BooleanBuilder).AppendValues([]bool{true, false}, nil)
	lb := b.Field(6).(*array.ListBuilder)
	lb.Append(true)
	lb.ValueBuilder().(*array.Int32Builder).AppendValues([]int32{1, -2}, nil)
	lb.AppendNull()
	rec := b.NewRecordBatch()
	defer rec.Release()

	var e rowEncoder
	if err := e.reset(schema, "user_id"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"user_id":9007199254740993,"s":"a\"b\\c\n\u0001é","f":0.1,"f32":0.1,"u":18446744073709551615,"b":true,"l":[1,-2]}`,
		`{"user_id":null,"s":"` + "\ufffd" + `z","f":null,"f32":-2,"u":1,"b":false,"l":null}`,
	}
	for r, w := range want {
		got := string(e.appendRow(nil, rec, r))
		if got != w {
			t.Errorf("row %d:\n got %s\nwant %s", r, got, w)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("row %d: invalid JSON %s", r, got)
		}
	}
	if k := string(appendText(nil, rec.Column(0), 0)); k != "9007199254740993" {
		t.Errorf("key text %q", k)
	}

	if err := e.reset(schema, "nope"); err == nil || !strings.Contains(err.Error(), `key column "nope"`) {
		t.Errorf("missing key column: %v", err)
	}
	bad := arrow.NewSchema([]arrow.Field{{Name: "ts", Type: arrow.FixedWidthTypes.Timestamp_us}}, nil)
	if err := e.reset(bad, "-"); err == nil || !strings.Contains(err.Error(), `column "ts"`) {
		t.Errorf("unsupported type: %v", err)
	}
}

func TestProduceConfigValidate(t *testing.T) {
	ok := ProduceConfig{Brokers: []string{"x:1"}, Topic: "t"}
	for _, c := range []ProduceConfig{
		{Topic: "t"},
		{Brokers: []string{"x:1"}},
		{Brokers: []string{"x:1"}, Topic: "t", Rate: -1},
		{Brokers: []string{"x:1"}, Topic: "t", Compression: "brotli"},
		{Brokers: []string{"x:1"}, Topic: "t", Limit: -1},
	} {
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "ingest: ") {
			t.Errorf("%+v: %v", c, err)
		}
	}
	if err := ok.Validate(); err != nil {
		t.Error(err)
	}
	for _, c := range []BrokerConfig{{Addr: "nohost"}, {Addr: "0.0.0.0:9092"}, {Partitions: -1}, {Topics: []string{""}}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	for _, c := range []KafkaConfig{{}, {Brokers: []string{"x"}, Topic: "t", GroupID: "g"}} {
		if _, err := NewKafkaSource(context.Background(), c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// TestProduceRateAndLimit checks the key, the limit and the pacing.
func TestProduceRateAndLimit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	brokers, topic := testBrokers(t)
	src := makeEvents(mem, 0, 2000)
	defer src.Close()
	start := time.Now()
	n, err := Produce(ctx, ProduceConfig{Brokers: brokers, Topic: topic, Rate: 1000, Limit: 600}, src)
	el := time.Since(start)
	if err != nil || n != 600 {
		t.Fatalf("Produce: %d, %v", n, err)
	}
	// 600 events at 1000/s: the last tenth-second chunk is due at 0.6 s.
	if el < 500*time.Millisecond || el > 5*time.Second {
		t.Errorf("600 events at 1000/s took %v", el)
	}
	// Keys are the user_id text; a null user_id gives no key.
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	for i := 0; i < 20; i++ {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ev struct {
			EventID int64   `json:"event_id"`
			UserID  *string `json:"user_id"`
		}
		if err := json.Unmarshal(m.Value, &ev); err != nil {
			t.Fatal(err)
		}
		if (ev.UserID == nil) != (m.Key == nil) || ev.UserID != nil && *ev.UserID != string(m.Key) {
			t.Fatalf("event %d: key %q, user_id %v", ev.EventID, m.Key, ev.UserID)
		}
	}
}
