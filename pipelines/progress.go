package pipelines

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/mtl"
)

// progress prints a training progress line: epoch, step, examples/s, the
// running (exponentially averaged) loss of each task and the figures of
// the exact tables (ids).
type progress struct {
	w      io.Writer
	ids    *features.IDTables
	every  time.Duration
	tasks  *mtl.TaskSet
	start  time.Time
	last   time.Time
	lastEx int64
	ema    []float64
}

func newProgress(w io.Writer, every time.Duration, tasks *mtl.TaskSet, ids *features.IDTables) *progress {
	now := time.Now()
	return &progress{w: w, every: every, tasks: tasks, ids: ids, start: now, last: now, ema: make([]float64, tasks.Len())}
}

// idsLine is the exact tables' figures, "  ids user_id 1200/1500 rows
// ...; item_id ...", or "" without exact tables.
func idsLine(ids *features.IDTables) string {
	if ids.Len() == 0 {
		return ""
	}
	var sb strings.Builder
	sb.WriteString("  ids ")
	for i, st := range ids.Stats() {
		if i > 0 {
			sb.WriteString("; ")
		}
		sb.WriteString(st.Short())
	}
	return sb.String()
}

// observe folds one step's losses into the running averages.
func (p *progress) observe(losses []float64) {
	for i, l := range losses {
		if p.ema[i] == 0 {
			p.ema[i] = l
		} else {
			p.ema[i] = 0.98*p.ema[i] + 0.02*l
		}
	}
}

func (p *progress) update(epoch int, step, examples int64, times mtl.StepTimes) {
	if p.w == nil {
		return
	}
	now := time.Now()
	if now.Sub(p.last) < p.every {
		return
	}
	rate := float64(examples-p.lastEx) / now.Sub(p.last).Seconds()
	p.last, p.lastEx = now, examples
	var sb strings.Builder
	for i, l := range p.ema {
		fmt.Fprintf(&sb, " %s=%.4f", p.tasks.Task(i).Name, l)
	}
	fmt.Fprintf(p.w, "\repoch %d step %d  %d examples  %.0f ex/s  step %.0fms (fwd %.0f bwd %.0f opt %.0f)  loss%s%s   ",
		epoch+1, step, examples, rate,
		ms(times.Forward+times.Loss+times.Backward+times.Optimizer), ms(times.Forward), ms(times.Backward), ms(times.Optimizer), sb.String(), idsLine(p.ids))
}

func (p *progress) done() {
	if p.w != nil {
		fmt.Fprintln(p.w)
	}
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
