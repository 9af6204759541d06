package main

import "strings"

const mainHelp = `s3lock - run commands under a lock kept in one S3 object: flock(1) for
jobs on many hosts (cron, deploys, CI steps, batch jobs).

Usage:
  s3lock run [flags] s3://bucket/key -- command [args...]
  s3lock run [flags] s3://bucket/key -c "shell command"
  s3lock run --slots N | --shared [flags] s3://bucket/key -- command [args...]
  s3lock status [--json] [flags] s3://bucket/key
  s3lock unlock --force [--holder ID] [flags] s3://bucket/key
  s3lock probe [flags] s3://bucket/prefix
  s3lock watch [--json] [flags] s3://bucket/key
  s3lock completion bash|zsh|fish
  s3lock --version

Commands:
  run         take the lock, run the command while renewing the lease, release
  status      show whether the lock is free or held, by whom, until when
  unlock      break a stale or foreign hold (needs --force)
  probe       check that a store honours conditional writes
  watch       print a lock's state, then every change, until interrupted
  completion  print a shell completion script (bash, zsh or fish)

Run 's3lock COMMAND --help' for a command's flags and examples.

Examples:
  # nightly job on many hosts; only one runs at a time, the others skip
  s3lock run --wait 0 s3://ops-locks/nightly-report -- ./report.sh

  # deploy step that waits up to 10 minutes for the previous deploy
  s3lock run --wait 10m s3://ops-locks/deploy/prod -- ./deploy.sh

  # at most 4 of these jobs at once, across all hosts
  s3lock run --slots 4 s3://ops-locks/transcode -- ./transcode.sh

  s3lock status s3://ops-locks/deploy/prod

AWS configuration is the SDK's usual chain (environment, profiles, SSO,
roles); --profile, --region, --endpoint-url and --path-style override it.
`

const runHelp = `Usage:
  s3lock run [flags] s3://bucket/key -- command [args...]
  s3lock run [flags] s3://bucket/key -c "shell command"
  s3lock run --slots N | --shared [flags] s3://bucket/key -- command [args...]

Takes the lock at s3://bucket/key, runs the command with it held, and
releases the lock when the command exits; s3lock then exits with the
command's exit code. By default run waits for as long as the lock is held
by someone else; --wait limits that (--wait 0 fails at once, like flock -n).

While the command runs, the lease is renewed every --renew-interval. If it
is lost (renewal keeps failing until the lease's safe deadline, or someone
took or broke the lock), the command is sent SIGTERM, then SIGKILL after
--kill-grace, and s3lock exits 76. If s3lock itself dies, the lock frees
itself once --ttl has passed since the last renewal.

The hold is exclusive by default (flock -x). With --slots N it is one of
N slots of a semaphore, as with consul lock -n: up to N commands run at
once on the key. With --shared it is a shared (reader) hold, as with
flock -s: shared runs overlap, a plain run waits until none holds the key,
and once it waits new shared runs wait behind it. Every hold has its own
lease; waiting, renewal and a lost lease work as above. All runs on a key
must agree: another --slots N, or --shared on a semaphore's key (or the
reverse), exits 78 without running the command. --value is for exclusive
holds only.

The command gets stdin, stdout and stderr unchanged, and in its
environment:
  S3LOCK_TOKEN   fencing token: the lock's generation, larger for every new
                 holder; pass it to what you protect and refuse older ones
  S3LOCK_OWNER   the owner name recorded in the lock
  S3LOCK_KEY     the lock's key;  S3LOCK_BUCKET  its bucket

SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to s3lock are
passed on to the command; s3lock releases the lock after the command exits.
Away from a terminal the command runs in its own process group, and signals
(and SIGTERM/SIGKILL after a lost lease) go to the whole group. In the
foreground of a terminal it shares s3lock's process group, so it can read
the terminal; Ctrl-C then reaches it directly and is not sent twice.
`

const runMore = `
Examples:
  # cron: run the report on one host at a time; skip if another runs it
  */5 * * * * s3lock run --wait 0 s3://ops-locks/report -- /opt/report.sh

  # CI step: wait up to 15 minutes for the previous deploy, then deploy
  s3lock run --wait 15m --owner "ci-$BUILD_ID" s3://ops-locks/deploy/prod -- make deploy

  # backups share the repository, pruning needs it alone
  s3lock run --shared s3://ops-locks/restic-repo -- restic backup /srv
  s3lock run s3://ops-locks/restic-repo -- restic prune

  # a shell pipeline; the fencing token in the environment
  s3lock run s3://ops-locks/db-migrate -c 'migrate --fence "$S3LOCK_TOKEN" up'

  # an S3-compatible store on a custom endpoint
  s3lock run --endpoint-url http://127.0.0.1:9000 --path-style s3://locks/job -- ./job
`

const statusHelp = `Usage:
  s3lock status [--json] [flags] s3://bucket/key

Shows whether the lock is free or held, and if held: by whom (owner), since
when (the holder's clock), until when the lease runs unless renewed (S3's
clock) and its generation (the fencing token of the hold). It reads the
lock object with one GET and writes nothing, and exits 0 whether the lock
is free or held.

It also reads the bucket's versioning state (and, when versioning is on,
its lifecycle rules) and warns on stderr, with the rule to add, when
nothing expires the old versions that lock writes leave behind. Without
s3:GetBucketVersioning and s3:GetLifecycleConfiguration it skips that.

With --json it prints one object:
  {"url", "bucket", "key", "state": "free"|"held"|"expired", "exists",
   "held", "expired", "owner", "generation", "ttl_ms", "since",
   "last_modified", "expires_at", "server_time", "etag", "invalid",
   "value", "shared", "limit", "units", "holders"}
"expired" means held but not renewed in time: the next contender takes it
over. Times are RFC 3339 in UTC; absent times are left out.

A shared hold (run --slots or --shared) shows its limit ("shared
(readers)" for --shared), the units held and one line per holder: its ID,
owner, units, fencing token, lease end (S3's clock) and whether it has
expired. In JSON: "shared" ("semaphore" or "readers"), "limit" (left out
for readers), "units", and "holders", a list of {"id", "owner", "units",
"token", "ttl_ms", "expires_at", "expired"}; all left out otherwise.
`

const statusMore = `
Examples:
  s3lock status s3://ops-locks/deploy/prod
  s3lock status --json s3://ops-locks/deploy/prod | jq -r .owner
`

const unlockHelp = `Usage:
  s3lock unlock --force [--holder ID] [flags] s3://bucket/key

Breaks the current hold on the lock, stale or not: it reads the lock
object and overwrites it with a free record, on condition that the object
is still the one it read (same ETag), so it never breaks a hold it did not
see. The generation goes up by one, so a holder that comes back finds its
lease lost (s3lock run stops its command and exits 76) and its fencing
token outdated. Without --force it only shows the hold and exits 2; with
nothing to break it exits 0.

A shared hold (run --slots or --shared) has several holders: without
--holder unlock breaks all of those it read; --holder ID (an ID that
status lists) removes only that holder, on the same condition, and the
others keep their holds. It exits 1 when the lock does not list ID.
`

const unlockMore = `
Examples:
  s3lock unlock s3://ops-locks/deploy/prod           # show what it would break
  s3lock unlock --force s3://ops-locks/deploy/prod
  s3lock unlock --force --holder 3f9c2a1b7d0e s3://ops-locks/transcode
`

const probeHelp = `Usage:
  s3lock probe [flags] s3://bucket/prefix

Checks that the store honours conditional writes (If-None-Match: * and
If-Match on PutObject), without which a lock would not exclude anyone
(some S3-compatible stores silently ignore them, others honour them only
one request at a time). It writes a scratch object named
PREFIX.s3lock-probe-RANDOM four times, twice with conditions that must be
refused, and reads it back. Then it races the store: up to 8 rounds (no new
round after 20 s, at least 2) of 8 concurrent If-None-Match creates and 8
concurrent If-Match overwrites, each of which must have exactly one
winner. At most 132 PUTs, 17 GETs and 9 DELETEs; it needs s3:PutObject,
s3:GetObject and s3:DeleteObject there. A pass is evidence, not proof: a
store that races rarely can pass. After a pass it warns, as status does,
about a versioned bucket that keeps every old version of the lock.
`

const probeMore = `
Examples:
  s3lock probe s3://ops-locks/
  s3lock probe --endpoint-url http://127.0.0.1:9000 --path-style s3://locks/probe/
`

// shellQuote renders args for a message, quoting those a shell would
// split or expand.
func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
		}) < 0 {
			q[i] = a
			continue
		}
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
