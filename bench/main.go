// Command s3lock-bench measures what an s3lock lock costs: latency, S3
// requests (and so money) per operation, and throughput and fairness under
// contention. It is a module of its own (bench/), so that the library's
// go.mod needs none of its plotting code; run it from the repository root
// with go run -C bench.
//
// By default it runs against an embedded S3 server (s3locktest: gofakes3
// in memory) that adds a fixed latency to every request and counts every
// request at the HTTP layer:
//
//	go run -C bench .                       # 0, 10 and 30 ms
//	go run -C bench . --latency 10ms --json
//	go run -C bench . --short               # CI: < 60 s
//	go run -C bench . --chart ../docs/contention.svg
//
// One setting, to measure a change (8 worker processes, default options,
// each holding the lock 100 ms per grant, 10 ms per request):
//
//	go run -C bench . --scenario fairness --hold 100ms --workers 8 --duration 20s --latency 10ms
//
// It exits 1 when a correctness check fails (lost counter updates,
// duplicate fencing tokens, errors) and never because of a performance
// figure. With --endpoint or --bucket it measures your own S3 instead
// (requests are then counted by the clients):
//
//	go run -C bench . --bucket my-bucket --region eu-west-1
//
// Scenarios: uncontended (warm Lock+Unlock and TryLock+Unlock cycles, first
// acquire of an existing free lock and of an absent one); contended (N
// worker processes, each with its own Mutex and S3 client, looping Lock →
// GET+PUT of a shared counter → hold → Unlock; by default retry intervals
// of 20 and 80 ms and no hold); fairness (the same at the library's default
// options, holding 100 ms and 1 s: grants per worker, Jain's index, the
// largest bypass and the longest wait); sweep (contended, and fairness when
// chosen, for several N, for the chart) and keys (1 → 256 independent
// locks, one worker each).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

func main() {
	if raw := os.Getenv(workerEnv); raw != "" {
		os.Exit(workerMain(raw))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "s3lock-bench:", err)
		os.Exit(1)
	}
}

// options are the command-line flags.
type options struct {
	endpoint, bucket, region string
	pathStyle                bool
	latencies                []time.Duration
	scenarios                map[string]bool
	workers                  []int
	// retries and holds are the contended scenario's (a retry of 0 is the
	// library's default), fairRetries and fairHolds the fairness
	// scenario's.
	retries, holds         []time.Duration
	fairRetries, fairHolds []time.Duration
	duration, warmup       time.Duration
	cycles                 int
	contenders             []int
	keys                   []int
	keysDuration           time.Duration
	chart                  string
	json                   bool
	jsonOut                string
	fromJSON               string
	progress               string
	repeat                 int
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("s3lock-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	var latencies, scenarios, workers, retries, holds, contenders, keys string
	var short bool
	fs.StringVar(&o.endpoint, "endpoint", "", "S3 endpoint URL of your own S3 (default: the embedded server; AWS when only --bucket is given)")
	fs.StringVar(&o.bucket, "bucket", "", "bucket to use on your own S3 (default: the embedded server's)")
	fs.StringVar(&o.region, "region", "us-east-1", "region of your own S3")
	fs.BoolVar(&o.pathStyle, "path-style", false, "path-style addressing for your own S3 (always on for the embedded server)")
	fs.StringVar(&latencies, "latency", "0,10ms,30ms", "latency added to every request by the embedded server, comma-separated")
	fs.StringVar(&scenarios, "scenarios", "uncontended,contended,fairness,keys", "scenarios to run: uncontended, contended, fairness, sweep, keys")
	fs.StringVar(&scenarios, "scenario", "uncontended,contended,fairness,keys", "the same as --scenarios")
	fs.StringVar(&workers, "workers", "8", "worker processes of the contended and fairness scenarios, comma-separated")
	fs.StringVar(&retries, "retry", "20ms,80ms", "retry intervals (WithRetryInterval; \"default\": the library's) of the contended scenario, and of the fairness scenario when given (default there: \"default\")")
	fs.StringVar(&holds, "hold", "0", "how long each critical section holds the lock, comma-separated, for the contended scenario, and for the fairness scenario when given (default there: 100ms,1s)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each contended or fairness run")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "time each contended or fairness run runs before it is measured")
	fs.IntVar(&o.cycles, "cycles", 200, "cycles of each uncontended measurement")
	fs.StringVar(&contenders, "contenders", "1,2,4,8,16", "numbers of worker processes of the sweep")
	fs.StringVar(&keys, "keys", "1,4,16,64,256", "numbers of independent keys of the keys scenario")
	fs.DurationVar(&o.keysDuration, "keys-duration", 4*time.Second, "time of each keys run")
	fs.StringVar(&o.chart, "chart", "", "write an SVG chart of the sweep (throughput, requests per grant, Jain's index and the largest bypass against contenders) to this file; adds the sweep scenario")
	fs.BoolVar(&o.json, "json", false, "print the results as JSON instead of a table")
	fs.StringVar(&o.jsonOut, "json-out", "", "also write the results as JSON to this file")
	fs.StringVar(&o.fromJSON, "from-json", "", "run nothing: print the table (and draw --chart) from results saved with --json-out")
	fs.StringVar(&o.progress, "progress", "auto", "progress bar on stderr: auto (when it is a terminal), always, never")
	fs.IntVar(&o.repeat, "repeat", 1, "run every measurement this many times and report the median of each figure (the machine is noisy)")
	fs.BoolVar(&short, "short", false, "a quick run for CI (< 60 s): 10 ms latency, short runs, hold 100ms in the fairness scenario, keys 1 and 16, no sweep")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	fairRetries, fairHolds := "default", "100ms,1s"
	if set["retry"] {
		fairRetries = retries
	}
	if set["hold"] {
		fairHolds = holds
	}
	if short {
		def := func(name string, p *string, v string) {
			if !set[name] {
				*p = v
			}
		}
		def("latency", &latencies, "10ms")
		def("contenders", &contenders, "1,4,8")
		def("keys", &keys, "1,16")
		def("hold", &fairHolds, "100ms")
		if !set["duration"] {
			o.duration = 2 * time.Second
		}
		if !set["warmup"] {
			o.warmup = 500 * time.Millisecond
		}
		if !set["cycles"] {
			o.cycles = 30
		}
		if !set["keys-duration"] {
			o.keysDuration = 1500 * time.Millisecond
		}
	}
	var err error
	if o.latencies, err = parseDurations(latencies, false); err != nil {
		return nil, fmt.Errorf("--latency: %w", err)
	}
	if o.retries, err = parseDurations(retries, true); err != nil {
		return nil, fmt.Errorf("--retry: %w", err)
	}
	if o.fairRetries, err = parseDurations(fairRetries, true); err != nil {
		return nil, fmt.Errorf("--retry: %w", err)
	}
	if o.holds, err = parseDurations(holds, false); err != nil {
		return nil, fmt.Errorf("--hold: %w", err)
	}
	if o.fairHolds, err = parseDurations(fairHolds, false); err != nil {
		return nil, fmt.Errorf("--hold: %w", err)
	}
	if o.workers, err = parseInts(workers); err != nil {
		return nil, fmt.Errorf("--workers: %w", err)
	}
	if o.contenders, err = parseInts(contenders); err != nil {
		return nil, fmt.Errorf("--contenders: %w", err)
	}
	if o.keys, err = parseInts(keys); err != nil {
		return nil, fmt.Errorf("--keys: %w", err)
	}
	o.scenarios = map[string]bool{}
	for _, s := range strings.Split(scenarios, ",") {
		switch s = strings.TrimSpace(s); s {
		case "uncontended", "contended", "fairness", "sweep", "keys":
			o.scenarios[s] = true
		case "":
		default:
			return nil, fmt.Errorf("--scenarios: unknown scenario %q", s)
		}
	}
	if o.chart != "" {
		o.scenarios["sweep"] = true
	}
	switch {
	case o.cycles < 1:
		return nil, fmt.Errorf("--cycles must be at least 1")
	case o.repeat < 1:
		return nil, fmt.Errorf("--repeat must be at least 1")
	case o.duration <= 0 || o.warmup < 0 || o.keysDuration <= 0:
		return nil, fmt.Errorf("--duration and --keys-duration must be positive, --warmup not negative")
	case o.progress != "auto" && o.progress != "always" && o.progress != "never":
		return nil, fmt.Errorf("--progress must be auto, always or never")
	}
	if o.external() {
		// The added latency is the embedded server's: your S3 has its own.
		o.latencies = []time.Duration{0}
	}
	return o, nil
}

func (o *options) external() bool { return o.endpoint != "" || o.bucket != "" }

// parseDurations parses a comma-separated list of durations; with
// allowDefault, "default" stands for the library's default, as 0.
func parseDurations(s string, allowDefault bool) ([]time.Duration, error) {
	var ds []time.Duration
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if f == "0" && allowDefault {
			return nil, fmt.Errorf("bad duration %q (\"default\" for the library's default)", f)
		}
		if f == "0" || (f == "default" && allowDefault) {
			ds = append(ds, 0)
			continue
		}
		d, err := time.ParseDuration(f)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("bad duration %q", f)
		}
		ds = append(ds, d)
	}
	if len(ds) == 0 {
		return nil, fmt.Errorf("empty list")
	}
	return ds, nil
}

func parseInts(s string) ([]int, error) {
	var ns []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad count %q", f)
		}
		ns = append(ns, n)
	}
	if len(ns) == 0 {
		return nil, fmt.Errorf("empty list")
	}
	return ns, nil
}

// report is the whole output.
type report struct {
	Started time.Time `json:"started"`
	Target  target    `json:"target"`
	// Load is the 1-minute load average when the run started (Linux).
	Load float64 `json:"load_average,omitempty"`
	CPUs int     `json:"cpus"`
	Rows []row   `json:"results"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.fromJSON != "" {
		return replay(o, stdout)
	}
	b := &bench{run: newRunID()}
	if o.external() {
		b.target = target{Endpoint: o.endpoint, Region: o.region, Bucket: o.bucket, PathStyle: o.pathStyle}
		if b.target.Bucket == "" {
			return fmt.Errorf("--endpoint needs --bucket")
		}
	} else {
		srv, err := startServer()
		if err != nil {
			return err
		}
		defer srv.Close()
		b.srv = srv
		b.target = target{Endpoint: srv.URL(), Region: "us-east-1", Bucket: srv.Bucket(), PathStyle: true, Embedded: true}
	}
	if b.client, err = b.target.newClient(ctx); err != nil {
		return err
	}
	defer b.client.close()

	rep := report{Started: time.Now().UTC(), Target: b.target, Load: loadAverage(), CPUs: numCPU()}
	steps := plan(o)
	b.prog = newProgress(stderr, o.progress, steps, o.repeat)
	defer b.prog.finish()
	var sweep []row
	for _, st := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		b.setLatency(st.latency)
		var runs [][]row
		for range o.repeat {
			b.prog.begin(st)
			rows, err := st.run(ctx, b, o)
			b.prog.end()
			if err != nil {
				return fmt.Errorf("%s: %w", st.label, err)
			}
			runs = append(runs, rows)
		}
		rows := medianRuns(runs)
		if st.sweep {
			sweep = append(sweep, rows...)
		}
		rep.Rows = append(rep.Rows, rows...)
	}
	b.prog.finish()
	if o.chart != "" {
		if err := writeChart(o.chart, sweep); err != nil {
			return fmt.Errorf("chart: %w", err)
		}
	}
	if o.jsonOut != "" {
		raw, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.jsonOut, append(raw, '\n'), 0o644); err != nil {
			return err
		}
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printTable(stdout, &rep)
	}
	return check(&rep)
}

// check fails the run when a correctness check failed: lost counter
// updates, a fencing token given twice, or errors in a scenario.
// Performance figures are never checked (the machine may be noisy).
func check(rep *report) error {
	var bad []string
	for _, r := range rep.Rows {
		if r.LostUpdates != 0 || r.DupTokens != 0 || len(r.Errors) > 0 {
			bad = append(bad, fmt.Sprintf("%s (+%vms): %d lost updates, %d duplicate tokens, %d errors",
				r.Name, r.LatencyMS, r.LostUpdates, r.DupTokens, len(r.Errors)))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("checks failed:\n  %s", strings.Join(bad, "\n  "))
	}
	return nil
}

// step is one scenario run, planned ahead so the progress bar knows the
// total.
type step struct {
	label    string
	latency  time.Duration
	estimate time.Duration
	sweep    bool
	run      func(ctx context.Context, b *bench, o *options) ([]row, error)
}

func plan(o *options) []step {
	var steps []step
	for _, lat := range o.latencies {
		if o.scenarios["uncontended"] {
			per := 9*lat + 2*time.Millisecond // four measurements of ~2 R each
			steps = append(steps, step{
				label: fmt.Sprintf("uncontended, +%v", lat), latency: lat,
				estimate: time.Duration(o.cycles) * per,
				run: func(ctx context.Context, b *bench, o *options) ([]row, error) {
					return b.uncontended(ctx, o.cycles)
				},
			})
		}
		seen := map[setting]bool{} // the two scenarios may share settings
		for _, sc := range []string{"contended", "fairness"} {
			if o.scenarios[sc] {
				for _, n := range o.workers {
					for _, st := range o.settings(sc, n) {
						if !seen[st] {
							seen[st] = true
							steps = append(steps, contendedStep(o, sc, lat, st))
						}
					}
				}
			}
		}
		if o.scenarios["keys"] {
			retry := o.retries[0]
			for _, k := range o.keys {
				steps = append(steps, step{
					label: fmt.Sprintf("%d keys, +%v", k, lat), latency: lat, estimate: o.keysDuration,
					run: func(ctx context.Context, b *bench, o *options) ([]row, error) {
						r, err := b.manyKeys(ctx, k, retry, o.keysDuration)
						return []row{r}, err
					},
				})
			}
		}
	}
	if o.scenarios["sweep"] {
		lat := 10 * time.Millisecond
		if o.external() {
			lat = 0
		}
		seen := map[setting]bool{}
		for _, sc := range []string{"contended", "fairness"} {
			if sc == "contended" || o.scenarios["fairness"] {
				for _, n := range o.contenders {
					for _, st := range o.settings(sc, n) {
						if !seen[st] {
							seen[st] = true
							steps = append(steps, contendedStep(o, "sweep", lat, st))
						}
					}
				}
			}
		}
	}
	return steps
}

// settings returns the settings of scenario ("contended" or "fairness")
// with n workers.
func (o *options) settings(scenario string, n int) []setting {
	retries, holds := o.retries, o.holds
	if scenario == "fairness" {
		retries, holds = o.fairRetries, o.fairHolds
	}
	var sts []setting
	for _, retry := range retries {
		for _, hold := range holds {
			sts = append(sts, setting{workers: n, retry: retry, hold: hold})
		}
	}
	return sts
}

func contendedStep(o *options, scenario string, lat time.Duration, st setting) step {
	return step{
		label:    fmt.Sprintf("%s: %v, +%v", scenario, st, lat),
		latency:  lat,
		estimate: o.warmup + o.duration + 700*time.Millisecond + time.Duration(st.workers)*60*time.Millisecond + st.hold,
		sweep:    scenario == "sweep",
		run: func(ctx context.Context, b *bench, o *options) ([]row, error) {
			r, err := b.contended(ctx, st, o.warmup, o.duration)
			r.Scenario = scenario
			return []row{r}, err
		},
	}
}

func printTable(w io.Writer, rep *report) {
	fmt.Fprintf(w, "s3lock-bench %s  target %s  cpus %d  load %.2f\n", rep.Started.Format(time.RFC3339), describe(rep.Target), rep.CPUs, rep.Load)
	fmt.Fprintln(w, "latency: per operation (uncontended: the cycle or acquire; contended: the Lock call). req/op: lock-object requests only.")
	fmt.Fprintln(w, "% limit: grants/s as a share of 1/(hold+4R). bypass: most grants to others during one wait. longest: longest wait, s (runs cut short included).")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tR\tops\tp50 ms\tp99 ms\tmax ms\tops/s\t% limit\treq/op\tGET\tPUT\t412\t$/M ops\tJain\tbypass\tlongest\tfail free\thand-off ms\tchecks\t")
	for _, r := range rep.Rows {
		pct, jainS, bypass, longest := "", "", "", ""
		if r.LimitPct > 0 {
			pct = fmt.Sprintf("%.0f%%", r.LimitPct)
		}
		if r.GrantsPerWorker != nil {
			jainS = fmt.Sprintf("%.3f", r.Jain)
			bypass = fmt.Sprint(r.MaxBypass)
			longest = fmt.Sprintf("%.2f", r.LongestWaitMS/1000)
		}
		checks := "ok"
		if r.LostUpdates != 0 || r.DupTokens != 0 {
			checks = fmt.Sprintf("LOST %d DUP %d", r.LostUpdates, r.DupTokens)
		}
		if len(r.Errors) > 0 {
			checks += fmt.Sprintf(" (%d errors)", len(r.Errors))
		}
		handoff := ""
		if r.HandoffMS > 0 {
			handoff = fmt.Sprintf("%.1f (%.1f)", r.HandoffMS, r.DetectMS)
		}
		fmt.Fprintf(tw, "%s\t%v\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\t%s\t%d\t%s\t%s\t\n",
			r.Name, time.Duration(r.LatencyMS*float64(time.Millisecond)), r.Ops, r.P50MS, r.P99MS, r.MaxMS, r.PerSecond, pct,
			r.LockRequests, r.LockGET, r.LockPUT, r.LockPUT412, r.USDPerMillion, jainS, bypass, longest, r.FailedWhileFree, handoff, checks)
	}
	_ = tw.Flush()
	for _, r := range rep.Rows {
		if r.GrantsPerWorker != nil {
			fmt.Fprintf(w, "grants per worker, %s (+%vms): %v\n", r.Name, r.LatencyMS, r.GrantsPerWorker)
		}
	}
	for _, r := range rep.Rows {
		for _, e := range r.Errors {
			fmt.Fprintf(w, "error in %q: %s\n", r.Name, e)
		}
	}
}

func describe(t target) string {
	if t.Embedded {
		return "embedded gofakes3 (in-memory) on " + t.Endpoint
	}
	if t.Endpoint == "" {
		return "AWS S3 s3://" + t.Bucket + " (" + t.Region + ")"
	}
	return t.Endpoint + " bucket " + t.Bucket
}

// replay prints the table of saved results and draws their chart.
func replay(o *options, stdout io.Writer) error {
	raw, err := os.ReadFile(o.fromJSON)
	if err != nil {
		return err
	}
	var rep report
	if err := json.Unmarshal(raw, &rep); err != nil {
		return fmt.Errorf("%s: %w", o.fromJSON, err)
	}
	if o.chart != "" {
		var sweep []row
		for _, r := range rep.Rows {
			if r.Scenario == "sweep" {
				sweep = append(sweep, r)
			}
		}
		if err := writeChart(o.chart, sweep); err != nil {
			return fmt.Errorf("chart: %w", err)
		}
	}
	printTable(stdout, &rep)
	return nil
}
