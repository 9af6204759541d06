package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// progress draws a bar on a terminal (or prints one line per step
// elsewhere, when asked to) while the steps run.
type progress struct {
	w     io.Writer
	bar   bool // redraw a bar in place
	lines bool // print a line per step
	total time.Duration

	mu      sync.Mutex // protects the fields below
	done    time.Duration
	current step
	since   time.Time
	stop    chan struct{}
	stopped chan struct{}
}

func newProgress(w io.Writer, mode string, steps []step, repeat int) *progress {
	p := &progress{w: w}
	for _, s := range steps {
		p.total += s.estimate * time.Duration(repeat)
	}
	tty := isTerminal(w)
	switch {
	case mode == "never":
	case tty && mode != "never":
		p.bar = true
	case mode == "always":
		p.lines = true
	}
	if p.bar {
		p.stop, p.stopped = make(chan struct{}), make(chan struct{})
		go p.loop()
	}
	return p
}

// isTerminal reports whether w is a terminal (not merely a character
// device such as /dev/null).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func (p *progress) begin(s step) {
	p.mu.Lock()
	p.current, p.since = s, time.Now()
	p.mu.Unlock()
	if p.lines {
		fmt.Fprintf(p.w, "s3lock-bench: %s (about %v)\n", s.label, s.estimate.Round(100*time.Millisecond))
	}
}

func (p *progress) end() {
	p.mu.Lock()
	p.done += p.current.estimate
	p.current = step{}
	p.mu.Unlock()
}

func (p *progress) loop() {
	defer close(p.stopped)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			fmt.Fprint(p.w, "\r\033[K")
			return
		case <-t.C:
			p.draw()
		}
	}
}

func (p *progress) draw() {
	p.mu.Lock()
	done := p.done
	if p.current.label != "" {
		done += min(time.Since(p.since), p.current.estimate)
	}
	label := p.current.label
	p.mu.Unlock()
	frac := 1.0
	if p.total > 0 {
		frac = float64(done) / float64(p.total)
	}
	const width = 30
	n := int(frac * width)
	left := (p.total - done).Round(time.Second)
	fmt.Fprintf(p.w, "\r\033[K[%s%s] %3.0f%%  ~%v left  %s", strings.Repeat("=", n), strings.Repeat(" ", width-n), 100*frac, left, label)
}

// finish removes the bar; it may be called more than once.
func (p *progress) finish() {
	if p.bar && p.stop != nil {
		close(p.stop)
		<-p.stopped
		p.stop = nil
	}
}

// loadAverage returns the 1-minute load average (Linux), or 0.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func numCPU() int { return runtime.NumCPU() }
