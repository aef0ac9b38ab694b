// Command wasmguard runs security.wasm, the wasmguard Proxy-Wasm filter,
// without Envoy, on the Envoy-like host of internal/wasmhost:
//
//	wasmguard serve    [flags]                 serve HTTP through the filter
//	wasmguard validate [flags] CONFIG          OK, or the filter's error line
//	wasmguard check    [flags] CONFIG -- METHOD URL [NAME:VALUE ...] [--body S | --body-file F]
//	wasmguard soak     [flags]                 a million requests, memory figures
//	wasmguard help     [COMMAND]
//
// Every command loads ./security.wasm unless --wasm PATH says otherwise.
// Exit status: 0 success, 1 failure, 2 usage error. `wasmguard help
// COMMAND` describes each command.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/wasmguard/wasmguard/internal/server"
)

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the command line args (without the program name). SIGINT and
// SIGTERM end the command's context (serve shuts down gracefully, soak
// stops early); a second signal kills the process as usual.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // the next signal gets the default behaviour
	}()
	return runContext(ctx, args, &env{stdout: stdout, stderr: stderr})
}

// env is what a command writes to, and a hook for tests.
type env struct {
	stdout, stderr io.Writer
	// started, when set, is called by serve once it listens.
	started func(*server.Server)
	// pauseTimeout, when set, is serve's server.Options.PauseTimeout
	// (tests); 0 is the server's default.
	pauseTimeout time.Duration
}

// command is one subcommand.
type command struct {
	name     string
	synopsis string // after "wasmguard NAME "
	summary  string // one line for the command list
	about    string // paragraphs for `help NAME`, before the flags
	flags    func(*flag.FlagSet) any
	run      func(ctx context.Context, e *env, c *command, fs *flag.FlagSet, opts any, args []string) int
}

// commands in the order usage lists them.
var commands = []*command{serveCommand, validateCommand, checkCommand, soakCommand}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func runContext(ctx context.Context, args []string, e *env) int {
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, "wasmguard: no command given")
		usage(e.stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if name == "help" && len(args) > 1 {
			c := lookup(args[1])
			if c == nil || len(args) > 2 {
				fmt.Fprintf(e.stderr, "wasmguard help: unknown command %q\n", strings.Join(args[1:], " "))
				usage(e.stderr)
				return exitUsage
			}
			fs := newFlagSet(c)
			c.flags(fs)
			commandUsage(e.stdout, c, fs)
			return exitOK
		}
		usage(e.stdout)
		return exitOK
	}
	c := lookup(name)
	if c == nil {
		fmt.Fprintf(e.stderr, "wasmguard: unknown command %q\n", name)
		usage(e.stderr)
		return exitUsage
	}
	fs := newFlagSet(c)
	opts := c.flags(fs)
	rest := args[1:]
	var after []string // the words after "--", for check
	for i, a := range rest {
		if a == "--" {
			rest, after = rest[:i], rest[i+1:]
			break
		}
	}
	pos, err := parseInterspersed(fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		commandUsage(e.stdout, c, fs)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "wasmguard %s: %v\n", c.name, err)
		commandUsage(e.stderr, c, fs)
		return exitUsage
	}
	if after != nil {
		pos = append(append(pos, "--"), after...)
	}
	return c.run(ctx, e, c, fs, opts, pos)
}

// newFlagSet makes the command's flag set; it prints nothing by itself.
func newFlagSet(c *command) *flag.FlagSet {
	fs := flag.NewFlagSet("wasmguard "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseInterspersed parses flags anywhere among the positional arguments
// (`validate CONFIG --wasm x.wasm` works like `validate --wasm x.wasm
// CONFIG`) and returns the positional ones in order.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// usageError prints a command's problem and its usage; it returns
// exitUsage.
func usageError(e *env, c *command, fs *flag.FlagSet, format string, a ...any) int {
	fmt.Fprintf(e.stderr, "wasmguard %s: %s\n", c.name, fmt.Sprintf(format, a...))
	commandUsage(e.stderr, c, fs)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `wasmguard runs security.wasm, the wasmguard Proxy-Wasm filter, without Envoy:
on a host that loads it the way Envoy does (same WASI, same callbacks, one
VM per worker sharing one rate-limit store).

Usage:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  wasmguard %s %s\n      %s\n", c.name, c.synopsis, c.summary)
	}
	fmt.Fprint(w, `  wasmguard help [COMMAND]
      this text, or a command's flags and examples

Every command loads ./security.wasm (build it with "make build") unless
--wasm PATH says otherwise.

Examples:
  wasmguard serve                                    # then curl http://127.0.0.1:10000/
  wasmguard validate my-config.json
  wasmguard check my-config.json -- GET /download/evil.exe

Exit status: 0 success, 1 failure (a refused configuration, a missing
file, ...), 2 usage error.
`)
}

func commandUsage(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: wasmguard %s %s\n\n%s\n", c.name, c.synopsis, strings.TrimSpace(c.about))
	if fs == nil {
		return
	}
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	if len(names) == 0 {
		return
	}
	sort.Strings(names)
	fmt.Fprintln(w, "\nFlags:")
	for _, n := range names {
		f := fs.Lookup(n)
		arg, text := flag.UnquoteUsage(f)
		head := "--" + f.Name
		if arg != "" {
			head += " " + arg
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			def = fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "  %s\n%s", head, wrap(text+def, "      ", usageWidth))
	}
}

// usageWidth is the column usage text wraps at.
const usageWidth = 78

// wrap breaks text into lines of at most width columns (longer words stay
// whole), each starting with indent and ending with a newline.
func wrap(text, indent string, width int) string {
	var b strings.Builder
	line := indent
	for _, word := range strings.Fields(text) {
		if line != indent && len(line)+1+len(word) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if line != indent {
			line += " "
		}
		line += word
	}
	b.WriteString(line + "\n")
	return b.String()
}
