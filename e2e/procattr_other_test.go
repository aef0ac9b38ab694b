//go:build !unix

package e2e

import "os/exec"

func setProcessGroup(*exec.Cmd) {}

func stopProcess(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = cmd.Process.Kill()
	}
}

func killProcess(cmd *exec.Cmd) { stopProcess(cmd) }
