package mmoe

import (
	"fmt"
	"strings"
	"testing"
)

// render writes a topology one expert or gate per line, with the stream it
// reads ("x" or "L<i>.<gate name>" of the previous level).
func render(tp topology, heads []string) string {
	var b strings.Builder
	owner := func(task int) string {
		if task < 0 {
			return "shared"
		}
		return heads[task]
	}
	for li, lv := range tp.levels {
		from := func(input int) string {
			if input == inputX {
				return "x"
			}
			return tp.levels[li-1].gates[input].name
		}
		fmt.Fprintf(&b, "level %d\n", li)
		for _, e := range lv.experts {
			fmt.Fprintf(&b, "  expert %s %s <- %s\n", e.name, owner(e.task), from(e.input))
		}
		for _, g := range lv.gates {
			fmt.Fprintf(&b, "  gate %s %s over %v <- %s\n", g.name, owner(g.task), g.cands, from(g.input))
		}
	}
	b.WriteString("towers")
	last := tp.levels[len(tp.levels)-1]
	for t, g := range tp.towers {
		fmt.Fprintf(&b, " %s<-%s", heads[t], last.gates[g].name)
	}
	return b.String()
}

// TestTopology checks each architecture's wiring against its definition,
// for two tasks a and b (the configs keep the counts small but above one
// where the architecture allows more).
func TestTopology(t *testing.T) {
	heads := []string{"a", "b"}
	cases := []struct {
		cfg  Config
		want string
	}{
		// MMoE (Ma et al. 2018): shared experts, one gate per task over all of them.
		{Config{Arch: ArchMMoE, Experts: 2}, `
level 0
  expert experts.0 shared <- x
  expert experts.1 shared <- x
  gate gates.a a over [0 1] <- x
  gate gates.b b over [0 1] <- x
towers a<-gates.a b<-gates.b`},
		// OMoE: the same experts, one gate shared by every task.
		{Config{Arch: ArchOMoE, Experts: 2}, `
level 0
  expert experts.0 shared <- x
  expert experts.1 shared <- x
  gate gates.shared shared over [0 1] <- x
towers a<-gates.shared b<-gates.shared`},
		// Shared bottom: one shared network, a gate of one input (no weights).
		{Config{Arch: ArchSharedBottom}, `
level 0
  expert experts.0 shared <- x
  gate gates.shared shared over [0] <- x
towers a<-gates.shared b<-gates.shared`},
		// Single: a network per task, nothing shared.
		{Config{Arch: ArchSingle}, `
level 0
  expert task_experts.a.0 a <- x
  expert task_experts.b.0 b <- x
  gate gates.a a over [0] <- x
  gate gates.b b over [1] <- x
towers a<-gates.a b<-gates.b`},
		// AITM: the single topology; AIT's transfer runs after the towers.
		{Config{Arch: ArchAITM}, `
level 0
  expert task_experts.a.0 a <- x
  expert task_experts.b.0 b <- x
  gate gates.a a over [0] <- x
  gate gates.b b over [1] <- x
towers a<-gates.a b<-gates.b`},
		// Soft sharing: the single topology; the penalty ties the networks.
		{Config{Arch: ArchSoft}, `
level 0
  expert task_experts.a.0 a <- x
  expert task_experts.b.0 b <- x
  gate gates.a a over [0] <- x
  gate gates.b b over [1] <- x
towers a<-gates.a b<-gates.b`},
		// CGC (Tang et al. 2020): shared and task experts, each task's gate
		// over the shared experts and its own.
		{Config{Arch: ArchCGC, Experts: 2, TaskExperts: 2}, `
level 0
  expert experts.0 shared <- x
  expert experts.1 shared <- x
  expert task_experts.a.0 a <- x
  expert task_experts.a.1 a <- x
  expert task_experts.b.0 b <- x
  expert task_experts.b.1 b <- x
  gate gates.a a over [0 1 2 3] <- x
  gate gates.b b over [0 1 4 5] <- x
towers a<-gates.a b<-gates.b`},
		// PLE (Tang et al. 2020): stacked CGC levels; every level but the
		// last has a shared gate over all its experts that feeds the next
		// level's shared experts and shared gate, while task t's gate feeds
		// the next level's task-t experts and gate.
		{Config{Arch: ArchPLE, Experts: 1, TaskExperts: 1, Levels: 3}, `
level 0
  expert levels.0.experts.0 shared <- x
  expert levels.0.task_experts.a.0 a <- x
  expert levels.0.task_experts.b.0 b <- x
  gate levels.0.gates.a a over [0 1] <- x
  gate levels.0.gates.b b over [0 2] <- x
  gate levels.0.gates.shared shared over [0 1 2] <- x
level 1
  expert levels.1.experts.0 shared <- levels.0.gates.shared
  expert levels.1.task_experts.a.0 a <- levels.0.gates.a
  expert levels.1.task_experts.b.0 b <- levels.0.gates.b
  gate levels.1.gates.a a over [0 1] <- levels.0.gates.a
  gate levels.1.gates.b b over [0 2] <- levels.0.gates.b
  gate levels.1.gates.shared shared over [0 1 2] <- levels.0.gates.shared
level 2
  expert levels.2.experts.0 shared <- levels.1.gates.shared
  expert levels.2.task_experts.a.0 a <- levels.1.gates.a
  expert levels.2.task_experts.b.0 b <- levels.1.gates.b
  gate levels.2.gates.a a over [0 1] <- levels.1.gates.a
  gate levels.2.gates.b b over [0 2] <- levels.1.gates.b
towers a<-levels.2.gates.a b<-levels.2.gates.b`},
		// PLE of one level is CGC under the levels.0. prefix.
		{Config{Arch: ArchPLE, Experts: 1, TaskExperts: 1, Levels: 1}, `
level 0
  expert levels.0.experts.0 shared <- x
  expert levels.0.task_experts.a.0 a <- x
  expert levels.0.task_experts.b.0 b <- x
  gate levels.0.gates.a a over [0 1] <- x
  gate levels.0.gates.b b over [0 2] <- x
towers a<-levels.0.gates.a b<-levels.0.gates.b`},
	}
	seen := map[string]bool{}
	for _, c := range cases {
		seen[c.cfg.Arch] = true
		name := c.cfg.Arch
		if c.cfg.Levels > 0 {
			name = fmt.Sprintf("%s-%d-levels", name, c.cfg.Levels)
		}
		t.Run(name, func(t *testing.T) {
			if err := c.cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			got := render(newTopology(c.cfg.WithDefaults(), heads), heads)
			if want := strings.TrimPrefix(c.want, "\n"); got != want {
				t.Errorf("topology:\n%s\nwant:\n%s", got, want)
			}
		})
	}
	for _, arch := range Archs {
		if !seen[arch] {
			t.Errorf("arch %s has no topology case", arch)
		}
	}
}

func TestForArch(t *testing.T) {
	base := Config{Arch: ArchPLE, Experts: 3, TaskExperts: 2, Levels: 3, ExpertHidden: []int{8}, Seed: 5}
	for _, arch := range Archs {
		c := base.ForArch(arch)
		if err := c.Validate(); err != nil {
			t.Fatalf("%s: %v", arch, err)
		}
		if c.Arch != arch || c.Seed != 5 || c.ExpertHidden[0] != 8 {
			t.Fatalf("%s: %+v lost the arch, the base's widths or seed", arch, c)
		}
	}
	cases := []struct {
		base, arch                   string
		experts, taskExperts, levels int // after defaults
	}{
		{ArchPLE, ArchPLE, 3, 2, 3},
		{ArchPLE, ArchCGC, 3, 2, 1},
		{ArchPLE, ArchMMoE, 3, 0, 1},
		{ArchPLE, ArchSharedBottom, 1, 0, 1},
		{ArchPLE, ArchSingle, 0, 1, 1},
		{ArchCGC, ArchPLE, 3, 2, 2},
		{ArchMMoE, ArchCGC, 3, 1, 1},
		{ArchSharedBottom, ArchMMoE, 8, 0, 1},
		{ArchSingle, ArchPLE, 8, 1, 2},
	}
	for _, c := range cases {
		b := base
		b.Arch = c.base
		if c.base != ArchPLE {
			b.Levels = 0
		}
		if c.base != ArchPLE && c.base != ArchCGC {
			b.TaskExperts = 0
		}
		if c.base == ArchSharedBottom || c.base == ArchSingle {
			b.Experts = 0
		}
		got := b.ForArch(c.arch).WithDefaults()
		if got.Experts != c.experts || got.TaskExperts != c.taskExperts || got.Levels != c.levels {
			t.Errorf("%s from %s: experts %d, task experts %d, levels %d; want %d, %d, %d", c.arch, c.base, got.Experts, got.TaskExperts, got.Levels, c.experts, c.taskExperts, c.levels)
		}
	}
}
