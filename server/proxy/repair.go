package proxy

import (
	"slices"
	"strings"
	"unicode"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// repairFiles returns clones of fds with the defects of the descriptors
// that Node's @grpc/reflection serves repaired, so that protodesc builds
// them. It never changes fds, and repairs only what cannot build: the
// clones of a set that builds are the same, byte for byte.
//
// @grpc/reflection (1.0.x) rebuilds its descriptors from
// @grpc/proto-loader's, which lose what protodesc checks:
//   - each package becomes one file ("demo_v1.proto",
//     "google_protobuf.proto") that lists no imports, so a type of another
//     file does not resolve: each file is given, as imports, the files of
//     the set that define the types it uses and does not yet see;
//   - a map field's entry message is named like the field ("Labels", even
//     "Seen_metadata") instead of its implicit name ("LabelsEntry"): it is
//     renamed, and the field made to point to it;
//   - when proto-loader read a descriptor set, a message that declares a
//     map is marked as a map entry itself (protobufjs copies the entry's
//     option to its parent): the mark is removed from a message that a
//     field or method uses and that is not shaped as an entry, which
//     protoc never marks.
//
// Field names proto-loader changed (camelCase unless keepCase) stay as
// they are sent: they build, and the wire knows only numbers.
func repairFiles(fds []*descriptorpb.FileDescriptorProto) []*descriptorpb.FileDescriptorProto {
	if tooDeep(fds) {
		return fds // protoc refuses such nesting: nothing to repair
	}
	out := make([]*descriptorpb.FileDescriptorProto, len(fds))
	for i, fd := range fds {
		out[i] = proto.Clone(fd).(*descriptorpb.FileDescriptorProto)
	}
	types := typesOf(out)
	unmarkMapEntries(out, types)
	for _, fd := range out {
		for _, md := range fd.GetMessageType() {
			renameMapEntries(types, protoreflect.FullName(fd.GetPackage()), md)
		}
	}
	addImports(out, typesOf(out))
	return out
}

// maxNesting is the deepest nesting of messages repairFiles repairs; the
// cost of resolving names grows with it, and a backend decides it.
const maxNesting = 64

// tooDeep reports whether a message of fds nests messages deeper than
// maxNesting.
func tooDeep(fds []*descriptorpb.FileDescriptorProto) bool {
	var deep func(mds []*descriptorpb.DescriptorProto, depth int) bool
	deep = func(mds []*descriptorpb.DescriptorProto, depth int) bool {
		if len(mds) > 0 && depth > maxNesting {
			return true
		}
		for _, md := range mds {
			if deep(md.GetNestedType(), depth+1) {
				return true
			}
		}
		return false
	}
	for _, fd := range fds {
		if deep(fd.GetMessageType(), 1) {
			return true
		}
	}
	return false
}

// typeDef is where a message or enum of a set of files is defined.
type typeDef struct {
	file string
	msg  *descriptorpb.DescriptorProto // nil for an enum
}

// typesOf returns the messages and enums that fds define, by full name.
func typesOf(fds []*descriptorpb.FileDescriptorProto) map[protoreflect.FullName]typeDef {
	types := map[protoreflect.FullName]typeDef{}
	var addMessage func(scope protoreflect.FullName, md *descriptorpb.DescriptorProto, file string)
	addMessage = func(scope protoreflect.FullName, md *descriptorpb.DescriptorProto, file string) {
		full := scope.Append(protoreflect.Name(md.GetName()))
		types[full] = typeDef{file, md}
		for _, e := range md.GetEnumType() {
			types[full.Append(protoreflect.Name(e.GetName()))] = typeDef{file: file}
		}
		for _, nested := range md.GetNestedType() {
			addMessage(full, nested, file)
		}
	}
	for _, fd := range fds {
		pkg := protoreflect.FullName(fd.GetPackage())
		for _, e := range fd.GetEnumType() {
			types[pkg.Append(protoreflect.Name(e.GetName()))] = typeDef{file: fd.GetName()}
		}
		for _, md := range fd.GetMessageType() {
			addMessage(pkg, md, fd.GetName())
		}
	}
	return types
}

// typeRefs calls use for each type name that fd's fields, extensions and
// methods give, with the scope protodesc resolves it in.
func typeRefs(fd *descriptorpb.FileDescriptorProto, use func(scope protoreflect.FullName, ref string)) {
	fields := func(scope protoreflect.FullName, fields []*descriptorpb.FieldDescriptorProto) {
		for _, f := range fields {
			use(scope, f.GetTypeName())
			use(scope, f.GetExtendee())
		}
	}
	var message func(scope protoreflect.FullName, md *descriptorpb.DescriptorProto)
	message = func(scope protoreflect.FullName, md *descriptorpb.DescriptorProto) {
		full := scope.Append(protoreflect.Name(md.GetName()))
		fields(full, md.GetField())
		fields(full, md.GetExtension())
		for _, nested := range md.GetNestedType() {
			message(full, nested)
		}
	}
	pkg := protoreflect.FullName(fd.GetPackage())
	for _, md := range fd.GetMessageType() {
		message(pkg, md)
	}
	fields(pkg, fd.GetExtension())
	for _, sd := range fd.GetService() {
		full := pkg.Append(protoreflect.Name(sd.GetName()))
		for _, m := range sd.GetMethod() {
			use(full, m.GetInputType())
			use(full, m.GetOutputType())
		}
	}
}

// candidates calls yield with the full names that ref, used in scope, can
// name, in the order protodesc tries them (scope.ref, then ref in each
// enclosing scope), until yield returns false.
func candidates(scope protoreflect.FullName, ref string, yield func(protoreflect.FullName) bool) {
	if ref == "" {
		return
	}
	if strings.HasPrefix(ref, ".") {
		yield(protoreflect.FullName(ref[1:]))
		return
	}
	for ; scope != ""; scope = scope.Parent() {
		if !yield(scope + "." + protoreflect.FullName(ref)) {
			return
		}
	}
	yield(protoreflect.FullName(ref))
}

// resolve returns what ref, used in scope, names among types, as protodesc
// would resolve it; "" when none.
func resolve(types map[protoreflect.FullName]typeDef, scope protoreflect.FullName, ref string) protoreflect.FullName {
	var found protoreflect.FullName
	candidates(scope, ref, func(name protoreflect.FullName) bool {
		if _, ok := types[name]; ok {
			found = name
			return false
		}
		return true
	})
	return found
}

// unmarkMapEntries removes the map entry mark from each message of fds
// that a field or method uses and that does not have just a key field 1
// and a value field 2.
func unmarkMapEntries(fds []*descriptorpb.FileDescriptorProto, types map[protoreflect.FullName]typeDef) {
	for _, fd := range fds {
		typeRefs(fd, func(scope protoreflect.FullName, ref string) {
			name := resolve(types, scope, ref)
			if name == "" {
				return
			}
			if md := types[name].msg; md.GetOptions().GetMapEntry() && !entryShaped(md) {
				md.Options.MapEntry = nil
				if proto.Size(md.Options) == 0 {
					md.Options = nil
				}
			}
		})
	}
}

// markedWrongly reports whether a message of fds is marked as a map entry
// without the shape of one: such a set may build (when only methods use
// the message), yet the mark makes tools skip the message.
func markedWrongly(fds []*descriptorpb.FileDescriptorProto) bool {
	var wrong func(mds []*descriptorpb.DescriptorProto) bool
	wrong = func(mds []*descriptorpb.DescriptorProto) bool {
		for _, md := range mds {
			if md.GetOptions().GetMapEntry() && !entryShaped(md) || wrong(md.GetNestedType()) {
				return true
			}
		}
		return false
	}
	for _, fd := range fds {
		if wrong(fd.GetMessageType()) {
			return true
		}
	}
	return false
}

// entryShaped reports whether md has the fields of a map entry.
func entryShaped(md *descriptorpb.DescriptorProto) bool {
	f := md.GetField()
	return len(f) == 2 && f[0].GetName() == "key" && f[0].GetNumber() == 1 && f[1].GetName() == "value" && f[1].GetNumber() == 2
}

// renameMapEntries gives each map entry message nested in md, whose full
// name is scope.Name, and in its own nested messages, the name its field
// implies, when exactly one field of md uses it and that name is free.
func renameMapEntries(types map[protoreflect.FullName]typeDef, scope protoreflect.FullName, md *descriptorpb.DescriptorProto) {
	full := scope.Append(protoreflect.Name(md.GetName()))
	// The repeated message fields of md, by the type they name, and the
	// names md declares.
	var (
		uses     map[protoreflect.FullName][]*descriptorpb.FieldDescriptorProto
		declared map[string]bool
	)
	for _, entry := range md.GetNestedType() {
		if !entry.GetOptions().GetMapEntry() {
			continue
		}
		if uses == nil {
			uses = map[protoreflect.FullName][]*descriptorpb.FieldDescriptorProto{}
			for _, f := range md.GetField() {
				if f.GetLabel() == descriptorpb.FieldDescriptorProto_LABEL_REPEATED && f.GetType() == descriptorpb.FieldDescriptorProto_TYPE_MESSAGE {
					if name := resolve(types, full, f.GetTypeName()); name != "" {
						uses[name] = append(uses[name], f)
					}
				}
			}
			declared = declaredNames(md)
		}
		fields := uses[full.Append(protoreflect.Name(entry.GetName()))]
		if len(fields) != 1 {
			continue
		}
		want := mapEntryName(fields[0].GetName())
		if entry.GetName() == want || declared[want] {
			continue
		}
		declared[want] = true
		entry.Name = proto.String(want)
		fields[0].TypeName = proto.String("." + string(full.Append(protoreflect.Name(want))))
	}
	for _, nested := range md.GetNestedType() {
		renameMapEntries(types, full, nested)
	}
}

// declaredNames returns the names md declares: its nested messages and
// enums, and its fields.
func declaredNames(md *descriptorpb.DescriptorProto) map[string]bool {
	names := map[string]bool{}
	for _, n := range md.GetNestedType() {
		names[n.GetName()] = true
	}
	for _, e := range md.GetEnumType() {
		names[e.GetName()] = true
	}
	for _, f := range md.GetField() {
		names[f.GetName()] = true
	}
	return names
}

// mapEntryName is the name of the entry message that protoc implies for
// the map field called field: "seen_metadata" or "seenMetadata" gives
// "SeenMetadataEntry". It is protodesc's rule.
func mapEntryName(field string) string {
	var b strings.Builder
	upper := true
	for _, c := range field {
		switch {
		case c == '_':
			upper = true
		case upper:
			b.WriteRune(unicode.ToUpper(c))
			upper = false
		default:
			b.WriteRune(c)
		}
	}
	return b.String() + "Entry"
}

// addImports adds to each file of fds, as imports, the files of fds that
// define a type it uses, when it sees (defines, imports, or imports
// publicly through an import) no definition of that name. A name resolves
// as in protodesc: the first definition the file sees wins.
func addImports(fds []*descriptorpb.FileDescriptorProto, types map[protoreflect.FullName]typeDef) {
	byName := map[string]*descriptorpb.FileDescriptorProto{}
	for _, fd := range fds {
		byName[fd.GetName()] = fd
	}
	for _, fd := range fds {
		sees := map[string]bool{fd.GetName(): true}
		for _, dep := range fd.GetDependency() {
			sees[dep] = true
			seePublic(sees, byName, dep)
		}
		var missing []string
		added := map[string]bool{}
		typeRefs(fd, func(scope protoreflect.FullName, ref string) {
			first, seen := "", false
			candidates(scope, ref, func(name protoreflect.FullName) bool {
				t, ok := types[name]
				if ok && sees[t.file] {
					seen = true
					return false
				}
				if ok && first == "" {
					first = t.file
				}
				return true
			})
			if !seen && first != "" && !added[first] {
				added[first] = true
				missing = append(missing, first)
			}
		})
		slices.Sort(missing)
		fd.Dependency = append(fd.Dependency, missing...)
	}
}

// seePublic adds to sees the files that file imports publicly, and those
// they import publicly in turn.
func seePublic(sees map[string]bool, byName map[string]*descriptorpb.FileDescriptorProto, file string) {
	fd := byName[file]
	for _, i := range fd.GetPublicDependency() {
		if i < 0 || int(i) >= len(fd.GetDependency()) {
			continue
		}
		if dep := fd.GetDependency()[i]; !sees[dep] {
			sees[dep] = true
			seePublic(sees, byName, dep)
		}
	}
}
