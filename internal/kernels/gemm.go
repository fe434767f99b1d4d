// Package kernels holds the float32 numeric kernels of onestone's models:
// GEMM, fused bias and activation, softmax, embedding gather and scatter-add.
package kernels

// Sgemm computes C = alpha * op(A) * op(B) + beta * C for row-major matrices,
// where op(X) is X or its transpose. op(A) is m x k, op(B) is k x n, C is
// m x n; lda, ldb and ldc are the row strides of A, B and C as stored. It is
// safe for concurrent use on disjoint C. It panics on inconsistent shapes.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	sgemmGo(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// sgemmGo is the portable reference-quality implementation (to be replaced
// by a blocked, packed kernel with assembly micro-kernels).
func sgemmGo(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		ci := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(ci)
		} else if beta != 1 {
			for j := range ci {
				ci[j] *= beta
			}
		}
		for p := 0; p < k; p++ {
			var av float32
			if transA {
				av = a[p*lda+i]
			} else {
				av = a[i*lda+p]
			}
			av *= alpha
			if av == 0 {
				continue
			}
			if !transB {
				bp := b[p*ldb : p*ldb+n]
				for j, bv := range bp {
					ci[j] += av * bv
				}
			} else {
				for j := 0; j < n; j++ {
					ci[j] += av * b[j*ldb+p]
				}
			}
		}
	}
}
