package main

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/s3lock/s3lock"
)

// Exit codes. Those of run's child pass through unchanged, so the codes
// s3lock uses for its own outcomes are chosen away from the common ones
// (0, 1, 2 and 126-255 are the shell's) and s3lock always prints a line on
// stderr when it exits with one of them. What each means is said once, in
// [exitCodes].
const (
	exitOK            = 0
	exitFailure       = 1
	exitUsage         = 2
	exitUnavailable   = 69  // sysexits EX_UNAVAILABLE
	exitConflict      = 75  // sysexits EX_TEMPFAIL; the default of --conflict-exit-code
	exitLeaseLost     = 76  // run: the lease was lost while the child ran
	exitLimitConflict = 78  // sysexits EX_CONFIG; run --slots/--shared: the key is used with another limit
	exitCannotExec    = 126 // as the shell: found but could not be started
	exitNotFound      = 127 // as the shell: not found
	exitSignal        = 128 // plus the signal's number
)

// exitCode is one row of the exit-code table.
type exitCode struct {
	// code is the code as the table shows it: "2", "1-255", "128+N".
	code string
	// meaning is one line. `Backquotes` mark commands, flags and names:
	// the README's table renders them, the help drops them.
	meaning string
	// cmds are the commands whose help lists the row.
	cmds []string
}

var (
	everyS3Command = []string{"run", "status", "unlock", "probe"}
	runOnly        = []string{"run"}
)

// exitCodes is the one table of exit codes: "s3lock --help" and each
// command's help print it (see [exitCodesHelp]), and a test checks that
// the README's table is the same.
var exitCodes = []exitCode{
	{strconv.Itoa(exitOK), "success (`run`: the command exited 0)", everyS3Command},
	{"1-255", "`run`: the command's own exit code, passed through; 128+N when the command was killed by signal N", runOnly},
	{strconv.Itoa(exitFailure), "`probe`: the store does NOT honour conditional writes; `unlock`: the lock changed between its read and its write, or does not list the `--holder` given; nothing was broken", []string{"probe", "unlock"}},
	{strconv.Itoa(exitUsage), "bad usage or configuration: malformed `s3://` URL, unknown flag, missing `\"--\"`, no credentials or region, unknown profile, missing bucket, access denied, a store without conditional writes (`probe` exits 1 for that). No command was started, no lock taken", everyS3Command},
	{strconv.Itoa(exitUnavailable), "S3 unreachable or failing (network, 5xx) after retries (`EX_UNAVAILABLE`); `run` did not start the command", everyS3Command},
	{strconv.Itoa(exitConflict), "`run`: the lock is held by someone else and `--wait` ran out (at once with `--wait 0`) (`EX_TEMPFAIL`); change it with `--conflict-exit-code`", runOnly},
	{strconv.Itoa(exitLeaseLost), "`run`: the lease was lost while the command ran (renewal failed until the lease's safe deadline, or the lock was taken or broken); the command got SIGTERM, then SIGKILL", runOnly},
	{strconv.Itoa(exitLimitConflict), "`run`: `--slots N` or `--shared` found the key held with another limit (a semaphore of another N, readers, or the reverse) (`EX_CONFIG`); the command was not started", runOnly},
	{fmt.Sprintf("%d/%d", exitCannotExec, exitNotFound), "`run`: the command could not be started / was not found; it did not run, and the lock is not held", runOnly},
	{fmt.Sprintf("%d+N", exitSignal), "`run`: `s3lock` got signal N while waiting for the lock; the command was not started", runOnly},
}

// ownCodesNote follows the table where run's rows are shown.
var ownCodesNote = fmt.Sprintf(`
  s3lock prints one line on stderr whenever it exits with a code of its
  own (%d, %d, %d, %d, %d, %d, %d, %d+N), so a child's exit %d and a lock
  conflict can be told apart in logs; scripts that must tell them apart
  by code can pick another --conflict-exit-code.
`, exitUsage, exitUnavailable, exitConflict, exitLeaseLost, exitLimitConflict, exitCannotExec, exitNotFound, exitSignal, exitConflict)

// exitCodesHelp renders the rows of [exitCodes] that apply to cmd ("" for
// all of them, as "s3lock --help" shows), wrapped for a terminal. It
// returns "" when none apply.
func exitCodesHelp(cmd string) string {
	const width, indent = 78, 11 // "  " + a 9-column code
	var b strings.Builder
	for _, row := range exitCodes {
		if cmd != "" && !slices.Contains(row.cmds, cmd) {
			continue
		}
		line := fmt.Sprintf("  %-*s", indent-2, row.code)
		for i, word := range strings.Fields(strings.ReplaceAll(row.meaning, "`", "")) {
			if i > 0 && len(line)+1+len(word) > width {
				b.WriteString(line + "\n")
				line = strings.Repeat(" ", indent-1)
			}
			if i > 0 {
				line += " "
			}
			line += word
		}
		b.WriteString(line + "\n")
	}
	if b.Len() == 0 {
		return ""
	}
	out := "\nExit codes:\n" + b.String()
	if cmd == "" || cmd == "run" {
		out += ownCodesNote
	}
	return out
}

// exitError is an outcome of s3lock's own: cli prints err on one line and
// exits with code.
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

// childExitError is how run reports that its child exited with a code
// other than 0: cli exits with that code and prints nothing, since the
// code is the child's, not an outcome of s3lock's.
type childExitError struct{ code int }

func (e *childExitError) Error() string {
	return fmt.Sprintf("the command exited with code %d", e.code)
}

// isConfigError reports S3 errors that retrying the same command cannot
// fix.
func isConfigError(err error) bool {
	return errors.Is(err, s3lock.ErrBucketNotFound) || errors.Is(err, s3lock.ErrAccessDenied) ||
		errors.Is(err, s3lock.ErrInvalidArgument) || errors.Is(err, s3lock.ErrConditionalWritesUnsupported)
}

// s3Error gives err the exit code its kind calls for.
func s3Error(err error) error {
	if isConfigError(err) {
		return withCode(exitUsage, err)
	}
	return withCode(exitUnavailable, err)
}
