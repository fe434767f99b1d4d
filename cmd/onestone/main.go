// Command onestone trains multi-objective recommender models (MMoE and its
// family) on Parquet or Kafka event logs and serves them over HTTP.
//
// The command only parses flags and calls the library packages; each
// subcommand lives in a file of its own and registers itself from init.
//
// Exit codes: 0 on success (and for -h, --help and help), 1 when the
// command fails, 2 on a usage error (no or an unknown command, a bad flag,
// a missing required flag), after printing the usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand of the onestone binary.
type command struct {
	name    string
	summary string // one line in the command list
	// usage is the synopsis (after "usage: ") and, after a blank line, an
	// optional description, printed above the flags by -h.
	usage string
	// flags declares the command's flags on fs and returns the function
	// that runs the command once they are parsed.
	flags func(fs *flag.FlagSet) runFunc
}

// runFunc runs a command with the arguments left after the flags. Results
// go to out, progress and notes to log.
type runFunc func(ctx context.Context, out, log io.Writer, args []string) error

// usageError is an error in how a command was called (a missing required
// flag, an unexpected argument): exit code 2, with the usage.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("onestone: duplicate command " + c.name)
	}
	commands[c.name] = c
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command line args (without the program name) and returns
// the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printCommands(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				c.printUsage(stdout, c.flagSet())
				return exitOK
			}
		}
		printCommands(stdout)
		return exitOK
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "onestone: unknown command %q\n\n", args[0])
		printCommands(stderr)
		return exitUsage
	}
	return c.exec(ctx, args[1:], stdout, stderr)
}

func printCommands(w io.Writer) {
	fmt.Fprintln(w, "usage: onestone <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'onestone <command> -h' for the flags of a command.")
}

// flagSet returns a new flag set with the command's flags declared.
func (c command) flagSet() *flag.FlagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	c.flags(fs)
	return fs
}

// exec parses the command's flags and runs it.
func (c command) exec(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and usage are printed below
	fs.Usage = func() {}
	runner := c.flags(fs)
	pos, err := parseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		c.printUsage(stdout, fs)
		return exitOK
	}
	if err == nil {
		err = runner(ctx, stdout, stderr, pos)
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "onestone %s: %v\n\n", c.name, err)
		c.printUsage(stderr, fs)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "onestone %s: %v\n", c.name, err)
		return exitFail
	}
}

// parseArgs parses flags anywhere among args, as most command lines with
// subcommands do (cobra, kubectl): `inspect FILE --json` and
// `bench train --steps 3` work. Arguments that are not flags are returned
// in order; "--" ends the flags. A bad flag is a usageError.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// Parse stops at the first argument that is not a flag, or after
		// "--".
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// printUsage prints the command's synopsis, description and flags (those
// with an empty usage string are hidden).
func (c command) printUsage(w io.Writer, fs *flag.FlagSet) {
	synopsis, desc, _ := strings.Cut(c.usage, "\n\n")
	if synopsis == "" {
		synopsis = "onestone " + c.name + " [flags]"
	}
	fmt.Fprintf(w, "usage: %s\n\n", synopsis)
	if desc == "" && c.summary != "" {
		desc = strings.ToUpper(c.summary[:1]) + c.summary[1:] + "."
	}
	fmt.Fprintf(w, "%s\n", strings.TrimRight(desc, "\n"))
	vis := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.VisitAll(func(f *flag.Flag) {
		if f.Usage == "" {
			return
		}
		vis.Var(f.Value, f.Name, f.Usage)
		vis.Lookup(f.Name).DefValue = f.DefValue
	})
	if !hasFlags(vis) {
		return
	}
	fmt.Fprintln(w, "\nflags:")
	vis.SetOutput(w)
	vis.PrintDefaults()
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}
