package tlszmq

import (
	"os"
	"testing"
)

// TestMain removes what the package's tests leave for the life of the process: the SoftHSM2
// token folder (see needSoftHSM), which the PKCS#11 module reads until the process ends.
func TestMain(m *testing.M) {
	code := m.Run()
	if hsmState != nil {
		os.RemoveAll(hsmState.Dir)
	}
	os.Exit(code)
}
