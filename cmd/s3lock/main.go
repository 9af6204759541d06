// Command s3lock runs a command while holding a lock kept in one S3 object:
// flock(1) for jobs on many hosts. It also shows a lock's state, breaks a
// stale hold, and checks whether a store honours conditional writes.
//
//	s3lock run [flags] s3://bucket/key -- command [args...]
//	s3lock status [--json] s3://bucket/key
//	s3lock unlock --force s3://bucket/key
//	s3lock probe s3://bucket/prefix
//	s3lock watch [--json] s3://bucket/key
//	s3lock completion bash|zsh|fish
//
// Run "s3lock --help" for the exit codes and "s3lock COMMAND --help" for each
// command's flags and examples.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes. Those of run's child pass through unchanged, so the codes
// s3lock uses for its own outcomes are chosen away from the common ones
// (0, 1, 2 and 126-255 are the shell's) and s3lock always prints a line on
// stderr when it exits with one of them.
const (
	exitOK = 0
	// exitFailure: probe found a store that ignores conditional writes;
	// unlock found the lock changed between its read and its write.
	exitFailure = 1
	// exitUsage: bad command line or configuration (malformed URL, unknown
	// flag, missing "--", no credentials or region, unknown profile,
	// missing bucket, access denied, a store without conditional writes).
	// Retrying the same command cannot help. No child was started.
	exitUsage = 2
	// exitUnavailable (sysexits EX_UNAVAILABLE): S3 could not be reached
	// or kept failing. No child was started (run) or no answer was had.
	exitUnavailable = 69
	// exitConflict (sysexits EX_TEMPFAIL): the lock is held by someone
	// else and --wait ran out (at once with --wait 0). It is the default
	// of --conflict-exit-code.
	exitConflict = 75
	// exitLeaseLost: the lease was lost while the child ran (renewal kept
	// failing until the lease's safe deadline, or someone took or broke
	// the lock); the child was sent SIGTERM, then SIGKILL.
	exitLeaseLost = 76
	// exitCannotExec and exitNotFound follow the shell: the command exists
	// but could not be started / was not found. Nothing was locked.
	exitCannotExec = 126
	exitNotFound   = 127
	// exitSignal + N: s3lock was stopped by signal N while waiting for the
	// lock (no child was started), or the child was killed by signal N.
	exitSignal = 128
)

func main() {
	os.Exit(cli(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// streams are the standard files of one invocation.
type streams struct {
	stdin, stdout, stderr *os.File
}

// exitError carries an exit code with the message printed for it.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErr returns an error that exits with exitUsage.
func usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// withCode attaches an exit code to err.
func withCode(code int, err error) error { return &exitError{code: code, err: err} }

// cli runs one invocation and returns its exit code.
func cli(args []string, stdin, stdout, stderr *os.File) int {
	sio := streams{stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) > 0 {
		// The single-dash spellings the standard flag package accepted.
		switch args[0] {
		case "-help":
			args = append([]string{"--help"}, args[1:]...)
		case "-version":
			args = append([]string{"--version"}, args[1:]...)
		}
	}
	code := exitOK
	root := newRoot(sio, &code)
	root.SetArgs(append([]string{}, args...))
	c, err := root.ExecuteC()
	if err == nil {
		return code
	}
	if c == nil {
		c = root
	}
	var ee *exitError
	if !errors.As(err, &ee) {
		// A flag before the command: cobra returns the parse error of
		// the root's flags as it is.
		err = flagError(c, err)
	}
	name := ""
	if c.HasParent() {
		name = c.Name()
	}
	return report(stderr, name, err)
}

// newRoot returns the s3lock command and its subcommands. run sets *code
// to its child's exit code.
func newRoot(sio streams, code *int) *cobra.Command {
	root := &cobra.Command{
		Use:           "s3lock",
		Long:          mainHelp,
		Args:          cobra.ArbitraryArgs,
		SilenceErrors: true,
		SilenceUsage:  true,
		// Parse the root's own flags before finding the command, so that
		// a command's flag given before the command is an error rather
		// than taken as the command's.
		TraverseChildren: true,
		// Our own completion command, with help in the house style.
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		RunE: func(c *cobra.Command, args []string) error {
			if err := versionRequested(c); err != nil {
				return err
			}
			if len(args) == 0 {
				return usageErr("missing command (run, status, unlock, probe or watch); see 's3lock --help'")
			}
			return usageErr("unknown command %q (commands: run, status, unlock, probe, watch); see 's3lock --help'", args[0])
		},
	}
	root.Flags().Bool("version", false, "print the version of s3lock and exit")
	root.SetIn(sio.stdin)
	root.SetOut(sio.stdout)
	root.SetErr(sio.stderr)
	root.SetHelpFunc(func(c *cobra.Command, _ []string) { printHelp(c) })
	root.SetFlagErrorFunc(flagError)
	root.AddCommand(
		newRunCommand(sio, code),
		newStatusCommand(sio),
		newUnlockCommand(sio),
		newProbeCommand(sio),
		newWatchCommand(sio),
		newCompletionCommand(),
		&cobra.Command{
			Use:    "version",
			Hidden: true,
			Args:   cobra.NoArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				fmt.Fprintln(c.OutOrStdout(), versionString())
				return nil
			},
		},
	)
	return root
}

// report prints err as one line on stderr and returns its exit code.
func report(stderr io.Writer, cmd string, err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	code := exitUnavailable
	if errors.As(err, &ee) {
		code = ee.code
	}
	if errors.Is(err, errHelp) {
		return exitOK
	}
	prefix := "s3lock"
	if cmd != "" {
		prefix += " " + cmd
	}
	// The library's errors each start with "s3lock: "; once is enough.
	msg := strings.ReplaceAll(oneLine(err.Error()), "s3lock: ", "")
	fmt.Fprintf(stderr, "%s: %s\n", prefix, msg)
	return code
}

// oneLine folds a multi-line message onto one line.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// versionString reports the module version the binary was built from
// ("(devel)" for a build from a work tree), with the VCS revision when
// the build recorded one.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "s3lock (devel)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	out := "s3lock " + v
	if rev != "" && v == "(devel)" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		out += " " + rev + dirty
	}
	return out + " " + bi.GoVersion
}
