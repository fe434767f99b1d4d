package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeCommandTable: README's command table has every command, and
// every flag it names exists.
func TestReadmeCommandTable(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "## The command line")
	if !ok {
		t.Fatal("README has no command line section")
	}
	table, _, _ = strings.Cut(table, "\n## ")
	flagRE := regexp.MustCompile(`--([a-z][a-z-]*)`)
	seen := map[string]bool{"stdbundle": true, "stddata": true} // for load tests and benchmarks only
	for line := range strings.SplitSeq(table, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		name, _, _ := strings.Cut(strings.Trim(cells[1], " `"), " ")
		seen[name] = true
		c, ok := commands[name]
		if !ok {
			t.Errorf("README names command %q: %s", name, line)
			continue
		}
		fs := c.flagSet()
		for _, m := range flagRE.FindAllStringSubmatch(line, -1) {
			if fs.Lookup(m[1]) == nil {
				t.Errorf("README names %s --%s, which does not exist", name, m[1])
			}
		}
	}
	for _, n := range commandNames() {
		if !seen[n] {
			t.Errorf("README's command table lacks %s", n)
		}
	}
}
