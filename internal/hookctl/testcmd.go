package hookctl

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl/hookdoc"
	"github.com/apihooks/apihooks/internal/hookctl/hookname"
	"github.com/apihooks/apihooks/internal/hookctl/hooktest"
	"github.com/apihooks/apihooks/internal/hookctl/manifest"
)

func (a *app) testCommand() *cobra.Command {
	var (
		file, scriptFile, method, phase, name string
		request, response, params, timeout    string
		onError, output, lang, callError      string
		style                                 string
		metadata                              []string
		hookTimeout                           time.Duration
		sf                                    schemaFlags
	)
	c := &cobra.Command{
		Use:   "test (-f DIR | --script FILE --method SERVICE/METHOD --phase pre|post|error)",
		Short: "Run hooks locally, with the daemon's engine and no etcd",
		Long: `Run a hook locally, with the engine the daemon uses and no etcd.

With --script, run one script on one call and print the outcome as JSON: the
action (continue, reject, respond, or error when the script fails), the
status of a rejection or failure, the resulting request (pre) or response
(post, and respond), and what the script logged. Exit 1 when the script
fails.

With -f DIR (or -f FILE, a manifest), run every case file (*.test.yaml) beside
the manifest. A case file names a hook of the manifest, an input and the
expected outcome:

  hook: events.v1.EventService/SendEvent pre deny-guest
  cases:
    - name: events to the blocked user are refused
      request: {toUserId: mallory, eventType: login}
      expect: {action: reject, status: PERMISSION_DENIED}
    - name: other events go through unchanged
      request: {toUserId: alice, eventType: login}
      expect: {action: continue, request: {toUserId: alice, eventType: login}}

A case may also set params (instead of the manifest's), metadata, response
(post-hooks), method (for SERVICE/* and */* hooks), error (error hooks: the
call's status, {code: INTERNAL, message: db down}) and calls, which answers
the hook's ctx.calls by method ({SERVICE/METHOD: {response: {...}}} or
{SERVICE/METHOD: {error: {code: NOT_FOUND, message: ...}}}; a call no case
answers fails with UNIMPLEMENTED, as with --script); expect may set
message, messageContains, request, response (compared as protobuf messages)
and logs ([{level, message}], message being a substring). Each failing case is
printed with what was expected and what happened; exit 1 when any fails.

Message types come from --server or --descriptor-set; the example
events.v1.EventService is built in.`,
		Example: `  hookctl test --script scripts/deny-guest.js --method events.v1.EventService/SendEvent --phase pre \
    --params '{"blocked":"mallory"}' --request '{"toUserId":"mallory","eventType":"login"}'
  hookctl test --script scripts/stamp-response.js --method events.v1.EventService/SendEvent --phase post \
    --request @req.json --response '{"eventId":"42"}' --metadata x-tenant=acme
  hookctl test -f scripts/`,
		Args: cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			switch output {
			case "":
				output = "json"
				if file != "" {
					output = "text"
				}
			case "json", "yaml", "text", "junit":
			default:
				return usageErrorf("--output %q: want json, yaml, text or junit", output)
			}
			if (output == "text" || output == "junit") && file == "" {
				return usageErrorf("--output %s goes with -f; a single run prints json or yaml", output)
			}
			single := scriptFile != "" || method != "" || phase != ""
			if file != "" && single {
				return usageErrorf("-f runs case files; --script, --method and --phase run one hook: give one or the other")
			}
			if file == "" && (scriptFile == "" || method == "" || phase == "") {
				return usageErrorf("give -f DIR, or --script FILE, --method SERVICE/METHOD and --phase pre|post|error")
			}
			if file != "" {
				for _, f := range []string{"request", "response", "params", "metadata", "name", "timeout", "on-error", "lang", "style"} {
					if cmd.Flags().Changed(f) {
						return usageErrorf("--%s goes with --script; with -f, cases set it", f)
					}
				}
			}
			src, err := sf.load(a.ctx, true)
			if err != nil {
				return err
			}
			runner := hooktest.NewRunner(src, hooktest.WithDefaultTimeout(hookTimeout))
			if file != "" {
				return a.runCases(runner, &manifestFlags{file: file, schema: sf}, output)
			}

			if name == "" {
				name = defaultHookName(scriptFile)
			}
			k, err := hookname.New(method, phase, name)
			if err != nil {
				return usageErrorf("%v", err)
			}
			if k.Method == registry.Wildcard {
				return usageErrorf("--method: name one method to call, not %s", method)
			}
			script, err := a.readScript(scriptFile)
			if err != nil {
				return err
			}
			doc := &registry.Document{Script: script, Timeout: timeout, OnError: registry.OnError(onError),
				Lang: manifest.LangOf(scriptFile), Style: engine.Style(style)}
			if lang != "" {
				doc.Lang = engine.Lang(lang)
			}
			if params != "" {
				if doc.Params, err = a.readJSONArg("params", params); err != nil {
					return err
				}
			}
			if err := doc.ValidateWithin(a.conn.maxHookTimeout); err != nil {
				return err
			}
			hook, err := registry.Compile(k, doc)
			if err != nil {
				if _, ok := hookdoc.ScriptPosition(err); ok {
					return scriptFailure(scriptFile, k, err)
				}
				return err
			}
			in := &hooktest.Input{Hook: hook, Service: k.Service, Method: k.Method}
			if request != "" {
				if in.Request, err = a.readJSONArg("request", request); err != nil {
					return err
				}
			}
			if response != "" {
				if in.Response, err = a.readJSONArg("response", response); err != nil {
					return err
				}
			}
			if callError != "" {
				code, msg, _ := strings.Cut(callError, ":")
				in.Error = &hooktest.Status{Code: strings.TrimSpace(code), Message: strings.TrimSpace(msg)}
			}
			if in.Metadata, err = parseMetadata(metadata); err != nil {
				return usageErrorf("%v", err)
			}
			res, err := runner.Run(a.ctx, in)
			if err != nil {
				return err
			}
			if err := a.printData(output, res); err != nil {
				return err
			}
			if res.Action == hooktest.ActionError {
				return silentExit(ExitFailed)
			}
			return nil
		}),
	}
	f := c.Flags()
	f.StringVarP(&file, "filename", "f", "", "run the case files (*.test.yaml) beside this manifest (a hooks.yaml, or its directory)")
	f.StringVar(&scriptFile, "script", "", "the script to run (- for standard input)")
	f.StringVar(&method, "method", "", "the method called, SERVICE/METHOD")
	f.StringVar(&phase, "phase", "", "pre, post or error")
	f.StringVar(&callError, "error", "", "the call's error status, CODE or CODE:MESSAGE, for error hooks (default: UNKNOWN)")
	f.StringVar(&name, "name", "", "the hook's name, as the script sees it in ctx.hook (default: from the script's file name)")
	f.StringVar(&request, "request", "", "the request as protojson, or @FILE (default: an empty message)")
	f.StringVar(&response, "response", "", "the response as protojson, or @FILE, for post-hooks (default: an empty message)")
	f.StringVar(&params, "params", "", "the hook's params: JSON, or @FILE")
	f.StringArrayVar(&metadata, "metadata", nil, "incoming metadata as key=value (repeat for more); a -bin key's value in base64, as the hook sees it")
	f.StringVar(&timeout, "timeout", "", "the hook's own timeout, as in its document")
	f.StringVar(&onError, "on-error", "", "the hook's onError: abort (default) or continue")
	f.StringVar(&lang, "lang", "", "the script's language: js or ts (default: ts for a .ts file, else js)")
	f.StringVar(&style, "style", "", "how the script's function is called: apimaker, main(g) (default: the ctx style)")
	f.DurationVar(&hookTimeout, "hook-timeout", engine.DefaultTimeout, "timeout of hooks that set none, as the daemon's --hook-timeout")
	_ = c.MarkFlagFilename("script", "js")
	_ = c.RegisterFlagCompletionFunc("phase", cobra.FixedCompletions([]string{"pre", "post", "error"}, cobra.ShellCompDirectiveNoFileComp))
	sf.add(c, "the method")
	c.Flags().Lookup("server").Usage = "take message types from the server at ADDR (gRPC server reflection, plaintext)"
	c.Flags().Lookup("descriptor-set").Usage = "take message types from a FileDescriptorSet FILE"
	c.Flags().StringVarP(&output, "output", "o", "", "output format: json or yaml (default for --script), text (default for -f), junit (JUnit XML, with -f)")
	_ = c.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"json", "yaml", "text", "junit"}, cobra.ShellCompDirectiveNoFileComp))
	return c
}

var nameChars = regexp.MustCompile(`[^a-z0-9._-]+`)

// defaultHookName makes a hook name from a script's file name.
func defaultHookName(script string) string {
	base := strings.TrimSuffix(strings.ToLower(filepath.Base(script)), filepath.Ext(script))
	base = strings.Trim(nameChars.ReplaceAllString(base, "-"), "-._")
	if base == "" || base == "-" {
		return "test"
	}
	if len(base) > 63 {
		base = base[:63]
	}
	return base
}

func parseMetadata(pairs []string) (map[string][]string, error) {
	md := map[string][]string{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--metadata %q: want key=value", p)
		}
		k = strings.ToLower(k)
		v, err := hooktest.MetadataValue(k, v)
		if err != nil {
			return nil, fmt.Errorf("--metadata %s: %v", k, err)
		}
		md[k] = append(md[k], v)
	}
	return md, nil
}

// runCases runs the case files beside a manifest.
func (a *app) runCases(runner *hooktest.Runner, mf *manifestFlags, output string) error {
	m, err := a.loadManifest(mf)
	var cases []*hooktest.Case
	if err == nil {
		if cases, err = hooktest.LoadCases(m); err != nil {
			err = failed(err)
		}
	}
	if err != nil {
		// A CI's report step reads the report even when nothing ran:
		// it says why.
		if output == "junit" && codeOf(err) == ExitFailed {
			if werr := writeJUnitLoadFailure(a.out, mf.file, err); werr != nil {
				return werr
			}
		}
		return err
	}
	var results []*hooktest.CaseResult
	var took []time.Duration
	passed, failedN := 0, 0
	for _, c := range cases {
		start := time.Now()
		r := runner.RunCase(a.ctx, m, c)
		took = append(took, time.Since(start))
		results = append(results, r)
		if r.Pass {
			passed++
		} else {
			failedN++
		}
	}
	switch {
	case output == "junit":
		if err := writeJUnit(a.out, results, took); err != nil {
			return err
		}
	case output != "text":
		type caseOut struct {
			File string `json:"file"`
			Line int    `json:"line"`
			Name string `json:"name"`
			Hook string `json:"hook"`
			*hooktest.CaseResult
		}
		out := struct {
			Manifest string    `json:"manifest"`
			Passed   int       `json:"passed"`
			Failed   int       `json:"failed"`
			Cases    []caseOut `json:"cases"`
		}{m.Path, passed, failedN, []caseOut{}}
		for _, r := range results {
			out.Cases = append(out.Cases, caseOut{r.Case.File, r.Case.Line, r.Case.Name, hookname.Format(r.Case.Hook), r})
		}
		if err := a.printData(output, out); err != nil {
			return err
		}
	default:
		if len(cases) == 0 {
			fmt.Fprintf(a.out, "no case files (*%s) beside %s\n", hooktest.CaseSuffix, m.Path)
		}
		for _, r := range results {
			c := r.Case
			where := fmt.Sprintf("%s:%d", c.File, c.Line)
			if r.Pass {
				fmt.Fprintf(a.out, "ok    %s  %s\n", where, c.Name)
				continue
			}
			fmt.Fprintf(a.out, "FAIL  %s  %s\n", where, c.Name)
			fmt.Fprintf(a.out, "      hook:     %s (on %s/%s)\n", hookname.Format(c.Hook), c.Service, c.Method)
			for _, p := range r.Problems {
				fmt.Fprintf(a.out, "      %s\n", p)
			}
			fmt.Fprintf(a.out, "      expected: %s\n", compactJSON(r.Expected))
			if r.Actual != nil {
				fmt.Fprintf(a.out, "      actual:   %s\n", compactJSON(r.Actual))
			}
		}
		fmt.Fprintf(a.out, "%d passed, %d failed\n", passed, failedN)
	}
	if failedN > 0 {
		return silentExit(ExitFailed)
	}
	return nil
}

func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
