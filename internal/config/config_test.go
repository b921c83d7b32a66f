package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestApplyPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "marina.yaml")
	if err := os.WriteFile(file, []byte("http-port: 9000\nzone: file-zone\nid: from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		file    string
		want    map[string]string
		wantErr string
	}{
		{"defaults", nil, nil, "", map[string]string{"http-port": "7070", "zone": "", "id": "host"}, ""},
		{"file", nil, nil, file, map[string]string{"http-port": "9000", "zone": "file-zone"}, ""},
		{"env beats file", nil, map[string]string{"MARINA_HTTP_PORT": "9100"}, file, map[string]string{"http-port": "9100", "zone": "file-zone"}, ""},
		{"flag beats env", []string{"--http-port", "9200"}, map[string]string{"MARINA_HTTP_PORT": "9100"}, file, map[string]string{"http-port": "9200"}, ""},
		{"bad env value", nil, map[string]string{"MARINA_HTTP_PORT": "lots"}, "", nil, `MARINA_HTTP_PORT: invalid value "lots"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			fs.Int("http-port", 7070, "")
			fs.String("zone", "", "")
			fs.String("id", "host", "")
			fs.String("config", "", "")
			if err := fs.Parse(c.args); err != nil {
				t.Fatal(err)
			}
			err := Apply(fs, c.file, func(k string) string { return c.env[k] })
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range c.want {
				if got := fs.Lookup(k).Value.String(); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestApplyUnknownKey(t *testing.T) {
	file := filepath.Join(t.TempDir(), "m.yaml")
	_ = os.WriteFile(file, []byte("htp-port: 1\n"), 0o600)
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.Int("http-port", 7070, "")
	if err := Apply(fs, file, os.Getenv); err == nil || !strings.Contains(err.Error(), `unknown key "htp-port"`) {
		t.Fatalf("err %v", err)
	}
}
