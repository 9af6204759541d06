// Package s3servers gives tests S3 servers other than the embedded one:
// versitygw, moto and SeaweedFS started as separate processes on a loopback
// port, and
// real AWS S3 when the environment names a bucket. Each helper returns a
// ready *Server with one bucket, or skips the test with a message saying
// what is missing.
//
// Environment:
//
//   - S3LOCK_REQUIRE_SERVERS: comma-separated server names ("versitygw",
//     "moto", "seaweedfs", or "all" for every one) that must be available; a helper for a
//     required server fails the test instead of skipping it. CI sets it for
//     the servers it installs.
//   - S3LOCK_VERSITYGW, S3LOCK_MOTO_SERVER, S3LOCK_WEED: paths of the
//     server binaries. Without them the binaries are looked up in PATH,
//     then in GOBIN and GOPATH/bin (where `go install` puts versitygw and
//     .ci/install-seaweedfs.sh puts weed).
//   - S3LOCK_TEST_BUCKET: an existing AWS S3 bucket for [AWS]; credentials
//     and region come from the usual AWS environment and files.
//     S3LOCK_TEST_PREFIX prefixes every key used there (default
//     "s3lock-test/").
//
// Every process is started in its own process group, is killed (the whole
// group) and reaped in the test's cleanup, and on Linux also dies with the
// test binary. Every HTTP transport a Server hands out is closed with it,
// so no goroutine outlives the test.
package s3servers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"go/build"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// Environment variables read by this package.
const (
	EnvRequire    = "S3LOCK_REQUIRE_SERVERS"
	EnvVersitygw  = "S3LOCK_VERSITYGW"
	EnvMotoServer = "S3LOCK_MOTO_SERVER"
	EnvWeed       = "S3LOCK_WEED"
	EnvAWSBucket  = "S3LOCK_TEST_BUCKET"
	EnvAWSPrefix  = "S3LOCK_TEST_PREFIX"
)

// Server names, as used in S3LOCK_REQUIRE_SERVERS and [Server.Name].
const (
	NameVersitygw = "versitygw"
	NameMoto      = "moto"
	NameSeaweedFS = "seaweedfs"
	NameAWS       = "aws"
)

// MotoRace is why a lock on moto is unsafe, for tests that report a
// second winner there as a known store defect instead of failing.
const MotoRace = "moto 5.2.1 checks If-Match/If-None-Match and then writes without a lock " +
	"(moto/s3/responses.py put_object, threaded server), so two concurrent conditional PUTs can both succeed under load; " +
	"no lock can be safe on it"

// DefaultBucket is the bucket created on out-of-process servers.
const DefaultBucket = "s3lock-test"

// startTimeout bounds how long a server may take to answer after start
// (moto imports a lot of Python on a loaded 2-core machine).
const startTimeout = 60 * time.Second

// AccessKey and SecretKey are the static credentials of the local servers
// (versitygw's root user; moto accepts any), for processes that build their
// own client.
const (
	AccessKey = "s3lockaccess"
	SecretKey = "s3locksecret-0123456789"
)

// Server is one S3 endpoint with a bucket the test may use. Its methods are
// safe for concurrent use.
type Server struct {
	name     string
	endpoint string // base URL; "" for AWS
	bucket   string
	prefix   string
	base     s3.Options // without HTTPClient
	proc     *process   // nil for AWS

	mu         sync.Mutex // protects transports, closed
	transports []*http.Transport
	closed     bool
}

// Name returns the server's name: "versitygw", "moto", "seaweedfs" or
// "aws".
func (s *Server) Name() string { return s.name }

// URL returns the server's base URL (http://127.0.0.1:port), or "" for AWS.
func (s *Server) URL() string { return s.endpoint }

// Bucket returns the bucket the test may use.
func (s *Server) Bucket() string { return s.bucket }

// KeyPrefix returns a prefix to put in front of every key: "" on a fresh
// local server, a unique "S3LOCK_TEST_PREFIX/<random>/" on AWS, where
// objects from earlier runs stay behind.
func (s *Server) KeyPrefix() string { return s.prefix }

// Options returns the s3.Options that Client uses, with a fresh HTTP client
// (closed with the server).
func (s *Server) Options() s3.Options {
	o := s.base.Copy()
	o.HTTPClient = s.HTTPClient()
	return o
}

// Client returns a new S3 client for the server with its own HTTP
// transport. For local servers: path-style addressing, static
// credentials, region us-east-1, checksums only where S3 requires them.
// optFns adjust the options further.
func (s *Server) Client(optFns ...func(*s3.Options)) *s3.Client {
	return s3.New(s.Options(), optFns...)
}

// HTTPClient returns a new *http.Client whose transport is closed with the
// server.
func (s *Server) HTTPClient() *http.Client {
	tr := &http.Transport{
		Proxy:               nil, // loopback only: never through a proxy
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}
	if s.name == NameAWS {
		tr.Proxy = http.ProxyFromEnvironment
		tr.TLSHandshakeTimeout = 10 * time.Second
	}
	s.mu.Lock()
	s.transports = append(s.transports, tr)
	s.mu.Unlock()
	return &http.Client{Transport: tr}
}

// CreateBucket creates another bucket on a local server.
func (s *Server) CreateBucket(ctx context.Context, name string) error {
	if s.proc == nil {
		return fmt.Errorf("s3servers: %s: creating buckets is not supported", s.name)
	}
	c := s.Client()
	_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
	return err
}

// Close closes every transport the server handed out, then kills the
// server process (its whole process group) and waits for it to exit.
// Close is idempotent; the helpers call it in the test's cleanup.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	trs := s.transports
	s.mu.Unlock()
	for _, tr := range trs {
		tr.CloseIdleConnections()
	}
	if s.proc != nil {
		s.proc.stop()
	}
}

// Versitygw starts versitygw v1.8.0 (posix backend in a temporary
// directory, with a versioning directory) on a free loopback port and creates DefaultBucket. It skips
// the test when the binary cannot be found, unless versitygw is required
// (see S3LOCK_REQUIRE_SERVERS), in which case it fails it.
func Versitygw(tb testing.TB) *Server {
	tb.Helper()
	bin, err := lookBinary(EnvVersitygw, "versitygw")
	if err != nil {
		unavailable(tb, NameVersitygw, "versitygw not found (%v); install it with `go install github.com/versity/versitygw/cmd/versitygw@v1.8.0` or run .ci/start-servers.sh", err)
	}
	return startLocal(tb, NameVersitygw, func(port int, dir string) *exec.Cmd {
		root, versions := filepath.Join(dir, "root"), filepath.Join(dir, "versions")
		for _, d := range []string{root, versions} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				tb.Fatalf("s3servers: %v", err)
			}
		}
		// With a versioning directory, buckets can have versioning
		// enabled (they start without it).
		cmd := exec.Command(bin, "--port", fmt.Sprintf("127.0.0.1:%d", port), "posix", "--versioning-dir", versions, root)
		cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+AccessKey, "ROOT_SECRET_KEY="+SecretKey)
		return cmd
	})
}

// Moto starts moto_server (moto's S3 emulation, in-memory) on a free
// loopback port and creates DefaultBucket. It skips the test when
// moto_server cannot be found (it cannot be installed without PyPI),
// unless moto is required (see S3LOCK_REQUIRE_SERVERS).
func Moto(tb testing.TB) *Server {
	tb.Helper()
	bin, err := lookBinary(EnvMotoServer, "moto_server")
	if err != nil {
		unavailable(tb, NameMoto, "moto_server not found (%v); it comes with `pip install 'moto[server]'`", err)
	}
	return startLocal(tb, NameMoto, func(port int, _ string) *exec.Cmd {
		return exec.Command(bin, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	})
}

// SeaweedFS starts SeaweedFS (`weed server`: master, volume, filer and S3
// gateway in one process, data in a temporary directory) on free loopback
// ports and creates DefaultBucket. Build the binary with
// .ci/install-seaweedfs.sh. It skips the test when weed cannot be found,
// unless seaweedfs is required (see S3LOCK_REQUIRE_SERVERS).
//
// weed runs without identities, so it accepts every request (signed ones
// included) as anonymous. It must not see AWS_ACCESS_KEY_ID or
// AWS_SECRET_ACCESS_KEY: it would silently make them an admin identity and
// then refuse our requests signed with other keys, so they are removed from
// its environment. Right after a start its raft leader may not have
// settled and writes can answer 500: SeaweedFS returns only once a PUT has
// succeeded.
func SeaweedFS(tb testing.TB) *Server {
	tb.Helper()
	bin, err := lookBinary(EnvWeed, "weed")
	if err != nil {
		unavailable(tb, NameSeaweedFS, "weed not found (%v); build it with .ci/install-seaweedfs.sh", err)
	}
	return startLocal(tb, NameSeaweedFS, func(port int, dir string) *exec.Cmd {
		data := filepath.Join(dir, "data")
		if err := os.MkdirAll(data, 0o755); err != nil {
			tb.Fatalf("s3servers: %v", err)
		}
		// Every port weed opens must be free: the master, volume and filer
		// ports, and the gRPC ports of all four, default to fixed numbers
		// (9333, 8080, 8888, and port+10000), which parallel tests or
		// other services would share.
		ports := make([]string, 7)
		for i := range ports {
			p, err := freePort()
			if err != nil {
				tb.Fatalf("s3servers: %v", err)
			}
			ports[i] = fmt.Sprint(p)
		}
		cmd := exec.Command(bin,
			"-logdir="+dir,
			"server",
			"-ip=127.0.0.1", "-ip.bind=127.0.0.1",
			"-dir="+data,
			"-master.port="+ports[0], "-master.port.grpc="+ports[1],
			"-volume.port="+ports[2], "-volume.port.grpc="+ports[3],
			"-filer.port="+ports[4], "-filer.port.grpc="+ports[5],
			"-s3", "-s3.port="+fmt.Sprint(port), "-s3.port.grpc="+ports[6],
			"-s3.port.iceberg=0", "-s3.port.lance=0",
			"-master.telemetry=false",
			"-volume.max=10",
		)
		cmd.Env = withoutEnv(os.Environ(), "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
		return cmd
	})
}

// withoutEnv returns env without the named variables.
func withoutEnv(env []string, names ...string) []string {
	var out []string
next:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

// AWS returns a Server for the real AWS S3 bucket named by
// S3LOCK_TEST_BUCKET, with credentials and region from the default AWS
// configuration. It skips the test when the variable is not set. The
// bucket must exist; the test's objects stay in it, under KeyPrefix.
func AWS(tb testing.TB) *Server {
	tb.Helper()
	bucket := os.Getenv(EnvAWSBucket)
	if bucket == "" {
		tb.Skipf("s3servers: %s not set; skipping tests against real AWS S3", EnvAWSBucket)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		tb.Fatalf("s3servers: loading AWS configuration: %v", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	prefix := os.Getenv(EnvAWSPrefix)
	if prefix == "" {
		prefix = "s3lock-test/"
	}
	s := &Server{
		name:   NameAWS,
		bucket: bucket,
		prefix: prefix + randomHex(8) + "/",
		base:   s3.NewFromConfig(cfg).Options(),
	}
	tb.Cleanup(s.Close)
	return s
}

// startLocal starts a server process built by newCmd on a free port and
// waits until it has created DefaultBucket. A port taken between choosing
// and binding it makes the process exit; startLocal then tries another.
func startLocal(tb testing.TB, name string, newCmd func(port int, dir string) *exec.Cmd) *Server {
	tb.Helper()
	var errs []error
	for attempt := 0; attempt < 3; attempt++ {
		dir := tb.TempDir() // removed after the process is reaped (cleanups run LIFO)
		port, err := freePort()
		if err != nil {
			tb.Fatalf("s3servers: %v", err)
		}
		cmd := newCmd(port, dir)
		p, err := startProcess(cmd, filepath.Join(dir, name+".log"))
		if err != nil {
			unavailable(tb, name, "%s: starting %s: %v", name, cmd.Path, err)
		}
		s := &Server{
			name:     name,
			endpoint: fmt.Sprintf("http://127.0.0.1:%d", port),
			bucket:   DefaultBucket,
			proc:     p,
		}
		s.base = s3.Options{
			Region:                     "us-east-1",
			BaseEndpoint:               aws.String(s.endpoint),
			UsePathStyle:               true,
			Credentials:                credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
			RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
			ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		}
		tb.Cleanup(s.Close)
		start := time.Now()
		if err := s.waitReady(); err != nil {
			s.Close()
			errs = append(errs, fmt.Errorf("attempt %d on port %d: %w\n%s", attempt+1, port, err, p.logTail()))
			continue
		}
		tb.Logf("s3servers: %s ready at %s after %v (pid %d)", name, s.endpoint, time.Since(start).Round(time.Millisecond), cmd.Process.Pid)
		return s
	}
	tb.Fatalf("s3servers: %s did not start: %v", name, errors.Join(errs...))
	return nil
}

// waitReady creates DefaultBucket, retrying while the server is not yet
// listening, until startTimeout.
func (s *Server) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	c := s.Client(func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	var last error
	for {
		if err := s.proc.exited(); err != nil {
			return fmt.Errorf("the process exited: %w (last request: %v)", err, last)
		}
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := c.CreateBucket(actx, &s3.CreateBucketInput{Bucket: aws.String(s.bucket)})
		acancel()
		var apiErr smithy.APIError
		switch {
		case err == nil || errors.As(err, &apiErr) && (apiErr.ErrorCode() == "BucketAlreadyOwnedByYou" || apiErr.ErrorCode() == "BucketAlreadyExists"):
			if s.name != NameSeaweedFS {
				return nil
			}
			// SeaweedFS creates the bucket before its raft leader and
			// volumes are ready: wait for a write to succeed.
			actx, acancel := context.WithTimeout(ctx, 5*time.Second)
			_, err = c.PutObject(actx, &s3.PutObjectInput{
				Bucket: aws.String(s.bucket), Key: aws.String(".s3servers-ready"), Body: strings.NewReader("ready"),
			})
			acancel()
			if err == nil {
				dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
				_, err = c.DeleteObject(dctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(".s3servers-ready")})
				dcancel()
				return err
			}
		}
		last = err
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("no answer within %v: %w", startTimeout, last)
		case <-t.C:
		}
	}
}

// process is a started server process, reaped by its own goroutine.
type process struct {
	cmd  *exec.Cmd
	log  string        // path of the file holding its stdout and stderr
	done chan struct{} // closed once Wait has returned
	err  error         // Wait's result, set before done is closed
}

func startProcess(cmd *exec.Cmd, logPath string) (*process, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child has its own copy of the descriptor
	// An *os.File as Stdout/Stderr needs no copying goroutine.
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited returns a non-nil error once the process has exited.
func (p *process) exited() error {
	select {
	case <-p.done:
		if p.err == nil {
			return errors.New("exit status 0")
		}
		return p.err
	default:
		return nil
	}
}

// stop kills the process group and waits for the process to be reaped.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	killGroup(p.cmd.Process)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		// SIGKILL cannot be ignored; this only happens if the kernel is
		// stuck. Do not hang the test binary on it.
		fmt.Fprintf(os.Stderr, "s3servers: process %d not reaped 30s after SIGKILL\n", p.cmd.Process.Pid)
	}
}

// logTail returns the end of the process's output, for error messages.
func (p *process) logTail() string {
	f, err := os.Open(p.log)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 4096
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		_, _ = f.Seek(fi.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return "--- server output ---\n" + string(b)
}

// freePort asks the kernel for a free loopback port. The port is released
// before the server binds it; startLocal retries if someone takes it.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("choosing a port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, err
	}
	return port, nil
}

// lookBinary finds a server binary: the path in env, else name in PATH,
// GOBIN or GOPATH/bin.
func lookBinary(env, name string) (string, error) {
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", env, p, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	var dirs []string
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		dirs = append(dirs, gobin)
	}
	for _, gp := range filepath.SplitList(build.Default.GOPATH) {
		dirs = append(dirs, filepath.Join(gp, "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not set and %s is not in PATH or %s", env, name, strings.Join(dirs, ", "))
}

// Required reports whether S3LOCK_REQUIRE_SERVERS names server (or "all").
// It returns an error for a value naming an unknown server, so a typo in
// CI does not turn a requirement into a silent skip.
func Required(name string) (bool, error) {
	v := os.Getenv(EnvRequire)
	if v == "" {
		return false, nil
	}
	found := false
	for _, f := range strings.Split(v, ",") {
		switch f = strings.TrimSpace(f); f {
		case "":
		case "all":
			found = true
		case NameVersitygw, NameMoto, NameSeaweedFS:
			found = found || f == name
		default:
			return false, fmt.Errorf("%s=%q: unknown server %q (want %s, %s, %s or all)", EnvRequire, v, f, NameVersitygw, NameMoto, NameSeaweedFS)
		}
	}
	return found, nil
}

// unavailable skips the test, or fails it when the server is required.
func unavailable(tb testing.TB, name, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf("s3servers: "+format, args...)
	req, err := Required(name)
	switch {
	case err != nil:
		tb.Fatalf("%s; and %v", msg, err)
	case req:
		tb.Fatalf("%s (required: %s=%s)", msg, EnvRequire, os.Getenv(EnvRequire))
	default:
		tb.Skip(msg)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
