package ops_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apihooks/apihooks/server"
	"github.com/apihooks/apihooks/server/ops"
)

// call makes an HTTP request to the daemon and returns the status and body.
func call(t *testing.T, d *daemon, method, path, body string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, d.url(path), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// csrf reads the page's CSRF token, as the page does.
func csrf(t *testing.T, d *daemon, header map[string]string) string {
	t.Helper()
	code, body := call(t, d, "GET", "/api/state", "", header)
	if code != http.StatusOK {
		t.Fatalf("GET /api/state: %d %s", code, body)
	}
	var st struct{ CSRF string }
	if err := json.Unmarshal([]byte(body), &st); err != nil || st.CSRF == "" {
		t.Fatalf("GET /api/state gave no CSRF token: %s", body)
	}
	return st.CSRF
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const putDoc = `{"key": "events.v1.EventService/SendEvent/pre/x", "document": {"script": "undefined"}, "revision": 0}`

func TestThePageIsRefusedOnANonLoopbackAddressWithoutAuth(t *testing.T) {
	tests := []struct {
		name    string
		cfg     ops.Config
		wantErr string
	}{
		{name: "the page on every interface without auth is refused",
			cfg: ops.Config{Addr: "0.0.0.0:9090", Page: true}, wantErr: "needs --http-auth-file"},
		{name: "the page on an empty host without auth is refused",
			cfg: ops.Config{Addr: ":9090", Page: true}, wantErr: "needs --http-auth-file"},
		{name: "metrics alone on every interface are served without auth",
			cfg: ops.Config{Addr: "0.0.0.0:9090"}},
		{name: "an auth file with a short token is refused",
			cfg: ops.Config{Addr: "127.0.0.1:9090", AuthFile: writeFile(t, "bearer short\n")}, wantErr: "at least 16 characters"},
		{name: "an auth file with an unknown kind is refused, naming the line",
			cfg: ops.Config{Addr: "127.0.0.1:9090", AuthFile: writeFile(t, "# users\ntoken abcdefghijklmnopqrstu\n")}, wantErr: "line 2"},
		{name: "an empty auth file is refused",
			cfg: ops.Config{Addr: "127.0.0.1:9090", AuthFile: writeFile(t, "# nobody\n")}, wantErr: "holds no credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ops.New(tt.cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("New() = %v; want no error", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("New() = %v; want an error saying %q", err, tt.wantErr)
			}
		})
	}
}

func TestAuthCSRFAndReadOnly(t *testing.T) {
	const token = "s3cret-token-0123456789"
	auth := writeFile(t, "bearer "+token+"\nbasic ops:correct-horse\n")
	d := startDaemon(t, func(c *server.Config) { c.HTTP.AuthFile = auth })
	bearer := map[string]string{"Authorization": "Bearer " + token}

	for _, tt := range []struct {
		name   string
		path   string
		header map[string]string
		want   int
	}{
		{"the page needs credentials", "/", nil, http.StatusUnauthorized},
		{"the API needs credentials", "/api/state", nil, http.StatusUnauthorized},
		{"metrics need credentials", "/metrics", nil, http.StatusUnauthorized},
		{"a wrong token is refused", "/metrics", map[string]string{"Authorization": "Bearer wrong-token-0123456789"}, http.StatusUnauthorized},
		{"the bearer token is accepted", "/metrics", bearer, http.StatusOK},
		{"the bearer scheme in any case is accepted", "/metrics", map[string]string{"Authorization": "bearer " + token}, http.StatusOK},
		{"basic auth is accepted", "/", map[string]string{"Authorization": "Basic b3BzOmNvcnJlY3QtaG9yc2U="}, http.StatusOK},
		{"a wrong password is refused", "/", map[string]string{"Authorization": "Basic b3BzOndyb25n"}, http.StatusUnauthorized},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if code, body := call(t, d, "GET", tt.path, "", tt.header); code != tt.want {
				t.Fatalf("GET %s = %d %s; want %d", tt.path, code, body, tt.want)
			}
		})
	}

	tok := csrf(t, d, bearer)
	with := func(extra map[string]string) map[string]string {
		h := map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	for _, tt := range []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"a write without the CSRF token is refused", with(nil), http.StatusForbidden},
		{"a write with a wrong CSRF token is refused", with(map[string]string{"X-CSRF-Token": "nope"}), http.StatusForbidden},
		{"a write from another origin is refused", with(map[string]string{"X-CSRF-Token": tok, "Origin": "http://evil.example"}), http.StatusForbidden},
		{"a cross-site write is refused", with(map[string]string{"X-CSRF-Token": tok, "Sec-Fetch-Site": "cross-site"}), http.StatusForbidden},
		{"a write with the token is done", with(map[string]string{"X-CSRF-Token": tok}), http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if code, body := call(t, d, "PUT", "/api/hooks", putDoc, tt.header); code != tt.want {
				t.Fatalf("PUT /api/hooks = %d %s; want %d", code, body, tt.want)
			}
		})
	}
}

func TestReadOnlyRefusesChangesButChecksScripts(t *testing.T) {
	d := startDaemon(t, func(c *server.Config) { c.HTTP.ReadOnly = true })
	h := map[string]string{"X-CSRF-Token": csrf(t, d, nil)}
	if code, body := call(t, d, "PUT", "/api/hooks", putDoc, h); code != http.StatusForbidden || !strings.Contains(body, "read-only") {
		t.Errorf("PUT in read-only mode = %d %s; want 403 saying read-only", code, body)
	}
	if code, body := call(t, d, "POST", "/api/validate", putDoc, h); code != http.StatusOK {
		t.Errorf("validate in read-only mode = %d %s; want 200", code, body)
	}
	resp, err := d.etcd.Get(context.Background(), "/apihooks/hooks/", withPrefix())
	if err != nil || resp.Count != 0 {
		t.Errorf("etcd holds %v hooks (%v); want none", resp.Count, err)
	}
}

func TestMetricsWithoutThePage(t *testing.T) {
	d := startDaemon(t, func(c *server.Config) { c.HTTP.NoPage = true })
	if code, _ := call(t, d, "GET", "/metrics", "", nil); code != http.StatusOK {
		t.Errorf("GET /metrics = %d; want 200", code)
	}
	for _, p := range []string{"/", "/api/state"} {
		if code, _ := call(t, d, "GET", p, "", nil); code != http.StatusNotFound {
			t.Errorf("GET %s = %d; want 404 without the page", p, code)
		}
	}
}

func TestWritesAreCheckedAndGuardedAsHookctlDoes(t *testing.T) {
	d := startDaemon(t, nil)
	h := map[string]string{"X-CSRF-Token": csrf(t, d, nil)}
	put := func(key, doc string, rev int64) (int, string) {
		b, _ := json.Marshal(map[string]any{"key": key, "document": json.RawMessage(doc), "revision": rev})
		return call(t, d, "PUT", "/api/hooks", string(b), h)
	}
	const key = "events.v1.EventService/SendEvent/pre/x"
	for _, tt := range []struct {
		name, key, doc string
		want           int
		wantMsg        string
	}{
		{"an unknown field is named", key, `{"script": "undefined", "ordr": 1}`, 400, "unknown field"},
		{"a syntax error is placed", key, `{"script": "let x = ;"}`, 400, "line 1, column 9"},
		{"a timeout over the server's limit is refused", key, `{"script": "undefined", "timeout": "1h"}`, 400, "field timeout"},
		{"a method the server does not have is refused", "events.v1.EventService/Nope/pre/x", `{"script": "undefined"}`, 400, "Nope"},
		{"a post-hook on a streaming method is refused", "events.v1.EventService/StreamEvents/post/x", `{"script": "undefined"}`, 400, "never run on streams"},
		{"a malformed key is refused", "events.v1.EventService/SendEvent/sometimes/x", `{"script": "undefined"}`, 400, "sometimes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, body := put(tt.key, tt.doc, 0)
			if code != tt.want || !strings.Contains(body, tt.wantMsg) {
				t.Fatalf("PUT = %d %s; want %d saying %q", code, body, tt.want, tt.wantMsg)
			}
		})
	}
	code, body := put(key, `{"script": "undefined"}`, 0)
	if code != 200 {
		t.Fatalf("create = %d %s", code, body)
	}
	var out struct{ Revision int64 }
	json.Unmarshal([]byte(body), &out)
	// The state the page polls leaves scripts out; the page reads a
	// hook's when it opens it.
	if code, body := call(t, d, "GET", "/api/state", "", nil); code != 200 || strings.Contains(body, `"script"`) {
		t.Errorf("GET /api/state = %d, with a script: %v; want 200 without scripts", code, strings.Contains(body, `"script"`))
	}
	if code, body := call(t, d, "GET", "/api/hook?key="+url.QueryEscape(key), "", nil); code != 200 || !strings.Contains(body, `"script":"undefined"`) {
		t.Errorf("GET /api/hook = %d %s; want 200 with the script", code, body)
	}
	if code, _ := call(t, d, "GET", "/api/hook?key="+url.QueryEscape("events.v1.EventService/SendEvent/pre/none"), "", nil); code != http.StatusNotFound {
		t.Errorf("GET /api/hook of a hook that does not exist = %d; want 404", code)
	}
	if code, body := put(key, `{"script": "undefined", "order": 2}`, 0); code != http.StatusConflict {
		t.Errorf("create over an existing hook = %d %s; want 409", code, body)
	}
	if code, body := put(key, `{"script": "undefined", "order": 2}`, out.Revision-1); code != http.StatusConflict {
		t.Errorf("write from a stale revision = %d %s; want 409", code, body)
	}
	del, _ := json.Marshal(map[string]any{"key": key, "revision": out.Revision})
	if code, body := call(t, d, "DELETE", "/api/hooks", string(del), h); code != 200 {
		t.Errorf("delete = %d %s; want 200", code, body)
	}
	resp, err := d.etcd.Get(context.Background(), "/apihooks/hooks/"+key)
	if err != nil || resp.Count != 0 {
		t.Errorf("after delete etcd holds %v (%v); want nothing", resp.Count, err)
	}
	if code, body := call(t, d, "DELETE", "/api/hooks", string(del), h); code != http.StatusNotFound || !strings.Contains(body, "does not exist") {
		t.Errorf("a second delete = %d %s; want 404 saying it does not exist", code, body)
	}
	if code, body := put(key, `{"script": "undefined"}`, -5); code != http.StatusBadRequest || !strings.Contains(body, "revision: -5") {
		t.Errorf("a write with revision -5 = %d %s; want 400 naming the revision", code, body)
	}
}

// A daemon that allows longer hooks (--max-hook-timeout) takes them from
// the page too, and only up to its limit.
func TestWritesFollowTheDaemonsHookTimeoutLimit(t *testing.T) {
	d := startDaemon(t, func(c *server.Config) { c.MaxHookTimeout = 10 * time.Second })
	h := map[string]string{"X-CSRF-Token": csrf(t, d, nil)}
	put := func(doc string) (int, string) {
		b, _ := json.Marshal(map[string]any{"key": "events.v1.EventService/SendEvent/pre/slow", "document": json.RawMessage(doc)})
		return call(t, d, "PUT", "/api/hooks", string(b), h)
	}
	if code, body := put(`{"script": "undefined", "timeout": "11s"}`); code != 400 || !strings.Contains(body, "limit of 10s") {
		t.Fatalf("PUT with 11s = %d %s; want 400 naming the limit of 10s", code, body)
	}
	if code, body := put(`{"script": "undefined", "timeout": "8s"}`); code != 200 {
		t.Fatalf("PUT with 8s = %d %s; want 200", code, body)
	}
}

// TestThePageWithoutAuthAnswersOnlyToLoopbackNames: without credentials,
// the page answers only to a Host that is a loopback name or address, so
// a site whose name a browser was made to resolve to 127.0.0.1 (DNS
// rebinding) cannot read or change hooks as its own origin.
func TestThePageWithoutAuthAnswersOnlyToLoopbackNames(t *testing.T) {
	d := startDaemon(t, nil)
	_, port, _ := net.SplitHostPort(d.httpAddr)
	for _, tt := range []struct {
		host string
		want int
	}{
		{"127.0.0.1:" + port, http.StatusOK},
		{"localhost:" + port, http.StatusOK},
		{"LOCALHOST", http.StatusOK},
		{"app.localhost:" + port, http.StatusOK},
		{"[::1]:" + port, http.StatusOK},
		{"rebind.evil.example:" + port, http.StatusForbidden},
		{"127.0.0.1.evil.example", http.StatusForbidden},
		{"10.0.0.5:" + port, http.StatusForbidden},
	} {
		for _, path := range []string{"/", "/api/state"} {
			if code, body := call(t, d, "GET", path, "", map[string]string{"Host": tt.host}); code != tt.want {
				t.Errorf("GET %s with Host %s = %d %.80s; want %d", path, tt.host, code, body, tt.want)
			}
		}
	}
}
