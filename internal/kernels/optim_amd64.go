//go:build !noasm

package kernels

//go:noescape
func adamAVX2(p, m, v, g0, g1 *float32, n int, k *adamConsts)

//go:noescape
func prefetchRowsAsm(base *float32, stride int, rows *int32, n int)

// adamAsm runs AdamUpdate's arithmetic on the longest prefix of p whose
// length is a multiple of 8 (with AVX2) and returns that length.
func adamAsm(p, m, v, g0, g1 []float32, k *adamConsts) int {
	n := len(p) &^ 7
	if !hasAVX2 || n == 0 {
		return 0
	}
	_, _, _ = m[n-1], v[n-1], g0[n-1]
	var q *float32
	if g1 != nil {
		_ = g1[n-1]
		q = &g1[0]
	}
	adamAVX2(&p[0], &m[0], &v[0], &g0[0], q, n, k)
	return n
}

// prefetchRows issues a prefetch of the first cache line of each row (the
// rows are checked).
func prefetchRows(table []float32, dim int, rows []int32) {
	prefetchRowsAsm(&table[0], 4*dim, &rows[0], len(rows))
}
