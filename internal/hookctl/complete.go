package hookctl

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/apihooks/apihooks/internal/hookctl/hookname"
	"github.com/apihooks/apihooks/internal/hookctl/store"
)

// completionEntries reads the hooks in etcd for shell completion, briefly:
// completion must never hang a shell.
func (a *app) completionEntries() []store.Entry {
	saved := a.conn
	defer func() { a.conn = saved }()
	a.conn.dialTimeout = min(a.conn.dialTimeout, time.Second)
	a.conn.commandTimeout = min(a.conn.commandTimeout, time.Second)
	ctx, cancel := context.WithTimeout(a.ctx, 2*time.Second)
	defer cancel()
	prev := a.ctx
	a.ctx = ctx
	defer func() { a.ctx = prev }()
	s, err := a.open()
	if err != nil {
		return nil
	}
	defer s.Close()
	entries, _, err := s.List(ctx)
	if err != nil {
		return nil
	}
	return entries
}

// completeHook completes SERVICE/METHOD PHASE NAME from the hooks in etcd.
func (a *app) completeHook(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if err := a.applyEnv(cmd.Root().PersistentFlags()); err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	switch len(args) {
	case 0:
		for _, e := range a.completionEntries() {
			if e.KeyErr == nil {
				out = append(out, hookname.Method(e.Key))
			}
		}
	case 1:
		out = []string{"pre", "post", "error"}
	case 2:
		for _, e := range a.completionEntries() {
			if e.KeyErr == nil && hookname.Method(e.Key) == args[0] && string(e.Key.Phase) == args[1] {
				out = append(out, e.Key.Name)
			}
		}
	}
	return filterPrefix(out, toComplete), cobra.ShellCompDirectiveNoFileComp
}

// completeMethods completes list's SERVICE[/METHOD].
func (a *app) completeMethods(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	if err := a.applyEnv(cmd.Root().PersistentFlags()); err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, e := range a.completionEntries() {
		if e.KeyErr == nil {
			out = append(out, e.Key.Service, hookname.Method(e.Key))
		}
	}
	return filterPrefix(out, toComplete), cobra.ShellCompDirectiveNoFileComp
}

func filterPrefix(items []string, prefix string) []string {
	var out []string
	for _, it := range items {
		if strings.HasPrefix(it, prefix) {
			out = append(out, it)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
