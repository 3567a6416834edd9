package proxy

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// grpcJSDemo is, cut down, what @grpc/reflection 1.0.4 (over
// @grpc/proto-loader 0.8.1, default options) sends for a demo.v1 service
// whose messages have maps, a Timestamp and a Struct: one file per
// package, no imports, relative type names, and map entries named like
// their fields.
const grpcJSDemo = `
name: "demo_v1.proto"
package: "demo.v1"
message_type: {
  name: "Req"
  field: {name: "name" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING}
  field: {name: "color" number: 3 label: LABEL_OPTIONAL type: TYPE_ENUM type_name: "Color"}
  field: {name: "inner" number: 4 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: "Inner"}
  field: {name: "labels" number: 5 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: "Labels"}
  field: {name: "text" number: 6 label: LABEL_OPTIONAL type: TYPE_STRING oneof_index: 0}
  field: {name: "nested" number: 8 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: "Inner" oneof_index: 0}
  field: {name: "at" number: 10 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: "google.protobuf.Timestamp"}
  field: {name: "data" number: 11 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: "google.protobuf.Struct"}
  field: {name: "level" number: 13 label: LABEL_OPTIONAL type: TYPE_ENUM type_name: "Level"}
  field: {name: "delayMs" number: 20 label: LABEL_OPTIONAL type: TYPE_INT32}
  nested_type: {
    name: "Labels"
    field: {name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING}
    field: {name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_STRING}
    options: {map_entry: true}
  }
  nested_type: {
    name: "Inner"
    field: {name: "a" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING}
    field: {name: "children" number: 3 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: "Children"}
    nested_type: {
      name: "Children"
      field: {name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING}
      field: {name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: "Inner"}
      options: {map_entry: true}
    }
  }
  enum_type: {name: "Color" value: {name: "COLOR_UNSPECIFIED" number: 0} value: {name: "COLOR_RED" number: 1}}
  oneof_decl: {name: "choice"}
}
message_type: {
  name: "Resp"
  field: {name: "echo" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: "Req"}
  field: {name: "seenMetadata" number: 3 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: "SeenMetadata"}
  field: {name: "at" number: 7 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: "google.protobuf.Timestamp"}
  nested_type: {
    name: "SeenMetadata"
    field: {name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING}
    field: {name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_STRING}
    options: {map_entry: true}
  }
}
enum_type: {name: "Level" value: {name: "LEVEL_UNSPECIFIED" number: 0} value: {name: "LEVEL_HIGH" number: 2}}
service: {
  name: "Demo"
  method: {name: "Unary" input_type: ".demo.v1.Req" output_type: ".demo.v1.Resp"}
  method: {name: "Bidi" input_type: ".demo.v1.Req" output_type: ".demo.v1.Resp" client_streaming: true server_streaming: true}
}
syntax: "proto3"
`

// grpcJSProtobuf is the file @grpc/reflection sends with grpcJSDemo for
// the well-known types it uses: all of package google.protobuf in one.
const grpcJSProtobuf = `
name: "google_protobuf.proto"
package: "google.protobuf"
message_type: {
  name: "Timestamp"
  field: {name: "seconds" number: 1 label: LABEL_OPTIONAL type: TYPE_INT64}
  field: {name: "nanos" number: 2 label: LABEL_OPTIONAL type: TYPE_INT32}
}
message_type: {
  name: "Struct"
  field: {name: "fields" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: "Fields"}
  nested_type: {
    name: "Fields"
    field: {name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING}
    field: {name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: "Value"}
    options: {map_entry: true}
  }
}
message_type: {
  name: "Value"
  field: {name: "nullValue" number: 1 label: LABEL_OPTIONAL type: TYPE_ENUM type_name: "NullValue" oneof_index: 0}
  field: {name: "stringValue" number: 3 label: LABEL_OPTIONAL type: TYPE_STRING oneof_index: 0}
  field: {name: "structValue" number: 5 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: "Struct" oneof_index: 0}
  field: {name: "listValue" number: 6 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: "ListValue" oneof_index: 0}
  oneof_decl: {name: "kind"}
}
message_type: {
  name: "ListValue"
  field: {name: "values" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: "Value"}
}
enum_type: {name: "NullValue" value: {name: "NULL_VALUE" number: 0}}
syntax: "proto3"
`

// grpcJSMin is what @grpc/reflection sends for a demo.v1 service with
// neither maps nor imports: it builds as it is.
const grpcJSMin = `
name: "demo_v1.proto"
package: "demo.v1"
message_type: {
  name: "Req"
  field: {name: "name" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING}
  field: {name: "color" number: 3 label: LABEL_OPTIONAL type: TYPE_ENUM type_name: "Color"}
  field: {name: "inner" number: 4 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: "Inner"}
  field: {name: "level" number: 13 label: LABEL_OPTIONAL type: TYPE_ENUM type_name: "Level"}
  field: {name: "delayMs" number: 20 label: LABEL_OPTIONAL type: TYPE_INT32}
  nested_type: {
    name: "Inner"
    field: {name: "nums" number: 2 label: LABEL_REPEATED type: TYPE_INT32}
  }
  enum_type: {name: "Color" value: {name: "COLOR_UNSPECIFIED" number: 0}}
}
message_type: {
  name: "Resp"
  field: {name: "echo" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: "Req"}
}
enum_type: {name: "Level" value: {name: "LEVEL_UNSPECIFIED" number: 0}}
service: {
  name: "Demo"
  method: {name: "Unary" input_type: ".demo.v1.Req" output_type: ".demo.v1.Resp"}
}
syntax: "proto3"
`

// protocDemo is the demo file as protoc describes it.
const protocDemo = `
name: "demo/v1/demo.proto"
package: "demo.v1"
dependency: "google/protobuf/timestamp.proto"
message_type: {
  name: "Req"
  field: {name: "labels" number: 5 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".demo.v1.Req.LabelsEntry" json_name: "labels"}
  field: {name: "at" number: 10 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".google.protobuf.Timestamp" json_name: "at"}
  nested_type: {
    name: "LabelsEntry"
    field: {name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING json_name: "key"}
    field: {name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_STRING json_name: "value"}
    options: {map_entry: true}
  }
}
service: {
  name: "Demo"
  method: {name: "Unary" input_type: ".demo.v1.Req" output_type: ".demo.v1.Req"}
}
syntax: "proto3"
`

// publicImport is a set where a.proto uses c.C, which it sees only through
// b.proto's public import of c.proto.
var publicImport = []string{`
name: "a.proto"
package: "a"
dependency: "b.proto"
message_type: {name: "A" field: {name: "c" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: "c.C"}}
syntax: "proto3"
`, `
name: "b.proto"
package: "b"
dependency: "c.proto"
public_dependency: 0
syntax: "proto3"
`, `
name: "c.proto"
package: "c"
message_type: {name: "C"}
syntax: "proto3"
`}

func TestRepairFilesBuildsWhatGrpcReflectionSends(t *testing.T) {
	keepCase := strings.NewReplacer(`"seenMetadata"`, `"seen_metadata"`, `"SeenMetadata"`, `"Seen_metadata"`)
	// From a FileDescriptorSet, proto-loader keeps the names of fields and
	// entries, but @grpc/reflection still merges each package into the
	// last file of it.
	fromSet := strings.NewReplacer(`"demo_v1.proto"`, `"demo/v1/demo.proto"`, `"google_protobuf.proto"`, `"google/protobuf/struct.proto"`,
		`"Labels"`, `"LabelsEntry"`, `"Children"`, `"ChildrenEntry"`, `"SeenMetadata"`, `"SeenMetadataEntry"`, `"Fields"`, `"FieldsEntry"`,
		`"seenMetadata"`, `"seen_metadata"`, `"delayMs"`, `"delay_ms"`, `"nullValue"`, `"null_value"`, `"stringValue"`, `"string_value"`,
		`"structValue"`, `"struct_value"`, `"listValue"`, `"list_value"`)
	tests := []struct {
		name  string
		files []string
		// broken matches what protodesc says of the files as they come
		// (of the first defect it finds, in no set order).
		broken string
		// maps are map fields, with the kind or message of their values.
		maps map[protoreflect.FullName]string
		// messages are message fields, with the message they resolve to.
		messages map[protoreflect.FullName]protoreflect.FullName
		// mark marks each message that declares a map as a map entry, as
		// protobufjs does when it reads a descriptor set.
		mark bool
	}{{
		name:   "maps and well-known types",
		files:  []string{grpcJSDemo, grpcJSProtobuf},
		broken: `incorrect implicit map entry name|cannot resolve type: .*google\.protobuf\.(Timestamp|Struct)`,
		maps: map[protoreflect.FullName]string{
			"demo.v1.Req.labels":            "string",
			"demo.v1.Req.Inner.children":    "demo.v1.Req.Inner",
			"demo.v1.Resp.seenMetadata":     "string",
			"google.protobuf.Struct.fields": "google.protobuf.Value",
		},
		messages: map[protoreflect.FullName]protoreflect.FullName{
			"demo.v1.Req.at":   "google.protobuf.Timestamp",
			"demo.v1.Req.data": "google.protobuf.Struct",
			"demo.v1.Resp.at":  "google.protobuf.Timestamp",
		},
	}, {
		name:   "field names kept as written, entries named Seen_metadata",
		files:  []string{keepCase.Replace(withoutLines(grpcJSDemo, "google.protobuf."))},
		broken: "incorrect implicit map entry name",
		maps:   map[protoreflect.FullName]string{"demo.v1.Resp.seen_metadata": "string"},
	}, {
		name:   "loaded from a descriptor set: entries named right, their parents marked as entries",
		files:  []string{fromSet.Replace(grpcJSDemo), fromSet.Replace(grpcJSProtobuf)},
		mark:   true,
		broken: `cannot resolve type: .*google\.protobuf\.(Timestamp|Struct)|invalid map`,
		maps: map[protoreflect.FullName]string{
			"demo.v1.Req.labels":            "string",
			"demo.v1.Req.Inner.children":    "demo.v1.Req.Inner",
			"google.protobuf.Struct.fields": "google.protobuf.Value",
		},
		messages: map[protoreflect.FullName]protoreflect.FullName{
			"demo.v1.Req.at":                     "google.protobuf.Timestamp",
			"demo.v1.Req.inner":                  "demo.v1.Req.Inner",
			"demo.v1.Resp.echo":                  "demo.v1.Req",
			"google.protobuf.Value.struct_value": "google.protobuf.Struct",
		},
	}, {
		name:   "maps without imports (proto-flat)",
		files:  []string{withoutLines(grpcJSDemo, "google.protobuf.")},
		broken: "incorrect implicit map entry name",
		maps:   map[protoreflect.FullName]string{"demo.v1.Req.labels": "string", "demo.v1.Req.Inner.children": "demo.v1.Req.Inner"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := parseFiles(t, tt.files...)
			if tt.mark {
				for _, fd := range in {
					markParents(fd.GetMessageType())
				}
			}
			before := marshalFiles(t, in)
			if _, err := protodesc.NewFiles(&descriptorpb.FileDescriptorSet{File: in}); err == nil || !regexp.MustCompile(tt.broken).MatchString(err.Error()) {
				t.Fatalf("before repair: protodesc says %v; want an error matching %s", err, tt.broken)
			}
			out := repairFiles(in)
			if got := marshalFiles(t, in); !slices.EqualFunc(got, before, bytes.Equal) {
				t.Errorf("repairFiles changed its input")
			}
			files, err := protodesc.NewFiles(&descriptorpb.FileDescriptorSet{File: out})
			if err != nil {
				t.Fatalf("after repair: %v", err)
			}
			for name, value := range tt.maps {
				f := findField(t, files, name)
				if !f.IsMap() || f.MapKey().Kind() != protoreflect.StringKind {
					t.Errorf("%s: got %v; want a map with string keys", name, f)
					continue
				}
				got := f.MapValue().Kind().String()
				if m := f.MapValue().Message(); m != nil {
					got = string(m.FullName())
				}
				if got != value {
					t.Errorf("%s: got values %s; want %s", name, got, value)
				}
			}
			for name, msg := range tt.messages {
				if got := findField(t, files, name).Message(); got == nil || got.FullName() != msg || got.IsMapEntry() {
					t.Errorf("%s: got message %v; want %s", name, got, msg)
				}
			}
			d, err := files.FindDescriptorByName("demo.v1.Demo")
			if err != nil {
				t.Fatal(err)
			}
			methods := d.(protoreflect.ServiceDescriptor).Methods()
			for i := range methods.Len() {
				m := methods.Get(i)
				if m.Input().IsMapEntry() || m.Output().IsMapEntry() {
					t.Errorf("%s: got a map entry as input or output", m.FullName())
				}
			}
		})
	}
}

func TestRepairFilesLeavesASetThatBuilds(t *testing.T) {
	// The files linked in are protoc's, but for some of etcd's, whose
	// imports are registered under other paths.
	var linked []*descriptorpb.FileDescriptorProto
	protoregistry.GlobalFiles.RangeFiles(func(f protoreflect.FileDescriptor) bool {
		if complete(f) {
			linked = append(linked, protodesc.ToFileDescriptorProto(f))
		}
		return true
	})
	tests := []struct {
		name  string
		files []*descriptorpb.FileDescriptorProto
	}{
		{"grpc-js: neither maps nor imports", parseFiles(t, grpcJSMin)},
		{"protoc: maps and an import", append(parseFiles(t, protocDemo), protodesc.ToFileDescriptorProto(timestamppb.File_google_protobuf_timestamp_proto))},
		{"a type seen through a public import", parseFiles(t, publicImport...)},
		{"the files this test links", linked},
		{"a repaired set", repairFiles(parseFiles(t, grpcJSDemo, grpcJSProtobuf))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := protodesc.NewFiles(&descriptorpb.FileDescriptorSet{File: tt.files}); err != nil {
				t.Fatalf("the set does not build: %v", err)
			}
			out := repairFiles(tt.files)
			want, got := marshalFiles(t, tt.files), marshalFiles(t, out)
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Errorf("file %s: got\n%v\nwant it unchanged", tt.files[i].GetName(), prototext.Format(out[i]))
				}
			}
		})
	}
}

func parseFiles(t *testing.T, texts ...string) []*descriptorpb.FileDescriptorProto {
	t.Helper()
	var fds []*descriptorpb.FileDescriptorProto
	for _, text := range texts {
		fd := new(descriptorpb.FileDescriptorProto)
		if err := prototext.Unmarshal([]byte(text), fd); err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
	}
	return fds
}

func marshalFiles(t *testing.T, fds []*descriptorpb.FileDescriptorProto) [][]byte {
	t.Helper()
	var out [][]byte
	for _, fd := range fds {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(fd)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// markParents marks each of mds, and of the messages nested in them,
// that declares a map entry as a map entry itself.
func markParents(mds []*descriptorpb.DescriptorProto) {
	for _, md := range mds {
		markParents(md.GetNestedType())
		if slices.ContainsFunc(md.GetNestedType(), func(n *descriptorpb.DescriptorProto) bool { return n.GetOptions().GetMapEntry() }) {
			md.Options = &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)}
		}
	}
}

// complete reports whether each import of f, and of its imports, is
// registered.
func complete(f protoreflect.FileDescriptor) bool {
	for i := range f.Imports().Len() {
		if imp := f.Imports().Get(i); imp.IsPlaceholder() || !complete(imp) {
			return false
		}
	}
	return true
}

// withoutLines returns text without its lines that contain substr.
func withoutLines(text, substr string) string {
	lines := strings.Split(text, "\n")
	return strings.Join(slices.DeleteFunc(lines, func(l string) bool { return strings.Contains(l, substr) }), "\n")
}

func findField(t *testing.T, files *protoregistry.Files, name protoreflect.FullName) protoreflect.FieldDescriptor {
	t.Helper()
	d, err := files.FindDescriptorByName(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	f, ok := d.(protoreflect.FieldDescriptor)
	if !ok {
		t.Fatalf("%s: got %v; want a field", name, d)
	}
	return f
}

// wideFile is one message with n map entries, each used by a field of its
// own (named as @grpc/reflection names them), and deepFile one that nests
// messages depth deep: what a backend may send to make repairing cost.
func wideFile(n int) *descriptorpb.FileDescriptorProto {
	md := &descriptorpb.DescriptorProto{Name: proto.String("M")}
	for i := range n {
		name := fmt.Sprintf("f%d", i)
		md.NestedType = append(md.NestedType, &descriptorpb.DescriptorProto{Name: proto.String("F" + name[1:]),
			Field: []*descriptorpb.FieldDescriptorProto{
				{Name: proto.String("key"), Number: proto.Int32(1), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()},
				{Name: proto.String("value"), Number: proto.Int32(2), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()}},
			Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)}})
		md.Field = append(md.Field, &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(int32(i + 1)),
			Label: descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum(),
			TypeName: proto.String("F" + name[1:])})
	}
	return &descriptorpb.FileDescriptorProto{Name: proto.String("w.proto"), Package: proto.String("p"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{md}}
}

func deepFile(depth int) *descriptorpb.FileDescriptorProto {
	md := &descriptorpb.DescriptorProto{Name: proto.String("a"), Field: []*descriptorpb.FieldDescriptorProto{{Name: proto.String("f"),
		Number: proto.Int32(1), Type: descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum(), TypeName: proto.String("b")}}}
	for range depth - 1 {
		md = &descriptorpb.DescriptorProto{Name: proto.String("a"), NestedType: []*descriptorpb.DescriptorProto{md}}
	}
	return &descriptorpb.FileDescriptorProto{Name: proto.String("d.proto"), Package: proto.String("p"), MessageType: []*descriptorpb.DescriptorProto{md}}
}

// TestRepairFilesOfManyEntriesOrDeepNesting: a set with thousands of map
// entries named as @grpc/reflection names them is repaired; one nested
// deeper than any protoc accepts is left as it came (its build fails).
func TestRepairFilesOfManyEntriesOrDeepNesting(t *testing.T) {
	wide := []*descriptorpb.FileDescriptorProto{wideFile(2000)}
	files, err := protodesc.NewFiles(&descriptorpb.FileDescriptorSet{File: repairFiles(wide)})
	if err != nil {
		t.Fatalf("2,000 map entries, repaired: %v", err)
	}
	d, err := files.FindDescriptorByName("p.M")
	if err != nil {
		t.Fatal(err)
	}
	if f := d.(protoreflect.MessageDescriptor).Fields().ByName("f1999"); f == nil || !f.IsMap() {
		t.Errorf("p.M.f1999 after repair: %v; want a map", f)
	}
	deep := []*descriptorpb.FileDescriptorProto{deepFile(2000)}
	if got := repairFiles(deep); &got[0] != &deep[0] {
		t.Errorf("a set nested 2,000 deep was copied for repair; want it as it came")
	}
}

// BenchmarkRepairFiles: what repairing costs on what a backend may send.
func BenchmarkRepairFiles(b *testing.B) {
	for _, n := range []int{100, 4000} {
		fds := []*descriptorpb.FileDescriptorProto{wideFile(n)}
		b.Run(fmt.Sprintf("map-entries=%d", n), func(b *testing.B) {
			for b.Loop() {
				repairFiles(fds)
			}
		})
	}
}

// TestAMessageMarkedAsAMapEntryThatOnlyMethodsUse: a message protobufjs
// marked as a map entry builds when only methods use it, yet tools skip
// it as an entry: the proxy repairs such a set too.
func TestAMessageMarkedAsAMapEntryThatOnlyMethodsUse(t *testing.T) {
	fds := parseFiles(t, `
name: "m.proto"
package: "m"
message_type: {name: "Req" field: {name: "labels" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".m.Req.LabelsEntry"}
  nested_type: {name: "LabelsEntry" field: {name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING}
    field: {name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_STRING} options: {map_entry: true}}
  options: {map_entry: true}}
service: {name: "S" method: {name: "Do" input_type: ".m.Req" output_type: ".m.Req"}}
syntax: "proto3"
`)
	if !markedWrongly(fds) {
		t.Fatal("markedWrongly: false; want true, Req is marked as an entry")
	}
	files, err := protodesc.NewFiles(&descriptorpb.FileDescriptorSet{File: repairFiles(fds)})
	if err != nil {
		t.Fatal(err)
	}
	d, err := files.FindDescriptorByName("m.Req")
	if err != nil {
		t.Fatal(err)
	}
	if md := d.(protoreflect.MessageDescriptor); md.IsMapEntry() || !md.Fields().ByName("labels").IsMap() {
		t.Errorf("m.Req after repair: map entry %v, labels a map %v; want a message with a map", md.IsMapEntry(), md.Fields().ByName("labels").IsMap())
	}
}
