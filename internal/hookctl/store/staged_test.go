package store_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/etcdtest"
	"github.com/apihooks/apihooks/internal/hookctl/store"
)

// hooksIn returns the hook keys (without the directory) and values under
// the hooks directory, the marker aside, and whether the marker exists.
func hooksIn(t *testing.T, c *clientv3.Client) (map[string]string, bool) {
	t.Helper()
	resp, err := c.Get(ctx, registry.HooksDir(prefix), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out, marker := map[string]string{}, false
	for _, kv := range resp.Kvs {
		if string(kv.Key) == registry.ApplyMarker(prefix) {
			marker = true
			continue
		}
		out[strings.TrimPrefix(string(kv.Key), registry.HooksDir(prefix))] = string(kv.Value)
	}
	return out, marker
}

// manyPuts returns a write of n hooks, value v, read at rev.
// utilsIn returns the values under the utils directory, by key.
func utilsIn(t *testing.T, c *clientv3.Client) map[string]string {
	t.Helper()
	resp, err := c.Get(ctx, registry.UtilsDir(prefix), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), registry.UtilsDir(prefix))] = string(kv.Value)
	}
	return out
}

func manyPuts(n int, v string, rev int64) *store.Write {
	w := &store.Write{ReadRevision: rev, Puts: map[string][]byte{}}
	for i := range n {
		w.Puts[registry.HooksDir(prefix)+fmt.Sprintf("s.S/M/pre/h%04d", i)] = []byte(v)
	}
	return w
}

func TestCommitOfAnySizeFitsEtcdsDefaultLimits(t *testing.T) {
	t.Parallel()
	s, c := open(t)
	big := strings.Repeat("x", 23*1024)
	cases := []struct {
		name     string
		n        int
		value    string
		wantTxns int
	}{
		{"125 small hooks: one transaction", 125, "1", 1},
		{"126 small hooks: staged", 126, "2", 3},
		{"1,000 small hooks: staged", 1000, "3", 9},
		{"70 scripts of 23 KB: staged by size", 70, big, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, rev, err := s.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			w := manyPuts(tc.n, tc.value, rev)
			if n, err := s.Transactions(w); err != nil || n != tc.wantTxns {
				t.Fatalf("Transactions: got %d, %v; want %d", n, err, tc.wantTxns)
			}
			if _, err := s.Commit(ctx, w); err != nil {
				t.Fatalf("Commit: %v", err)
			}
			got, marker := hooksIn(t, c)
			if marker {
				t.Error("the marker is still there after the write")
			}
			for k := range w.Puts {
				if got[strings.TrimPrefix(k, registry.HooksDir(prefix))] != tc.value {
					t.Fatalf("%s not written", k)
				}
			}
		})
	}
}

func TestAChangeToOneOfManyHooksIsOneTransaction(t *testing.T) {
	t.Parallel()
	s, c := open(t)
	if _, err := s.Commit(ctx, manyPuts(300, "1", 0)); err != nil {
		t.Fatal(err)
	}
	entries, rev, err := s.List(ctx)
	if err != nil || len(entries) != 300 {
		t.Fatalf("List: %d entries, %v", len(entries), err)
	}
	e := entries[7]
	w := &store.Write{ReadRevision: rev, Guards: map[string]int64{e.Path: e.ModRevision}, Puts: map[string][]byte{e.Path: []byte("2")}}
	if n, _ := s.Transactions(w); n != 1 {
		t.Fatalf("Transactions: got %d; want 1", n)
	}
	wrote, err := s.Commit(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	if wrote != rev+1 {
		t.Errorf("revision written: got %d; want %d (one transaction)", wrote, rev+1)
	}
	if got, _ := hooksIn(t, c); got["s.S/M/pre/h0007"] != "2" {
		t.Errorf("h0007 = %q; want 2", got["s.S/M/pre/h0007"])
	}
}

var errStop = errors.New("hookctl was killed")

func TestAStagedWriteStoppedPartWayIsResumedOrAborted(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"resume", "abort"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			s, c := open(t)
			first := manyPuts(10, "old", 0)
			utils := registry.UtilsDir(prefix)
			first.Puts[utils+"X/1"], first.Puts[utils+"X/active"] = []byte(`{"script":"1"}`), []byte(`{"version":1}`)
			if _, err := s.Commit(ctx, first); err != nil {
				t.Fatal(err)
			}
			before, _ := hooksIn(t, c)
			utilsBefore := utilsIn(t, c)
			_, rev, _ := s.List(ctx)
			w := manyPuts(400, "new", rev)
			// Enough utils that some are written before the apply stops
			// (keys are written in order, utils after hooks).
			for i := range 300 {
				w.Puts[utils+fmt.Sprintf("U%03d/1", i)] = []byte(`{"script":"1"}`)
			}
			w.Puts[utils+"X/2"], w.Puts[utils+"X/active"] = []byte(`{"script":"2"}`), []byte(`{"version":2}`)
			for k := range w.Puts {
				if strings.HasSuffix(k, "h0001") {
					w.Guards = map[string]int64{k: 2}
				}
			}
			w.Step = func(done, total int) error {
				if done == total-1 {
					return errStop // before the last transaction
				}
				return nil
			}
			_, err := s.Commit(ctx, w)
			var staged *store.StagedError
			if !errors.As(err, &staged) || !errors.Is(err, errStop) || staged.Done != staged.Total-1 || staged.Done < 2 {
				t.Fatalf("Commit: got %v; want a *StagedError before the last of several transactions", err)
			}
			m, err := s.Marker(ctx)
			if err != nil || m == nil || m.ReadRevision != rev {
				t.Fatalf("Marker: got %+v, %v; want one read at %d", m, err, rev)
			}
			// Another writer is refused while the apply is staged.
			_, err = s.Commit(ctx, &store.Write{Puts: map[string][]byte{registry.HooksDir(prefix) + "s.S/M/pre/other": []byte("1")}})
			var conflict *store.ConflictError
			if !errors.As(err, &conflict) || conflict.Apply == nil {
				t.Fatalf("a write during the staged apply: got %v; want a conflict naming the apply", err)
			}

			switch how {
			case "resume":
				entries, rev, err := s.List(ctx)
				if err != nil {
					t.Fatal(err)
				}
				w := manyPuts(400, "new", rev)
				for _, e := range entries {
					if string(e.Raw) == "new" {
						delete(w.Puts, e.Path)
					}
				}
				w.Resume = m
				if _, err := s.Commit(ctx, w); err != nil {
					t.Fatalf("resume: %v", err)
				}
				got, marker := hooksIn(t, c)
				if marker || len(got) != 400 {
					t.Fatalf("after resuming: %d hooks, marker %v; want 400 and no marker", len(got), marker)
				}
			case "abort":
				if _, err := s.Abort(ctx); err != nil {
					t.Fatalf("Abort: %v", err)
				}
				got, marker := hooksIn(t, c)
				if marker || fmt.Sprint(got) != fmt.Sprint(before) {
					t.Fatalf("after aborting: %d hooks, marker %v; want the 10 from before and no marker", len(got), marker)
				}
				if got := utilsIn(t, c); fmt.Sprint(got) != fmt.Sprint(utilsBefore) {
					t.Fatalf("after aborting: %d keys under utils, X/active %s; want the %d from before, X/active %s",
						len(got), got["X/active"], len(utilsBefore), utilsBefore["X/active"])
				}
			}
		})
	}
}

func TestAStagedWriteStopsAtAConcurrentChange(t *testing.T) {
	t.Parallel()
	s, c := open(t)
	_, rev, _ := s.List(ctx)
	w := manyPuts(300, "1", rev)
	w.Step = func(done, total int) error {
		if done == 1 {
			mustPut(t, c, registry.HooksDir(prefix)+"s.S/M/pre/zz", "other") // bypasses the marker, as etcdctl would
		}
		return nil
	}
	_, err := s.Commit(ctx, w)
	var conflict *store.ConflictError
	if !errors.As(err, &conflict) || !strings.Contains(err.Error(), "s.S/M/pre/zz") {
		t.Fatalf("got %v; want a conflict naming s.S/M/pre/zz", err)
	}
	if m, _ := s.Marker(ctx); m == nil {
		t.Fatal("the marker is gone: daemons would load a half-done apply")
	}
}

func TestOversizedWritesNameTheHookOrCarryEtcdsReason(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	huge := strings.Repeat("x", 2<<20)
	s := openAt(t, e, store.Limits{})
	_, err := s.Commit(ctx, &store.Write{Puts: map[string][]byte{registry.HooksDir(prefix) + "s.S/M/pre/huge": []byte(huge)}})
	var tooLarge *store.TooLargeError
	if !errors.As(err, &tooLarge) || !strings.Contains(err.Error(), "s.S/M/pre/huge") {
		t.Fatalf("a 2 MiB document: got %v; want a *TooLargeError naming it", err)
	}
	// hookctl told etcd allows more than it does: etcd's own refusal.
	s = openAt(t, e, store.Limits{MaxRequestBytes: 4 << 20})
	_, err = s.Commit(ctx, &store.Write{Puts: map[string][]byte{registry.HooksDir(prefix) + "s.S/M/pre/big": []byte(huge[:1700*1024])}})
	var refused *store.RefusedError
	if !errors.As(err, &refused) || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("a 1.7 MiB document: got %v; want a *RefusedError saying too large", err)
	}
}

func startEtcd(t *testing.T) []string {
	t.Helper()
	return etcdtest.Start(t).Endpoints()
}

func openAt(t *testing.T, endpoints []string, l store.Limits) *store.Store {
	t.Helper()
	s, err := store.Open(ctx, store.Config{Endpoints: endpoints, Prefix: prefix, DialTimeout: 5 * time.Second, Limits: l})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestATLSFailureCarriesTheX509Reason(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	// Trust another CA only: etcd's certificate is then unknown.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "another CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = store.Open(ctx, store.Config{Endpoints: []string{srv.Listener.Addr().String()}, CACert: ca, Prefix: prefix, DialTimeout: time.Second})
	var refused *store.RefusedError
	if !errors.As(err, &refused) || !strings.Contains(err.Error(), "x509") {
		t.Fatalf("got %v; want a *RefusedError with the x509 reason", err)
	}
}

// TestAClientCertificateRefusedIsSaid: a server that requires a client
// certificate refuses one missing after the handshake (TLS 1.3): that is a
// refusal naming the reason, not an etcd that does not answer.
func TestAClientCertificateRefusedIsSaid(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := store.Open(ctx, store.Config{Endpoints: []string{srv.Listener.Addr().String()}, CACert: ca, Prefix: prefix, DialTimeout: time.Second})
	var refused *store.RefusedError
	if !errors.As(err, &refused) || !strings.Contains(err.Error(), "certificate required") {
		t.Fatalf("got %v; want a *RefusedError saying a certificate is required", err)
	}
}
