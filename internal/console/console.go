// Package console is Marina's web console: static HTML, CSS and JavaScript
// embedded in the binary and served by every node. The console holds no
// state and needs no authentication of its own: the browser logs in with
// the API token and reads everything from the /v1 API with it.
//
// Paths: "/" redirects to "/ui/"; "/ui/" and any "/ui/..." path without a
// file extension serve the app (it routes on the URL fragment); "/ui/FILE"
// serves an asset; everything else is 404.
package console

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var static embed.FS

// Prefix is where the console's app and assets live.
const Prefix = "/ui/"

// contentTypes are set explicitly: the host's mime.types must not change
// what a browser is told (a wrong type for a module or stylesheet breaks
// the page under nosniff).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".ico":  "image/x-icon",
}

type asset struct {
	data  []byte
	ctype string
	etag  string
}

// Handler serves the console.
type Handler struct {
	assets map[string]asset // by path under Prefix, "" is the app
}

// New returns the console's handler, with the embedded files loaded.
func New() *Handler {
	h := &Handler{assets: map[string]asset{}}
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			ct = "application/octet-stream"
		}
		sum := sha256.Sum256(b)
		h.assets[p] = asset{data: b, ctype: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic(err)
	}
	h.assets[""] = h.assets["index.html"]
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	if p == "/" || p == strings.TrimSuffix(Prefix, "/") {
		http.Redirect(w, r, Prefix, http.StatusFound)
		return
	}
	rest, ok := strings.CutPrefix(p, Prefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	a, ok := h.assets[rest]
	if !ok {
		if strings.Contains(path.Base(rest), ".") {
			http.NotFound(w, r) // a missing asset, not a page of the app
			return
		}
		a = h.assets[""]
	}
	hd := w.Header()
	hd.Set("Content-Type", a.ctype)
	hd.Set("ETag", a.etag)
	// Revalidate every time: a new binary must never run with old assets.
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	if match := r.Header.Get("If-None-Match"); match != "" && match == a.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(a.data)
}
