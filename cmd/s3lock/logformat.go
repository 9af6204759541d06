package main

import (
	"errors"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/s3lock/s3lock"
)

// logFormat is --log-format: how the log records go to stderr.
type logFormat string

// Type names the value in the help, as pflag.Value requires.
func (f *logFormat) Type() string { return "text|json" }

func (f *logFormat) String() string {
	if f == nil || *f == "" {
		return "text"
	}
	return string(*f)
}

// Set accepts text or json.
func (f *logFormat) Set(s string) error {
	switch s {
	case "text", "json":
		*f = logFormat(s)
		return nil
	}
	return errors.New("want text or json")
}

// telemetryFlags are --log-format and --stats, shared by run and watch.
type telemetryFlags struct {
	format logFormat
	stats  bool
	// collected is what --stats reports, once the command made its Mutex.
	collected *runStats
}

func (t *telemetryFlags) register(c *cobra.Command) {
	t.format = "text"
	c.Flags().Var(&t.format, "log-format", "write log records to stderr as `text` or json (log/slog's handlers)")
	c.Flags().BoolVar(&t.stats, "stats", false, "print a one-line summary at exit: time waited and held, renewals, S3 requests")
}

// logger returns the logger for stderr at level, in the chosen format.
func (t *telemetryFlags) logger(stderr io.Writer, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if t.format == "json" {
		return slog.New(slog.NewJSONHandler(stderr, opts))
	}
	return slog.New(slog.NewTextHandler(stderr, opts))
}

// options returns the Mutex options --stats needs (none without it).
func (t *telemetryFlags) options() []s3lock.Option {
	if !t.stats {
		return nil
	}
	t.collected = &runStats{}
	return []s3lock.Option{s3lock.WithHooks(t.collected.hooks())}
}

// report prints the --stats summary on stderr, as one line of text, or
// as one JSON log record with --log-format json. It does nothing without
// --stats.
func (t *telemetryFlags) report(stderr io.Writer, cmd string) {
	if t.collected == nil {
		return
	}
	s := t.collected.summary()
	if t.format == "json" {
		t.logger(stderr, slog.LevelInfo).Info("s3lock "+cmd+": stats", s.attrs()...)
		return
	}
	io.WriteString(stderr, "s3lock "+cmd+": stats: "+s.String()+"\n")
}
