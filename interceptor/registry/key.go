package registry

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/apihooks/apihooks/interceptor/engine"
)

// DefaultPrefix is the etcd prefix hooks live under unless told otherwise.
const DefaultPrefix = "/apihooks/"

// Wildcard stands for every method of a service, or (as service and
// method) every hookable method.
const Wildcard = "*"

var (
	namePattern    = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	servicePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)
	methodPattern  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Key identifies a hook: the method it covers, its phase and its name.
type Key struct {
	// Service is the fully qualified service, "events.v1.EventService", or
	// Wildcard.
	Service string
	// Method is the method name, "SendEvent", or Wildcard.
	Method string
	Phase  engine.Phase
	Name   string
}

// HooksDir returns the etcd prefix of every hook under prefix.
func HooksDir(prefix string) string { return prefix + "hooks/" }

// ParseKey parses an etcd key under prefix. When the key names a service
// and method but its phase or name is not valid, the Key is returned with
// the error, so callers can tell which methods the bad key covers.
func ParseKey(prefix, key string) (Key, error) {
	rest, ok := strings.CutPrefix(key, HooksDir(prefix))
	if !ok {
		return Key{}, fmt.Errorf("key %q is not under %q", key, HooksDir(prefix))
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 4 {
		return Key{}, fmt.Errorf("key %q: want %s<service>/<method>/<phase>/<name>", key, HooksDir(prefix))
	}
	k := Key{Service: parts[0], Method: parts[1], Phase: engine.Phase(parts[2]), Name: parts[3]}
	if err := k.validTarget(); err != nil {
		return Key{}, fmt.Errorf("key %q: %w", key, err)
	}
	if err := k.validHook(); err != nil {
		return k, fmt.Errorf("key %q: %w", key, err)
	}
	return k, nil
}

// Validate reports what is wrong with k, if anything.
func (k Key) Validate() error {
	if err := k.validTarget(); err != nil {
		return err
	}
	return k.validHook()
}

func (k Key) validTarget() error {
	switch {
	case k.Service == Wildcard && k.Method != Wildcard:
		return fmt.Errorf("service %q needs method %q", Wildcard, Wildcard)
	case k.Service != Wildcard && !servicePattern.MatchString(k.Service):
		return fmt.Errorf("service %q is not a fully qualified service name or %q", k.Service, Wildcard)
	case k.Method != Wildcard && !methodPattern.MatchString(k.Method):
		return fmt.Errorf("method %q is not a method name or %q", k.Method, Wildcard)
	}
	return nil
}

func (k Key) validHook() error {
	if k.Phase != engine.Pre && k.Phase != engine.Post && k.Phase != engine.ErrorPhase {
		return fmt.Errorf("phase %q is not %q, %q or %q", k.Phase, engine.Pre, engine.Post, engine.ErrorPhase)
	}
	if !namePattern.MatchString(k.Name) {
		return fmt.Errorf("name %q does not match %s", k.Name, namePattern)
	}
	return nil
}

// String returns the key without its prefix,
// "events.v1.EventService/SendEvent/pre/addvalue".
func (k Key) String() string {
	return k.Service + "/" + k.Method + "/" + string(k.Phase) + "/" + k.Name
}

// Path returns the key's etcd key under prefix.
func (k Key) Path(prefix string) string { return HooksDir(prefix) + k.String() }

// CacheDir returns the etcd prefix of every response cache configuration
// under prefix.
func CacheDir(prefix string) string { return prefix + "cache/" }

// CacheKey identifies a method's response cache configuration, stored at
// <prefix>cache/<service>/<method>. It names one method: there is no
// wildcard.
type CacheKey struct {
	// Service is the fully qualified service, "events.v1.EventService".
	Service string
	// Method is the method name, "GetEvents".
	Method string
}

// ParseCacheKey parses an etcd key under CacheDir(prefix).
func ParseCacheKey(prefix, key string) (CacheKey, error) {
	rest, ok := strings.CutPrefix(key, CacheDir(prefix))
	if !ok {
		return CacheKey{}, fmt.Errorf("key %q is not under %q", key, CacheDir(prefix))
	}
	svc, method, ok := strings.Cut(rest, "/")
	if !ok || strings.Contains(method, "/") {
		return CacheKey{}, fmt.Errorf("key %q: want %s<service>/<method>", key, CacheDir(prefix))
	}
	k := CacheKey{Service: svc, Method: method}
	if err := k.Validate(); err != nil {
		return CacheKey{}, fmt.Errorf("key %q: %w", key, err)
	}
	return k, nil
}

// Validate reports what is wrong with k, if anything.
func (k CacheKey) Validate() error {
	switch {
	case k.Service == Wildcard || k.Method == Wildcard:
		return fmt.Errorf("a response cache is configured for one method at a time: %q is not allowed", Wildcard)
	case !servicePattern.MatchString(k.Service):
		return fmt.Errorf("service %q is not a fully qualified service name", k.Service)
	case !methodPattern.MatchString(k.Method):
		return fmt.Errorf("method %q is not a method name", k.Method)
	}
	return nil
}

// String returns the key without its prefix,
// "events.v1.EventService/GetEvents".
func (k CacheKey) String() string { return k.Service + "/" + k.Method }

// FullMethod returns the gRPC full method, "/events.v1.EventService/GetEvents".
func (k CacheKey) FullMethod() string { return "/" + k.String() }

// Path returns the key's etcd key under prefix.
func (k CacheKey) Path(prefix string) string { return CacheDir(prefix) + k.String() }
