package main

import (
	"time"

	"github.com/cenkalti/backoff/v4"
)

// exponential waits 100 ms, then longer with jitter, up to 5 s between polls.
func exponential() backoff.BackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	b.MaxElapsedTime = 0 // the caller's context bounds the wait
	return b
}
