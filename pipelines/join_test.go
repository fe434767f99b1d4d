package pipelines

import (
	"testing"

	"github.com/onestone/onestone/ingest/join"
	"github.com/onestone/onestone/internal/gen"
	"github.com/onestone/onestone/mtl"
)

func TestSetDelayedFeedback(t *testing.T) {
	s, err := setupFromText([]byte(gen.SpecYAML(100, 100)), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cfg  join.Config
		want string
	}{
		{join.Config{Emit: join.EmitLabel}, ""},
		{join.Config{}, mtl.DelayedResend},
		{join.Config{Correction: join.CorrectionFNW}, mtl.DelayedFNW},
	} {
		mode := DelayedFeedbackMode(c.cfg)
		if mode != c.want {
			t.Errorf("%+v: mode %q, want %q", c.cfg, mode, c.want)
		}
		if err := s.SetDelayedFeedback(c.cfg, mode); err != nil {
			t.Fatal(err)
		}
		// The conversion task (cvr, label "conversion") carries it.
		cvr := s.Tasks.Index("cvr")
		if got := s.Tasks.Task(cvr).DelayedFeedback; got != c.want || s.Tasks.Task(s.Tasks.Index("ctr")).DelayedFeedback != "" {
			t.Errorf("%+v: cvr has %q", c.cfg, got)
		}
		if (s.Tasks.Delayed() == cvr) != (c.want != "") {
			t.Errorf("%+v: Delayed() = %d", c.cfg, s.Tasks.Delayed())
		}
	}
	if err := s.SetDelayedFeedback(join.Config{ConversionLabel: "purchase"}, mtl.DelayedFNW); err == nil {
		t.Error("a conversion label no task has was accepted")
	}
}
