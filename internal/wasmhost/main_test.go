package wasmhost

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// testPlugin is testdata/testplugin built for wasip1 by TestMain.
var testPlugin []byte

// buildPlugin builds a testdata plugin as Envoy users do:
// GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared.
func buildPlugin(dir, name string) ([]byte, error) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			return nil, fmt.Errorf("no go command: %w", err)
		}
	}
	out := filepath.Join(dir, name+".wasm")
	cmd := exec.Command(goBin, "build", "-buildmode=c-shared", "-o", out, "./testdata/"+name)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s: %v\n%s", cmd, err, msg)
	}
	return os.ReadFile(out)
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wasmhost-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testPlugin, err = buildPlugin(dir, "testplugin")
	os.RemoveAll(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "building the test plugin:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
