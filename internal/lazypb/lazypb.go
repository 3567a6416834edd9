// Package lazypb holds protobuf messages that decode each field of the
// wire bytes they were given only when it is first used, and encode the
// fields never decoded as the bytes they came in. The fields decoded are
// held in a dynamicpb message, for types known only by their descriptors
// (NewType), or in a message of a generated type (NewTypeOf).
//
// A hook that reads or changes a few fields of a large message costs what
// those fields cost, not what the whole message does through dynamicpb's
// reflection; a message that nothing changed marshals to the very bytes it
// came in. Unmarshal checks the wire structure of the whole message but
// the insides of well-known types, so a message whose bytes are cut or
// garbled fails there, as with dynamicpb. What only decoding finds (a
// string that is not UTF-8, a garbled google.protobuf.Struct) goes through
// as it came while its field is not decoded; once it is, Err reports it
// and the message no longer marshals.
//
// A message is not safe for concurrent use, reads included: a read
// decodes. proto.Clone and proto.Marshal (but a deterministic one) only
// read it, as they would a dynamicpb message.
package lazypb

import (
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/runtime/protoiface"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Type is the message type of one message descriptor.
type Type struct {
	desc protoreflect.MessageDescriptor
	// held makes the messages that hold the fields decoded.
	held protoreflect.MessageType
	// required is whether a message of this type may hold a required
	// field, in itself or in a message in it.
	required bool
	methods  protoiface.Methods
}

// NewType returns the type of the messages that desc describes, whose
// decoded fields are held in a dynamicpb message.
func NewType(desc protoreflect.MessageDescriptor) *Type {
	return NewTypeOf(dynamicpb.NewMessageType(desc))
}

// NewTypeOf returns the type of the messages of mt's descriptor, whose
// decoded fields are held in a message of mt: a generated type, for one,
// decodes and encodes several times faster than dynamicpb. The descriptor
// of the messages is mt's; fields given to their methods must be its.
func NewTypeOf(mt protoreflect.MessageType) *Type {
	desc := mt.Descriptor()
	t := &Type{desc: desc, held: mt, required: mayRequire(desc, map[protoreflect.FullName]bool{})}
	t.methods = protoiface.Methods{
		Flags:            protoiface.SupportMarshalDeterministic | protoiface.SupportUnmarshalDiscardUnknown,
		Marshal:          marshal,
		Size:             size,
		Unmarshal:        unmarshal,
		Merge:            merge,
		CheckInitialized: t.checkInitialized,
	}
	return t
}

// mayRequire reports whether a message of md may hold a required field:
// one of its own, one of a message in it, or one of an extension.
func mayRequire(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	if seen[md.FullName()] {
		return false
	}
	seen[md.FullName()] = true
	if md.RequiredNumbers().Len() > 0 || md.ExtensionRanges().Len() > 0 {
		return true
	}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.IsMap() {
			fd = fd.MapValue()
		}
		if fd.Message() != nil && mayRequire(fd.Message(), seen) {
			return true
		}
	}
	return false
}

// New returns an empty message of the type.
func (t *Type) New() protoreflect.Message { return t.NewMessage() }

// Zero returns an empty message of the type.
func (t *Type) Zero() protoreflect.Message { return t.NewMessage() }

// Descriptor returns the type's message descriptor.
func (t *Type) Descriptor() protoreflect.MessageDescriptor { return t.desc }

// NewMessage returns an empty message of the type.
func (t *Type) NewMessage() *Message {
	return &Message{typ: t, decoded: t.held.New()}
}

func (t *Type) checkInitialized(in protoiface.CheckInitializedInput) (protoiface.CheckInitializedOutput, error) {
	if !t.required {
		return protoiface.CheckInitializedOutput{}, nil
	}
	m := in.Message.(*Message)
	held := m.decoded.Interface()
	if len(m.spans) > 0 {
		// Check the fields not decoded yet in a copy: checking decodes
		// nothing, so a field that does not decode still goes as it came,
		// for whoever receives it to refuse, and the check cannot tell.
		held = proto.Clone(held)
		for _, s := range m.spans {
			if err := m.opts.Unmarshal(m.raw[s.start:s.end], held); err != nil {
				return protoiface.CheckInitializedOutput{}, nil
			}
		}
	}
	return protoiface.CheckInitializedOutput{}, proto.CheckInitialized(held)
}

// Message is a message of a Type. It implements proto.Message and
// protoreflect.Message.
type Message struct {
	typ *Type
	// decoded holds the fields decoded so far, and those set since: a
	// message of the type's held type.
	decoded protoreflect.Message
	// raw is the wire bytes given to Unmarshal; spans are those of its
	// fields not decoded yet, in the order they came.
	raw   []byte
	spans []span
	// opts decode the spans.
	opts proto.UnmarshalOptions
	// written is whether the message may differ from raw: a field was set,
	// cleared, or handed out as a value that can be changed in place.
	written bool
	// unknown is whether raw holds a field its descriptors do not describe,
	// or that comes with a wire type its descriptor does not allow, at any
	// depth.
	unknown bool
	// err is the first error decoding a span.
	err error
}

// span is one field of raw: its number, where it is, and whether the
// descriptor describes it.
type span struct {
	num        protowire.Number
	start, end int
	known      bool
}

// ProtoReflect returns m.
func (m *Message) ProtoReflect() protoreflect.Message { return m }

// Reset empties m.
func (m *Message) Reset() { *m = *m.typ.NewMessage() }

// Unknown reports whether the bytes m was given hold a field its
// descriptors do not describe, or of a wire type they do not allow, in m
// or in a message in it: as dynamicpb, proto would keep it as an unknown
// field.
func (m *Message) Unknown() bool { return m.unknown }

// Err returns the first error decoding one of m's fields, which Unmarshal
// did not find checking the wire structure.
func (m *Message) Err() error { return m.err }

// decode decodes the spans of the fields numbered nums (of the
// descriptor's or, with none, all those it does not describe), in the
// order they came.
func (m *Message) decode(nums ...protowire.Number) {
	kept := m.spans[:0]
	for _, s := range m.spans {
		if !matches(s, nums) {
			kept = append(kept, s)
			continue
		}
		if err := m.opts.Unmarshal(m.raw[s.start:s.end], m.decoded.Interface()); err != nil && m.err == nil {
			m.err = err
		}
	}
	clear(m.spans[len(kept):])
	m.spans = kept
}

func matches(s span, nums []protowire.Number) bool {
	if len(nums) == 0 {
		return !s.known
	}
	for _, n := range nums {
		if s.num == n {
			return true
		}
	}
	return false
}

// decodeField decodes fd, and the other fields of its oneof, whose last one
// on the wire is the one set.
func (m *Message) decodeField(fd protoreflect.FieldDescriptor) {
	if len(m.spans) == 0 {
		return
	}
	if fd.IsExtension() {
		m.decode()
		return
	}
	od := fd.ContainingOneof()
	if od == nil {
		m.decode(fd.Number())
		return
	}
	m.decodeOneof(od)
}

func (m *Message) decodeOneof(od protoreflect.OneofDescriptor) {
	if len(m.spans) == 0 {
		return
	}
	fields := od.Fields()
	nums := make([]protowire.Number, fields.Len())
	for i := range nums {
		nums[i] = fields.Get(i).Number()
	}
	m.decode(nums...)
}

// decodeAll decodes every field left.
func (m *Message) decodeAll() {
	if len(m.spans) == 0 {
		return
	}
	for _, s := range m.spans {
		if err := m.opts.Unmarshal(m.raw[s.start:s.end], m.decoded.Interface()); err != nil && m.err == nil {
			m.err = err
		}
	}
	m.spans = nil
}

// Descriptor returns the message descriptor.
func (m *Message) Descriptor() protoreflect.MessageDescriptor { return m.typ.desc }

// Type returns the message type.
func (m *Message) Type() protoreflect.MessageType { return m.typ }

// New returns an empty message of m's type.
func (m *Message) New() protoreflect.Message { return m.typ.NewMessage() }

// Interface returns m.
func (m *Message) Interface() protoreflect.ProtoMessage { return m }

// Range decodes every field and visits those that are set, as
// protoreflect.Message's Range does.
func (m *Message) Range(f func(protoreflect.FieldDescriptor, protoreflect.Value) bool) {
	m.decodeAll()
	m.written = true // f may change the values it gets
	m.decoded.Range(f)
}

// Has decodes fd and reports whether it is set.
func (m *Message) Has(fd protoreflect.FieldDescriptor) bool {
	m.decodeField(fd)
	return m.decoded.Has(fd)
}

// Clear clears fd.
func (m *Message) Clear(fd protoreflect.FieldDescriptor) {
	m.decodeField(fd)
	m.written = true
	m.decoded.Clear(fd)
}

// Get decodes fd and returns its value.
func (m *Message) Get(fd protoreflect.FieldDescriptor) protoreflect.Value {
	m.decodeField(fd)
	if fd.IsList() || fd.IsMap() || fd.Message() != nil {
		m.written = true // a message, list or map may be changed in place
	}
	return m.decoded.Get(fd)
}

// Set sets fd to v.
func (m *Message) Set(fd protoreflect.FieldDescriptor, v protoreflect.Value) {
	m.decodeField(fd)
	m.written = true
	m.decoded.Set(fd, v)
}

// Mutable decodes fd and returns a mutable reference to its composite
// value.
func (m *Message) Mutable(fd protoreflect.FieldDescriptor) protoreflect.Value {
	m.decodeField(fd)
	m.written = true
	return m.decoded.Mutable(fd)
}

// NewField returns a new value for fd.
func (m *Message) NewField(fd protoreflect.FieldDescriptor) protoreflect.Value {
	return m.decoded.NewField(fd)
}

// WhichOneof decodes the fields of od and reports which one is set.
func (m *Message) WhichOneof(od protoreflect.OneofDescriptor) protoreflect.FieldDescriptor {
	m.decodeOneof(od)
	return m.decoded.WhichOneof(od)
}

// GetUnknown decodes the fields the descriptor does not describe and
// returns those that stay unknown.
func (m *Message) GetUnknown() protoreflect.RawFields {
	m.decode()
	return m.decoded.GetUnknown()
}

// SetUnknown replaces the unknown fields.
func (m *Message) SetUnknown(raw protoreflect.RawFields) {
	m.decode()
	m.written = true
	m.decoded.SetUnknown(raw)
}

// IsValid reports true: a Message is never a read-only empty one.
func (m *Message) IsValid() bool { return true }

// ProtoMethods returns the type's fast paths for proto's Marshal,
// Unmarshal, Merge (and so Clone) and CheckInitialized.
func (m *Message) ProtoMethods() *protoiface.Methods { return &m.typ.methods }

// marshal appends the bytes the message came in when nothing changed it;
// else the fields never decoded as they came, then the others.
// Deterministic output decodes all first.
func marshal(in protoiface.MarshalInput) (protoiface.MarshalOutput, error) {
	m := in.Message.(*Message)
	opts := proto.MarshalOptions{AllowPartial: true, Deterministic: in.Flags&protoiface.MarshalDeterministic != 0}
	if opts.Deterministic {
		m.decodeAll()
	}
	if m.err != nil {
		return protoiface.MarshalOutput{}, m.err
	}
	if !m.written && !opts.Deterministic {
		return protoiface.MarshalOutput{Buf: append(in.Buf, m.raw...)}, nil
	}
	b := in.Buf
	for _, s := range m.spans {
		b = append(b, m.raw[s.start:s.end]...)
	}
	b, err := opts.MarshalAppend(b, m.decoded.Interface())
	return protoiface.MarshalOutput{Buf: b}, err
}

// size is the length of what marshal would append, found without
// encoding: proto's own Size of a message that has no Size method of its
// own encodes it whole (a hook's budget measures a message it built this
// way, 100 MiB in a tenth of a second).
func size(in protoiface.SizeInput) protoiface.SizeOutput {
	m := in.Message.(*Message)
	deterministic := in.Flags&protoiface.MarshalDeterministic != 0
	if deterministic {
		m.decodeAll()
	}
	if !m.written && !deterministic {
		return protoiface.SizeOutput{Size: len(m.raw)}
	}
	n := 0
	for _, s := range m.spans {
		n += s.end - s.start
	}
	opts := proto.MarshalOptions{AllowPartial: true, Deterministic: deterministic}
	return protoiface.SizeOutput{Size: n + opts.Size(m.decoded.Interface())}
}

// unmarshal gives an empty message a copy of the bytes, once their wire
// structure is checked; it merges them into a message that has fields by
// decoding them.
func unmarshal(in protoiface.UnmarshalInput) (protoiface.UnmarshalOutput, error) {
	m := in.Message.(*Message)
	opts := proto.UnmarshalOptions{
		Merge:          true,
		AllowPartial:   true,
		DiscardUnknown: in.Flags&protoiface.UnmarshalDiscardUnknown != 0,
		Resolver:       in.Resolver,
		RecursionLimit: in.Depth,
	}
	if !m.empty() || opts.DiscardUnknown {
		m.decodeAll()
		m.written = true
		return protoiface.UnmarshalOutput{}, opts.Unmarshal(in.Buf, m.decoded.Interface())
	}
	raw := append([]byte(nil), in.Buf...)
	spans, unknown, err := scan(raw, m.typ.desc, in.Depth)
	if err != nil {
		return protoiface.UnmarshalOutput{}, err
	}
	m.raw, m.spans, m.unknown, m.opts = raw, spans, unknown, opts
	return protoiface.UnmarshalOutput{}, nil
}

// empty reports whether m holds nothing: it was given no bytes, and
// nothing was set in it.
func (m *Message) empty() bool { return m.raw == nil && !m.written }

// merge makes an empty message a copy of another of its type, decoding
// nothing: proto.Clone costs what the fields decoded so far cost. It
// leaves other merges to proto's own.
func merge(in protoiface.MergeInput) protoiface.MergeOutput {
	dst, ok := in.Destination.(*Message)
	src, same := in.Source.(*Message)
	if !ok || !same || dst.typ != src.typ || !dst.empty() {
		return protoiface.MergeOutput{}
	}
	// raw is never changed once given.
	dst.raw, dst.spans = src.raw, slices.Clone(src.spans)
	dst.opts, dst.written, dst.unknown, dst.err = src.opts, src.written, src.unknown, src.err
	dst.decoded = proto.Clone(src.decoded.Interface()).ProtoReflect()
	return protoiface.MergeOutput{Flags: protoiface.MergeComplete}
}
