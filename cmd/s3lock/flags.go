package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock"
)

// errHelp is returned after a command printed its help: exit 0, print
// nothing more.
var errHelp = withCode(exitOK, errors.New("help requested"))

// command is one subcommand's flag set, help text and flag aliases.
type command struct {
	name    string
	fs      *flag.FlagSet
	help    string            // text before the flag list
	more    string            // text after it
	aliases map[string]string // alias → flag it stands for
	version bool
}

func newCommand(name, help, more string) *command {
	c := &command{name: name, help: help, more: more, aliases: map[string]string{}}
	c.fs = flag.NewFlagSet("s3lock "+name, flag.ContinueOnError)
	c.fs.SetOutput(io.Discard)
	c.fs.Usage = func() {}
	c.fs.BoolVar(&c.version, "version", false, "print the version of s3lock and exit")
	return c
}

// alias registers short as another name for the already defined flag long.
func (c *command) alias(short, long string) {
	f := c.fs.Lookup(long)
	c.fs.Var(f.Value, short, f.Usage)
	c.aliases[short] = long
}

// parse parses args, allowing flags before and after the positional
// arguments. Everything after the first "--" is returned as tail, with
// dashdash true. It prints the help (and returns errHelp) for -h/--help,
// and the version for --version.
func (c *command) parse(args []string, stdout io.Writer) (pos, tail []string, dashdash bool, err error) {
	head := args
	for i, a := range args {
		if a == "--" {
			head, tail, dashdash = args[:i], args[i+1:], true
			break
		}
	}
	rest := head
	for {
		if err := c.fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.printHelp(stdout)
				return nil, nil, false, errHelp
			}
			msg := err.Error()
			if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
				msg = "unknown flag " + flagName(name)
			}
			if i := strings.Index(msg, " for flag -"); i >= 0 {
				name, _, _ := strings.Cut(msg[i+len(" for flag -"):], ":")
				msg = msg[:i] + " for " + flagName(name) + msg[i+len(" for flag -")+len(name):]
			}
			return nil, nil, false, usageErr("%s; see 's3lock %s --help'", msg, c.name)
		}
		if c.fs.NArg() == 0 {
			break
		}
		pos = append(pos, c.fs.Arg(0))
		rest = c.fs.Args()[1:]
	}
	if c.version {
		fmt.Fprintln(stdout, versionString())
		return nil, nil, false, errHelp
	}
	return pos, tail, dashdash, nil
}

// flagName spells a flag as the help does: -c, --command.
func flagName(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// printHelp prints the command's help text and its flags.
func (c *command) printHelp(w io.Writer) {
	fmt.Fprint(w, c.help)
	fmt.Fprintln(w, "\nFlags:")
	byTarget := map[string][]string{}
	for a, l := range c.aliases {
		byTarget[l] = append(byTarget[l], a)
	}
	type line struct{ names, usage string }
	var lines []line
	width := 0
	c.fs.VisitAll(func(f *flag.Flag) {
		if _, isAlias := c.aliases[f.Name]; isAlias {
			return
		}
		typ, usage := flag.UnquoteUsage(f)
		names := ""
		al := byTarget[f.Name]
		sort.Strings(al)
		for _, a := range al {
			names += "-" + a + ", "
		}
		names += "--" + f.Name
		if typ != "" {
			names += " " + typ
		}
		switch f.DefValue {
		case "", "false", "0s":
		default:
			usage += " (default " + f.DefValue + ")"
		}
		width = max(width, len(names))
		lines = append(lines, line{names, usage})
	})
	for _, l := range lines {
		fmt.Fprintf(w, "  %-*s  %s\n", width, l.names, l.usage)
	}
	fmt.Fprint(w, awsHelp)
	fmt.Fprint(w, c.more)
}

const awsHelp = `
AWS configuration is the SDK's usual chain: AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, SSO, web identity, ECS and EC2
roles), AWS_REGION, and endpoints from AWS_ENDPOINT_URL_S3 or
AWS_ENDPOINT_URL. The flags above override them. With a custom endpoint,
request checksums are sent only where S3 requires them, unless
AWS_REQUEST_CHECKSUM_CALCULATION says otherwise.
`

// s3URL is a parsed s3://bucket/key.
type s3URL struct {
	bucket, key string
}

func (u s3URL) String() string { return "s3://" + u.bucket + "/" + u.key }

// parseS3URL parses s3://bucket/key. The key is taken literally (no
// percent-decoding); it must be present when needKey is set.
func parseS3URL(s string, needKey bool) (s3URL, error) {
	want := "s3://bucket/key"
	if !needKey {
		want = "s3://bucket/prefix"
	}
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return s3URL{}, usageErr("malformed URL %q: want %s", s, want)
	}
	bucket, key, _ := strings.Cut(rest, "/")
	switch {
	case bucket == "":
		return s3URL{}, usageErr("malformed URL %q: no bucket (want %s)", s, want)
	case needKey && key == "":
		return s3URL{}, usageErr("malformed URL %q: no key (want %s)", s, want)
	case len(key) > 1024:
		return s3URL{}, usageErr("malformed URL %q: key longer than 1024 bytes", s)
	case !utf8.ValidString(key):
		return s3URL{}, usageErr("malformed URL %q: key is not valid UTF-8", s)
	}
	for _, r := range bucket {
		if r <= ' ' || r > '~' || r == '?' || r == '#' {
			return s3URL{}, usageErr("malformed URL %q: bucket name contains %q", s, r)
		}
	}
	return s3URL{bucket: bucket, key: key}, nil
}

// oneURL checks that exactly one positional argument, the lock URL, was
// given.
func oneURL(c *command, pos []string, needKey bool) (s3URL, error) {
	switch len(pos) {
	case 0:
		if needKey {
			return s3URL{}, usageErr("missing s3://bucket/key; see 's3lock %s --help'", c.name)
		}
		return s3URL{}, usageErr("missing s3://bucket/prefix; see 's3lock %s --help'", c.name)
	case 1:
		return parseS3URL(pos[0], needKey)
	}
	return s3URL{}, usageErr("unexpected arguments after %s: %q", pos[0], pos[1:])
}

// awsFlags are the AWS settings every command accepts.
type awsFlags struct {
	profile     string
	region      string
	endpoint    string
	pathStyle   bool
	bucketOwner string
}

func (a *awsFlags) register(c *command) {
	c.fs.StringVar(&a.profile, "profile", "", "use this `name`d profile from the AWS config files (default $AWS_PROFILE)")
	c.fs.StringVar(&a.region, "region", "", "AWS `region` of the bucket (default $AWS_REGION or the profile's)")
	c.fs.StringVar(&a.endpoint, "endpoint-url", "", "S3 endpoint `URL`, for S3-compatible stores (default $AWS_ENDPOINT_URL_S3 or $AWS_ENDPOINT_URL)")
	c.fs.BoolVar(&a.pathStyle, "path-style", false, "address buckets as URL/bucket/key instead of bucket.host (most S3-compatible stores need it)")
	c.fs.StringVar(&a.bucketOwner, "expected-bucket-owner", "", "send this AWS `account-id` as x-amz-expected-bucket-owner on every request, so S3 refuses a bucket owned by another account")
}

// lockClient is client, wrapped to send --expected-bucket-owner when set.
func (a *awsFlags) lockClient(ctx context.Context) (s3lock.S3API, error) {
	c, err := a.client(ctx)
	switch {
	case err != nil:
		return nil, err
	case a.bucketOwner == "":
		return c, nil
	}
	pinned, err := s3lock.ExpectBucketOwner(c, a.bucketOwner)
	if err != nil {
		return nil, withCode(exitUsage, err)
	}
	return pinned, nil
}

// credentialsTimeout bounds the up-front credentials check.
const credentialsTimeout = 20 * time.Second

// client loads the AWS configuration and returns an S3 client. It fails,
// with exitUsage, when the configuration is unusable: unknown profile, no
// region, no credentials, malformed endpoint.
func (a *awsFlags) client(ctx context.Context) (*s3.Client, error) {
	if a.endpoint != "" {
		u, err := url.Parse(a.endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, usageErr("malformed --endpoint-url %q: want http(s)://host[:port]", a.endpoint)
		}
	}
	var opts []func(*config.LoadOptions) error
	if a.profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(a.profile))
	}
	if a.region != "" {
		opts = append(opts, config.WithRegion(a.region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, usageErr("loading AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, usageErr("no AWS region: set --region, AWS_REGION or a region in the profile")
	}
	if cfg.Credentials == nil {
		return nil, usageErr("no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or --profile)")
	}
	cctx, cancel := context.WithTimeout(ctx, credentialsTimeout)
	defer cancel()
	if _, err := cfg.Credentials.Retrieve(cctx); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, usageErr("no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or --profile): %w", err)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if a.endpoint != "" {
			o.BaseEndpoint = aws.String(a.endpoint)
		}
		o.UsePathStyle = a.pathStyle
		// The SDK would otherwise log at Debug, on stderr, for every
		// lock read that carries no checksum.
		o.DisableLogOutputChecksumValidationSkipped = true
		if o.BaseEndpoint != nil {
			// S3-compatible stores often reject the SDK's default
			// checksums; keep them to what S3 requires unless the
			// environment asks for more.
			if os.Getenv("AWS_REQUEST_CHECKSUM_CALCULATION") == "" {
				o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			}
			if os.Getenv("AWS_RESPONSE_CHECKSUM_VALIDATION") == "" {
				o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
			}
		}
	})
	return client, nil
}
