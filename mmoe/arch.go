package mmoe

import "fmt"

// This file holds everything that differs between architectures: their
// names, their defaults and rules for the expert counts and levels, their
// wiring (newTopology) and how a configuration turns into another
// architecture (ForArch). Adding an architecture starts here; package
// documentation (doc.go) describes each one.

// Architectures accepted in Config.Arch.
const (
	ArchMMoE         = "mmoe"
	ArchOMoE         = "omoe"
	ArchSharedBottom = "shared_bottom"
	ArchSingle       = "single"
	ArchSoft         = "soft"
	ArchCGC          = "cgc"
	ArchPLE          = "ple"
	// ArchAITM is AITM (Xi et al., KDD 2021): a network per task on the
	// shared embeddings, as single, with AIT's information transfer
	// between the towers of adjacent tasks (Config.AIT).
	ArchAITM = "aitm"
)

// Archs lists the accepted architectures.
var Archs = []string{ArchMMoE, ArchOMoE, ArchSharedBottom, ArchSingle, ArchSoft, ArchCGC, ArchPLE, ArchAITM}

// validateArchHeads checks the heads against the rules of c.Arch and of
// AIT's transfer.
func (c Config) validateArchHeads(heads []string) error {
	if c.Arch == ArchSoft && len(heads) < 2 {
		return configErr("arch soft: %d head: soft parameter sharing needs at least 2 tasks", len(heads))
	}
	return c.validateTransfer(heads)
}

// SoftSharing reports whether the model's tasks have networks of their own
// tied by the soft parameter-sharing penalty over MatchingLayers (arch
// soft). The penalty is the trainer's.
func (m *Model) SoftSharing() bool { return m.cfg.Arch == ArchSoft }

// archDefaults fills in the zero expert counts and levels of c.Arch.
func (c *Config) archDefaults() {
	switch c.Arch {
	case ArchMMoE, ArchOMoE:
		if c.Experts == 0 {
			c.Experts = 8
		}
	case ArchSharedBottom:
		if c.Experts == 0 {
			c.Experts = 1
		}
	case ArchCGC, ArchPLE:
		if c.Experts == 0 {
			c.Experts = 8
		}
		if c.TaskExperts == 0 {
			c.TaskExperts = 1
		}
	case ArchSingle, ArchSoft, ArchAITM:
		if c.TaskExperts == 0 {
			c.TaskExperts = 1
		}
	}
	if c.Arch == ArchAITM {
		c.AIT = true
	}
	if c.Levels == 0 {
		if c.Arch == ArchPLE {
			c.Levels = 2
		} else {
			c.Levels = 1
		}
	}
}

// validateArch checks the expert counts and levels of c (defaults applied)
// against the rules of c.Arch.
func (c Config) validateArch() error {
	switch c.Arch {
	case ArchMMoE, ArchOMoE:
		if c.Experts < 1 {
			return configErr("arch %s: experts %d: want at least 1", c.Arch, c.Experts)
		}
		if c.TaskExperts != 0 {
			return configErr("arch %s: task_experts %d: task-specific experts need arch cgc or ple", c.Arch, c.TaskExperts)
		}
	case ArchSharedBottom:
		if c.Experts != 1 {
			return configErr("arch shared_bottom: experts %d: the shared bottom is exactly one network (leave experts unset or 1)", c.Experts)
		}
		if c.TaskExperts != 0 {
			return configErr("arch shared_bottom: task_experts %d: must be 0", c.TaskExperts)
		}
	case ArchSingle, ArchSoft, ArchAITM:
		if c.Experts != 0 {
			return configErr("arch %s: experts %d: one network per task has no shared experts (leave experts unset)", c.Arch, c.Experts)
		}
		if c.TaskExperts != 1 {
			return configErr("arch %s: task_experts %d: one network per task (leave task_experts unset or 1)", c.Arch, c.TaskExperts)
		}
	case ArchCGC, ArchPLE:
		if c.Experts+c.TaskExperts < 1 {
			return configErr("arch %s: experts 0 and task_experts 0: each gate needs at least one expert", c.Arch)
		}
		if c.Arch == ArchPLE && c.Levels > 1 && c.Experts < 1 {
			return configErr("arch ple: experts 0: levels after the first need shared experts to receive the shared gate")
		}
	}
	if c.Arch != ArchPLE && c.Levels != 1 {
		return configErr("arch %s: levels %d: stacked levels need arch ple", c.Arch, c.Levels)
	}
	return nil
}

// topology is an architecture's wiring before any parameter exists: for
// each level, its experts and gates and the stream each of them reads, and
// for each task the gate whose output its tower reads. The architectures
// differ here and nowhere else; Model.build allocates the parameters of a
// topology, and the forward and backward passes run any topology.
type topology struct {
	levels []levelTopo
	towers []int // per task: index of the last level's gate its tower reads
}

// levelTopo is one extraction level. Experts come in parameter order:
// shared experts first, then each task's own experts, task by task.
type levelTopo struct {
	experts []expertTopo
	gates   []gateTopo
}

// An input is the stream an expert or gate reads: inputX for the model
// input x, otherwise the index of a gate of the previous level.
const inputX = -1

type expertTopo struct {
	name  string // parameter name prefix, e.g. "levels.1.task_experts.ctr.0"
	task  int    // the task it belongs to, or -1 for a shared expert
	input int
}

type gateTopo struct {
	name  string // parameter name prefix, e.g. "gates.ctr" or "levels.0.gates.shared"
	task  int    // the task it feeds, or -1 for a shared gate
	cands []int  // the experts it mixes (indices into the level's experts); one needs no parameters
	input int
}

// newTopology wires cfg (defaults applied, valid) for the named heads:
//
//   - every level has cfg.Experts shared experts and cfg.TaskExperts
//     experts per task (the config of each arch sets these: one shared
//     expert for shared_bottom, one task expert per task for single and
//     soft, ...);
//   - omoe and shared_bottom have one gate, shared by the tasks, over the
//     shared experts, and every tower reads it;
//   - every other arch has one gate per task over the shared experts and
//     that task's own, and task t's tower reads gate t (for mmoe: one gate
//     per task over all experts; for single and soft: a gate over the
//     task's one expert, so a network per task);
//   - ple stacks cfg.Levels such levels, and every level but the last also
//     has a shared gate over all its experts. Level i > 0's shared experts
//     and shared gate read level i-1's shared gate; its task-t experts and
//     gate read level i-1's gate of task t.
//
// Parameter names get a "levels.<i>." prefix in ple only.
func newTopology(cfg Config, heads []string) topology {
	T := len(heads)
	S, K := cfg.Experts, cfg.TaskExperts
	oneGate := cfg.Arch == ArchOMoE || cfg.Arch == ArchSharedBottom
	var tp topology
	for li := 0; li < cfg.Levels; li++ {
		prefix := ""
		if cfg.Arch == ArchPLE {
			prefix = fmt.Sprintf("levels.%d.", li)
		}
		// The stream a shared (task -1) or task-t expert or gate reads: x at
		// level 0, later the previous level's shared gate (index T, after
		// the task gates) or gate t.
		input := func(task int) int {
			switch {
			case li == 0:
				return inputX
			case task < 0:
				return T
			}
			return task
		}
		var lv levelTopo
		shared := make([]int, 0, S)
		for e := 0; e < S; e++ {
			shared = append(shared, len(lv.experts))
			lv.experts = append(lv.experts, expertTopo{name: fmt.Sprintf("%sexperts.%d", prefix, e), task: -1, input: input(-1)})
		}
		own := make([][]int, T)
		for t, h := range heads {
			for k := 0; k < K; k++ {
				own[t] = append(own[t], len(lv.experts))
				lv.experts = append(lv.experts, expertTopo{name: fmt.Sprintf("%stask_experts.%s.%d", prefix, h, k), task: t, input: input(t)})
			}
		}
		if oneGate {
			lv.gates = append(lv.gates, gateTopo{name: prefix + "gates.shared", task: -1, cands: shared, input: input(-1)})
		} else {
			for t, h := range heads {
				cands := append(append([]int{}, shared...), own[t]...)
				lv.gates = append(lv.gates, gateTopo{name: prefix + "gates." + h, task: t, cands: cands, input: input(t)})
			}
			if cfg.Arch == ArchPLE && li < cfg.Levels-1 {
				all := make([]int, len(lv.experts))
				for i := range all {
					all[i] = i
				}
				lv.gates = append(lv.gates, gateTopo{name: prefix + "gates.shared", task: -1, cands: all, input: input(-1)})
			}
		}
		tp.levels = append(tp.levels, lv)
	}
	for t := range heads {
		if oneGate {
			tp.towers = append(tp.towers, 0)
		} else {
			tp.towers = append(tp.towers, t)
		}
	}
	return tp
}

// ForArch returns c turned into architecture arch, for comparing
// architectures on one configuration: the embedding dimension, expert and
// tower widths, activation and seed are kept; the expert counts and levels
// are set for arch. mmoe, omoe, cgc and ple take c's shared experts when c
// is itself a mixture (mmoe, omoe, cgc or ple), else their default;
// shared_bottom gets its one network and single and soft one network per
// task; cgc and ple take c's task experts when c is cgc or ple, and ple
// takes c's levels when c is ple. The result is not validated.
func (c Config) ForArch(arch string) Config {
	b := c.WithDefaults()
	out := Config{Arch: arch, EmbeddingDim: b.EmbeddingDim, ExpertHidden: b.ExpertHidden, Tower: b.Tower, Activation: b.Activation, Seed: b.Seed, Transfer: b.Transfer}
	// AIT as a head option carries over; the one arch aitm implies does not.
	out.AIT = b.AIT && b.Arch != ArchAITM
	mixture := b.Arch == ArchMMoE || b.Arch == ArchOMoE || b.Arch == ArchCGC || b.Arch == ArchPLE
	switch arch {
	case ArchMMoE, ArchOMoE:
		if mixture {
			out.Experts = max(b.Experts, 1)
		}
	case ArchSharedBottom:
		out.Experts = 1
	case ArchSingle, ArchSoft, ArchAITM:
		out.TaskExperts = 1
	case ArchCGC, ArchPLE:
		if mixture {
			out.Experts = max(b.Experts, 1)
		}
		if b.Arch == ArchCGC || b.Arch == ArchPLE {
			out.TaskExperts = b.TaskExperts
			if arch == ArchPLE && b.Arch == ArchPLE {
				out.Levels = b.Levels
			}
		}
	}
	return out
}
