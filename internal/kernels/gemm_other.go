//go:build noasm || !amd64

package kernels

// availableKernels lists the micro-kernels this build can run: the portable
// one only.
func availableKernels() []*microKernel { return []*microKernel{goMicroKernel} }

func selectKernel() *microKernel { return goMicroKernel }

// hasAVX2 and hasAVX512: this build runs no assembly.
const hasAVX2, hasAVX512 = false, false
