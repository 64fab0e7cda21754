package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// The store passphrase comes from the first of:
//
//	--password-command CMD   RECALL_PASSWORD_COMMAND   first line CMD prints (sh -c)
//	--password-file FILE     RECALL_PASSWORD_FILE      the file, less its line end
//	RECALL_PASSWORD                                    the variable's value
//	a prompt on the terminal                           only when stdin is a terminal
//
// and the prompt is shown only when the store turns out to be encrypted.
// A command and a file together are a usage error: which one wins would
// be a guess.

// passwordFDEnv names the descriptor from which a mount server started by
// `recall mount` reads the passphrase its parent resolved (perhaps by
// asking): the server has no terminal, and a pipe keeps the passphrase
// out of its environment and arguments.
const passwordFDEnv = "RECALL_MOUNT_PASSWORD_FD"

// resolved is the passphrase that opened the store, for a mount server.
var resolved string

// errNoTerminal: no terminal to ask on; the caller reports what to set.
var errNoTerminal = errors.New("no terminal to ask for the passphrase on")

// password returns the passphrase given without asking, or "" when none
// was given.
func password(c *cli.Context) (string, error) {
	if fd, err := strconv.Atoi(os.Getenv(passwordFDEnv)); err == nil && fd >= 3 {
		os.Unsetenv(passwordFDEnv)
		f := os.NewFile(uintptr(fd), "passphrase")
		defer f.Close()
		b, err := io.ReadAll(f)
		if err != nil {
			return "", fmt.Errorf("read the passphrase from the mount command: %w", err)
		}
		return string(b), nil
	}
	command, file := c.String("password-command"), c.String("password-file")
	switch {
	case command != "" && file != "":
		return "", usagef("--password-command (or RECALL_PASSWORD_COMMAND) and --password-file (or RECALL_PASSWORD_FILE) are both set: give one")
	case command != "":
		pw, err := runPasswordCommand(c.Context, command)
		if err != nil {
			return "", noPassphrase{err}
		}
		return pw, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			from := "--password-file"
			if os.Getenv("RECALL_PASSWORD_FILE") == file {
				from = "RECALL_PASSWORD_FILE"
			}
			return "", noPassphrase{fmt.Errorf("password file (%s): %w: give a file that holds the passphrase, or drop %s to use RECALL_PASSWORD, --password-command or a prompt", from, err, from)}
		}
		pw := strings.TrimRight(string(b), "\r\n")
		if pw == "" {
			// Not "no passphrase was given": one was, and it is empty.
			return "", noPassphrase{fmt.Errorf("password file %s is empty: write the store's passphrase into it", file)}
		}
		return pw, nil
	}
	return os.Getenv("RECALL_PASSWORD"), nil
}

// noPassphrase is a passphrase source that gave none (a password file
// missing or empty, a command that failed): exit 5, as for no passphrase
// at all, with its own message.
type noPassphrase struct{ err error }

func (e noPassphrase) Error() string        { return e.err.Error() }
func (e noPassphrase) Unwrap() error        { return e.err }
func (e noPassphrase) Is(target error) bool { return target == chunkstore.ErrNoPassword }

// passwordCommandTimeout bounds a passphrase command: long enough for a
// person to answer a pinentry, short of hanging a scheduled job.
var passwordCommandTimeout = 2 * time.Minute

// runPasswordCommand runs command with sh -c and returns the first line
// it prints, as soon as it is printed. Its stdin and stderr are ours, so
// it may ask (pinentry).
//
// The command is not waited for after that line: it may go on running (a
// keyring helper that stays to serve the next caller), and what it or an
// agent it started prints later is not ours to wait for. It is not
// killed either, for an agent it started must live on; it is reaped in
// the background, so it leaves no zombie while recall runs.
//
// It runs in a process group of its own, so that stopping it before it
// printed the line (an interruption, the timeout) stops what it started
// too: killing sh alone would leave "sleep 100" of "sleep 100; echo pw"
// running, reparented to init.
// While it runs, its group is the terminal's foreground group when ours
// was (foreground), so that it may still read the terminal.
func runPasswordCommand(ctx context.Context, command string) (string, error) {
	// A command that waits for an answer nobody gives (a pinentry with
	// no display) would hang a cron job for ever.
	ctx, cancel := context.WithTimeout(ctx, passwordCommandTimeout)
	defer cancel()
	r, w, err := os.Pipe()
	if err != nil {
		return "", fmt.Errorf("password command %q: %w", command, err)
	}
	// Our end is closed whatever happens: a command that prints more than
	// the pipe holds then gets EPIPE instead of blocking for ever.
	defer r.Close()
	cmd := exec.Command("sh", "-c", command)
	// An *os.File, not a Writer: exec copies nothing, so Wait does not
	// wait for the command's children to close their output.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, w, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return "", fmt.Errorf("password command %q failed: %v; run it by hand to see why", command, err)
	}
	defer foreground(cmd.Process.Pid)()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	type answer struct {
		line string
		err  error // io.EOF: the output ended before a line end
	}
	first := make(chan answer, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		first <- answer{line, err}
	}()
	var a answer
	select {
	case a = <-first:
	case <-ctx.Done():
		return "", passwordCommandStopped(ctx, cmd, command)
	}
	if a.err != nil {
		// The output ended without a line end: whatever came before is
		// the passphrase only if the command succeeded.
		select {
		case err := <-exited:
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGINT {
				// Ctrl-C on the terminal it had (foreground) reached
				// its group, not us: we are interrupted all the same.
				cmdName, _ := running.Load().(string)
				return "", interrupted{sig: syscall.SIGINT, cmd: cmdName}
			}
			if err != nil {
				// %v: an *exec.ExitError has an ExitCode method, and
				// urfave/cli's ExitCoder would make it a usage error in
				// exitCode.
				return "", fmt.Errorf("password command %q failed: %v; run it by hand to see why", command, err)
			}
		case <-ctx.Done():
			return "", passwordCommandStopped(ctx, cmd, command)
		}
	}
	line := strings.TrimSuffix(strings.TrimSuffix(a.line, "\n"), "\r")
	if line == "" {
		return "", fmt.Errorf("password command %q printed no passphrase on its first line", command)
	}
	return line, nil
}

// passwordCommandStopped ends cmd, which printed no line before ctx
// ended, with its process group, and says why it was stopped. The reaper
// started with it collects sh; what sh started is reparented and reaped
// by init.
func passwordCommandStopped(ctx context.Context, cmd *exec.Cmd, command string) error {
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("password command %q printed no passphrase within %s: run it by hand to see what it waits for", command, passwordCommandTimeout)
	}
	return context.Cause(ctx)
}

// foreground makes process group pgid the foreground group of our
// terminal (stdin), when ours is, and returns what gives the terminal
// back: a command in a group of its own that reads the terminal (a
// prompt) would else be stopped (SIGTTIN) until the timeout. As shells
// do it; restic starts ssh so. SIGTTOU is ignored meanwhile: taking the
// terminal back from a background group sends it.
func foreground(pgid int) func() {
	fd := int(os.Stdin.Fd())
	ours, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP)
	if err != nil || ours != unix.Getpgrp() {
		return func() {} // no terminal, or we are in the background
	}
	signal.Ignore(syscall.SIGTTOU)
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPGRP, pgid); err != nil {
		signal.Reset(syscall.SIGTTOU)
		return func() {}
	}
	// It may have read the terminal before it was given it, and stopped.
	syscall.Kill(-pgid, syscall.SIGCONT)
	return func() {
		unix.IoctlSetPointerInt(fd, unix.TIOCSPGRP, ours)
		signal.Reset(syscall.SIGTTOU)
	}
}

// readPassword asks for a passphrase on the terminal; tests replace it.
var readPassword = readPasswordTTY

// readPasswordTTY prompts on /dev/tty and reads a line without echo. It
// asks only when stdin is a terminal, so a command run by cron or a
// script fails with the list of ways to give the passphrase instead of
// waiting for an answer nobody sees.
//
// Not term.ReadPassword: SIGINT is caught (stopOnSignal), so Ctrl-C does
// not end a read blocked in it, and it turns the echo off on its own
// goroutine, where restoring the terminal on interruption could race with
// it. Here the echo goes off before the read starts and comes back on
// whichever way the prompt ends.
func readPasswordTTY(ctx context.Context, prompt string) (string, error) {
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return "", errNoTerminal
	}
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return "", errNoTerminal
	}
	fd := int(tty.Fd())
	state, err := term.GetState(fd)
	if err != nil {
		tty.Close()
		return "", errNoTerminal
	}
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		tty.Close()
		return "", errNoTerminal
	}
	t.Lflag &^= unix.ECHO
	t.Lflag |= unix.ICANON | unix.ISIG
	t.Iflag |= unix.ICRNL
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		tty.Close()
		return "", fmt.Errorf("turn off the terminal's echo: %w", err)
	}
	fmt.Fprint(tty, prompt)
	type answer struct {
		line string
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		line, err := bufio.NewReader(tty).ReadString('\n')
		if err == io.EOF && line != "" {
			err = nil
		}
		ch <- answer{strings.TrimRight(line, "\r\n"), err}
	}()
	select {
	case a := <-ch:
		term.Restore(fd, state)
		fmt.Fprintln(tty)
		tty.Close()
		if a.err != nil {
			return "", fmt.Errorf("read the passphrase from the terminal: %w", a.err)
		}
		return a.line, nil
	case <-ctx.Done():
		// The read stays blocked on tty until the process ends; only
		// the terminal's state matters now.
		term.Restore(fd, state)
		fmt.Fprintln(tty)
		return "", context.Cause(ctx)
	}
}

// askPassword asks for the passphrase of the encrypted store in dir.
func askPassword(c *cli.Context, dir string) (string, error) {
	pw, err := readPassword(c.Context, fmt.Sprintf("passphrase for store %s: ", dir))
	if err != nil {
		return "", err
	}
	if pw == "" {
		// Not ErrNoPassword's advice to run it on a terminal: it was.
		return "", noPassphrase{fmt.Errorf("no passphrase typed: store %s is encrypted; type its passphrase at the prompt, or set RECALL_PASSWORD, RECALL_PASSWORD_FILE or --password-command", dir)}
	}
	return pw, nil
}

// newPassword returns the passphrase of a new key: given is what the
// caller was given without asking ("" for none); else it is asked twice
// on the terminal (errNoTerminal when there is none).
func newPassword(c *cli.Context, given, prompt string) (string, error) {
	if given != "" {
		return given, nil
	}
	pw, err := readPassword(c.Context, prompt+": ")
	if err != nil {
		return "", err
	}
	if pw == "" {
		return "", errors.New("the passphrase is empty: an empty passphrase protects nothing; nothing was changed")
	}
	again, err := readPassword(c.Context, "the same again: ")
	if err != nil {
		return "", err
	}
	if again != pw {
		return "", errors.New("the two passphrases differ; nothing was changed")
	}
	return pw, nil
}

// handPassword gives the mount server cmd will start the passphrase pw
// ("" for none: a plaintext store) on a pipe (see passwordFDEnv). Call it
// after cmd.ExtraFiles is set; the returned function closes our end.
func handPassword(cmd *exec.Cmd, pw string) (func(), error) {
	if pw == "" {
		return func() {}, nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	// A passphrase is far smaller than a pipe's buffer: this never blocks.
	_, err = io.WriteString(w, pw)
	w.Close()
	if err != nil {
		r.Close()
		return nil, err
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, r)
	cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d", passwordFDEnv, 2+len(cmd.ExtraFiles)))
	return func() { r.Close() }, nil
}

// passwordSource names, for messages, where password finds the
// passphrase, and whether reading it again may give another one: a file
// or a command may; the environment of a running process, or an answer
// typed at its start, may not.
func passwordSource(c *cli.Context) (string, bool) {
	switch command, file := c.String("password-command"), c.String("password-file"); {
	case command != "":
		return fmt.Sprintf("the password command %q", command), true
	case file != "":
		return "the password file " + file, true
	case os.Getenv("RECALL_PASSWORD") != "":
		return "RECALL_PASSWORD", false
	}
	return "the passphrase typed at the start", false
}
