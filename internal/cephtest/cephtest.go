// Package cephtest runs a single-node Ceph cluster on the loopback
// interface for tests: one monitor, one OSD and one RADOS Gateway (S3),
// from Debian's ceph-mon, ceph-osd and radosgw packages (make deps
// installs them), in a temporary directory, with an S3 user made by
// radosgw-admin. No manager daemon: nothing the gateway does needs one.
//
// Settings that matter, all measured on Ceph 16 (pacific):
//
//   - auth_* = none keeps keyrings out of the way, but then the gateway
//     must be told ms_mon_client_mode = crc, or it waits 300 s for a
//     secure mode the monitor never offers;
//   - paxos_propose_interval = 0.05: at its 1 s default every map change
//     of a first start waits a second, and a start takes ~12 s, not ~1.5 s;
//   - public_addr and cluster_addr = 127.0.0.1, or the OSD listens on
//     every address of the machine;
//   - osd_client_watch_timeout = 5: a killed gateway's watches on its
//     control objects outlive it by this long (30 s by default), and every
//     bucket creation of the next gateway waits for them (StopGateway,
//     StartGateway);
//   - the OSD keeps its objects in memory (memstore) by default: it is
//     ready fastest and leaves nothing on disk, but it holds even deleted
//     objects in RAM until the gateway's garbage collection runs (hours),
//     so data-heavy tests ask for bluestore on a sparse file instead.
//
// Every daemon runs in the foreground in its own process group, killed
// with SIGKILL by Stop, also when a test fails (Start registers Stop with
// t.Cleanup); a daemon is also killed when the test binary's thread that
// started it dies (Pdeathsig), so a crashed test run leaves no cluster
// behind. Killed daemons are reaped by Wait; Stop then checks
// /proc/PID/stat, since a zombie still answers kill -0.
package cephtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/recall-backup/recall/internal/testskip"
)

// Binaries are the programs a cluster needs, each with the Debian package
// that has it.
var Binaries = map[string]string{
	"ceph-mon":      "ceph-mon",
	"ceph-osd":      "ceph-osd",
	"radosgw":       "radosgw",
	"radosgw-admin": "ceph-common",
	"monmaptool":    "ceph-base",
	"ceph":          "ceph-common",
	"ceph-authtool": "ceph-common",
}

// ErrMissing says a program the cluster needs is not installed.
var ErrMissing = errors.New("ceph programs missing")

// Options choose how the cluster stores objects.
type Options struct {
	// Bluestore keeps objects in a sparse file of BluestoreSize bytes
	// (default 4 GiB) instead of memory: slower to start (~6 s), but
	// removed objects give their space back.
	Bluestore     bool
	BluestoreSize int64
	// MemstoreSize bounds the memory store (default 2 GiB).
	MemstoreSize int64
}

// Cluster is a running cluster.
type Cluster struct {
	// Endpoint is the gateway's URL, http://127.0.0.1:PORT.
	Endpoint string
	// AccessKey and SecretKey are the S3 user's credentials.
	AccessKey, SecretKey string
	// Dir holds the configuration, the daemons' data and logs.
	Dir string
	// StartTime is how long New took, from nothing to the gateway ready.
	StartTime time.Duration

	conf string

	mu    sync.Mutex
	procs map[string]*exec.Cmd // daemon name -> its process
}

// Missing returns the programs of Binaries that are not on PATH, with
// their packages, or "" when none is missing.
func Missing() string {
	var miss []string
	for bin, pkg := range Binaries {
		if _, err := exec.LookPath(bin); err != nil {
			miss = append(miss, bin+" (package "+pkg+")")
		}
	}
	return strings.Join(miss, ", ")
}

// Start starts a cluster for tb and stops it when tb ends. Missing
// programs skip tb through testskip (make deps installs them; CI fails).
func Start(tb testing.TB, opts Options) *Cluster {
	tb.Helper()
	c, err := New(tb.TempDir(), opts)
	if errors.Is(err, ErrMissing) {
		testskip.Skip(tb, "%v: run make deps", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Stop)
	return c
}

// New starts a cluster in dir (TestMain's variant of Start: the caller
// calls Stop). The error wraps ErrMissing when programs are missing.
func New(dir string, opts Options) (*Cluster, error) {
	if m := Missing(); m != "" {
		return nil, fmt.Errorf("%w: %s", ErrMissing, m)
	}
	t0 := time.Now()
	c := &Cluster{Dir: dir, conf: filepath.Join(dir, "ceph.conf"), procs: map[string]*exec.Cmd{}}
	if err := c.start(opts); err != nil {
		c.Stop()
		return nil, fmt.Errorf("start ceph cluster in %s: %w", dir, err)
	}
	c.StartTime = time.Since(t0)
	return c, nil
}

func (c *Cluster) start(opts Options) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	monPort, gwPort := ports[0], ports[1]
	c.Endpoint = fmt.Sprintf("http://127.0.0.1:%d", gwPort)
	for _, d := range []string{"mon", "osd", "rgw", "run"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o700); err != nil {
			return err
		}
	}
	fsid := uuid()
	store := fmt.Sprintf("osd_objectstore = memstore\nmemstore_device_bytes = %d\n", def(opts.MemstoreSize, 2<<30))
	if opts.Bluestore {
		store = fmt.Sprintf("osd_objectstore = bluestore\nbluestore_block_path = %s\nbluestore_block_size = %d\nbluestore_block_create = true\n"+
			"bluestore_block_db_create = false\nbluestore_block_wal_create = false\nbluestore_fsck_on_mkfs = false\n",
			filepath.Join(c.Dir, "osd-block"), def(opts.BluestoreSize, 4<<30))
	}
	// tcp_nodelay: without it a response's small body waits behind Nagle for the
	// client's delayed ACK of the headers, about 40 ms a request, which dominated
	// every small operation against the gateway.
	conf := fmt.Sprintf(`[global]
fsid = %[1]s
mon_host = v2:127.0.0.1:%[2]d
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_ipv6 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_mon_client_mode = crc
paxos_propose_interval = 0.05
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
osd_client_watch_timeout = 5
run_dir = %[3]s/run
admin_socket = %[3]s/run/$name.asok
log_file = %[3]s/$name.log
pid_file = %[3]s/run/$name.pid
keyring = %[3]s/keyring
mon_data = %[3]s/mon
osd_data = %[3]s/osd
rgw_data = %[3]s/rgw
rgw_frontends = beast endpoint=127.0.0.1:%[4]d tcp_nodelay=1
%[5]s`, fsid, monPort, c.Dir, gwPort, store)
	if err := os.WriteFile(c.conf, []byte(conf), 0o600); err != nil {
		return err
	}
	monmap := filepath.Join(c.Dir, "monmap")
	if err := c.run("monmaptool", "--create", "--addv", "a", fmt.Sprintf("[v2:127.0.0.1:%d]", monPort), "--fsid", fsid, monmap); err != nil {
		return err
	}
	if err := c.run("ceph-authtool", "--create-keyring", filepath.Join(c.Dir, "keyring"), "--gen-key", "-n", "mon."); err != nil {
		return err
	}
	if err := c.run("ceph-mon", "-c", c.conf, "--mkfs", "-i", "a", "--monmap", monmap); err != nil {
		return err
	}
	if err := c.daemon("mon", "ceph-mon", "-c", c.conf, "-i", "a", "-f"); err != nil {
		return err
	}
	osdUUID := uuid()
	if err := c.run("ceph", "-c", c.conf, "--connect-timeout", "30", "osd", "new", osdUUID, "0"); err != nil {
		return err
	}
	if err := c.run("ceph-osd", "-c", c.conf, "-i", "0", "--mkfs", "--osd-uuid", osdUUID); err != nil {
		return err
	}
	if err := c.daemon("osd", "ceph-osd", "-c", c.conf, "-i", "0", "-f"); err != nil {
		return err
	}
	if err := c.StartGateway(); err != nil {
		return err
	}
	c.AccessKey, c.SecretKey = strings.ToUpper(randHex(10)), randHex(20)
	return c.run("radosgw-admin", "-c", c.conf, "user", "create", "--uid", "recall", "--display-name", "recall tests",
		"--access-key", c.AccessKey, "--secret", c.SecretKey)
}

// Env returns the environment that gives a program the S3 user's
// credentials (the recall binary in integration tests).
func (c *Cluster) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + c.AccessKey, "AWS_SECRET_ACCESS_KEY=" + c.SecretKey}
}

// StartGateway starts the gateway (again, after StopGateway) and returns
// when it answers S3 requests.
func (c *Cluster) StartGateway() error {
	if err := c.daemon("rgw", "radosgw", "-c", c.conf, "-n", "client.rgw", "-f"); err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	cl := &http.Client{Timeout: time.Second}
	for {
		resp, err := cl.Get(c.Endpoint + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return nil
			}
		}
		if !c.running("rgw") {
			return fmt.Errorf("radosgw exited: %s", c.logTail("client.rgw.log"))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("radosgw at %s not ready after 60 s: %v; %s", c.Endpoint, err, c.logTail("client.rgw.log"))
		}
		time.Sleep(20 * time.Millisecond) // polls a port: no event to await
	}
}

// StopGateway kills the gateway; the monitor and the OSD keep the data.
func (c *Cluster) StopGateway() { c.kill("rgw") }

// Stop kills every daemon and waits until each is gone.
func (c *Cluster) Stop() {
	for _, d := range []string{"rgw", "osd", "mon"} {
		c.kill(d)
	}
}

// Admin runs radosgw-admin with args against the cluster and returns its
// output.
func (c *Cluster) Admin(args ...string) ([]byte, error) {
	cmd := exec.Command("radosgw-admin", append([]string{"-c", c.conf}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("radosgw-admin %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

func (c *Cluster) run(prog string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", prog, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// daemon starts a daemon in the foreground in a process group of its own.
func (c *Cluster) daemon(name, prog string, args ...string) error {
	log, err := os.OpenFile(filepath.Join(c.Dir, name+".out"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(prog, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", prog, err)
	}
	c.mu.Lock()
	c.procs[name] = cmd
	c.mu.Unlock()
	go cmd.Wait() // reaps it; ProcessState says it exited
	return nil
}

func (c *Cluster) running(name string) bool {
	c.mu.Lock()
	cmd := c.procs[name]
	c.mu.Unlock()
	return cmd != nil && alive(cmd.Process.Pid)
}

func (c *Cluster) kill(name string) {
	c.mu.Lock()
	cmd := c.procs[name]
	delete(c.procs, name)
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	pid := cmd.Process.Pid
	syscall.Kill(-pid, syscall.SIGKILL)
	for deadline := time.Now().Add(10 * time.Second); alive(pid) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // another process's death: no event to await
	}
}

// alive reports whether pid runs: it exists and is not a zombie (a zombie
// answers kill -0).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	st := b[i+2]
	return st != 'Z' && st != 'X'
}

func (c *Cluster) logTail(name string) string {
	f, err := os.Open(filepath.Join(c.Dir, name))
	if err != nil {
		return "no log " + name
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 10 {
			lines = lines[1:]
		}
	}
	return name + ":\n" + strings.Join(lines, "\n")
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func def(v, d int64) int64 {
	if v > 0 {
		return v
	}
	return d
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func uuid() string {
	h := randHex(16)
	return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:32]
}
