package main

// Second adversarial review of issue 17: the CLI's shared holds.

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestRedteam2StatusUnlockHostileShared attacks "never panic on bad input"
// and "unlock --force --holder never breaks more than it saw": status,
// status --json and unlock (with and without --force --holder) over
// hostile schema-3 records never panic (no "panic" or goroutine dump on
// stderr), and unlock --holder of an ID the record does not list changes
// nothing. Guard.
func TestRedteam2StatusUnlockHostileShared(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	body := func(gen uint64, limit int64, entries ...string) string {
		lim := ""
		if limit != 0 {
			lim = fmt.Sprintf(`,"limit":%d`, limit)
		}
		return fmt.Sprintf(`{"s3lock":3,"state":"held","nonce":"t%d","generation":%d,"ttl_ms":30000%s,"holders":[%s]}`, gen, gen, lim, strings.Join(entries, ","))
	}
	entry := `{"id":"h1","units":1,"token":3,"ttl_ms":30000,"nonce":"x"}`
	bodies := map[string]string{
		"duplicate-ids":    body(3, 0, entry, entry),
		"units-huge":       body(3, 0, `{"id":"h1","units":9223372036854775807,"token":3,"ttl_ms":30000,"nonce":"x"}`, `{"id":"h2","units":9223372036854775807,"token":3,"ttl_ms":30000,"nonce":"y"}`),
		"ttl-huge":         body(3, 0, `{"id":"h1","units":1,"token":3,"ttl_ms":10000000000000,"nonce":"x"}`),
		"since-future":     body(3, 0, `{"id":"h1","units":1,"token":3,"ttl_ms":30000,"nonce":"x","since":99999999999}`),
		"since-negative":   body(3, 0, `{"id":"h1","units":1,"token":3,"ttl_ms":30000,"nonce":"x","since":-5}`),
		"holder-null":      body(3, 0, `null`),
		"holders-object":   `{"s3lock":3,"state":"held","nonce":"t","generation":3,"ttl_ms":30000,"holders":{"id":"h1"}}`,
		"limit-negative":   body(3, -1, entry),
		"units-over-limit": body(3, 2, `{"id":"h1","units":3,"token":3,"ttl_ms":30000,"nonce":"x"}`),
		"id-control-chars": body(3, 0, `{"id":"h\u001b[2J\n1","owner":"\u001b[31mred","units":1,"token":3,"ttl_ms":30000,"nonce":"x"}`),
		"next-huge":        `{"s3lock":3,"state":"held","nonce":"t","generation":3,"ttl_ms":30000,"next":"w","next_seq":18446744073709551615,"next_waited":18446744073709551615,"next_units":-9223372036854775808,"holders":[` + entry + `]}`,
		"generation-max":   body(18446744073709551615, 0, `{"id":"h1","units":1,"token":18446744073709551615,"ttl_ms":30000,"nonce":"x"}`),
	}
	for name, b := range bodies {
		key := "redteam2/hostile/" + name
		if err := h.srv.PutObject(ctx, key, []byte(b)); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"status", h.url(key)},
			{"status", "--json", h.url(key)},
			{"unlock", h.url(key)},
			{"unlock", "--force", "--holder", "not-listed", h.url(key)},
		} {
			r := h.run(nil, args...)
			if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
				t.Errorf("%s: s3lock %s: exit code %d, stderr %q", name, strings.Join(args[:len(args)-1], " "), r.code, r.stderr)
			}
		}
		out, err := h.srv.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(h.srv.Bucket()), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		now, _ := io.ReadAll(out.Body)
		out.Body.Close()
		if string(now) != b {
			t.Errorf("%s: the record changed after unlocks that broke nothing: %q", name, now)
		}
	}
}

// TestRedteam2RunSharedBrokenHolder attacks run --shared's loss handling
// and unlock --force --holder's scope: of two --shared runs, breaking one
// holder stops exactly that command with the lease-lost code, while the
// other keeps its hold and exits 0. Guard.
func TestRedteam2RunSharedBrokenHolder(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	key := "redteam2/shared-broken"
	a, _, releaseA := holdNamed(t, h, key, "reader-a", "--shared", "--ttl", "3s")
	b, _, releaseB := holdNamed(t, h, key, "reader-b", "--shared", "--ttl", "3s")
	idA, idB := holderID(t, h, key, "reader-a"), holderID(t, h, key, "reader-b")
	if r := h.run(nil, "unlock", "--force", "--holder", idA, h.url(key)); r.code != 0 {
		t.Fatalf("unlock --force --holder: exit code %d, stderr %q", r.code, r.stderr)
	}
	if r := a.wait(); r.code != exitLeaseLost {
		t.Errorf("broken reader-a: exit code %d; want %d (stderr: %s)", r.code, exitLeaseLost, r.stderr)
	}
	releaseA()
	if st := inspect(t, h, key); len(st.Holders) != 1 || st.Holders[0].ID != idB || st.Holders[0].Expired {
		t.Errorf("after breaking reader-a the holders are %+v; want reader-b (%s) alone, live", st.Holders, idB)
	}
	releaseB()
	if r := b.wait(); r.code != 0 {
		t.Errorf("reader-b: exit code %d; want 0 (stderr: %s)", r.code, r.stderr)
	}
}
