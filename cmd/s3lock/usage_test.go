package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/s3lock/s3lock/s3locktest"
)

// TestBadInput runs s3lock with every kind of bad input: each must exit 2
// with one line on stderr, start no command and take no lock.
func TestBadInput(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	marker := h.path("marker")
	argv, childEnv := childCmd("marker", "MARKER="+marker)
	cmdArgs := append([]string{"--"}, argv...)
	good := h.url("locks/bad")
	ep := []string{"--endpoint-url", h.srv.URL(), "--path-style"}

	tests := []struct {
		name string
		// args are passed as they are (no endpoint flags added).
		args []string
		// env replaces AWS_REGION=us-east-1 when set.
		env  []string
		want string // in the one stderr line
	}{
		{"no command", nil, nil, "missing command"},
		{"unknown command", []string{"lock", good}, nil, `unknown command "lock"`},
		{"flag before command", []string{"--region", "us-east-1", "status", good}, nil, "unknown flag --region"},
		{"run without URL", append([]string{"run"}, ep...), nil, "missing"},
		{"run http URL", append(append([]string{"run"}, ep...), append([]string{"http://b/k"}, cmdArgs...)...), nil, "malformed URL"},
		{"run URL without bucket", append(append([]string{"run"}, ep...), append([]string{"s3:///k"}, cmdArgs...)...), nil, "no bucket"},
		{"run URL without key", append(append([]string{"run"}, ep...), append([]string{"s3://" + h.srv.Bucket()}, cmdArgs...)...), nil, "no key"},
		{"run URL with empty key", append(append([]string{"run"}, ep...), append([]string{"s3://" + h.srv.Bucket() + "/"}, cmdArgs...)...), nil, "no key"},
		{"run bare path", append(append([]string{"run"}, ep...), append([]string{"bucket/key"}, cmdArgs...)...), nil, "malformed URL"},
		{"run missing --", append(append([]string{"run"}, ep...), append([]string{good}, argv...)...), nil, `missing "--"`},
		{"run nothing after --", append(append([]string{"run"}, ep...), good, "--"), nil, "missing the command"},
		{"run no command at all", append(append([]string{"run"}, ep...), good), nil, `missing "--"`},
		{"run -c and --", append(append([]string{"run", "-c", "true"}, ep...), append([]string{good}, cmdArgs...)...), nil, "either"},
		{"run two URLs", append(append([]string{"run"}, ep...), append([]string{good, good}, cmdArgs...)...), nil, "unexpected arguments"},
		{"run unknown flag", append(append([]string{"run", "--frobnicate"}, ep...), append([]string{good}, cmdArgs...)...), nil, "unknown flag --frobnicate"},
		{"run unknown flag after URL", append(append([]string{"run"}, ep...), append([]string{good, "-Z"}, cmdArgs...)...), nil, "unknown flag -Z"},
		{"run bad ttl", append(append([]string{"run", "--ttl", "soon"}, ep...), append([]string{good}, cmdArgs...)...), nil, "--ttl"},
		{"run tiny ttl", append(append([]string{"run", "--ttl", "10ms"}, ep...), append([]string{good}, cmdArgs...)...), nil, "--ttl"},
		{"run negative wait", append(append([]string{"run", "--wait", "-1s"}, ep...), append([]string{good}, cmdArgs...)...), nil, "--wait"},
		{"run renew too slow", append(append([]string{"run", "--ttl", "3s", "--renew-interval", "2s"}, ep...), append([]string{good}, cmdArgs...)...), nil, "TTL/3"},
		{"run exit code out of range", append(append([]string{"run", "-E", "300"}, ep...), append([]string{good}, cmdArgs...)...), nil, "0..255"},
		{"run nonblock with wait", append(append([]string{"run", "-n", "--wait", "5s"}, ep...), append([]string{good}, cmdArgs...)...), nil, "contradict"},
		{"run no credentials", append(append([]string{"run"}, ep...), append([]string{good}, cmdArgs...)...), []string{"AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY="}, "no AWS credentials"},
		{"run no region", append(append([]string{"run"}, ep...), append([]string{good}, cmdArgs...)...), []string{}, "no AWS region"},
		{"run unknown profile", append(append([]string{"run", "--profile", "no-such-profile"}, ep...), append([]string{good}, cmdArgs...)...), nil, "no-such-profile"},
		{"run bad endpoint", append([]string{"run", "--endpoint-url", "localhost:9000"}, append([]string{good}, cmdArgs...)...), nil, "--endpoint-url"},
		{"run missing bucket", append(append([]string{"run"}, ep...), append([]string{"s3://no-such-bucket/k"}, cmdArgs...)...), nil, "bucket not found"},
		{"status without URL", append([]string{"status"}, ep...), nil, "missing s3://bucket/key"},
		{"status extra argument", append([]string{"status"}, append(ep, good, "extra")...), nil, "unexpected arguments"},
		{"status with --", append([]string{"status"}, append(ep, good, "--", "x")...), nil, `unexpected "--"`},
		{"status missing bucket", append([]string{"status"}, append(ep, "s3://no-such-bucket/k")...), nil, "bucket not found"},
		{"status bad timeout", append([]string{"status", "--timeout", "0s"}, append(ep, good)...), nil, "--timeout"},
		{"unlock malformed URL", append([]string{"unlock", "--force"}, append(ep, "s3:/"+good)...), nil, "malformed URL"},
		{"unlock missing bucket", append([]string{"unlock", "--force"}, append(ep, "s3://no-such-bucket/k")...), nil, "bucket not found"},
		{"probe without URL", append([]string{"probe"}, ep...), nil, "missing s3://bucket/prefix"},
		{"probe missing bucket", append([]string{"probe"}, append(ep, "s3://no-such-bucket/p/")...), nil, "bucket not found"},
	}
	before := h.srv.Stats().Snapshot()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := append(h.baseEnv(), childEnv...)
			if tc.env == nil {
				env = append(env, "AWS_REGION=us-east-1")
			} else {
				env = append(env, tc.env...)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			r := runCmd(t, h.rawCommand(ctx, env, tc.args...))
			if r.code != exitUsage {
				t.Errorf("exit code = %d; want %d (stderr: %q)", r.code, exitUsage, r.stderr)
			}
			ls := lines(r.stderr)
			if len(ls) != 1 || !strings.Contains(ls[0], tc.want) || !strings.HasPrefix(ls[0], "s3lock") {
				t.Errorf("stderr = %q; want one line \"s3lock...\" containing %q", r.stderr, tc.want)
			}
			if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "panic") {
				t.Errorf("stderr has a stack trace: %q", r.stderr)
			}
			if r.stdout != "" && !strings.HasPrefix(tc.args[0], "unlock") {
				t.Errorf("stdout = %q; want nothing", r.stdout)
			}
			if exists(marker) {
				t.Fatal("a command was started")
			}
		})
	}
	if puts := h.srv.Stats().Snapshot().Sub(before)[s3locktest.Request{Method: http.MethodPut, Status: http.StatusOK}]; puts != 0 {
		t.Errorf("bad input made %d successful PUT requests; want none", puts)
	}
}

// TestHelpAndVersion checks that every command has --help (listing all of
// its flags, with examples) and --version.
func TestHelpAndVersion(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	commands := map[string]*pflag.FlagSet{}
	for _, c := range newRoot(streams{}).Commands() {
		if !c.Hidden {
			commands[c.Name()] = c.Flags()
		}
	}
	if len(commands) != 6 {
		t.Errorf("commands = %v; want run, status, unlock, probe, watch and completion", commands)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for name, fs := range commands {
		for _, help := range []string{"--help", "-h"} {
			r := runCmd(t, h.rawCommand(ctx, h.baseEnv(), name, help))
			if r.code != 0 || r.stderr != "" {
				t.Errorf("%s %s: exit code %d, stderr %q; want 0 and nothing", name, help, r.code, r.stderr)
			}
			for _, s := range []string{"Usage:\n  s3lock " + name, "Examples:\n  ", "Flags:"} {
				if !strings.Contains(r.stdout, s) {
					t.Errorf("%s %s lacks %q", name, help, s)
				}
			}
			fs.VisitAll(func(f *pflag.Flag) {
				names := "--" + f.Name
				if f.Shorthand != "" {
					names = "-" + f.Shorthand + ", " + names
				}
				if !strings.Contains(r.stdout, "  "+names+" ") && !strings.Contains(r.stdout, "  "+names+"\n") {
					t.Errorf("%s %s does not list %s", name, help, names)
				}
			})
		}
		r := runCmd(t, h.rawCommand(ctx, h.baseEnv(), name, "--version"))
		if r.code != 0 || !strings.HasPrefix(r.stdout, "s3lock ") || len(lines(r.stdout)) != 1 {
			t.Errorf("%s --version: exit code %d, stdout %q", name, r.code, r.stdout)
		}
	}
	r := runCmd(t, h.rawCommand(ctx, h.baseEnv(), "--help"))
	if r.code != 0 {
		t.Errorf("--help: exit code %d", r.code)
	}
	for _, s := range []string{"s3lock run", "s3lock status", "s3lock unlock", "s3lock probe", "s3lock watch", "s3lock completion", "Exit codes:", "\n  69 ", "\n  75 ", "\n  76 ", "\n  2 "} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("--help lacks %q", s)
		}
	}
	// Every spelling prints the same one line: "s3lock VERSION GOVERSION"
	// (with the VCS revision when the build recorded one).
	r = runCmd(t, h.rawCommand(ctx, h.baseEnv(), "--version"))
	if f := strings.Fields(r.stdout); r.code != 0 || len(lines(r.stdout)) != 1 || len(f) < 3 || f[0] != "s3lock" || !strings.HasPrefix(f[len(f)-1], "go") {
		t.Errorf("--version: exit code %d, stdout %q; want 0 and \"s3lock VERSION [REVISION] GOVERSION\"", r.code, r.stdout)
	}
	for _, args := range [][]string{{"-version"}, {"version"}, {"run", "--version"}, {"status", "--version", "s3://b/k"}} {
		if r2 := runCmd(t, h.rawCommand(ctx, h.baseEnv(), args...)); r2.code != 0 || r2.stdout != r.stdout || r2.stderr != "" {
			t.Errorf("%q: exit code %d, stdout %q, stderr %q; want 0 and %q as --version prints", args, r2.code, r2.stdout, r2.stderr, r.stdout)
		}
	}
}

// TestCompletion checks that "s3lock completion SHELL" prints a script
// for each shell, and that the script's helper completes flags.
func TestCompletion(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, tc := range []struct{ shell, want string }{
		{"bash", "complete -o default -F __start_s3lock s3lock"},
		{"zsh", "#compdef s3lock"},
		{"fish", "complete -c s3lock"},
	} {
		r := runCmd(t, h.rawCommand(ctx, h.baseEnv(), "completion", tc.shell))
		if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, tc.want) {
			t.Errorf("completion %s: exit code %d, stderr %q, %d bytes lacking %q; want 0, nothing, a script", tc.shell, r.code, r.stderr, len(r.stdout), tc.want)
		}
	}
	// What the scripts run on <TAB>: s3lock's own completion of "run --t".
	r := runCmd(t, h.rawCommand(ctx, h.baseEnv(), "__complete", "run", "--t"))
	if r.code != 0 || !strings.Contains(r.stdout, "--ttl") {
		t.Errorf("__complete run --t: exit code %d, stdout %q; want --ttl among the candidates", r.code, r.stdout)
	}
	for _, bad := range [][]string{{"completion"}, {"completion", "tcsh"}, {"completion", "bash", "zsh"}} {
		r := runCmd(t, h.rawCommand(ctx, h.baseEnv(), bad...))
		if r.code != exitUsage || len(lines(r.stderr)) != 1 || r.stdout != "" {
			t.Errorf("%q: exit code %d, stderr %q, stdout %d bytes; want %d, one line, nothing", bad, r.code, r.stderr, len(r.stdout), exitUsage)
		}
	}
}
