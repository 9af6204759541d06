package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCounterDemoLosesNothing(t *testing.T) {
	var out bytes.Buffer
	if err := run(&out, 4, 5, 0, 5*time.Millisecond); err != nil {
		t.Fatalf("run() = %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "lost updates:   0\n") || !strings.Contains(out.String(), "increments:     20 (counter in S3: 20)") {
		t.Errorf("unexpected report:\n%s", out.String())
	}
}
