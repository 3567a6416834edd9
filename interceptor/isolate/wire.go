package isolate

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	isolatev1 "github.com/apihooks/apihooks/gen/apihooks/isolate/v1"
	"github.com/apihooks/apihooks/interceptor/engine"
)

// encodeRun builds the wire form of a run of s for call, except its ID and
// the descriptors the worker lacks.
func (p *Pool) encodeRun(ctx context.Context, s *engine.Script, call *engine.Call) (*isolatev1.Run, error) {
	in := &isolatev1.Run{
		ScriptHash:   p.hashes.get(s),
		ScriptName:   s.Name(),
		ScriptStyle:  string(s.Style()),
		Method:       call.Method,
		Phase:        string(call.Phase),
		Hook:         call.Hook,
		HookId:       call.ID,
		TimeoutNanos: int64(call.Timeout),
	}
	if call.Params != nil {
		b, err := json.Marshal(call.Params)
		if err != nil {
			return nil, fmt.Errorf("params: %w", err)
		}
		in.ParamsJson = b
	}
	md := call.Metadata
	if md == nil {
		md, _ = metadata.FromIncomingContext(ctx)
	}
	if len(md) > 0 {
		in.Metadata = make(map[string]*isolatev1.Values, len(md))
		for k, vals := range md {
			b := make([][]byte, len(vals))
			for i, v := range vals {
				b[i] = []byte(v)
			}
			in.Metadata[k] = &isolatev1.Values{Values: b}
		}
	}
	var err error
	if in.RequestType, in.Request, err = encodeMessage(call.Request); err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	if in.ResponseType, in.Response, err = encodeMessage(call.Response); err != nil {
		return nil, fmt.Errorf("response: %w", err)
	}
	if call.ResponseType != nil {
		in.AnswerType = string(call.ResponseType.Descriptor().FullName())
	}
	if call.Status != nil {
		in.HasStatus, in.StatusCode, in.StatusMessage = true, int32(call.Status.Code()), call.Status.Message()
	}
	return in, nil
}

// encodeMessage returns the name of m's type and its wire bytes, whether
// its required fields are set or not: checking them is the business of
// whoever receives the call's messages, as it would be without hooks.
func encodeMessage(m proto.Message) (string, []byte, error) {
	if m == nil {
		return "", nil, nil
	}
	b, err := proto.MarshalOptions{AllowPartial: true}.Marshal(m)
	if err != nil {
		return "", nil, err
	}
	return string(m.ProtoReflect().Descriptor().FullName()), b, nil
}

// descriptors returns the message types of a call, for files.
func descriptors(call *engine.Call) []protoreflect.MessageDescriptor {
	var out []protoreflect.MessageDescriptor
	for _, m := range []proto.Message{call.Request, call.Response} {
		if m != nil {
			out = append(out, m.ProtoReflect().Descriptor())
		}
	}
	if call.ResponseType != nil {
		out = append(out, call.ResponseType.Descriptor())
	}
	return out
}

// decodeResult turns a worker's Result into the engine's Outcome or Error.
func decodeResult(res *isolatev1.Result, call *engine.Call) (engine.Outcome, error) {
	if res.ErrorKind != 0 {
		return engine.Outcome{}, &engine.Error{Kind: engine.Kind(res.ErrorKind), Message: res.ErrorMessage, At: res.ErrorAt}
	}
	var out engine.Outcome
	var mt protoreflect.MessageType
	switch res.Action {
	case isolatev1.Action_ACTION_CONTINUE:
		out.Action = engine.Continue
		if call.Phase == engine.Post {
			mt = typeOf(call.Response)
		} else {
			mt = typeOf(call.Request)
		}
	case isolatev1.Action_ACTION_REJECT:
		out.Action = engine.Reject
		out.Status = status.New(codes.Code(res.StatusCode), res.StatusMessage)
		return out, nil
	case isolatev1.Action_ACTION_RESPOND:
		out.Action = engine.Respond
		if call.Phase == engine.Post {
			mt = typeOf(call.Response)
		} else {
			mt = call.ResponseType
		}
	default:
		return engine.Outcome{}, &engine.Error{Kind: engine.Crashed, Message: fmt.Sprintf("hook worker: unknown action %v", res.Action)}
	}
	if res.Message == nil {
		if out.Action == engine.Respond {
			return engine.Outcome{}, &engine.Error{Kind: engine.Crashed, Message: "hook worker: a response without a message"}
		}
		return out, nil
	}
	if mt == nil {
		return engine.Outcome{}, &engine.Error{Kind: engine.Crashed, Message: "hook worker: a message for a call that has none"}
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(res.Message, m); err != nil {
		return engine.Outcome{}, &engine.Error{Kind: engine.BadResult, Message: fmt.Sprintf("decode the hook's message: %v", err)}
	}
	out.Message = m
	return out, nil
}

func typeOf(m proto.Message) protoreflect.MessageType {
	if m == nil {
		return nil
	}
	return m.ProtoReflect().Type()
}

// file is a descriptor file: as the daemon has it, and as it is sent.
type file struct {
	fd    protoreflect.FileDescriptor
	proto *descriptorpb.FileDescriptorProto
}

// maxFileSets bounds the message types fileSets keeps. A proxy learns new
// descriptors each time its backend describes its services anew; the
// cache forgets everything past the bound, so old ones are not kept
// forever.
const maxFileSets = 4096

// fileSets caches, per message type, the descriptor files of its file and
// of the files that file imports, imports first.
type fileSets struct {
	m atomic.Pointer[sync.Map] // protoreflect.MessageDescriptor → []file
	n atomic.Int64
}

func (f *fileSets) get(md protoreflect.MessageDescriptor) []file {
	m := f.m.Load()
	if m == nil {
		f.m.CompareAndSwap(nil, new(sync.Map))
		m = f.m.Load()
	}
	if v, ok := m.Load(md); ok {
		return v.([]file)
	}
	var out []file
	seen := map[string]bool{}
	var walk func(fd protoreflect.FileDescriptor)
	walk = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := range imports.Len() {
			walk(imports.Get(i).FileDescriptor)
		}
		out = append(out, file{fd: fd, proto: protodesc.ToFileDescriptorProto(fd)})
	}
	walk(md.ParentFile())
	if f.n.Add(1) > maxFileSets {
		f.n.Store(0)
		f.m.Store(new(sync.Map))
		return out
	}
	m.Store(md, out)
	return out
}

// scriptHashes caches the hash of each script's name and source, which
// names the script to a worker. It forgets everything when it grows past
// its bound, so replaced scripts are not kept forever.
type scriptHashes struct {
	mu sync.Mutex
	m  map[*engine.Script][]byte
}

const maxScriptHashes = 4096

func (h *scriptHashes) get(s *engine.Script) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	if b, ok := h.m[s]; ok {
		return b
	}
	if h.m == nil || len(h.m) >= maxScriptHashes {
		h.m = map[*engine.Script][]byte{}
	}
	d := sha256.New()
	fmt.Fprintf(d, "%d:%s\x00%s\x00", len(s.Name()), s.Name(), s.Style())
	d.Write([]byte(s.Source()))
	b := d.Sum(nil)
	h.m[s] = b
	return b
}
