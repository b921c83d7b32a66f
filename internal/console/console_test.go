package console

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Result()
}

func TestConsoleServesEmbeddedFiles(t *testing.T) {
	h := New()
	for _, tc := range []struct {
		path, ctype, contains string
	}{
		{"/ui/", "text/html; charset=utf-8", `<script src="/ui/app.js"`},
		{"/ui/index.html", "text/html; charset=utf-8", "<title>Marina</title>"},
		{"/ui/app.js", "text/javascript; charset=utf-8", "/v1/status"},
		{"/ui/chart.js", "text/javascript; charset=utf-8", "MarinaChart"},
		{"/ui/style.css", "text/css; charset=utf-8", ".chart"},
		{"/ui/favicon.svg", "image/svg+xml", "<svg"},
		// Paths of the app without a file extension get the app.
		{"/ui/dbs/orders", "text/html; charset=utf-8", "<title>Marina</title>"},
	} {
		res := get(t, h, http.MethodGet, tc.path, nil)
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 {
			t.Errorf("GET %s: %d", tc.path, res.StatusCode)
			continue
		}
		if got := res.Header.Get("Content-Type"); got != tc.ctype {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, got, tc.ctype)
		}
		if res.Header.Get("X-Content-Type-Options") != "nosniff" || res.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s: security headers missing: %v", tc.path, res.Header)
		}
		if !strings.Contains(string(body), tc.contains) {
			t.Errorf("GET %s: body lacks %q", tc.path, tc.contains)
		}
		// A second request with the ETag is answered 304 without a body.
		res2 := get(t, h, http.MethodGet, tc.path, map[string]string{"If-None-Match": res.Header.Get("ETag")})
		if res2.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with ETag: %d, want 304", tc.path, res2.StatusCode)
		}
	}
}

func TestConsolePathsOutsideTheApp(t *testing.T) {
	h := New()
	for _, tc := range []struct {
		method, path string
		code         int
		location     string
	}{
		{"GET", "/", http.StatusFound, "/ui/"},
		{"GET", "/ui", http.StatusFound, "/ui/"},
		{"GET", "/ui/missing.js", http.StatusNotFound, ""}, // a missing asset is not the app
		{"GET", "/ui/img/logo.png", http.StatusNotFound, ""},
		{"GET", "/favicon.ico", http.StatusNotFound, ""},
		{"GET", "/anything", http.StatusNotFound, ""},
		{"POST", "/ui/", http.StatusMethodNotAllowed, ""},
		{"HEAD", "/ui/app.js", http.StatusOK, ""},
	} {
		res := get(t, h, tc.method, tc.path, nil)
		if res.StatusCode != tc.code {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, res.StatusCode, tc.code)
		}
		if tc.location != "" && res.Header.Get("Location") != tc.location {
			t.Errorf("%s %s: Location %q, want %q", tc.method, tc.path, res.Header.Get("Location"), tc.location)
		}
	}
}

// Every asset the page references is embedded.
func TestConsoleIndexReferencesExist(t *testing.T) {
	h := New()
	res := get(t, h, http.MethodGet, "/ui/", nil)
	body, _ := io.ReadAll(res.Body)
	for _, ref := range []string{"/ui/style.css", "/ui/app.js", "/ui/chart.js", "/ui/favicon.svg"} {
		if !strings.Contains(string(body), `"`+ref+`"`) {
			t.Errorf("index.html does not reference %s", ref)
			continue
		}
		if r := get(t, h, http.MethodGet, ref, nil); r.StatusCode != 200 {
			t.Errorf("%s referenced by index.html: %d", ref, r.StatusCode)
		}
	}
}
