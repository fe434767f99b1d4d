package pipelines

import (
	"fmt"

	"github.com/onestone/onestone/ingest/join"
	"github.com/onestone/onestone/mtl"
)

// DelayedFeedbackMode is the conversion task's mtl.TaskConfig.DelayedFeedback
// for a join configuration: "" when the join waits for final labels
// (join.EmitLabel), mtl.DelayedResend when it emits clicks at once and
// re-sends their conversions (join.EmitClick, join.CorrectionNone), and
// mtl.DelayedFNW with join.CorrectionFNW.
func DelayedFeedbackMode(c join.Config) string {
	c = c.WithDefaults()
	switch {
	case c.Emit == join.EmitLabel:
		return ""
	case c.Correction == join.CorrectionFNW:
		return mtl.DelayedFNW
	}
	return mtl.DelayedResend
}

// SetDelayedFeedback sets mode (DelayedFeedbackMode's values) on the task
// whose label is the join's conversion label, clears it on the others, and
// rebuilds the task set. A spec without such a task is an error when mode is
// not "": the join's re-sent rows would be taken for final labels.
func (s *Setup) SetDelayedFeedback(c join.Config, mode string) error {
	c = c.WithDefaults()
	found := false
	cfgs := append([]mtl.TaskConfig(nil), s.TaskConfigs...)
	for i := range cfgs {
		cfgs[i].DelayedFeedback = ""
		if cfgs[i].Label == c.ConversionLabel {
			cfgs[i].DelayedFeedback, found = mode, true
		}
	}
	if !found && mode != "" {
		return fmt.Errorf("pipelines: join: no task has the conversion label %q, so the re-sent conversions cannot be trained as such", c.ConversionLabel)
	}
	tasks, err := mtl.NewTaskSet(cfgs)
	if err != nil {
		return fmt.Errorf("pipelines: join: %w", err)
	}
	s.TaskConfigs, s.Tasks = cfgs, tasks
	return nil
}
