package isolate

import (
	"bufio"
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	isolatev1 "github.com/apihooks/apihooks/gen/apihooks/isolate/v1"
	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/internal/lazypb"
)

// scriptCacheSize bounds how many compiled scripts a worker keeps.
const scriptCacheSize = 256

// askedFirst is set once this program has called ServeWorkerIfAsked and
// is not a worker: started as one, it will serve runs.
var askedFirst atomic.Bool

// ErrNoWorkerEntry is the error of a pool with the default command in a
// program that has not called ServeWorkerIfAsked: a worker started from it
// would run the whole program (a second server, say) instead of serving
// runs, so none is started.
var ErrNoWorkerEntry = errors.New("this program's main does not call isolate.ServeWorkerIfAsked() first, so a hook worker started from it would run the program itself: " +
	"call it first thing in main (and in TestMain), or give the pool a worker program with isolate.WithCommand")

// ServeWorkerIfAsked makes this program a hook worker when it was started
// as one: when its first argument is WorkerArg, as a Pool with the default
// command starts it, it serves runs on its standard input and output until
// the pool closes them, then exits. Otherwise it returns at once. A
// program that runs hooks in worker processes calls it first thing in
// main (and in TestMain, for its tests).
func ServeWorkerIfAsked() {
	if len(os.Args) < 2 || os.Args[1] != WorkerArg {
		askedFirst.Store(true)
		return
	}
	if err := ServeWorker(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", filepath.Base(os.Args[0]), err)
		os.Exit(1)
	}
	os.Exit(0)
}

// ServeWorker is the worker side of a Pool: it reads runs from r and writes
// their results and log lines to w until r ends, running each script in an
// engine of its own. A worker process calls it with its standard input and
// output (apihooksd does so when its first argument is "hook-worker"); the
// first message sets the worker's memory limit, which it applies to itself
// (on Linux, RLIMIT_DATA: going over it is a fatal error of the process).
// Nothing else may read r or write w; when they are pipes, ServeWorker puts
// them in non-blocking mode (see pollable).
func ServeWorker(r io.Reader, w io.Writer) error {
	if p := asPollable(r); p != nil {
		defer p.Close()
		r = p
	}
	if p := asPollable(w); p != nil {
		defer p.Close()
		w = p
	}
	s := newServer(r, w)
	var in isolatev1.Input
	var buf []byte
	var err error
	if buf, err = readFrame(s.in, buf, &in); err != nil {
		return fmt.Errorf("hook worker: read setup: %w", err)
	}
	setup := in.GetSetup()
	if setup == nil {
		return errors.New("hook worker: the first message is not a setup")
	}
	baseline, err := limitMemory(setup.MemoryLimit)
	if err != nil {
		return fmt.Errorf("hook worker: %w", err)
	}
	ready := &isolatev1.Output{Kind: &isolatev1.Output_Ready{Ready: &isolatev1.Ready{
		Pid: int32(os.Getpid()), BaselineBytes: baseline}}}
	if err := s.out.write(ready); err != nil {
		return fmt.Errorf("hook worker: %w", err)
	}
	engine.BoundRegexpMatches()
	// The worker's runs have the memory budget the process has beyond its
	// baseline, so a built-in over it throws as it would in the daemon;
	// the kernel's limit is the ceiling of the rest, so the heap watch is
	// off.
	budget := setup.MemoryLimit
	if budget <= 0 {
		budget = engine.DefaultMemoryBudget
	}
	s.eng = engine.New(engine.WithLogger(slog.New(&forwarder{s: s})),
		engine.WithMemoryBudget(budget), engine.WithHeapLimit(0))
	// A run abandoned in native code would make Close wait for it; the
	// process ends soon after anyway.
	defer func() { go s.eng.Close() }()
	for {
		in.Reset()
		if buf, err = readFrame(s.in, buf, &in); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("hook worker: read: %w", err)
		}
		run := in.GetRun()
		if run == nil {
			return errors.New("hook worker: a message other than a run after setup")
		}
		if err := s.out.write(s.run(run)); err != nil {
			return fmt.Errorf("hook worker: write: %w", err)
		}
	}
}

// asPollable returns v as a pollable file when it is a file that can be one,
// and nil otherwise.
func asPollable(v any) *os.File {
	if f, ok := v.(*os.File); ok {
		if p, err := pollable(f); err == nil {
			return p
		}
	}
	return nil
}

// newServer returns the state of a worker that reads r and writes w, with
// no engine yet.
func newServer(r io.Reader, w io.Writer) *server {
	return &server{
		in:      bufio.NewReaderSize(r, 64<<10),
		out:     &frameWriter{w: w},
		scripts: newScriptCache(scriptCacheSize),
		files:   new(protoregistry.Files),
		types:   map[protoreflect.FullName]*lazypb.Type{},
		linked:  map[string]bool{},
	}
}

// server is the state of one worker.
type server struct {
	in      *bufio.Reader
	out     *frameWriter
	eng     *engine.Engine
	scripts *scriptCache
	files   *protoregistry.Files
	types   map[protoreflect.FullName]*lazypb.Type
	// linked are the files sent that this program has compiled in, the
	// same to the byte with every file they import (see compiledIn).
	linked map[string]bool
	// cur is the ID of the run going on, for its log lines.
	cur atomic.Uint64
	// callBuf holds the frames of the answers to the runs' calls.
	callBuf []byte
}

// run runs one script and returns its Result, or NeedScript.
func (s *server) run(in *isolatev1.Run) *isolatev1.Output {
	key := string(in.ScriptHash)
	script := s.scripts.get(key)
	if script == nil {
		if !in.HasSource {
			return &isolatev1.Output{Kind: &isolatev1.Output_NeedScript{NeedScript: &isolatev1.NeedScript{Id: in.Id}}}
		}
		var err error
		if script, err = engine.Compile(in.ScriptName, in.ScriptSource); err == nil {
			script, err = script.WithStyle(engine.Style(in.ScriptStyle))
		}
		if err != nil {
			return failure(in.Id, engine.Crashed, "hook worker: "+err.Error())
		}
		s.scripts.add(key, script)
	}
	call, err := s.call(in)
	if errors.Is(err, errNeedFiles) {
		return &isolatev1.Output{Kind: &isolatev1.Output_NeedFiles{NeedFiles: &isolatev1.NeedFiles{Id: in.Id}}}
	}
	if err != nil {
		return failure(in.Id, engine.Crashed, "hook worker: "+err.Error())
	}
	s.cur.Store(in.Id)
	out, err := s.eng.Run(context.Background(), script, call)
	if err != nil {
		var ee *engine.Error
		if errors.As(err, &ee) {
			out := failure(in.Id, ee.Kind, ee.Message)
			out.GetResult().ErrorAt = ee.At
			return out
		}
		return failure(in.Id, engine.Crashed, err.Error())
	}
	res := &isolatev1.Result{Id: in.Id}
	switch out.Action {
	case engine.Continue:
		res.Action = isolatev1.Action_ACTION_CONTINUE
	case engine.Reject:
		res.Action = isolatev1.Action_ACTION_REJECT
		res.StatusCode = int32(out.Status.Code())
		res.StatusMessage = out.Status.Message()
	case engine.Respond:
		res.Action = isolatev1.Action_ACTION_RESPOND
	}
	if out.Message != nil {
		b, err := proto.Marshal(out.Message)
		if err != nil {
			return failure(in.Id, engine.BadResult, "encode the hook's message: "+err.Error())
		}
		res.Message = b
		if res.Message == nil {
			res.Message = []byte{}
		}
	}
	return &isolatev1.Output{Kind: &isolatev1.Output_Result{Result: res}}
}

// call builds the engine's Call from a Run.
func (s *server) call(in *isolatev1.Run) (*engine.Call, error) {
	if in.ResetFiles {
		s.forgetFiles()
	}
	for _, f := range in.Files {
		if _, err := s.files.FindFileByPath(f.GetName()); err == nil {
			continue
		}
		fd, err := protodesc.NewFile(f, s.files)
		if err == nil {
			err = s.files.RegisterFile(fd)
		}
		if err != nil && !in.ResetFiles {
			// It may not fit beside files that an earlier run's
			// descriptors had: start afresh with the run's own.
			s.forgetFiles()
			return nil, errNeedFiles
		}
		if err != nil {
			return nil, fmt.Errorf("descriptor %s: %w", f.GetName(), err)
		}
		s.linked[f.GetName()] = s.compiledIn(fd, f)
	}
	call := &engine.Call{
		Method:   in.Method,
		Phase:    engine.Phase(in.Phase),
		Hook:     in.Hook,
		ID:       in.HookId,
		Metadata: make(map[string][]string, len(in.Metadata)),
		Timeout:  time.Duration(in.TimeoutNanos),
		// The worker owns its copies of the messages.
		InPlace: true,
		Caller:  s.caller(in.Id),
	}
	if len(in.ParamsJson) > 0 {
		if err := json.Unmarshal(in.ParamsJson, &call.Params); err != nil {
			return nil, fmt.Errorf("params: %w", err)
		}
	}
	for k, v := range in.Metadata {
		vals := make([]string, len(v.Values))
		for i, b := range v.Values {
			vals[i] = string(b)
		}
		call.Metadata[k] = vals
	}
	var err error
	if call.Request, err = s.message(in.RequestType, in.Request); err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	if call.Response, err = s.message(in.ResponseType, in.Response); err != nil {
		return nil, fmt.Errorf("response: %w", err)
	}
	if in.AnswerType != "" {
		if call.ResponseType, err = s.messageType(in.AnswerType); err != nil {
			return nil, fmt.Errorf("response type: %w", err)
		}
	}
	if in.HasStatus {
		call.Status = status.New(codes.Code(in.StatusCode), in.StatusMessage)
	}
	return call, nil
}

// compiledIn reports whether this program has file fd, sent as f, compiled
// in: the same to the byte, and so is every file it imports, which the
// worker has been sent before it (imports come first). A file that
// imports another version of a file has other types in its messages than
// the program's own.
func (s *server) compiledIn(fd protoreflect.FileDescriptor, f *descriptorpb.FileDescriptorProto) bool {
	imports := fd.Imports()
	for i := range imports.Len() {
		if !s.linked[imports.Get(i).Path()] {
			return false
		}
	}
	g, err := protoregistry.GlobalFiles.FindFileByPath(f.GetName())
	return err == nil && proto.Equal(protodesc.ToFileDescriptorProto(g), f)
}

// errNeedFiles reports that a run's files did not fit beside the worker's.
var errNeedFiles = errors.New("the run's descriptor files do not fit beside the worker's")

// forgetFiles forgets every descriptor file the worker was sent.
func (s *server) forgetFiles() {
	s.files = new(protoregistry.Files)
	clear(s.types)
	clear(s.linked)
}

// message decodes a message of the named type; nil when name is empty.
func (s *server) message(name string, b []byte) (proto.Message, error) {
	if name == "" {
		return nil, nil
	}
	mt, err := s.messageType(name)
	if err != nil {
		return nil, err
	}
	m := mt.New().Interface()
	// Required fields unset are the backend's to find, as in process.
	if err := (proto.UnmarshalOptions{AllowPartial: true}).Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return m, nil
}

func (s *server) messageType(name string) (protoreflect.MessageType, error) {
	fn := protoreflect.FullName(name)
	if mt, ok := s.types[fn]; ok {
		return mt, nil
	}
	d, err := s.files.FindDescriptorByName(fn)
	if err != nil {
		return nil, fmt.Errorf("message type %s: %w", name, err)
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is not a message type", name)
	}
	// A hook mostly reads or sets a few fields: a lazypb message decodes
	// only those, and sends the rest back as the bytes they came in. It
	// holds them in a message of the generated type when this program has
	// the type's file compiled in (compiledIn), which decodes several
	// times faster than dynamicpb.
	var mt *lazypb.Type
	if s.linked[md.ParentFile().Path()] {
		if g, err := protoregistry.GlobalTypes.FindMessageByName(fn); err == nil {
			mt = lazypb.NewTypeOf(g)
		}
	}
	if mt == nil {
		mt = lazypb.NewType(md)
	}
	s.types[fn] = mt
	return mt, nil
}

// caller is the ctx.call of run id: the daemon makes the call (through the
// hooks of the method called, as in process) and answers it. The run reads
// the answer from the worker's input itself, which nothing else reads while
// a run is in progress.
func (s *server) caller(id uint64) engine.Caller {
	return func(ctx context.Context, method string, request []byte) ([]byte, error) {
		c := &isolatev1.Call{Id: id, Method: method, Request: request}
		if d, ok := ctx.Deadline(); ok {
			c.TimeoutNanos = int64(max(time.Until(d), time.Nanosecond))
		}
		if err := s.out.write(&isolatev1.Output{Kind: &isolatev1.Output_Call{Call: c}}); err != nil {
			return nil, status.Errorf(codes.Internal, "ctx.call %s: %v", method, err)
		}
		var in isolatev1.Input
		var err error
		if s.callBuf, err = readFrame(s.in, s.callBuf, &in); err != nil {
			return nil, status.Errorf(codes.Internal, "ctx.call %s: %v", method, err)
		}
		res := in.GetCallResult()
		switch {
		case res == nil || res.Id != id:
			return nil, status.Errorf(codes.Internal, "ctx.call %s: the daemon answered with %T", method, in.Kind)
		case res.StatusCode != 0:
			return nil, status.Error(codes.Code(res.StatusCode), res.StatusMessage)
		}
		return res.Response, nil
	}
}

func failure(id uint64, k engine.Kind, msg string) *isolatev1.Output {
	return &isolatev1.Output{Kind: &isolatev1.Output_Result{Result: &isolatev1.Result{
		Id: id, ErrorKind: int32(k), ErrorMessage: msg}}}
}

// forwarder is the slog.Handler of a worker's engine: it sends each line a
// script logs to the daemon, which logs it through its own logger with the
// method and hook attached.
type forwarder struct{ s *server }

func (f *forwarder) Enabled(context.Context, slog.Level) bool { return true }

func (f *forwarder) Handle(_ context.Context, r slog.Record) error {
	l := &isolatev1.Log{Id: f.s.cur.Load(), Level: int32(r.Level), Message: r.Message}
	r.Attrs(func(a slog.Attr) bool {
		if engine.ScriptOrigin(a) {
			l.FromScript = true
		}
		if a.Key != "value" {
			return true
		}
		b, err := json.Marshal(a.Value.Any())
		if err != nil {
			b, _ = json.Marshal(fmt.Sprint(a.Value.Any()))
		}
		l.ValueJson, l.HasValue = b, true
		return false
	})
	return f.s.out.write(&isolatev1.Output{Kind: &isolatev1.Output_Log{Log: l}})
}

func (f *forwarder) WithAttrs([]slog.Attr) slog.Handler { return f }
func (f *forwarder) WithGroup(string) slog.Handler      { return f }

// scriptCache is a least-recently-used cache of compiled scripts.
type scriptCache struct {
	max   int
	order *list.List
	items map[string]*list.Element
}

type cacheEntry struct {
	key    string
	script *engine.Script
}

func newScriptCache(max int) *scriptCache {
	return &scriptCache{max: max, order: list.New(), items: map[string]*list.Element{}}
}

func (c *scriptCache) get(key string) *engine.Script {
	e, ok := c.items[key]
	if !ok {
		return nil
	}
	c.order.MoveToFront(e)
	return e.Value.(*cacheEntry).script
}

func (c *scriptCache) add(key string, s *engine.Script) {
	c.items[key] = c.order.PushFront(&cacheEntry{key: key, script: s})
	for c.order.Len() > c.max {
		e := c.order.Back()
		c.order.Remove(e)
		delete(c.items, e.Value.(*cacheEntry).key)
	}
}
