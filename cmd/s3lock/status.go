package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/s3lock/s3lock"
)

// statusOpts are status's flags.
type statusOpts struct {
	s3Flags
	json bool
}

func newStatusCommand(sio streams) *cobra.Command {
	o := &statusOpts{}
	c := newCommand("status", "show whether the lock is free or held, by whom, until when", statusHelp, statusMore)
	c.Flags().BoolVar(&o.json, "json", false, "print the status as one JSON object")
	o.register(c)
	c.Args = urlArgs(true)
	c.RunE = func(c *cobra.Command, args []string) error {
		return o.withTarget(c, args, true, func(ctx context.Context, t target) error { return o.run(ctx, t, sio) })
	}
	return c
}

// run implements "s3lock status".
func (o *statusOpts) run(ctx context.Context, t target, sio streams) error {
	u := t.url
	st, err := s3lock.Inspect(ctx, t.client, u.bucket, u.key)
	if err != nil {
		return s3Error(err)
	}
	if o.json {
		enc := json.NewEncoder(sio.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(toJSON(u, st))
	}
	describe(sio.stdout, u, st)
	warnVersioning(ctx, sio, t)
	return nil
}

// statusJSON is the shape of "s3lock status --json". Times are RFC 3339;
// those marked S3 are S3's clock (Last-Modified, Date), since is the
// holder's own clock. Zero times are left out.
type statusJSON struct {
	URL    string `json:"url"`
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	// State is "free" (no object, or released), "held", or "expired"
	// (held, but not renewed for longer than its TTL plus margins: the
	// next contender takes it over).
	State        string    `json:"state"`
	Exists       bool      `json:"exists"`
	Held         bool      `json:"held"`
	Expired      bool      `json:"expired"`
	Owner        string    `json:"owner"`
	Generation   uint64    `json:"generation"`
	TTLMillis    int64     `json:"ttl_ms,omitempty"`
	Since        time.Time `json:"since,omitzero"`
	LastModified time.Time `json:"last_modified,omitzero"`
	ExpiresAt    time.Time `json:"expires_at,omitzero"`
	ServerTime   time.Time `json:"server_time,omitzero"`
	ETag         string    `json:"etag,omitempty"`
	Invalid      string    `json:"invalid,omitempty"`
	Value        string    `json:"value,omitempty"` // what the holder published (run --value)
	// Shared, Limit, Units and Holders describe a shared hold (run
	// --slots or --shared, a Semaphore, an RWMutex's readers) and are
	// left out otherwise. Shared is "semaphore" or "readers"; Limit is
	// the semaphore's (left out for readers), Units how many are held.
	Shared  string       `json:"shared,omitempty"`
	Limit   int64        `json:"limit,omitempty"`
	Units   int64        `json:"units,omitempty"`
	Holders []holderJSON `json:"holders,omitempty"`
}

// holderJSON is one holder of a shared hold in "s3lock status --json".
type holderJSON struct {
	ID        string    `json:"id"`
	Owner     string    `json:"owner"`
	Units     int64     `json:"units"`
	Token     uint64    `json:"token"`
	TTLMillis int64     `json:"ttl_ms"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Expired   bool      `json:"expired"`
}

func toJSON(u s3URL, st *s3lock.LockStatus) statusJSON {
	j := statusJSON{
		URL: u.String(), Bucket: st.Bucket, Key: st.Key, State: stateOf(st),
		Exists: st.Exists, Held: st.Held, Expired: st.Expired, Owner: st.Owner,
		Generation: st.Generation, TTLMillis: st.TTL.Milliseconds(),
		Since: st.Since.UTC(), LastModified: st.LastModified.UTC(),
		ExpiresAt: st.Until.UTC(), ServerTime: st.ServerTime.UTC(), ETag: st.ETag,
		Value: st.Value,
	}
	if st.Invalid != nil {
		j.Invalid = st.Invalid.Error()
	}
	if len(st.Holders) > 0 {
		j.Shared, j.Limit, j.Units = sharedKind(st), st.Limit, st.Units
		for _, h := range st.Holders {
			j.Holders = append(j.Holders, holderJSON{
				ID: h.ID, Owner: h.Owner, Units: h.Units, Token: h.Token,
				TTLMillis: h.TTL.Milliseconds(), ExpiresAt: h.Until.UTC(), Expired: h.Expired,
			})
		}
	}
	return j
}

// sharedKind names the kind of a shared hold: a semaphore's (with a
// limit) or an RWMutex's readers.
func sharedKind(st *s3lock.LockStatus) string {
	if st.Limit == 0 {
		return "readers"
	}
	return "semaphore"
}

func stateOf(st *s3lock.LockStatus) string {
	switch {
	case !st.Held:
		return "free"
	case st.Expired:
		return "expired"
	}
	return "held"
}

const timeFormat = time.RFC3339

// describe writes the human form of st.
func describe(w io.Writer, u s3URL, st *s3lock.LockStatus) {
	switch {
	case !st.Exists:
		fmt.Fprintf(w, "%s: free (no lock object yet)\n", u)
		return
	case !st.Held:
		fmt.Fprintf(w, "%s: free\n", u)
		fmt.Fprintf(w, "  generation:  %d (the next holder gets %d)\n", st.Generation, st.Generation+1)
		if st.Owner != "" {
			fmt.Fprintf(w, "  released by: %s\n", st.Owner)
		}
		if !st.LastModified.IsZero() {
			fmt.Fprintf(w, "  released:    %s (S3's clock)\n", st.LastModified.UTC().Format(timeFormat))
		}
		return
	case st.Invalid != nil:
		fmt.Fprintf(w, "%s: held by an object that is not an s3lock lock (%v)\n", u, st.Invalid)
	case st.Expired:
		fmt.Fprintf(w, "%s: expired (held, but not renewed in time: the next contender takes it over)\n", u)
	default:
		fmt.Fprintf(w, "%s: held\n", u)
	}
	if st.Invalid == nil {
		fmt.Fprintf(w, "  owner:       %s\n", st.Owner)
		fmt.Fprintf(w, "  generation:  %d\n", st.Generation)
	}
	if st.Value != "" {
		fmt.Fprintf(w, "  value:       %q\n", st.Value)
	}
	if !st.Since.IsZero() {
		fmt.Fprintf(w, "  since:       %s (the holder's clock)\n", st.Since.UTC().Format(timeFormat))
	}
	if !st.LastModified.IsZero() {
		fmt.Fprintf(w, "  last write:  %s (S3's clock)\n", st.LastModified.UTC().Format(timeFormat))
	}
	if !st.Until.IsZero() {
		rel := ""
		if !st.ServerTime.IsZero() {
			if d := st.Until.Sub(st.ServerTime); d > 0 {
				rel = fmt.Sprintf("; in %v unless renewed", d)
			} else {
				rel = fmt.Sprintf("; %v ago", -d)
			}
		}
		fmt.Fprintf(w, "  expires:     %s (S3's clock%s)\n", st.Until.UTC().Format(timeFormat), rel)
	}
	if st.TTL > 0 {
		fmt.Fprintf(w, "  ttl:         %v\n", st.TTL)
	}
	describeHolders(w, st)
}

// describeHolders writes the limit, the units held and one line per
// holder of a shared hold; nothing for other records.
func describeHolders(w io.Writer, st *s3lock.LockStatus) {
	if len(st.Holders) == 0 {
		return
	}
	if st.Limit == 0 {
		fmt.Fprintf(w, "  limit:       shared (readers); %d held\n", st.Units)
	} else {
		fmt.Fprintf(w, "  limit:       %d units (semaphore); %d held\n", st.Limit, st.Units)
	}
	fmt.Fprintf(w, "  holders:     %d\n", len(st.Holders))
	for _, h := range st.Holders {
		state := "live"
		if h.Expired {
			state = "expired"
		}
		until := "unknown"
		if !h.Until.IsZero() {
			until = h.Until.UTC().Format(timeFormat)
		}
		fmt.Fprintf(w, "    id %s  owner %q  units %d  token %d  until %s  %s\n", h.ID, h.Owner, h.Units, h.Token, until, state)
	}
}
