// Package config fills command flags from MARINA_* environment variables and
// a YAML file. Precedence: command-line flag, then environment, then file,
// then the flag's default.
package config

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// EnvName is the variable that sets a flag: --http-port is MARINA_HTTP_PORT.
func EnvName(flag string) string {
	return "MARINA_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Apply sets every flag not given on the command line from the environment
// or, when file is not empty, from the YAML file's key of the same name.
// Unknown keys and bad values are errors naming the key and the source.
func Apply(fs *pflag.FlagSet, file string, getenv func(string) string) error {
	fileVals := map[string]string{}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("config file: %w", err)
		}
		var raw map[string]any
		if err := yaml.Unmarshal(b, &raw); err != nil {
			return fmt.Errorf("config file %s: %w", file, err)
		}
		keys := make([]string, 0, len(raw))
		for k := range raw {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if fs.Lookup(k) == nil || k == "config" {
				return fmt.Errorf("config file %s: unknown key %q", file, k)
			}
			fileVals[k] = fmt.Sprint(raw[k])
		}
	}
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "config" {
			return
		}
		src, val := "", ""
		if v := getenv(EnvName(f.Name)); v != "" {
			src, val = EnvName(f.Name), v
		} else if v, ok := fileVals[f.Name]; ok {
			src, val = file+": "+f.Name, v
		} else {
			return
		}
		if e := fs.Set(f.Name, val); e != nil {
			err = fmt.Errorf("%s: invalid value %q: %v", src, val, e)
		}
	})
	return err
}
