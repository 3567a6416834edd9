package proxy

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
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

	// lock is held by the refresh in flight; last is when it began.
	lock chan struct{}
	last time.Time
	// failed holds the error of the last refresh, nil after one that
	// succeeded.
	failed atomic.Pointer[error]
}

func newDescriptors(fetch func(context.Context) (*table, error), interval, timeout time.Duration) *descriptors {
	d := &descriptors{fetch: fetch, interval: interval, timeout: timeout, lock: make(chan struct{}, 1)}
	empty, _ := newTable(nil, nil)
	d.cur.Store(empty)
	return d
}

func (d *descriptors) current() *table { return d.cur.Load() }

// lastErr returns the error of the last refresh, nil when it succeeded or
// none was made.
func (d *descriptors) lastErr() error {
	if err := d.failed.Load(); err != nil {
		return *err
	}
	return nil
}

// refresh learns the descriptors again unless that was done within the
// interval (or force), and reports whether they changed. Callers that come
// while a refresh is in flight wait for it.
func (d *descriptors) refresh(ctx context.Context, force bool) (changed bool, err error) {
	if d.fetch == nil {
		return false, nil
	}
	select {
	case d.lock <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-d.lock }()
	// After a failure (a backend starting up), ask again sooner.
	wait := d.interval
	if d.lastErr() != nil {
		wait /= 8
	}
	if !force && time.Since(d.last) < wait {
		return false, nil
	}
	d.last = time.Now()
	fctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	t, err := d.fetch(fctx)
	if err != nil {
		d.failed.Store(&err)
		return false, err
	}
	d.failed.Store(nil)
	if bytes.Equal(t.set, d.cur.Load().set) {
		return false, nil
	}
	d.cur.Store(t)
	return true, nil
}

// fromReflection learns the backend's services and their descriptors
// through its server reflection.
func fromReflection(cc grpc.ClientConnInterface) func(context.Context) (*table, error) {
	return func(ctx context.Context) (*table, error) {
		services, files, err := reflectclient.Read(ctx, cc)
		if errors.Is(err, reflectclient.ErrNoReflection) {
			return nil, fmt.Errorf("%w (give its descriptors with a descriptor set)", err)
		}
		if err != nil {
			return nil, err
		}
		files = repairFiles(files)
		t, err := newTable(files, services)
		if err != nil {
			return nil, fmt.Errorf("reflection: %w", err)
		}
		return t, nil
	}
}
