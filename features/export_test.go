package features

// HomeLine is the home line of key k in t's map, for tests that crowd
// keys into a few lines.
func (t *IDTable) HomeLine(k uint64) uint64 { return home(k, t.nlines) }

// Spilled counts the admitted keys that are not in their home lines.
func (t *IDTable) Spilled() int {
	n := 0
	for j := range t.n {
		if t.refAt(j) != 0 && j/slotsPerLine != t.HomeLine(t.keyAt(j)) {
			n++
		}
	}
	return n
}
