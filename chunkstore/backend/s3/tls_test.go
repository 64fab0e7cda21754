package s3

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
)

// tlsGateway puts a TLS front with a certificate of a private authority
// before the gateway (as a site's own CA would), and returns its URL and
// the authority's PEM file.
func tlsGateway(t *testing.T) (endpoint, caFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "recall test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse(gateway(t).Endpoint)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	// The Host header is passed on as the client signed it.
	srv := &http.Server{Handler: httputil.NewSingleHostReverseProxy(target), ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String(), caFile
}

// A gateway behind TLS with a private authority: trusted through CAFile,
// refused at once (not retried) without it.
func TestTLSCustomCA(t *testing.T) {
	endpoint, caFile := tlsGateway(t)
	open(t, config(t, gateway(t).Endpoint)) // the bucket exists
	cfg := config(t, endpoint)
	cfg.CAFile = caFile
	be := open(t, cfg)
	h := backend.Handle{Type: backend.Points, Name: "p"}
	want := randBytes(3, 70_000)
	if err := be.Save(bg, h, want); err != nil {
		t.Fatal(err)
	}
	if got, err := be.Load(bg, h, 5, 1000, nil); err != nil || !bytes.Equal(got, want[5:1005]) {
		t.Fatalf("load over TLS: %d bytes, %v", len(got), err)
	}

	cfg.CAFile = ""
	start := time.Now()
	_, err := Open(bg, cfg)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) || !strings.Contains(err.Error(), endpoint) {
		t.Fatalf("open without the authority: %v; want an unknown-authority error naming %s", err, endpoint)
	}
	if strings.Contains(err.Error(), "attempts") {
		t.Errorf("a certificate refused was retried: %v (%v)", err, time.Since(start))
	}
}
