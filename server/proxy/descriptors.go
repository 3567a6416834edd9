package proxy

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/apihooks/apihooks/internal/lazypb"
	"github.com/apihooks/apihooks/internal/reflectclient"
)

// table is one generation of learned descriptors. It is never changed once
// built: a refresh builds a new one and swaps it in.
type table struct {
	files    *protoregistry.Files
	types    *dynamicpb.Types
	services []string
	methods  map[string]*method // by full method name, "/pkg.Service/Method"
	// set is the deterministic encoding of the descriptors, to tell an
	// unchanged refresh from a new one.
	set []byte
}

// method is what the proxy knows of one method of the backend. Its
// messages decode each field only when a hook first uses it.
type method struct {
	desc    protoreflect.MethodDescriptor
	in, out *lazypb.Type
	// info is the method as gRPC's server would describe it.
	info grpc.StreamServerInfo
}

// streaming reports whether the method is not unary.
func (m *method) streaming() bool { return m.desc.IsStreamingClient() || m.desc.IsStreamingServer() }

// newTable builds a table from files, which hold each import of each file.
// services are the services the backend serves; all those the files
// declare when nil.
func newTable(fds []*descriptorpb.FileDescriptorProto, services []string) (*table, error) {
	fds = slices.Clone(fds)
	slices.SortFunc(fds, func(a, b *descriptorpb.FileDescriptorProto) int { return cmp.Compare(a.GetName(), b.GetName()) })
	set := &descriptorpb.FileDescriptorSet{File: fds}
	files, err := protodesc.NewFiles(set)
	if err != nil {
		return nil, err
	}
	key, err := proto.MarshalOptions{Deterministic: true}.Marshal(set)
	if err != nil {
		return nil, err
	}
	t := &table{files: files, types: dynamicpb.NewTypes(files), methods: map[string]*method{}, set: key}
	if services == nil {
		files.RangeFiles(func(f protoreflect.FileDescriptor) bool {
			for i := range f.Services().Len() {
				services = append(services, string(f.Services().Get(i).FullName()))
			}
			return true
		})
	}
	for _, name := range services {
		d, err := files.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			// Listed but not described: its calls go through, unhooked.
			continue
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			continue
		}
		t.services = append(t.services, name)
		for i := range sd.Methods().Len() {
			md := sd.Methods().Get(i)
			full := "/" + name + "/" + string(md.Name())
			t.methods[full] = &method{
				desc: md,
				in:   lazypb.NewType(md.Input()),
				out:  lazypb.NewType(md.Output()),
				info: grpc.StreamServerInfo{FullMethod: full, IsClientStream: md.IsStreamingClient(), IsServerStream: md.IsStreamingServer()},
			}
		}
	}
	slices.Sort(t.services)
	return t, nil
}

// ReadDescriptorSet reads a FileDescriptorSet, as `buf build -o` or
// `protoc --include_imports -o` write it, and checks that it describes
// each import of each file.
func ReadDescriptorSet(path string) (*descriptorpb.FileDescriptorSet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("descriptor set: %w", err)
	}
	set := new(descriptorpb.FileDescriptorSet)
	if err := proto.Unmarshal(b, set); err != nil {
		return nil, fmt.Errorf("descriptor set %s: not a FileDescriptorSet: %w", path, err)
	}
	if _, err := newTable(set.GetFile(), nil); err != nil {
		return nil, fmt.Errorf("descriptor set %s: %w (build it with its imports: buf build -o, or protoc --include_imports -o)", path, err)
	}
	return set, nil
}

// descriptors holds the descriptors in force, and learns them again from
// the backend when asked, at most once per interval.
type descriptors struct {
	cur atomic.Pointer[table]
	// fetch learns the descriptors; nil when they were given once for all.
	fetch    func(ctx context.Context) (*table, error)
	interval time.Duration
	timeout  time.Duration
	// onChange, when set, is called when a fetch brings descriptors that
	// differ from those in force, once they are and before any caller
	// waiting for the fetch goes on; onError with the error of a fetch
	// that failed, once per fetch.
	onChange func()
	onError  func(error)
	// fetching counts the fetches in flight (see wait).
	fetching sync.WaitGroup

	mu sync.Mutex
	// flight is the fetch in progress, nil when none; last is when the
	// last one began.
	flight *flight
	last   time.Time
	// failed holds the error of the last fetch, nil after one that
	// succeeded.
	failed atomic.Pointer[error]
}

// flight is one fetch, which every caller that comes while it runs waits
// for.
type flight struct {
	done    chan struct{}
	changed bool
	err     error
}

func newDescriptors(fetch func(context.Context) (*table, error), interval, timeout time.Duration) *descriptors {
	d := &descriptors{fetch: fetch, interval: interval, timeout: timeout}
	empty, _ := newTable(nil, nil)
	d.cur.Store(empty)
	return d
}

func (d *descriptors) current() *table { return d.cur.Load() }

// lastErr returns the error of the last fetch, nil when it succeeded or
// none was made.
func (d *descriptors) lastErr() error {
	if err := d.failed.Load(); err != nil {
		return *err
	}
	return nil
}

// refresh learns the descriptors again unless that began within the
// interval (a quarter of a second after a failure: a backend starting up),
// or force, and reports whether they changed. Callers that come while a
// fetch is in flight wait for it. The fetch has a context of its own: a
// caller that gives up (its call's deadline) ends neither the fetch nor
// the others' wait, and its error is not the fetch's.
func (d *descriptors) refresh(ctx context.Context, force bool) (changed bool, err error) {
	if d.fetch == nil {
		return false, nil
	}
	d.mu.Lock()
	f := d.flight
	if f == nil {
		wait := d.interval
		if d.lastErr() != nil {
			wait /= 8
		}
		if !force && time.Since(d.last) < wait {
			d.mu.Unlock()
			return false, nil
		}
		d.last = time.Now()
		f = &flight{done: make(chan struct{})}
		d.flight = f
		d.fetching.Add(1)
		go d.learn(f)
	}
	d.mu.Unlock()
	select {
	case <-f.done:
		return f.changed, f.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// learn runs the fetch of f, within the timeout.
func (d *descriptors) learn(f *flight) {
	defer d.fetching.Done()
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	t, err := d.fetch(ctx)
	cancel()
	if err != nil {
		d.failed.Store(&err)
		if d.onError != nil {
			d.onError(err)
		}
	} else {
		d.failed.Store(nil)
		if !bytes.Equal(t.set, d.cur.Load().set) {
			d.cur.Store(t)
			f.changed = true
			if d.onChange != nil {
				d.onChange()
			}
		}
	}
	f.err = err
	d.mu.Lock()
	d.flight = nil
	d.mu.Unlock()
	close(f.done)
}

// wait waits for the fetch in flight, if any, to end: within the refresh
// timeout, at once when the backend's connection is closed.
func (d *descriptors) wait() { d.fetching.Wait() }

// fromReflection learns the backend's services and their descriptors
// through its server reflection.
func fromReflection(cc grpc.ClientConnInterface) func(context.Context) (*table, error) {
	return func(ctx context.Context) (*table, error) {
		services, files, err := reflectclient.Read(ctx, cc)
		if r, ok := cc.(interface{ ResetConnectBackoff() }); ok && status.Code(err) == codes.Unavailable {
			// gRPC waits longer and longer (up to 2 minutes) before it
			// connects again to a backend that was down: the next fetch
			// (a sidecar's backend coming up) should not wait for it.
			r.ResetConnectBackoff()
		}
		if errors.Is(err, reflectclient.ErrNoReflection) {
			return nil, fmt.Errorf("%w (give its descriptors with a descriptor set)", err)
		}
		if err != nil {
			return nil, err
		}
		t, err := newTable(files, services)
		if err != nil || markedWrongly(files) {
			// Node's @grpc/reflection sends descriptors that need repair.
			if rt, rerr := newTable(repairFiles(files), services); rerr == nil {
				t, err = rt, nil
			}
		}
		if err != nil {
			return nil, fmt.Errorf("reflection: %w", err)
		}
		return t, nil
	}
}
