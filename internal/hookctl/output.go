package hookctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/apihooks/apihooks/internal/hookctl/yamljson"
)

// outputFlag adds -o/--output with the formats a command supports, the
// first being the default.
func outputFlag(c *cobra.Command, dst *string, formats ...string) {
	c.Flags().StringVarP(dst, "output", "o", formats[0], "output format: "+strings.Join(formats, ", "))
	_ = c.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(formats, cobra.ShellCompDirectiveNoFileComp))
	prev := c.PreRunE
	c.PreRunE = func(cmd *cobra.Command, args []string) error {
		if !slices.Contains(formats, *dst) {
			return usageErrorf("--output %q: want %s", *dst, strings.Join(formats, ", "))
		}
		if prev != nil {
			return prev(cmd, args)
		}
		return nil
	}
}

// printData writes v as JSON or YAML.
func (a *app) printData(format string, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	if format != "yaml" {
		_, err := a.out.Write(b.Bytes())
		return err
	}
	n, err := yamljson.FromJSON(b.Bytes())
	if err != nil {
		return err
	}
	enc2 := yaml.NewEncoder(a.out)
	enc2.SetIndent(2)
	if err := enc2.Encode(n); err != nil {
		return err
	}
	return enc2.Close()
}

// table writes aligned columns.
type table struct{ w *tabwriter.Writer }

func newTable(out io.Writer, header ...string) *table {
	t := &table{w: tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = strings.ReplaceAll(strings.ReplaceAll(c, "\t", " "), "\n", " ")
	}
	fmt.Fprintln(t.w, strings.Join(cells, "\t"))
}

func (t *table) flush() { t.w.Flush() }

// readArg reads a flag value given as text, or as @FILE (@- for standard
// input).
func (a *app) readArg(flag, v string) ([]byte, error) {
	name, ok := strings.CutPrefix(v, "@")
	if !ok {
		return []byte(v), nil
	}
	if name == "-" {
		b, err := io.ReadAll(a.in)
		if err != nil {
			return nil, fmt.Errorf("--%s: standard input: %w", flag, err)
		}
		return b, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flag, err)
	}
	return b, nil
}

// readJSONArg reads a JSON flag value (text or @FILE) and checks it.
func (a *app) readJSONArg(flag, v string) (json.RawMessage, error) {
	b, err := a.readArg(flag, v)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSpace(b)
	if !json.Valid(b) {
		var x any
		err := json.Unmarshal(b, &x)
		return nil, fmt.Errorf("--%s: not valid JSON: %v", flag, err)
	}
	return b, nil
}
