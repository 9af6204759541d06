// Command s3lock runs a command while holding a lock kept in one S3 object:
// flock(1) for jobs on many hosts. It also shows a lock's state, breaks a
// stale hold, and checks whether a store honours conditional writes.
//
//	s3lock run [flags] s3://bucket/key -- command [args...]
//	s3lock run --slots N | --shared [flags] s3://bucket/key -- command [args...]
//	s3lock status [--json] s3://bucket/key
//	s3lock unlock --force [--holder ID] s3://bucket/key
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

func main() {
	os.Exit(cli(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// streams are the standard files of one invocation.
type streams struct {
	stdin, stdout, stderr *os.File
}

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
	root := newRoot(sio)
	root.SetArgs(append([]string{}, args...))
	c, err := root.ExecuteC()
	if err == nil {
		return exitOK
	}
	if c == nil {
		c = root
	}
	var (
		child *childExitError
		ee    *exitError
	)
	switch {
	case errors.As(err, &child):
		return child.code // the child has had its say
	case !errors.As(err, &ee):
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

// newRoot returns the s3lock command and its subcommands.
func newRoot(sio streams) *cobra.Command {
	root := &cobra.Command{
		Use:  "s3lock",
		Long: mainHelp + exitCodesHelp(""),
		// The root runs when no command was named: an argument is an
		// unknown command, none a missing one.
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErr("unknown command %q (commands: run, status, unlock, probe, watch); see 's3lock --help'", args[0])
			}
			return nil
		},
		RunE: func(*cobra.Command, []string) error {
			return usageErr("missing command (run, status, unlock, probe or watch); see 's3lock --help'")
		},
		SilenceErrors: true,
		SilenceUsage:  true,
		// Parse the root's own flags before finding the command, so that
		// a command's flag given before the command is an error rather
		// than taken as the command's.
		TraverseChildren: true,
		// Our own completion command, with help in the house style.
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetIn(sio.stdin)
	root.SetOut(sio.stdout)
	root.SetErr(sio.stderr)
	root.SetHelpFunc(func(c *cobra.Command, _ []string) { printHelp(c) })
	root.SetFlagErrorFunc(flagError)
	root.AddCommand(
		newRunCommand(sio),
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
	// cobra answers --version on every command whose Version is set, with
	// the root's template. The flag is declared here rather than left to
	// cobra, which would give it the shorthand -v that run uses for
	// --verbose.
	root.SetVersionTemplate("{{.Version}}\n")
	version := versionString()
	for _, c := range append([]*cobra.Command{root}, root.Commands()...) {
		c.Version = version
		c.Flags().Bool("version", false, "print the version of s3lock and exit")
	}
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
