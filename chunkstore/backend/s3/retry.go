package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
)

// errAttemptTimeout marks an attempt that ran out of its own time
// (Config.RequestTimeout) while the caller's context had time left.
var errAttemptTimeout = errors.New("request timed out")

// Retries returns how many requests failed with a transient error and
// were sent again, or given up after their last attempt (for metrics).
func (b *Backend) Retries() int64 { return b.retries.Load() }

func isAttemptTimeout(err error) bool { return errors.Is(err, errAttemptTimeout) }

// do runs one request, fn, in a connection slot and with its own timeout,
// and again after a wait while it fails with a transient error and
// attempts are left. A canceled caller's context ends it at once, never
// retried. The error returned is the last attempt's, with the count.
func (b *Backend) do(ctx context.Context, fn func(ctx context.Context) error) error {
	return b.retry(ctx, true, fn)
}

// retry is do, in a connection slot when slot is set: a listing that
// calls back for each name takes none, since the callback may make
// requests of its own, which would wait for the slot the listing holds.
func (b *Backend) retry(ctx context.Context, slot bool, fn func(ctx context.Context) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		if cerr := ctx.Err(); cerr != nil {
			if err != nil {
				return fmt.Errorf("%w (after: %v)", cerr, err)
			}
			return cerr
		}
		if slot {
			select {
			case b.sem <- struct{}{}:
			case <-ctx.Done():
				continue
			}
		}
		actx, cancel := context.WithTimeoutCause(ctx, b.cfg.RequestTimeout, errAttemptTimeout)
		err = fn(actx)
		timedOut := errors.Is(context.Cause(actx), errAttemptTimeout)
		cancel()
		if slot {
			<-b.sem
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			continue // canceled by the caller: no retry, and no I/O error
		}
		if timedOut {
			// Not the caller's deadline: the context's error is not wrapped.
			err = fmt.Errorf("%w after %v (%v)", errAttemptTimeout, b.cfg.RequestTimeout, err)
		}
		if !transient(err) {
			return err
		}
		b.retries.Add(1)
		if attempt >= b.cfg.Attempts {
			return fmt.Errorf("%d attempts: %w", attempt, err)
		}
		// Full jitter: a wait drawn below an exponentially growing bound,
		// so that clients failed together do not come back together.
		bound := min(b.cfg.RetryMax, b.cfg.RetryBase<<min(attempt-1, 30))
		t := time.NewTimer(rand.N(bound) + time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
}

// transient reports whether a retry of a failed request may succeed: the
// server's 5xx, 429 and slow-down answers, timeouts, and every failure of
// the connection (refused while a gateway restarts, reset, a body cut
// short).
func transient(err error) bool {
	if errors.Is(err, errAttemptTimeout) {
		return true
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		switch er.Code {
		case "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "RequestTimeTooSkewed":
			return true
		}
		return er.StatusCode >= 500 || er.StatusCode == http.StatusTooManyRequests || er.StatusCode == http.StatusRequestTimeout
	}
	// A certificate refused is refused again.
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	var verify *tls.CertificateVerificationError
	if errors.As(err, &unknown) || errors.As(err, &invalid) || errors.As(err, &host) || errors.As(err, &verify) {
		return false
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	// The HTTP client's own failures of a connection ("server closed
	// idle connection", a malformed response from a dying server).
	var ue *url.Error
	return errors.As(err, &ue)
}
