package interceptor_test

import (
	"strings"
	"testing"

	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/registry"
)

// An interceptor built without a source is a programming error, told at
// once when the server is built, not a panic on the first call, which
// gRPC does not recover from.
func TestANilSourcePanicsWhenTheInterceptorIsBuilt(t *testing.T) {
	for _, src := range []struct {
		name string
		src  interceptor.Source
		want string
	}{
		{"nil", nil, "with a nil Source"},
		{"a nil *registry.Registry", (*registry.Registry)(nil), "with a nil *registry.Registry as its Source"},
		{"a nil *registry.Static", (*registry.Static)(nil), "with a nil *registry.Static as its Source"},
	} {
		for _, build := range []struct {
			name string
			f    func(interceptor.Source)
		}{
			{"UnaryServerInterceptor", func(s interceptor.Source) { interceptor.UnaryServerInterceptor(s) }},
			{"StreamServerInterceptor", func(s interceptor.Source) { interceptor.StreamServerInterceptor(s) }},
		} {
			t.Run(build.name+" with "+src.name, func(t *testing.T) {
				defer func() {
					msg, _ := recover().(string)
					if want := "interceptor: " + build.name + " " + src.want; !strings.Contains(msg, want) {
						t.Errorf("panic %q; want %q", msg, want)
					}
				}()
				build.f(src.src)
			})
		}
	}
}
