package proxy

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/apihooks/apihooks/interceptor/registry"
)

// WatchHooks logs, until ctx ends, a warning for each method or service
// that hooks target and the backend does not serve: its calls are answered
// UNIMPLEMENTED, and its hooks never run. It looks every interval, when
// the hooks or the backend's descriptors changed since it last did; before
// warning, it learns the descriptors again (at most once per refresh
// interval), so that a method the backend gained is not reported. A target
// that becomes served is logged once too.
func (p *Proxy) WatchHooks(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var (
		snap   *registry.Snapshot
		table  *table
		warned = map[string][]string{}
	)
	for {
		if s, d := p.src.Snapshot(), p.desc.current(); s != snap || d != table {
			if len(p.unserved(s, d)) > 0 {
				p.relearn(ctx)
			}
			snap, table = s, p.desc.current()
			now := p.reportUnserved(ctx, p.unserved(snap, table), warned)
			// now is never changed: readers share it.
			p.ignored.Store(&checked{revision: snap.Revision, targets: now})
			warned = now
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checked is what WatchHooks found of the hooks at one revision: the keys
// that target each method or service the backend does not serve.
type checked struct {
	revision int64
	targets  map[string][]string
}

// Unserved lists the hooks (and response caches) that WatchHooks last
// found on methods or services the backend does not serve, as
// "id: reason", and the revision of the hooks it looked at (0 before it
// first did), for the daemon's fleet record: the proxy has the hooks of a
// revision in force once it has checked them.
func (p *Proxy) Unserved() ([]string, int64) {
	c := p.ignored.Load()
	if c == nil {
		return nil, 0
	}
	var out []string
	for target, keys := range c.targets {
		for _, k := range keys {
			out = append(out, k+": the backend does not serve "+target+", as its descriptors say")
		}
	}
	slices.Sort(out)
	return out, c.revision
}

// reportUnserved logs the targets of now that were not in before, and
// those of before that are served now; it returns now.
func (p *Proxy) reportUnserved(ctx context.Context, now, before map[string][]string) map[string][]string {
	for _, target := range slices.Sorted(maps.Keys(now)) {
		if _, ok := before[target]; !ok {
			p.log.WarnContext(ctx, "hooks target a method the backend does not serve, as its descriptors say: its calls are answered UNIMPLEMENTED and the hooks never run",
				"target", target, "hooks", strings.Join(now[target], ","))
		}
	}
	for _, target := range slices.Sorted(maps.Keys(before)) {
		if _, ok := now[target]; !ok {
			p.log.InfoContext(ctx, "hooks target a method the backend serves again, or no longer target it", "target", target)
		}
	}
	return now
}

// unserved returns the methods ("pkg.Service/Method") and services
// ("pkg.Service/*") that hooks and response caches of snap target and the
// descriptors of t do not describe, each with the keys that target it. It
// returns nothing while no descriptors are known: the proxy has then said
// it cannot learn them.
func (p *Proxy) unserved(snap *registry.Snapshot, t *table) map[string][]string {
	if snap == nil || len(t.services) == 0 {
		return nil
	}
	out := map[string][]string{}
	add := func(service, method, key string) {
		if method == registry.Wildcard {
			if slices.Contains(t.services, service) {
				return
			}
		} else if t.methods["/"+service+"/"+method] != nil {
			return
		}
		target := service + "/" + method
		out[target] = append(out[target], key)
	}
	for _, h := range snap.Hooks() {
		if h.Key.Service != registry.Wildcard {
			add(h.Key.Service, h.Key.Method, h.Key.String())
		}
	}
	for _, c := range snap.Caches() {
		add(c.Key.Service, c.Key.Method, "cache/"+c.Key.String())
	}
	return out
}
