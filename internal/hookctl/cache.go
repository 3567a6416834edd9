package hookctl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl/schema"
	"github.com/apihooks/apihooks/internal/hookctl/store"
)

func (a *app) cacheCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "cache",
		Short: "List, write and delete response cache configurations",
		Long: `A method's response cache configuration lives at <prefix>cache/SERVICE/METHOD,
one unary method per key. A call answered from the cache runs no hook and no
handler. Each daemon keeps its own cache, in memory; a changed configuration
starts an empty cache on the next call, a deleted one turns caching off.`,
		Args: cobra.NoArgs,
	}
	c.AddCommand(a.cacheListCommand(), a.cacheGetCommand(), a.cachePutCommand(), a.cacheDeleteCommand())
	return c
}

// cacheArgs parses SERVICE/METHOD.
func cacheArgs(args []string) (registry.CacheKey, error) {
	if len(args) != 1 {
		return registry.CacheKey{}, usageErrorf("want SERVICE/METHOD, got %d arguments", len(args))
	}
	svc, method, ok := strings.Cut(args[0], "/")
	if !ok {
		return registry.CacheKey{}, usageErrorf("%q: want SERVICE/METHOD", args[0])
	}
	k := registry.CacheKey{Service: svc, Method: method}
	if err := k.Validate(); err != nil {
		return k, usageErrorf("%s: %v", args[0], err)
	}
	return k, nil
}

// cacheView is a cache configuration as list and get show it.
type cacheView struct {
	Method      string   `json:"method"`
	Key         string   `json:"key"`
	TTL         string   `json:"ttl,omitempty"`
	MaxEntries  int      `json:"maxEntries,omitempty"`
	MaxBytes    int64    `json:"maxBytes,omitempty"`
	KeyMetadata []string `json:"keyMetadata,omitempty"`
	Revision    int64    `json:"revision"`
	Error       string   `json:"error,omitempty"`
}

func viewOfCache(e store.CacheEntry) cacheView {
	v := cacheView{Method: e.Key.String(), Key: e.Path, Revision: e.ModRevision}
	if e.Err != nil {
		v.Error = e.Err.Error()
		return v
	}
	c := e.Config
	v.TTL, v.MaxEntries, v.MaxBytes, v.KeyMetadata = c.TTL.String(), c.MaxEntries, c.MaxBytes, c.KeyMetadata
	return v
}

func (a *app) cacheListCommand() *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "list",
		Short: "List the response cache configurations, with the defaults filled in",
		Args:  cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			s, err := a.open()
			if err != nil {
				return err
			}
			defer s.Close()
			entries, _, err := s.Caches(a.ctx)
			if err != nil {
				return err
			}
			views := make([]cacheView, 0, len(entries))
			for _, e := range entries {
				views = append(views, viewOfCache(e))
			}
			if output != "table" {
				return a.printData(output, views)
			}
			if len(views) == 0 {
				fmt.Fprintf(a.out, "No response cache is configured under %s.\n", registry.CacheDir(s.Prefix()))
				return nil
			}
			t := newTable(a.out, "METHOD", "TTL", "MAX-ENTRIES", "MAX-BYTES", "KEY-METADATA", "REVISION")
			for _, v := range views {
				if v.Error != "" {
					t.row(v.Method, "INVALID: "+v.Error, "", "", "", strconv.FormatInt(v.Revision, 10))
					continue
				}
				keyMD := strings.Join(v.KeyMetadata, ",")
				if keyMD == "" {
					keyMD = "-"
				}
				t.row(v.Method, v.TTL, strconv.Itoa(v.MaxEntries), strconv.FormatInt(v.MaxBytes, 10), keyMD, strconv.FormatInt(v.Revision, 10))
			}
			t.flush()
			return nil
		}),
	}
	outputFlag(c, &output, "table", "json", "yaml")
	return c
}

// openCache reads the configuration of the method args name.
func (a *app) openCache(args []string) (registry.CacheKey, *store.Store, *store.CacheEntry, error) {
	k, err := cacheArgs(args)
	if err != nil {
		return k, nil, nil, err
	}
	s, err := a.open()
	if err != nil {
		return k, nil, nil, err
	}
	e, _, err := s.Cache(a.ctx, k)
	if err != nil && !errors.Is(err, store.ErrNoCache) {
		s.Close()
		return k, nil, nil, err
	}
	return k, s, e, nil
}

func (a *app) cacheGetCommand() *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "get SERVICE/METHOD",
		Short: "Print a method's response cache configuration as stored",
		Example: `  hookctl cache get events.v1.EventService/GetEvents
  hookctl cache get events.v1.EventService/GetEvents -o json   # with the defaults filled in`,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			k, s, e, err := a.openCache(args)
			if err != nil {
				return err
			}
			defer s.Close()
			if e == nil {
				return failed(fmt.Errorf("%s has no response cache (no key %s)", k, k.Path(s.Prefix())))
			}
			if output != "document" {
				return a.printData(output, viewOfCache(*e))
			}
			var b bytes.Buffer
			if json.Indent(&b, e.Raw, "", "  ") != nil {
				b.Reset()
				b.Write(e.Raw)
			}
			fmt.Fprintln(a.out, b.String())
			if e.Err != nil {
				fmt.Fprintf(a.err, "hookctl: %s: invalid, the daemons do not use it: %v\n", k, e.Err)
			}
			return nil
		}),
	}
	outputFlag(c, &output, "document", "json", "yaml")
	return c
}

func (a *app) cachePutCommand() *cobra.Command {
	var (
		output      string
		doc         registry.CacheDocument
		maxEntries  int
		maxBytes    int64
		schemaFlags schemaFlags
	)
	c := &cobra.Command{
		Use:   "put SERVICE/METHOD --ttl DURATION",
		Short: "Write a method's response cache configuration (the whole document)",
		Long: `Write the response cache configuration of a unary method: the document is
checked as the daemons check it before anything is written, and flags left out
take their defaults. With --server or --descriptor-set, the method must exist
and be unary: streams are never cached. The write is guarded by the revision
read: if the configuration changed meanwhile, nothing is written (exit 3).`,
		Example: `  hookctl cache put events.v1.EventService/GetEvents --ttl 30s --key-metadata x-tenant
  hookctl cache put events.v1.EventService/GetEvents --ttl 5m --max-entries 100 --wait`,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			k, err := cacheArgs(args)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("max-entries") {
				doc.MaxEntries = &maxEntries
			}
			if cmd.Flags().Changed("max-bytes") {
				doc.MaxBytes = &maxBytes
			}
			if err := doc.Validate(); err != nil {
				return failed(fmt.Errorf("cache of %s: %w", k, err))
			}
			src, err := schemaFlags.load(a.ctx, false)
			if err != nil {
				return failed(err)
			}
			// Without a schema, a method of the built-in example service
			// is still checked against it.
			if builtin := schema.Builtin(); src == nil && slices.Contains(builtin.Services(), k.Service) {
				src = builtin
			}
			if src != nil {
				if err := checkCacheMethod(src, k); err != nil {
					return failed(fmt.Errorf("cache of %s: %w", k, err))
				}
			}
			raw, err := json.Marshal(doc)
			if err != nil {
				return failed(err)
			}
			_, s, cur, err := a.openCache(args)
			if err != nil {
				return err
			}
			defer s.Close()
			res := cacheWriteResult{Method: k.String(), Key: k.Path(s.Prefix()), Action: "created"}
			var guard int64
			if cur != nil {
				guard, res.Previous, res.Action = cur.ModRevision, cur.ModRevision, "updated"
				if bytes.Equal(cur.Raw, raw) {
					res.Action, res.Revision = "unchanged", cur.ModRevision
					return a.finish(output, res, res.Revision, []string{res.Key}, "%s: unchanged (revision %d)", k, cur.ModRevision)
				}
			}
			if err := a.beforeCommit(); err != nil {
				return err
			}
			res.Revision, err = s.Commit(a.ctx, &store.Write{Guards: map[string]int64{res.Key: guard}, Puts: map[string][]byte{res.Key: raw}})
			if err != nil {
				return err
			}
			if cur != nil {
				return a.finish(output, res, res.Revision, []string{res.Key}, "updated the cache of %s at revision %d (was revision %d)", k, res.Revision, cur.ModRevision)
			}
			return a.finish(output, res, res.Revision, []string{res.Key}, "created the cache of %s at revision %d", k, res.Revision)
		}),
	}
	f := c.Flags()
	f.StringVar(&doc.TTL, "ttl", "", fmt.Sprintf("how long a stored response is served, a Go duration (required, at most %v)", registry.MaxCacheTTL))
	f.IntVar(&maxEntries, "max-entries", registry.DefaultCacheMaxEntries, "the most responses stored; the least recently used go first")
	f.Int64Var(&maxBytes, "max-bytes", registry.DefaultCacheMaxBytes, "the most bytes of responses stored")
	f.StringSliceVar(&doc.KeyMetadata, "key-metadata", nil, "incoming metadata keys (lower case) whose values are part of the cache key")
	schemaFlags.add(c, "the method")
	outputFlag(c, &output, "text", "json", "yaml")
	waitFlag(c, &a.wait)
	return c
}

// checkCacheMethod reports what is wrong with caching k's responses on
// src: a method it does not have, or a stream, which is never cached.
func checkCacheMethod(src *schema.Source, k registry.CacheKey) error {
	md, err := src.Method(k.Service, k.Method)
	if err != nil {
		return err
	}
	if st := schema.Streaming(md); st != "" {
		return fmt.Errorf("streams are never cached: %s is %s, so the daemons would never use this cache", k, st)
	}
	return nil
}

func (a *app) cacheDeleteCommand() *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:     "delete SERVICE/METHOD",
		Aliases: []string{"del", "rm"},
		Short:   "Delete a method's response cache configuration: caching stops on the next call",
		RunE: run(func(cmd *cobra.Command, args []string) error {
			k, s, cur, err := a.openCache(args)
			if err != nil {
				return err
			}
			defer s.Close()
			if cur == nil {
				return failed(fmt.Errorf("%s has no response cache (no key %s)", k, k.Path(s.Prefix())))
			}
			if err := a.beforeCommit(); err != nil {
				return err
			}
			rev, err := s.Commit(a.ctx, &store.Write{Guards: map[string]int64{cur.Path: cur.ModRevision}, Deletes: []string{cur.Path}})
			if err != nil {
				return err
			}
			res := cacheWriteResult{Method: k.String(), Key: cur.Path, Action: "deleted", Revision: rev, Previous: cur.ModRevision}
			return a.finish(output, res, res.Revision, []string{res.Key}, "deleted the cache of %s at revision %d (was revision %d)", k, rev, cur.ModRevision)
		}),
	}
	outputFlag(c, &output, "text", "json", "yaml")
	waitFlag(c, &a.wait)
	return c
}

// cacheWriteResult is what cache put and delete did, as JSON.
type cacheWriteResult struct {
	Method string `json:"method"`
	Key    string `json:"key"`
	// Action is created, updated, unchanged or deleted.
	Action string `json:"action"`
	// Revision is the revision written, or the configuration's when
	// nothing was.
	Revision int64 `json:"revision"`
	Previous int64 `json:"previousRevision,omitempty"`
}
