//go:build !asan

package tlszmq

// asanBuild is true under -asan, where freed C memory sits in ASan's quarantine and the
// process RSS says nothing about leaks.
const asanBuild = false
