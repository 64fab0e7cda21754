package s3

import (
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// proxy forwards TCP connections to a gateway and breaks them on demand:
// the first few at once, some at random as they carry bytes, or every one
// while it is down. A broken connection is reset (RST), as by a crashed
// peer or a middlebox.
type proxy struct {
	ln     net.Listener
	target string

	dropFirst   atomic.Int64 // connections still to reset at accept
	acceptShare float64      // share of connections reset at accept
	meanBytes   float64      // a connection is reset after an exponential number of bytes of this mean (0: never)
	down        atomic.Bool
	stall       atomic.Bool   // new connections are accepted and never answered
	quit        chan struct{} // closed at the test's end
	stalled     chan struct{} // a token per connection stalled

	resets atomic.Int64
	mu     sync.Mutex
	conns  map[*net.TCPConn]struct{}
}

func newProxy(t testing.TB, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[*net.TCPConn]struct{}{}, quit: make(chan struct{}), stalled: make(chan struct{}, 1000)}
	go p.serve()
	t.Cleanup(func() {
		close(p.quit)
		ln.Close()
		p.setDown(true)
	})
	return p
}

// endpoint is the proxy's URL.
func (p *proxy) endpoint() string { return "http://" + p.ln.Addr().String() }

// setStall resets every connection and, while stalled, answers no new one.
func (p *proxy) setStall(stall bool) {
	p.stall.Store(stall)
	if stall {
		p.down.Store(true)
		p.setDown(true)
		p.down.Store(false)
	}
}

// setDown resets every connection and, while down, every new one.
func (p *proxy) setDown(down bool) {
	p.down.Store(down)
	if !down {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		reset(c)
	}
}

func reset(c *net.TCPConn) {
	c.SetLinger(0)
	c.Close()
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c.(*net.TCPConn))
	}
}

func (p *proxy) handle(c *net.TCPConn) {
	if p.stall.Load() {
		p.stalled <- struct{}{}
		<-p.quit
		reset(c)
		return
	}
	if p.down.Load() || p.dropFirst.Add(-1) >= 0 || rand.Float64() < p.acceptShare {
		p.resets.Add(1)
		reset(c)
		return
	}
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		reset(c)
		return
	}
	up := s.(*net.TCPConn)
	p.mu.Lock()
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		delete(p.conns, up)
		p.mu.Unlock()
	}()
	budget := &atomic.Int64{}
	budget.Store(-1)
	if p.meanBytes > 0 {
		budget.Store(int64(rand.ExpFloat64() * p.meanBytes))
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(up, c, budget) }()
	go func() { defer wg.Done(); p.pipe(c, up, budget) }()
	wg.Wait()
}

// pipe copies from src to dst until either ends or the connection's byte
// budget (shared by both directions; -1: none) runs out, when both are
// reset.
func (p *proxy) pipe(dst, src *net.TCPConn, budget *atomic.Int64) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if b := budget.Load(); b >= 0 {
				if budget.Add(-int64(n)) < 0 {
					p.resets.Add(1)
					dst.Write(buf[:rand.IntN(n)])
					reset(dst)
					reset(src)
					return
				}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				reset(src)
				return
			}
		}
		if err != nil {
			if err == io.EOF {
				dst.CloseWrite()
			} else {
				reset(dst)
			}
			return
		}
	}
}
