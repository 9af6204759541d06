// Package lastrelease is a frozen copy of the s3lock library as released
// at commit 38b22b2 (the last release before semaphores and shared locks:
// its records carry a value, schema 2, but never several holders). It
// exists only so that tests can run that release's Mutex against records
// the current version writes, as the compatibility rules of
// docs/record-format.md require. Never edit it to match the current code:
// its whole point is to stay what was shipped.
//
// What follows is that release's own package documentation.
//
// Package s3lock is a distributed mutual-exclusion lock kept in one Amazon
// S3 object. Processes on any number of machines that share a bucket can
// keep a critical section (a cron job, a deploy, a batch step) from
// running twice at once, with no database, Redis or etcd.
//
// # How it works
//
// The lock object holds a small JSON record: its state (held or free), the
// holder's owner name, a random nonce, a fencing generation and the TTL.
// Every write is a conditional PUT, which S3 applies atomically:
//
//   - acquire a lock that does not exist: PutObject with If-None-Match: *
//   - acquire a free or expired lock: PutObject with If-Match: <the ETag read>
//   - renew and release: PutObject with If-Match: <our last ETag>
//
// When several processes race, S3 applies the first write to finish and
// answers 412 Precondition Failed to the others, so exactly one wins. The
// record is never deleted: release overwrites it as free, keeping its
// generation, and every grant writes generation+1. [Mutex.Token] returns the
// generation of the current hold, a fencing token that increases across all
// holders for the life of the object.
//
// Each write carries a fresh nonce, so no two writes have the same body,
// and therefore not the same ETag on stores where an ETag is the MD5 of the
// body. s3lock never computes or parses an ETag: it only sends back one S3
// gave it, so stores with random ETags (S3 Express One Zone) work too.
// When a write's answer is lost (a reset connection, a 5xx from a proxy, or
// the SDK's retry of a write that had been applied getting 412), s3lock
// reads the object back and compares the nonce before it concludes anything:
// it never reports "acquired" for a write that was not applied, and never
// "not acquired" for one that was.
//
// # Leases and clocks
//
// A hold lasts its TTL ([WithTTL]) after its last successful write, unless
// it is renewed ([WithAutoRenew]) or released. The holder counts its lease
// on its own monotonic clock from the moment *before* it sent the write,
// minus a drift allowance of 1% + 2 ms ([Mutex.SafeUntil]); the context of
// the hold ([Mutex.Context], and the one WithLock gives fn) is cancelled
// with cause [ErrLeaseLost] at that point.
//
// A contender never compares a time written by one client with another
// client's clock: clients may be off by hours. It judges a hold expired when
// either of these, each safe on its own, is true:
//
//   - by its own monotonic clock: it has seen the same version of the hold
//     (the holder's nonce) for at least TTL + margin since it first saw it
//     (the write happened before).
//   - by S3's clock: the GET answer's Date minus the holder's last write
//     (the object's Last-Modified; a waiter's reservation, which rewrites
//     the record, carries the holder's over) is at least TTL + margin + 1 s.
//     Both have 1-second resolution; the extra second covers the
//     truncation, so the write is provably older than TTL + margin
//     ([WithExpiryMargin], default 1 s).
//
// S3's clock is used only once this process has seen the Date of an answer
// to one of its own PUTs (and of the read that followed it) agree with the
// Last-Modified that S3 then reports for that write (Date − Last-Modified
// at most margin − 1 s, so Date runs ahead of the store's clock by less
// than the margin), and only for answers whose Date has moved no faster
// than this process's clock since; a Date that jumped ahead withdraws the
// trust. A gateway with its
// own clock in front of the store could otherwise date every answer an
// hour ahead, and a fresh contender would take a live hold at once. The
// evidence comes from reads that show a version this process wrote, or,
// when S3's clock would decide a takeover and the monotonic rule would
// not, from one PUT and one GET of a scratch object named after the key
// (key + ".s3lock-clock"); a good check is trusted for 15 minutes, a
// failed one is not retried for a minute. Where the clock does not check
// out, a contender that first sees a hold abandoned long ago takes it over
// one TTL + margin later, not at once; [Probe] reports such a store with
// [ErrClockSkew].
//
// So a takeover happens at the earliest TTL + margin after the holder's last
// write, and typically within TTL + 2-3 s; the holder's lease ended before
// TTL. The gap is the safety margin. An object at the key that is not a
// record s3lock accepts (corrupt, foreign, of a newer schema, larger than
// 4 KiB) counts as held, and is taken over only once it is older
// than the longer of the contender's TTL and the TTL it carries (when its
// ttl_ms can be read), by the same rules.
//
// A renewal counts only when its write landed (or a read shows that it
// did); one that failed is retried within a quarter of the renewal
// interval, and after a suspend that left less than an interval of the
// lease the renewer renews at once. A release is not cut short by the
// caller's context: once that ends, it goes on for up to
// [WithReleaseTimeout].
//
// # The record format between versions
//
// Processes running different versions of s3lock may share a lock during
// a rolling deploy, so the record is a contract (docs/record-format.md
// has the details):
//
//   - Required fields: "s3lock" (the schema: 1, or 2 for a held record
//     carrying a "value"), "state" ("held" or "free"), "nonce",
//     "generation" and "ttl_ms". Readers ignore fields they do not know;
//     a write that rewrites the record of the same hold (a reservation, a
//     renewal, the release) keeps them, a new grant does not. The release
//     before this one drops them and accepts only schema 1, so it counts a
//     record with a value as held and never rewrites it.
//   - A change that would make a reader of the required fields misjudge
//     the lock (a new state, a new meaning or unit of a field) must change
//     the schema number.
//   - A record this version cannot accept (another schema, an unknown
//     state, a field out of range) counts as held. When its generation
//     and ttl_ms can be read it is honoured: it is not taken over before
//     the longer of the reader's TTL and its own, and the next grant's
//     generation is one more than its. Only an object with no readable
//     generation restarts the generations at 1.
//   - The generation never wraps: a record at generation 2^64−1 is refused
//     (an error matching [ErrInvalidLockObject]), never overwritten.
//
// # Guarantees and limits
//
// While the store honours conditional writes, at most one Mutex holds the
// lock at any moment as judged by the holders' own lease deadlines. A
// holder that stalls past its lease (GC pause, swap, a network partition
// with renewal off) may still act after another process took over: no
// lease-based lock can prevent that. Use the fencing token: have the
// resource the lock protects reject writes carrying a token smaller than
// the largest it has seen.
//
// A suspended machine (laptop sleep, a paused VM) is such a stall: Go's
// monotonic clock does not advance while the system is suspended, so a
// holder that resumes counts its lease as if no time had passed, while S3's
// clock and every contender's did move on. On Linux, s3lock counts
// suspended time too (CLOCK_BOOTTIME) when it judges whether a hold's lease
// has run out; elsewhere it cannot see a suspend. Either way a holder whose
// process is frozen cannot act on the loss until it runs again: fence.
//
// Some S3-compatible stores ignore If-None-Match and If-Match; a lock on
// them excludes nobody. Check a store with the probe before trusting it.
//
// # Waiting: turns and failures
//
// Lock callers take turns. Waiters queue by how many grants they have
// waited through, without writing anything. A waiter that is passed over
// anyway (it polls too rarely to catch a short free moment, or one Mutex
// keeps re-taking its own free record) reserves the next turn with one
// conditional write into the held record; the holder's release then
// leaves the free record to that waiter alone for up to 2 seconds. Polls
// are paced to the expected end of each hold, and are never more than one
// retry interval apart. Turns are a policy, not a safety property: how
// many grants a waiter saw go to others in the tests and benchmarks is in
// BENCHMARKS.md ("How often a waiter is passed over"). Turns have these
// limits:
//
//   - TryLock ignores reservations: it takes a free lock whenever it finds
//     one.
//   - Goroutines sharing one Mutex queue in memory first, so each also
//     waits out the S3 waits of the goroutines ahead of it on that Mutex.
//   - A Mutex that locks again at once after critical sections shorter
//     than one S3 round trip holds the lock so briefly that waiters seldom
//     see it held; it can take up to 16 grants in a row.
//   - A reserved waiter that died, or a reservation nobody made, keeps a
//     free lock from the others for about 2 seconds at most.
//
// Lock retries through S3 failures (network errors, 5xx, throttling; they
// match [ErrUnavailable]) until its context ends, or for as long as
// [WithFailureTimeout] allows. Its error then matches ctx.Err() and carries
// the last attempt: the *LockedError naming the holder, or the S3 failure.
// Repeated failures are logged once, then every 10 seconds with a count.
//
// # Cost
//
// Requests per operation (PUT costs about 12 times a GET on AWS):
//
//   - first acquire by a Mutex: 1 GET + 1 PUT
//   - release: 1 PUT
//   - acquire again by the Mutex that released last: 1 PUT (Lock reads
//     first once every 16 such cycles, after contention, and when a waiter
//     reserved the next turn)
//   - waiting in Lock: GETs paced to the expected end of the hold, at most
//     one retry interval apart; a PUT when it is its turn, and one more to
//     reserve the next turn after being passed over (the holder's release
//     then meets a 412 and costs one more PUT and a GET)
//   - a lost race (412): 1 extra GET, to report who holds the lock
//   - renewal: 1 PUT per renewal interval
//   - a Lock that gives up after reserving the next turn: 1 GET and 1 PUT
//     to withdraw the reservation
//   - checking S3's clock: 1 PUT and 1 GET of key + ".s3lock-clock", only
//     when S3's clock would decide a takeover and was not checked lately
//
// A Mutex needs s3:GetObject and s3:PutObject on the lock key, and
// s3:ListBucket on the bucket (without it AWS answers a GET of a missing key
// with 403 rather than 404, and the first acquire of a new lock fails with
// ErrAccessDenied).
//
// # Leader election
//
// An [Election] is a Mutex whose hold is a term of office: [Election.Campaign]
// waits for the office and publishes a value with it (the leader's
// address, say), the leader renews by itself until [Election.Resign] or a
// loss (then [Election.Context] is cancelled), [Election.Leader] reads who
// leads with one GET, and [Election.Observe] follows the office with one
// conditional GET per retry interval, reporting every leader, value and
// vacancy it reads, including the vacancy left by a leader that stopped
// without resigning, once its lease is judged expired. An Election and a
// Mutex on one key exclude each other; the term's token is a fencing token
// like the Mutex's.
//
// # In one process
//
// A *Mutex is safe for concurrent use and works like sync.Mutex between the
// goroutines that share it: they wait for each other in memory, without S3
// requests. Different Mutex values on the same bucket and key, in one
// process or many, exclude each other through S3.
//
// # Observing
//
// [WithHooks] installs [Hooks], functions the Mutex calls when an
// operation starts and ends, when a hold is lost, when a waiter reserves
// the next turn and after every S3 request; without hooks this costs one
// nil check. The module github.com/s3lock/s3lock/s3lockotel turns them
// into OpenTelemetry metrics and spans, so that this package depends on
// no telemetry library.
package lastrelease
