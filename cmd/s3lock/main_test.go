package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/s3lock/s3lock/s3locktest"
)

// binPath is the s3lock binary that TestMain builds; the tests run it as
// a real process against an S3 server on loopback.
var binPath string

// childEnv selects the test binary's child mode: the tests use the test
// binary itself as the command that s3lock runs (see childMain).
const childEnv = "S3LOCK_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(childMain(mode))
	}
	dir, err := os.MkdirTemp("", "s3lock-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "s3lock")
	build := exec.Command(goTool(), "build", "-o", binPath, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building s3lock: %v\n%s", err, out)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { _ = os.RemoveAll(dir) }))
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "/usr/local/go/bin/go"
}

// childMain is the command s3lock runs in the tests. Modes:
//
//	critical  append "enter <ns> <token>" to $LOG, sleep $SLEEP_MS,
//	          append "leave <ns> <token>"
//	exit      exit with $CODE
//	env       print the S3LOCK_* variables, then stdin as "stdin:<text>"
//	block     create $READY, then wait until $RELEASE exists (at most
//	          60 s); on SIGTERM create $READY.term and exit 3, or with
//	          $IGNORE_TERM set, ignore SIGTERM
//	marker    create $MARKER and exit 0
func childMain(mode string) int {
	switch mode {
	case "critical":
		log, err := os.OpenFile(os.Getenv("LOG"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 100
		}
		defer log.Close()
		tok := os.Getenv("S3LOCK_TOKEN")
		fmt.Fprintf(log, "enter %d %s\n", time.Now().UnixNano(), tok)
		ms, _ := strconv.Atoi(os.Getenv("SLEEP_MS"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Fprintf(log, "leave %d %s\n", time.Now().UnixNano(), tok)
		return 0
	case "exit":
		code, _ := strconv.Atoi(os.Getenv("CODE"))
		return code
	case "env":
		for _, k := range []string{"S3LOCK_TOKEN", "S3LOCK_OWNER", "S3LOCK_KEY", "S3LOCK_BUCKET"} {
			fmt.Printf("%s=%s\n", k, os.Getenv(k))
		}
		in, _ := io.ReadAll(os.Stdin)
		fmt.Printf("stdin:%s\n", in)
		return 0
	case "block":
		if os.Getenv("IGNORE_TERM") != "" {
			signal.Ignore(syscall.SIGTERM)
		} else {
			term := make(chan os.Signal, 1)
			signal.Notify(term, syscall.SIGTERM)
			go func() {
				<-term
				_ = os.WriteFile(os.Getenv("READY")+".term", nil, 0o644)
				os.Exit(3)
			}()
		}
		if err := os.WriteFile(os.Getenv("READY"), []byte(os.Getenv("S3LOCK_TOKEN")), 0o644); err != nil {
			return 100
		}
		for end := time.Now().Add(60 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if _, err := os.Stat(os.Getenv("RELEASE")); err == nil {
				return 0
			}
		}
		return 101
	case "marker":
		if err := os.WriteFile(os.Getenv("MARKER"), nil, 0o644); err != nil {
			return 100
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown child mode %q\n", mode)
	return 100
}

// harness runs s3lock against one S3 server.
type harness struct {
	t   *testing.T
	srv *s3locktest.Server
	dir string
	// endpoint is passed as --endpoint-url (srv.URL() unless a test puts
	// a proxy in front).
	endpoint string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	srv := s3locktest.New(t)
	return &harness{t: t, srv: srv, dir: t.TempDir(), endpoint: srv.URL()}
}

// url returns s3://bucket/key on the harness's server.
func (h *harness) url(key string) string { return "s3://" + h.srv.Bucket() + "/" + key }

// path returns a file name in the test's temporary directory.
func (h *harness) path(name string) string { return filepath.Join(h.dir, name) }

// baseEnv is a clean environment: credentials for the test server, no
// shared config files, no EC2 metadata lookups (no traffic off loopback).
func (h *harness) baseEnv() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + h.dir,
		"AWS_ACCESS_KEY_ID=s3locktest",
		"AWS_SECRET_ACCESS_KEY=s3locktest",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + filepath.Join(h.dir, "no-aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(h.dir, "no-aws-credentials"),
	}
}

// command returns s3lock with args, the server's endpoint flags inserted
// after the subcommand, and the child mode's environment in env.
func (h *harness) command(ctx context.Context, env []string, args ...string) *exec.Cmd {
	full := args
	if len(args) > 0 {
		full = append([]string{args[0], "--endpoint-url", h.endpoint, "--path-style", "--region", "us-east-1"}, args[1:]...)
	}
	return h.rawCommand(ctx, append(h.baseEnv(), env...), full...)
}

// rawCommand returns s3lock with exactly args and env.
func (h *harness) rawCommand(ctx context.Context, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// child returns the arguments that make s3lock run the test binary in
// mode, and the environment that selects the mode.
func childCmd(mode string, env ...string) (argv []string, childEnvs []string) {
	return []string{os.Args[0]}, append([]string{childEnv + "=" + mode}, env...)
}

// result is a finished s3lock process.
type result struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

// run runs s3lock to completion. args[0] is the subcommand.
func (h *harness) run(env []string, args ...string) result {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return runCmd(h.t, h.command(ctx, env, args...))
}

func runCmd(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %v: %v", cmd.Args, err)
	}
	_ = cmd.Wait()
	return result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String(), elapsed: time.Since(start)}
}

// background is an s3lock process running in the background, its output
// going to files (readable at any time, and no pipe a grandchild could
// keep open).
type background struct {
	cmd        *exec.Cmd
	outF, errF *os.File
	start      time.Time
	cancel     context.CancelFunc
}

// start starts s3lock in the background; the test's cleanup kills it if
// it is still running.
func (h *harness) start(env []string, args ...string) *background {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	b := &background{cmd: h.command(ctx, env, args...), cancel: cancel}
	var err error
	if b.outF, err = os.CreateTemp(h.dir, "stdout-"); err != nil {
		h.t.Fatal(err)
	}
	if b.errF, err = os.CreateTemp(h.dir, "stderr-"); err != nil {
		h.t.Fatal(err)
	}
	b.cmd.Stdout, b.cmd.Stderr = b.outF, b.errF
	b.start = time.Now()
	if err := b.cmd.Start(); err != nil {
		cancel()
		h.t.Fatalf("starting %v: %v", b.cmd.Args, err)
	}
	h.t.Cleanup(func() {
		cancel()
		if b.cmd.ProcessState == nil {
			_ = b.cmd.Wait()
		}
		b.outF.Close()
		b.errF.Close()
	})
	return b
}

func readFile(f *os.File) string {
	b, _ := os.ReadFile(f.Name())
	return string(b)
}

// stderr returns what the process wrote on stderr so far.
func (b *background) stderr() string { return readFile(b.errF) }

// wait waits for the background process to exit.
func (b *background) wait() result {
	_ = b.cmd.Wait()
	b.cancel()
	return result{code: b.cmd.ProcessState.ExitCode(), stdout: readFile(b.outF), stderr: readFile(b.errF), elapsed: time.Since(b.start)}
}

// waitFile waits up to 20 s for name to exist.
func waitFile(t *testing.T, name string, b *background) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(name); err == nil {
			return
		}
	}
	msg := ""
	if b != nil {
		msg = "; s3lock stderr: " + b.stderr()
	}
	t.Fatalf("%s did not appear within 20s%s", name, msg)
}

func exists(name string) bool {
	_, err := os.Stat(name)
	return err == nil
}

// lines returns the non-empty lines of s.
func lines(s string) []string {
	var ls []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			ls = append(ls, l)
		}
	}
	return ls
}
