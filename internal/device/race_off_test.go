//go:build !race

package device

// raceBuild is true under -race, where the Go side runs several times slower.
const raceBuild = false
