// Package hookname reads and writes the names people give hooks on the
// command line and in files: "events.v1.EventService/SendEvent pre addvalue",
// that is SERVICE/METHOD (or SERVICE/*, */*), the phase and the hook's name.
// Keys are checked by the registry, so a name hookctl accepts is a key the
// daemon accepts.
package hookname

import (
	"cmp"
	"fmt"
	"strings"

	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
)

// Usage shows the form of a hook name.
const Usage = "SERVICE/METHOD PHASE NAME"

// Parse reads a hook from command-line arguments: the three words
// "SERVICE/METHOD PHASE NAME", or the key form
// "SERVICE/METHOD/PHASE/NAME" as one word.
func Parse(args []string) (registry.Key, error) {
	switch len(args) {
	case 3:
		return New(args[0], args[1], args[2])
	case 1:
		parts := strings.Split(args[0], "/")
		if len(parts) == 4 {
			return New(parts[0]+"/"+parts[1], parts[2], parts[3])
		}
	}
	return registry.Key{}, fmt.Errorf("want a hook as %s (e.g. events.v1.EventService/SendEvent pre addvalue), got %q",
		Usage, strings.Join(args, " "))
}

// New builds and checks a key from a method ("SERVICE/METHOD"), a phase and
// a name.
func New(method, phase, name string) (registry.Key, error) {
	svc, m, err := ParseMethod(method)
	if err != nil {
		return registry.Key{}, err
	}
	k := registry.Key{Service: svc, Method: m, Phase: engine.Phase(phase), Name: name}
	if err := k.Validate(); err != nil {
		return registry.Key{}, err
	}
	return k, nil
}

// ParseMethod splits "SERVICE/METHOD" (METHOD may be *, and */* means every
// hookable method). A leading slash, as in gRPC's full method names, is
// accepted.
func ParseMethod(s string) (service, method string, err error) {
	svc, m, ok := strings.Cut(strings.TrimPrefix(s, "/"), "/")
	if !ok || svc == "" || m == "" || strings.Contains(m, "/") {
		return "", "", fmt.Errorf("method %q: want SERVICE/METHOD, SERVICE/* or */*", s)
	}
	k := registry.Key{Service: svc, Method: m, Phase: engine.Pre, Name: "x"}
	if err := k.Validate(); err != nil {
		return "", "", fmt.Errorf("method %q: %w", s, err)
	}
	return svc, m, nil
}

// Method returns a key's "SERVICE/METHOD".
func Method(k registry.Key) string { return k.Service + "/" + k.Method }

// Format returns the name of a hook as people write it,
// "events.v1.EventService/SendEvent pre addvalue".
func Format(k registry.Key) string {
	return Method(k) + " " + string(k.Phase) + " " + k.Name
}

// Covers reports whether the hook k applies to calls of service/method:
// exact, SERVICE/* or */*. An empty method asks about any method of service.
func Covers(k registry.Key, service, method string) bool {
	switch {
	case k.Service == registry.Wildcard:
		return true
	case k.Service != service:
		return false
	case method == "" || k.Method == registry.Wildcard:
		return true
	}
	return k.Method == method
}

// Compare orders keys as people read them: by service and method, pre-hooks
// before post-hooks before error hooks, then by name.
func Compare(a, b registry.Key) int {
	return cmp.Or(
		strings.Compare(a.Service, b.Service),
		strings.Compare(a.Method, b.Method),
		cmp.Compare(phaseRank(a.Phase), phaseRank(b.Phase)),
		strings.Compare(string(a.Phase), string(b.Phase)),
		strings.Compare(a.Name, b.Name),
	)
}

func phaseRank(p engine.Phase) int {
	switch p {
	case engine.Pre:
		return 0
	case engine.Post:
		return 1
	case engine.ErrorPhase:
		return 2
	}
	return 3
}
