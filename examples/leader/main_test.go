package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestLeaderDemo: one replica leads, the others print its address; once it
// is killed another takes over with a larger token.
func TestLeaderDemo(t *testing.T) {
	var out bytes.Buffer
	if err := run(&out, time.Second); err != nil {
		t.Fatalf("run() = %v\n%s", err, out.String())
	}
	text := out.String()
	t.Log("\n" + text)
	killed := regexp.MustCompile(`killing (replica-\d)`).FindStringSubmatch(text)
	if killed == nil {
		t.Fatalf("no leader was killed:\n%s", text)
	}
	first := killed[1]
	addr := "10.0.0." + strings.TrimPrefix(first, "replica-") + ":8080"
	if !strings.Contains(text, first+": leading, token 1\n") {
		t.Errorf("the killed replica %s did not report leading with token 1:\n%s", first, text)
	}
	others := 0
	for _, r := range []string{"replica-1", "replica-2", "replica-3"} {
		if r != first && strings.Contains(text, r+": leader is "+first+" at "+addr+"\n") {
			others++
		}
	}
	if others != 2 {
		t.Errorf("%d other replicas printed %s's address %s; want 2:\n%s", others, first, addr, text)
	}
	took := regexp.MustCompile(`(replica-\d) took over after .* \(token (\d+) > 1\)`).FindStringSubmatch(text)
	if took == nil || took[1] == first || took[2] == "1" {
		t.Errorf("no other replica took over with a larger token:\n%s", text)
	}
}
