package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// newCommand returns a subcommand, described in a few words by short (for
// shell completion), whose help is help, the flag list, the AWS notes
// (when it has the AWS flags), more and the exit codes that apply to it.
// Flags may come before and after the positional arguments; everything
// after the first "--" is left to the command (see [splitDash]). The
// caller sets Args, which validates the positional arguments, and RunE.
func newCommand(name, short, help, more string) *cobra.Command {
	return &cobra.Command{
		Use:     name,
		Short:   short, // for shell completion
		Long:    help,
		Example: more + exitCodesHelp(name),
	}
}

// splitDash splits a command's arguments at the first "--": the
// positional arguments before it, and the tail after it, with dashdash
// true when there was one.
func splitDash(c *cobra.Command, args []string) (pos, tail []string, dashdash bool) {
	if n := c.ArgsLenAtDash(); n >= 0 {
		return args[:n], args[n:], true
	}
	return args, nil, false
}

// flagError turns a flag parsing error into a usage error that names the
// flag as the help does and points to the help. It reads pflag's typed
// errors, not their text.
func flagError(c *cobra.Command, err error) error {
	see := fmt.Sprintf("see 's3lock %s --help'", c.Name())
	if !c.HasParent() {
		see = "see 's3lock --help'"
	}
	var (
		notExist *pflag.NotExistError
		invalid  *pflag.InvalidValueError
		required *pflag.ValueRequiredError
	)
	switch {
	case errors.As(err, &notExist):
		name := "--" + notExist.GetSpecifiedName()
		if short := notExist.GetSpecifiedShortnames(); short != "" {
			name = "-" + short
		}
		if !c.HasParent() {
			return usageErr("unknown flag %s: flags go after the command (s3lock run|status|unlock|probe [flags] ...); %s", name, see)
		}
		return usageErr("unknown flag %s; %s", name, see)
	case errors.As(err, &invalid):
		return usageErr("invalid value %q for %s: %v; %s", invalid.GetValue(), flagName(invalid.GetFlag()), errors.Unwrap(invalid), see)
	case errors.As(err, &required):
		return usageErr("flag needs an argument: %s; %s", flagName(required.GetFlag()), see)
	}
	return usageErr("%v; %s", err, see)
}

// flagName spells a flag in messages: --command.
func flagName(f *pflag.Flag) string { return "--" + f.Name }

// printHelp prints a command's help: the text before the flags, the flags,
// the AWS notes (for the commands that talk to S3) and the examples.
func printHelp(c *cobra.Command) {
	w := c.OutOrStdout()
	if !c.HasParent() {
		fmt.Fprint(w, c.Long)
		return
	}
	fmt.Fprint(w, c.Long)
	fmt.Fprintln(w, "\nFlags:")
	type line struct{ names, usage string }
	var lines []line
	width := 0
	c.LocalFlags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" || f.Hidden {
			return // cobra's own -h, --help, as before not listed
		}
		typ, usage := pflag.UnquoteUsage(f)
		names := "--" + f.Name
		if f.Shorthand != "" {
			names = "-" + f.Shorthand + ", " + names
		}
		if typ != "" {
			names += " " + typ
		}
		switch f.DefValue {
		case "", "false", "0s", "0":
		default:
			usage += " (default " + f.DefValue + ")"
		}
		width = max(width, len(names))
		lines = append(lines, line{names, usage})
	})
	for _, l := range lines {
		fmt.Fprintf(w, "  %-*s  %s\n", width, l.names, l.usage)
	}
	if c.LocalFlags().Lookup("region") != nil {
		fmt.Fprint(w, awsHelp)
	}
	fmt.Fprint(w, c.Example)
}
