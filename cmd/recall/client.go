package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/recall-backup/recall/engine/server"
	"github.com/urfave/cli/v2"
)

// socketFlags find the server of the commands that use it when it runs.
var socketFlags = []cli.Flag{
	&cli.StringFlag{Name: "socket", EnvVars: []string{"RECALL_SOCKET"}, Usage: "talk to the recall serve listening on `PATH` (default: socket = of the configuration file, else " + server.DefaultSocket + ")"},
	&cli.StringFlag{Name: "config", EnvVars: []string{"RECALL_CONFIG"}, Usage: "read the socket's path from `FILE` (default " + server.DefaultConfigPath + ", if it exists)"},
}

// errNoServer: the API was needed and no server answers.
var errNoServer = errors.New("no recall serve answers")

// apiClient talks to recall serve over its unix socket.
type apiClient struct {
	socket string
	http   *http.Client
	server server.ServerInfo // as it answered the first ping
}

// serverClient returns a client of the server that owns the home, or nil
// when none runs: the command then works on the home itself. A socket
// named by --socket must answer.
func serverClient(c *cli.Context) (*apiClient, error) {
	path, explicit := c.String("socket"), c.IsSet("socket")
	config := c.String("config")
	// A command without socketFlags (the group commands, which only wake
	// the server) finds it through their variables all the same.
	if path == "" && !explicit {
		path = os.Getenv("RECALL_SOCKET")
		explicit = path != ""
	}
	if config == "" {
		config = os.Getenv("RECALL_CONFIG")
	}
	if !explicit {
		cfg, err := server.LoadConfig(config)
		if err != nil {
			return nil, err
		}
		path = cfg.Socket
	}
	conn, err := net.Dial("unix", path)
	if err != nil {
		switch {
		case errors.Is(err, syscall.EACCES):
			return nil, fmt.Errorf("socket %s: %w: join group %s (then log in again) or run as root", path, err, server.SocketGroup)
		case explicit:
			return nil, fmt.Errorf("%w on socket %s: %v (start it, or leave out --socket to work on the home directly)", errNoServer, path, err)
		}
		return nil, nil
	}
	conn.Close()
	a := newAPIClient(path)
	if err := a.call(c.Context, "GET", "/ping", nil, &a.server); err != nil {
		return nil, err
	}
	if info := a.server; c.IsSet("home") && !sameDir(c.String("home"), info.Home) {
		// The server on this socket owns another home.
		if explicit {
			return nil, fmt.Errorf("the recall serve on socket %s owns home %s, not %s: give its socket with --socket", path, info.Home, c.String("home"))
		}
		return nil, nil
	}
	return a, nil
}

// wakeServer tells the server that owns the home, if one runs, that its
// groups changed, so its scheduler looks now rather than within the
// minute. Best effort: the scheduler finds the change by itself.
func wakeServer(c *cli.Context) {
	a, err := serverClient(c)
	if err != nil || a == nil {
		return
	}
	ctx, cancel := context.WithTimeout(c.Context, 5*time.Second)
	defer cancel()
	_ = a.call(ctx, "POST", "/wake", nil, nil)
}

// newAPIClient is a client of the server on the unix socket at path.
func newAPIClient(path string) *apiClient {
	return &apiClient{socket: path, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

func sameDir(a, b string) bool {
	a, _ = filepath.Abs(a)
	b, _ = filepath.Abs(b)
	return filepath.Clean(a) == filepath.Clean(b)
}

// apiError is an error answer of the server.
type apiError struct {
	Code int
	Msg  string
}

func (e *apiError) Error() string { return e.Msg }

// call sends a request to path (below the API version) and decodes the
// answer into out; an error status becomes an *apiError with the
// server's message.
func (a *apiClient) call(ctx context.Context, method, path string, in, out any) error {
	resp, err := a.do(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeAnswer(resp, out)
}

func (a *apiClient) do(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://recall"+server.APIVersion+path, body)
	if err != nil {
		return nil, err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("recall serve on socket %s: %w", a.socket, err)
	}
	return resp, nil
}

func decodeAnswer(resp *http.Response, out any) error {
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read the server's answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("recall serve answered %s", resp.Status)
		}
		return &apiError{Code: resp.StatusCode, Msg: e.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("the server's answer: %w", err)
	}
	return nil
}

// follow streams job id until it ends, calling fn with each state (and
// at least every every while it runs); it returns the last. A stream
// that breaks before the job ended returns the error of lost.
func (a *apiClient) follow(ctx context.Context, id uint64, every time.Duration, fn func(server.JobView)) (server.JobView, error) {
	resp, err := a.do(ctx, "GET", fmt.Sprintf("/jobs/%d?follow=1&interval=%s", id, every), nil)
	if err != nil {
		return server.JobView{}, a.lost(ctx, id, server.JobView{}, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return server.JobView{}, decodeAnswer(resp, nil)
	}
	var last server.JobView
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var v server.JobView
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			return last, fmt.Errorf("the server's job stream: %w", err)
		}
		last = v
		fn(v)
	}
	if err := sc.Err(); err != nil {
		return last, a.lost(ctx, id, last, err)
	}
	if !last.Done() {
		return last, a.lost(ctx, id, last, errors.New("the stream ended before the job did"))
	}
	return last, nil
}

// followStopped is how a command that followed server job id ends when
// interrupted: it stopped following, the job goes on in the server. It
// said the interrupted command's own message ("no recovery point was
// made"), and the server then made the point. Its exit code is the
// signal's (it unwraps to the interrupted).
type followStopped struct {
	id  uint64
	sig interrupted
}

func (e followStopped) Error() string {
	return fmt.Sprintf("stopped following server job %d (%s): the job goes on in recall serve; follow it again with 'recall jobs --follow %d', see how it ended with 'recall jobs'", e.id, e.sig.signal(), e.id)
}

func (e followStopped) Unwrap() error { return e.sig }

// errServerGone: the server a command followed a job on stopped
// answering before the job ended.
var errServerGone = errors.New("recall serve went away")

// lostPing bounds the ping that tells a server that went away from a
// connection that broke.
const lostPing = 5 * time.Second

// lost is the error of following job id (last seen as last, if ever)
// when the stream broke with cause: the server was stopped or killed (it
// does not answer, or another server answers now), or only the
// connection broke (the same server answers: the job may go on). A
// stream the command itself cancelled keeps its cause.
func (a *apiClient) lost(ctx context.Context, id uint64, last server.JobView, cause error) error {
	if ctx.Err() != nil {
		var ie interrupted
		if errors.As(cause, &ie) {
			return followStopped{id: id, sig: ie}
		}
		return fmt.Errorf("following server job %d: %w", id, cause)
	}
	what := fmt.Sprintf("job %d", id)
	if last.Kind != "" {
		what = fmt.Sprintf("job %d (%s", id, last.Kind)
		if last.Group != "" {
			what += " of group " + last.Group
		}
		what += ")"
	}
	pctx, cancel := context.WithTimeout(ctx, lostPing)
	defer cancel()
	var now server.ServerInfo
	perr := a.call(pctx, "GET", "/ping", nil, &now)
	if perr == nil && now.PID == a.server.PID && now.Started.Equal(a.server.Started) {
		return fmt.Errorf("following %s: the connection to recall serve (pid %d) broke: %v; the job may still run: follow it again with 'recall jobs --follow %d'", what, now.PID, cause, id)
	}
	who := fmt.Sprintf("pid %d answers no more", a.server.PID)
	if perr == nil {
		who = fmt.Sprintf("pid %d; pid %d answers now", a.server.PID, now.PID)
	}
	redo := ""
	switch last.Kind {
	case "backup":
		redo = ", and the server makes the backup again at its next start"
	case "":
		redo = "; a backup cut short is made again at the server's next start"
	}
	return fmt.Errorf("following %s: %w (%s) while the job ran: %v. It was stopped or killed and the job was cut short: 'recall jobs' shows it as interrupted%s. The server's log (journalctl -u recall under systemd) says why it ended, and 'recall status' whether it runs",
		what, errServerGone, who, cause, redo)
}

// progressLine says in one line where a job is.
func progressLine(v server.JobView) string {
	s := fmt.Sprintf("server job %d: %s", v.ID, v.Kind)
	if v.Group != "" {
		s += " of group " + v.Group
	}
	s += ": " + v.State
	if v.Waiting != "" {
		s += ", waiting for the store lock held by " + oneLine(v.Waiting)
	}
	for _, m := range v.Members {
		if m.State != "running" {
			continue
		}
		s += ", member " + m.Member
		if p := m.Progress; p != nil {
			s += fmt.Sprintf(" %d/%d files, %s/%s", p.FilesDone, p.FilesTotal, human(p.BytesDone), human(p.BytesTotal))
			if !p.TotalsFinal {
				s += " (scanning)"
			}
		}
	}
	return s
}

// printFollow prints each state of a followed job: NDJSON with --json,
// else a line on stderr when it changes, at most every interval.
func printFollow(c *cli.Context) func(server.JobView) {
	var last string
	var at time.Time
	interval := c.Duration("progress-interval")
	return func(v server.JobView) {
		if c.Bool("json") {
			printJSON(c, v)
			return
		}
		if c.Bool("quiet") {
			return
		}
		l := progressLine(v)
		if l == last || (!v.Done() && time.Since(at) < interval && last != "" && v.State == "running" && sameState(last, l)) {
			return
		}
		last, at = l, time.Now()
		logf("%s", l)
	}
}

// sameState: two lines differ only in counts; printed at most every
// interval then, so a log gets a line now and then, not one a second.
func sameState(a, b string) bool {
	strip := func(s string) string {
		return string(bytes.Map(func(r rune) rune {
			if r >= '0' && r <= '9' || r == '.' {
				return -1
			}
			return r
		}, []byte(s)))
	}
	return strip(a) == strip(b)
}
