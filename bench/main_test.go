package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The contended scenario starts worker processes from this binary.
	if raw := os.Getenv(workerEnv); raw != "" {
		os.Exit(workerMain(raw))
	}
	goleak.VerifyTestMain(m)
}

// TestRunSmall runs every scenario briefly against the embedded server and
// checks the figures that do not depend on timing.
func TestRunSmall(t *testing.T) {
	chart := filepath.Join(t.TempDir(), "chart.svg")
	var stdout, stderr bytes.Buffer
	args := []string{
		"--latency", "2ms", "--scenarios", "uncontended,contended,keys", "--workers", "3",
		"--retry", "10ms", "--duration", "400ms", "--warmup", "200ms", "--cycles", "5",
		"--keys", "1,3", "--keys-duration", "200ms", "--contenders", "1,2", "--chart", chart,
		"--json", "--progress", "never",
	}
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("run() = %v; stderr: %s", err, stderr.String())
	}
	var rep report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout.String())
	}
	byName := map[string]row{}
	var sweep int
	for _, r := range rep.Rows {
		if len(r.Errors) > 0 {
			t.Errorf("%s: errors %v", r.Name, r.Errors)
		}
		if r.LostUpdates != 0 || r.DupTokens != 0 {
			t.Errorf("%s: %d lost updates, %d duplicate tokens; want 0", r.Name, r.LostUpdates, r.DupTokens)
		}
		if r.Scenario == "sweep" {
			sweep++
			continue
		}
		byName[r.Name] = r
	}
	if sweep != 2 {
		t.Errorf("%d sweep rows; want 2 (1 and 2 contenders)", sweep)
	}
	for _, tc := range []struct {
		name      string
		get, puts float64
	}{
		{"warm TryLock+Unlock cycle", 0, 2},
		{"first acquire, existing free lock", 1, 1},
		{"first acquire, absent lock", 1, 1},
	} {
		r, ok := byName[tc.name]
		if !ok {
			t.Errorf("no row %q", tc.name)
			continue
		}
		if r.Ops != 5 || r.LockGET != tc.get || r.LockPUT != tc.puts || r.LockPUT412 != 0 {
			t.Errorf("%s: %d ops, %.2f GET, %.2f PUT, %.2f 412 per op; want 5 ops, %.0f GET, %.0f PUT, 0 412", tc.name, r.Ops, r.LockGET, r.LockPUT, r.LockPUT412, tc.get, tc.puts)
		}
		wantUSD := 1e6 * (tc.puts*usdPerPUT + tc.get*usdPerGET)
		if d := r.USDPerMillion - wantUSD; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s: USD per million = %v; want %v", tc.name, r.USDPerMillion, wantUSD)
		}
	}
	c, ok := byName["3 processes, retry 10ms"]
	switch {
	case !ok:
		t.Error("no contended row")
	case c.Ops == 0 || c.Workers != 3 || c.LockPUT < 1 || c.Jain <= 0 || len(c.GrantsPerWorker) != 3:
		t.Errorf("contended row = %+v; want grants from 3 workers, PUTs and a fairness index", c)
	}
	if k, ok := byName["3 keys, 1 worker each"]; !ok || k.Ops == 0 {
		t.Errorf("keys row = %+v; want grants", k)
	}
	svg, err := os.ReadFile(chart)
	if err != nil || !strings.Contains(string(svg), "<svg") {
		t.Errorf("chart: %v; want an SVG file", err)
	}
}

// TestFairnessSetting runs one fairness setting, as the command line to
// measure a change does: default options, a hold, two workers.
func TestFairnessSetting(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{
		"--scenario", "fairness", "--hold", "20ms", "--workers", "2", "--duration", "1200ms",
		"--warmup", "100ms", "--latency", "2ms", "--progress", "never",
	}
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("run() = %v; stderr: %s", err, stderr.String())
	}
	want := "2 processes, hold 20ms, default retry (500ms)"
	for _, s := range []string{want, "grants per worker, " + want + " (+2ms): [", "bypass", "longest"} {
		if !strings.Contains(stdout.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, stdout.String())
		}
	}
	stdout.Reset()
	if err := run(context.Background(), append(args, "--json"), &stdout, &stderr); err != nil {
		t.Fatalf("run(--json) = %v; stderr: %s", err, stderr.String())
	}
	var rep report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil || len(rep.Rows) != 1 {
		t.Fatalf("output is not one JSON row: %v\n%s", err, stdout.String())
	}
	r := rep.Rows[0]
	var sum int64
	for _, g := range r.GrantsPerWorker {
		sum += int64(g)
	}
	if r.Scenario != "fairness" || !r.DefaultRetry || r.RetryMS != 500 || r.HoldMS != 20 || len(r.GrantsPerWorker) != 2 || sum != r.Ops || r.Ops == 0 {
		t.Errorf("row = %+v; want the fairness scenario at the default retry, hold 20 ms, grants of 2 workers summing to ops", r)
	}
	if r.LongestWaitMS <= 0 || r.LimitPct <= 0 || r.LockPUT <= 0 {
		t.Errorf("row = %+v; want a longest wait, a share of the limit and PUTs per grant", r)
	}
}

// TestAnalyze checks grants per worker, the bypass and the longest wait on
// a made-up run whose window is [100, 1000) ns.
func TestAnalyze(t *testing.T) {
	results := []workerResult{
		{Locks: []lockCall{{Start: 100, Granted: 110, Token: 1}, {Start: 120, Granted: 130, Token: 2}, {Start: 140, Granted: 150, Token: 3}, {Start: 160}}},
		// Waits through tokens 1-3, then is cut short by the stop.
		{Locks: []lockCall{{Start: 105, Granted: 155, Token: 4}, {Start: 170}}},
		// Starved from the warm-up on: every grant of the run bypassed it.
		{Locks: []lockCall{{Start: 50}}},
		// Granted before the window only: not counted.
		{Locks: []lockCall{{Start: 10, Granted: 20, Token: 0}}},
	}
	c := analyze(results, time.Unix(0, 100), time.Unix(0, 1000))
	if want := []float64{3, 1, 0, 0}; !slices.Equal(c.grants, want) {
		t.Errorf("grants = %v; want %v", c.grants, want)
	}
	if c.maxBypass != 4 {
		t.Errorf("maxBypass = %d; want 4 (tokens 1-4, all granted after the starved worker began to wait)", c.maxBypass)
	}
	if c.longestWait != 950 {
		t.Errorf("longestWait = %v; want 950ns (the starved worker's, up to the stop)", c.longestWait)
	}
	if c.dupTokens != 0 {
		t.Errorf("dupTokens = %d; want 0", c.dupTokens)
	}
	results[2].Locks = nil
	if c := analyze(results, time.Unix(0, 100), time.Unix(0, 1000)); c.maxBypass != 3 {
		t.Errorf("without the starved worker, maxBypass = %d; want 3 (tokens 1-3 while worker 1 waited)", c.maxBypass)
	}
	results[3].Locks[0].Token = 4
	if c := analyze(results, time.Unix(0, 100), time.Unix(0, 1000)); c.dupTokens != 1 {
		t.Errorf("dupTokens = %d; want 1", c.dupTokens)
	}
}

func TestTableAndFlags(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"--latency", "0", "--scenarios", "uncontended", "--cycles", "3", "--progress", "never"}
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("run() = %v", err)
	}
	for _, want := range []string{"warm Lock+Unlock cycle", "first acquire, absent lock", "$/M ops"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, stdout.String())
		}
	}
	for _, bad := range [][]string{
		{"--latency", "fast"},
		{"--scenarios", "nope"},
		{"--workers", "0"},
		{"--hold", "soon"},
		{"--retry", "0"},
		{"--endpoint", "http://127.0.0.1:1"}, // no --bucket
		{"extra"},
	} {
		if err := run(context.Background(), bad, &stdout, &stderr); err == nil {
			t.Errorf("run(%q) = nil; want an error", bad)
		}
	}
}

func TestMedianRow(t *testing.T) {
	runs := [][]row{
		{{Name: "x", PerSecond: 10, LockPUT: 2, LostUpdates: 0, MaxMS: 5}},
		{{Name: "x", PerSecond: 30, LockPUT: 3, LostUpdates: 1, MaxMS: 9}},
		{{Name: "x", PerSecond: 20, LockPUT: 2.5, LostUpdates: 0, MaxMS: 7}},
	}
	got := medianRuns(runs)[0]
	if got.PerSecond != 20 || got.LockPUT != 2.5 || got.MaxMS != 7 || got.MaxWaitMS != 9 || got.LostUpdates != 1 || got.Runs != 3 {
		t.Errorf("medianRuns = %+v; want medians 20/s, 2.5 PUT, max 7 (9 over runs), lost updates summed to 1, 3 runs", got)
	}
}

func TestCheckFailsOnLostUpdates(t *testing.T) {
	if err := check(&report{Rows: []row{{Name: "ok"}}}); err != nil {
		t.Errorf("check(clean) = %v; want nil", err)
	}
	for _, r := range []row{{Name: "a", LostUpdates: 1}, {Name: "b", DupTokens: 2}, {Name: "c", Errors: []string{"boom"}}} {
		if err := check(&report{Rows: []row{r}}); err == nil {
			t.Errorf("check(%+v) = nil; want an error", r)
		}
	}
}

// TestPlanSettings checks which contended settings each scenario runs:
// the fairness scenario at the default retry with holds 100 ms and 1 s
// unless told otherwise, and no setting twice.
func TestPlanSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"fairness defaults", []string{"--scenario", "fairness", "--latency", "10ms"}, []string{
			"fairness: 8 processes, hold 100ms, default retry (500ms), +10ms",
			"fairness: 8 processes, hold 1s, default retry (500ms), +10ms",
		}},
		{"one setting", []string{"--scenario", "fairness", "--hold", "100ms", "--workers", "8", "--latency", "10ms"}, []string{
			"fairness: 8 processes, hold 100ms, default retry (500ms), +10ms",
		}},
		{"contended defaults", []string{"--scenario", "contended", "--workers", "2,4", "--latency", "10ms"}, []string{
			"contended: 2 processes, retry 20ms, +10ms", "contended: 2 processes, retry 80ms, +10ms",
			"contended: 4 processes, retry 20ms, +10ms", "contended: 4 processes, retry 80ms, +10ms",
		}},
		{"shared settings once", []string{"--scenario", "contended,fairness", "--retry", "default", "--hold", "1s", "--latency", "10ms"}, []string{
			"contended: 8 processes, hold 1s, default retry (500ms), +10ms",
		}},
		{"sweep", []string{"--scenario", "sweep,fairness", "--contenders", "2", "--hold", "100ms", "--latency", "10ms", "--workers", "3"}, []string{
			"fairness: 3 processes, hold 100ms, default retry (500ms), +10ms",
			"sweep: 2 processes, hold 100ms, retry 20ms, +10ms", "sweep: 2 processes, hold 100ms, retry 80ms, +10ms",
			"sweep: 2 processes, hold 100ms, default retry (500ms), +10ms",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(tc.args, io.Discard)
			if err != nil {
				t.Fatalf("parseFlags(%q) = %v", tc.args, err)
			}
			var got []string
			for _, st := range plan(o) {
				got = append(got, st.label)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("plan(%q) =\n  %q\nwant\n  %q", tc.args, got, tc.want)
			}
		})
	}
}
