package s3lock

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSharedRecordRoundTripKeepsUnknownFields(t *testing.T) {
	body := `{"s3lock":3,"state":"held","owner":"","nonce":"n1","generation":7,"ttl_ms":30000,"written_at":"2026-12-06T00:00:00Z","limit":4,` +
		`"holders":[{"id":"a","units":1,"token":5,"ttl_ms":30000,"nonce":"x","since":1796500000,"future":{"k":1}},{"id":"b","owner":"w","units":2,"token":7,"ttl_ms":10000,"nonce":"y"}],` +
		`"next":"q","next_units":3,"later":[1,2]}`
	r, err := decodeRecord([]byte(body))
	if err != nil {
		t.Fatalf("decodeRecord = %v", err)
	}
	if !r.shared() || r.Limit != 4 || len(r.Holders) != 2 || r.NextUnits != 3 {
		t.Fatalf("decoded %+v", r)
	}
	out := string(encodeRecord(r))
	for _, want := range []string{`"future":{"k":1}`, `"later":[1,2]`, `"s3lock":3`, `"next_units":3`, `"since":1796500000`} {
		if !strings.Contains(out, want) {
			t.Errorf("re-encoded record lacks %s: %s", want, out)
		}
	}
	again, err := decodeRecord([]byte(out))
	if err != nil || len(again.Holders[0].extra) != 1 {
		t.Fatalf("second decode = %v, %+v", err, again)
	}
}

func TestSharedRecordRejected(t *testing.T) {
	base := func(holders string) string {
		return `{"s3lock":3,"state":"held","nonce":"n","generation":7,"ttl_ms":30000,"limit":2,"holders":[` + holders + `]}`
	}
	h := func(id string, units, token, ttl int) string {
		return `{"id":"` + id + `","units":` + strconv.Itoa(units) + `,"token":` + strconv.Itoa(token) + `,"ttl_ms":` + strconv.Itoa(ttl) + `,"nonce":"x"}`
	}
	for name, body := range map[string]string{
		"no holders":          base(""),
		"duplicate id":        base(h("a", 1, 1, 1000) + "," + h("a", 1, 2, 1000)),
		"over limit":          base(h("a", 2, 1, 1000) + "," + h("b", 1, 2, 1000)),
		"units above limit":   base(h("a", 3, 1, 1000)),
		"zero units":          base(h("a", 0, 1, 1000)),
		"token above gen":     base(h("a", 1, 8, 1000)),
		"ttl above record":    base(h("a", 1, 1, 40000)),
		"free shared":         `{"s3lock":3,"state":"free","nonce":"n","generation":7,"ttl_ms":30000,"holders":[` + h("a", 1, 1, 1000) + `]}`,
		"holders in schema 1": `{"s3lock":1,"state":"held","nonce":"n","generation":7,"ttl_ms":30000,"holders":[` + h("a", 1, 1, 1000) + `]}`,
		"units wrong type":    base(`{"id":"a","units":"1","token":1,"ttl_ms":1000,"nonce":"x"}`),
	} {
		if _, err := decodeRecord([]byte(body)); err == nil {
			t.Errorf("%s: accepted %s", name, body)
		}
		if sv := salvageRecord([]byte(body)); !sv.hasGen || sv.generation != 7 || sv.ttl != 30*time.Second {
			t.Errorf("%s: salvage = %+v; want generation 7, ttl 30s", name, sv)
		}
	}
}
