// Package cli implements the jetqueue command line: one function per
// command, each with its own flag set, and Main, which picks the command,
// runs it and maps its error to an exit code.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// Exit codes of the jetqueue command. The wait command, and submit with
// --wait, exit with ExitOK, ExitJobFailed, ExitJobCancelled or ExitTimeout.
const (
	ExitOK           = 0
	ExitFailure      = 1 // the command failed; the error is on stderr
	ExitUsage        = 2 // the command line is invalid; the usage is on stderr
	ExitJobFailed    = 1 // the job ended failed
	ExitJobCancelled = 2 // the job ended cancelled
	ExitTimeout      = 3 // the wait timed out; the job carries on
)

// env is the output and environment that a command runs with.
type env struct {
	stdout io.Writer
	stderr io.Writer
	// getenv reads environment variables, so tests need not set them.
	getenv func(string) string
}

// command is one jetqueue command.
type command struct {
	name     string
	synopsis string // the arguments after the name, such as "[flags] JOB"
	summary  string // one line for the command list
	// details follow the synopsis in the command's help: what it prints
	// and how it exits.
	details string
	// setup registers the command's flags on fs and returns the function
	// that runs the command with its positional arguments once fs is parsed.
	setup func(fs *flag.FlagSet, e *env) func(ctx context.Context, args []string) error
}

// commands maps names to commands. The serve, nats, coordinator, worker
// and demo commands are registered by the files that define them, so the
// client commands build without the coordinator and worker packages.
var commands = map[string]*command{}

// commandOrder is the order of the command list in the help text.
var commandOrder = []string{
	"serve", "demo", "nats", "coordinator", "worker",
	"submit", "status", "wait", "cancel", "reorder", "logs", "workers", "drain", "undrain",
	"bench",
}

func init() {
	register(submitCommand, statusCommand, waitCommand, cancelCommand, reorderCommand, logsCommand, workersCommand)
}

func register(cmds ...*command) {
	for _, cmd := range cmds {
		commands[cmd.name] = cmd
	}
}

// Main runs the jetqueue command line with args (without the program name)
// and returns the process exit code. ctx ends the command: long-running
// commands shut down in order, others stop waiting.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return run(ctx, args, &env{stdout: stdout, stderr: stderr, getenv: os.Getenv})
}

func run(ctx context.Context, args []string, e *env) int {
	if len(args) == 0 {
		printMainUsage(e.stderr)
		return ExitUsage
	}

	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			if cmd := findCommand(args[1]); cmd != nil {
				printCommandUsage(e.stdout, cmd, newFlagSet(cmd, e))
				return ExitOK
			}
			fmt.Fprintf(e.stderr, "jetqueue: unknown command %q\n\n", args[1])
			printMainUsage(e.stderr)
			return ExitUsage
		}
		printMainUsage(e.stdout)
		return ExitOK
	}

	cmd := findCommand(name)
	if cmd == nil {
		fmt.Fprintf(e.stderr, "jetqueue: unknown command %q\n\n", name)
		printMainUsage(e.stderr)
		return ExitUsage
	}
	return runCommand(ctx, cmd, args[1:], e)
}

func runCommand(ctx context.Context, cmd *command, args []string, e *env) int {
	fs := flag.NewFlagSet("jetqueue "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	runFn := cmd.setup(fs, e)

	positional, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		printCommandUsage(e.stdout, cmd, fs)
		return ExitOK
	}
	if err != nil {
		return reportUsage(e, cmd, err.Error())
	}

	err = runFn(ctx, positional)
	return exitCode(e, cmd, err)
}

// exitCode prints err as its kind requires and returns the exit code.
func exitCode(e *env, cmd *command, err error) int {
	var usage *usageError
	var exit *exitError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &usage):
		return reportUsage(e, cmd, usage.message)
	case errors.As(err, &exit):
		if exit.message != "" {
			fmt.Fprintf(e.stderr, "jetqueue: %s\n", exit.message)
		}
		return exit.code
	}
	fmt.Fprintf(e.stderr, "jetqueue: %v\n", err)
	return ExitFailure
}

// reportUsage prints a usage error with the command's synopsis and returns
// ExitUsage.
func reportUsage(e *env, cmd *command, message string) int {
	fmt.Fprintf(e.stderr, "jetqueue %s: %s\nUsage: jetqueue %s %s\nRun `jetqueue %s -h` for the flags.\n",
		cmd.name, message, cmd.name, cmd.synopsis, cmd.name)
	return ExitUsage
}

func findCommand(name string) *command {
	return commands[name]
}

// orderedCommands returns the registered commands in help order, then any
// others by name.
func orderedCommands() []*command {
	var list []*command
	for _, name := range commandOrder {
		if cmd := commands[name]; cmd != nil {
			list = append(list, cmd)
		}
	}
	var rest []string
	for name := range commands {
		if !slices.Contains(commandOrder, name) {
			rest = append(rest, name)
		}
	}
	slices.Sort(rest)
	for _, name := range rest {
		list = append(list, commands[name])
	}
	return list
}

func newFlagSet(cmd *command, e *env) *flag.FlagSet {
	fs := flag.NewFlagSet("jetqueue "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cmd.setup(fs, e)
	return fs
}

// usageError is a mistake on the command line. The command prints the
// message and its synopsis, and exits with ExitUsage.
type usageError struct{ message string }

func (e *usageError) Error() string { return e.message }

func usagef(format string, args ...any) error {
	return &usageError{message: fmt.Sprintf(format, args...)}
}

// exitError ends a command with a given exit code. A non-empty message is
// printed on stderr; the command has printed its other output already.
type exitError struct {
	code    int
	message string
}

func (e *exitError) Error() string {
	if e.message == "" {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.message
}

// secretFlagNames are flags whose values the help text never prints.
var secretFlagNames = map[string]bool{"password": true, "token": true}

func printMainUsage(w io.Writer) {
	var b strings.Builder
	b.WriteString("jetqueue is a resource-aware priority job queue on NATS JetStream.\n\n")
	b.WriteString("Usage:\n  jetqueue COMMAND [flags] [arguments]\n\nCommands:\n")
	for _, cmd := range orderedCommands() {
		fmt.Fprintf(&b, "  %-12s %s\n", cmd.name, cmd.summary)
	}
	b.WriteString("\nRun `jetqueue COMMAND -h` for the flags of a command. Flags may follow the arguments.\n")
	b.WriteString("Exit codes: 0 success, 1 failure, 2 invalid command line; wait exits 0 completed,\n")
	b.WriteString("1 failed, 2 cancelled, 3 timeout.\n")
	io.WriteString(w, b.String())
}

func printCommandUsage(w io.Writer, cmd *command, fs *flag.FlagSet) {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: jetqueue %s %s\n\n%s\n", cmd.name, cmd.synopsis, cmd.summary)
	if cmd.details != "" {
		fmt.Fprintf(&b, "\n%s\n", strings.TrimSpace(cmd.details))
	}

	var own, conn []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if connectionFlagNames[f.Name] {
			conn = append(conn, f)
		} else {
			own = append(own, f)
		}
	})
	if len(own) > 0 {
		b.WriteString("\nFlags:\n")
		writeFlags(&b, own)
	}
	if len(conn) > 0 {
		b.WriteString("\nConnection flags:\n")
		writeFlags(&b, conn)
	}
	io.WriteString(w, b.String())
}

func writeFlags(b *strings.Builder, flags []*flag.Flag) {
	for _, f := range flags {
		valueName, usage := flag.UnquoteUsage(f)
		dashes := "--"
		if len(f.Name) == 1 {
			dashes = "-"
		}
		fmt.Fprintf(b, "  %s%s", dashes, f.Name)
		if valueName != "" {
			fmt.Fprintf(b, " %s", valueName)
		}
		fmt.Fprintf(b, "\n      %s", usage)
		if showDefault(f, usage) {
			fmt.Fprintf(b, " (default %s)", f.DefValue)
		}
		b.WriteString("\n")
	}
}

// showDefault reports whether the help text adds f's default: false, empty
// values, defaults that the usage text explains and secrets taken from the
// environment go unmentioned.
func showDefault(f *flag.Flag, usage string) bool {
	if strings.Contains(usage, "(default") || secretFlagNames[f.Name] {
		return false
	}
	switch f.DefValue {
	case "", "false", "[]":
		return false
	}
	return true
}
