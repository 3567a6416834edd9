package protojs

import (
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dop251/goja"
	"google.golang.org/protobuf/proto"

	testingv1 "github.com/apihooks/apihooks/gen/apihooks/testing/v1"
)

// jsonOf renders v with encoding/json, map keys sorted.
func jsonOf(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestGateClosedViewLeavesTheMessageAlone checks that a view whose gate is
// closed no longer reads or changes its message, for a message view, list
// views and map views alike, and that the same view works while the gate
// is open.
func TestGateClosedViewLeavesTheMessageAlone(t *testing.T) {
	tests := []struct {
		name string
		// target is the view under test, as a JS expression of m, taken
		// while the gate is open.
		target string
		// read is a JS expression of t, the target; wantRead is
		// JSON.stringify of it while the gate is open.
		read, wantRead string
		// change assigns, deletes and assigns an object (kept until Err)
		// through t.
		change string
		// part renders the part of the message the case is about; before
		// and open are what it gives before any change and after change
		// and Err with the gate open.
		part         func(*testingv1.AllTypes) string
		before, open string
	}{
		{name: "message",
			target: `m`, read: `t.fString`, wantRead: `"str"`,
			change: `t.fString = "new"; delete t.fInt32; t.fNested = {name: "adopted"}`,
			part: func(m *testingv1.AllTypes) string {
				return fmt.Sprint(m.FString, " ", m.FInt32, " ", m.FNested.GetName(), " ", m.FNested.GetCount())
			},
			before: "str -42 fn 5", open: "new 0 adopted 0"},
		{name: "nested message",
			target: `m.fNested`, read: `t.tags`, wantRead: `["a","b"]`,
			change: `t.name = "new"; delete t.count; t.tags = ["x"]`,
			part: func(m *testingv1.AllTypes) string {
				return fmt.Sprint(m.FNested.GetName(), " ", m.FNested.GetCount(), " ", m.FNested.GetTags())
			},
			before: "fn 5 [a b]", open: "new 0 [x]"},
		{name: "repeated scalar field",
			target: `m.rString`, read: `t[1]`, wantRead: `"y"`,
			change: `t[0] = "new"; t.pop(); t.push("w"); t.length = 4; t[3] = "v"`,
			part:   func(m *testingv1.AllTypes) string { return fmt.Sprint(m.RString) },
			before: "[x y z]", open: "[new y w v]"},
		{name: "repeated message field",
			target: `m.rNested`, read: `t[1]`, wantRead: `{"name":"r1","count":"1","tags":["t"]}`,
			change: `t[0] = {name: "adopted"}; t.splice(1, 1); t.push({name: "pushed"})`,
			part: func(m *testingv1.AllTypes) string {
				var names []string
				for _, n := range m.RNested {
					names = append(names, n.GetName())
				}
				return fmt.Sprint(names)
			},
			before: "[r0 r1 r2]", open: "[adopted r2 pushed]"},
		{name: "map field",
			target: `m.mString`, read: `t.a`, wantRead: `"1"`,
			change: `t.a = "new"; delete t.b; t.c = "3"`,
			part:   func(m *testingv1.AllTypes) string { return jsonOf(t, m.MString) },
			before: `{"a":"1","b":"2"}`, open: `{"a":"new","c":"3"}`},
		{name: "map of messages",
			target: `m.mNested`, read: `t[2]`, wantRead: `{"name":"m2","count":"2","tags":["mt"]}`,
			change: `t[1] = {name: "adopted"}; delete t[2]; t[3] = {name: "added"}`,
			part: func(m *testingv1.AllTypes) string {
				names := map[int32]string{}
				for k, n := range m.MNested {
					names[k] = n.GetName()
				}
				return jsonOf(t, names)
			},
			before: `{"1":"m1","2":"m2"}`, open: `{"1":"adopted","3":"added"}`},
		{name: "Struct",
			target: `m.wStruct`, read: `t.nested`, wantRead: `{"deep":false,"x":[{"y":1}]}`,
			change: `t.s = "new"; delete t.a; t.o = {deep: [1, "two"]}`,
			part:   func(m *testingv1.AllTypes) string { return jsonOf(t, m.WStruct.AsMap()) },
			before: `{"a":1,"list":[1,"two"],"n":null,"nested":{"deep":false,"x":[{"y":1}]},"s":"str"}`,
			open:   `{"list":[1,"two"],"n":null,"nested":{"deep":false,"x":[{"y":1}]},"o":{"deep":[1,"two"]},"s":"new"}`},
	}
	for _, tt := range tests {
		for _, closed := range []bool{false, true} {
			name := tt.name + "/open"
			if closed {
				name = tt.name + "/closed"
			}
			t.Run(name, func(t *testing.T) {
				vm := goja.New()
				msg := viewBase(t)
				if got := tt.part(msg); got != tt.before {
					t.Fatalf("before the script: %s; want %s", got, tt.before)
				}
				var g Gate
				obj, v := NewView(vm, msg.ProtoReflect(), WithGate(&g))
				target := runOn(t, vm, `return `+tt.target, obj)
				snapshot := proto.Clone(msg)
				if closed {
					g.Close()
				}
				read := runOn(t, vm, `const t = m; return String(JSON.stringify(`+tt.read+`))`, target).String()
				keys := runOn(t, vm, `return Object.keys(m).length`, target).ToInteger()
				runOn(t, vm, `const t = m; `+tt.change, target)
				err := v.Err()
				if !closed {
					if read != tt.wantRead {
						t.Errorf("%s = %s; want %s", tt.read, read, tt.wantRead)
					}
					if keys == 0 {
						t.Errorf("Object.keys(%s) is empty; want the view's keys", tt.target)
					}
					if err != nil {
						t.Fatalf("Err() = %v; want nil", err)
					}
					if got := tt.part(msg); got != tt.open {
						t.Errorf("after %s: %s; want %s", tt.change, got, tt.open)
					}
					return
				}
				if read != "undefined" {
					t.Errorf("after Close, %s = %s; want undefined", tt.read, read)
				}
				if keys != 0 {
					t.Errorf("after Close, Object.keys(%s) has %d keys; want none", tt.target, keys)
				}
				if err == nil {
					t.Error("after Close, Err() = nil; want an error")
				}
				if got := tt.part(msg); got != tt.before {
					t.Errorf("after Close and %s: %s; want it unchanged, %s", tt.change, got, tt.before)
				}
				if !proto.Equal(msg, snapshot) {
					t.Errorf("after Close the script changed the message:\n got %v\nwant %v", msg, snapshot)
				}
			})
		}
	}
}

// TestGateCloseStopsAConversionUnderWay closes the gate while Err converts
// an array the script assigned, inside the getter of its first element:
// Close does not wait for the getter, the conversion stops before the next
// element, and once Close has returned the message is the caller's again.
func TestGateCloseStopsAConversionUnderWay(t *testing.T) {
	const n = 1000
	vm := goja.New()
	msg := viewBase(t)
	var g Gate
	obj, v := NewView(vm, msg.ProtoReflect(), WithGate(&g))

	started := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	vm.Set("pause", func() {
		once.Do(func() { close(started) })
		<-release
	})
	// Every element is a getter that counts its reads; the first one
	// pauses.
	runOn(t, vm, `
		const a = [];
		for (let i = 0; i < `+fmt.Sprint(n)+`; i++) {
			Object.defineProperty(a, i, {enumerable: true, get() {
				globalThis.reads = (globalThis.reads || 0) + 1;
				if (i === 0) pause();
				return "e" + i;
			}});
		}
		m.rString = a;
		m.wStruct.big = a;`, obj)
	if got := len(msg.RString); got != 3 {
		t.Fatalf("before Err, rString has %d elements; want the 3 it had (an array is stored by Err)", got)
	}

	errDone := make(chan error, 1)
	go func() { errDone <- v.Err() }()
	<-started

	// The getter holds no gate: Close returns at once.
	closeDone := make(chan struct{})
	go func() {
		g.Close()
		close(closeDone)
	}()
	select {
	case <-closeDone:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a getter a conversion runs")
	}
	select {
	case err := <-errDone:
		t.Fatalf("Err returned (%v) while its conversion was blocked in a getter", err)
	default:
	}

	close(release)
	if err := <-errDone; err == nil {
		t.Error("Err() = nil after the gate stopped its conversion")
	}

	// The message is the test's alone now: the race detector reports any
	// access the script's goroutine would still make.
	if got := len(msg.RString); got == n {
		t.Errorf("rString has all %d elements; want the conversion stopped", n)
	}
	if got := msg.WStruct.GetFields()["big"].GetListValue(); len(got.GetValues()) == n {
		t.Errorf("wStruct.big has all %d elements; want the conversion stopped before it", n)
	}
	if _, err := proto.Marshal(msg); err != nil {
		t.Fatal(err)
	}
	if reads := vm.Get("reads").ToInteger(); reads != 1 {
		t.Errorf("the getters ran %d times; want once, the conversion stopping at the next element", reads)
	}
	msg.RString = append(msg.RString, "mine")
	if !slices.Contains(msg.RString, "mine") {
		t.Fatal("the test's own change is lost")
	}

	// The script can no longer reach the message.
	if got := runOn(t, vm, `m.fString = "late"; return String(m.rString)`, obj).String(); got != "undefined" {
		t.Errorf("after Close, m.rString = %s; want undefined", got)
	}
	if msg.FString != "str" {
		t.Errorf("after Close, fString = %q; want it unchanged", msg.FString)
	}
}

// TestGateEnterExit checks that Enter and Exit nest, that Close waits for
// the outermost Exit, and that a closed gate refuses Enter.
func TestGateEnterExit(t *testing.T) {
	var g Gate
	if g.Closed() {
		t.Fatal("the zero Gate is closed; want it open")
	}
	if !g.Enter() {
		t.Fatal("Enter on an open gate = false")
	}
	if !g.Enter() {
		t.Fatal("nested Enter on an open gate = false")
	}
	g.Exit()

	closeDone := make(chan struct{})
	go func() {
		g.Close()
		close(closeDone)
	}()
	for !g.Closed() {
		runtime.Gosched()
	}
	if g.Enter() {
		t.Fatal("Enter on a closing gate = true")
	}
	select {
	case <-closeDone:
		t.Fatal("Close returned while the outer Enter had no Exit yet")
	default:
	}
	g.Exit()
	<-closeDone

	if g.Enter() {
		t.Fatal("Enter on a closed gate = true")
	}
	if !g.Closed() {
		t.Fatal("Closed() = false after Close")
	}
	// Closing again, and closing an idle gate, return at once.
	g.Close()
	var idle Gate
	idle.Close()
	if idle.Enter() {
		t.Fatal("Enter on a closed idle gate = true")
	}
	var nilGate *Gate
	if nilGate.Closed() {
		t.Fatal("a nil *Gate reports Closed")
	}
}

// TestGateLetsGoWhileScriptCodeRuns checks that a view operation does not
// hold the gate while it runs script code (a getter of a value it
// converts, which uses the view again): Close returns at once, however
// long that code takes, and the operation stops when the code returns,
// storing nothing.
func TestGateLetsGoWhileScriptCodeRuns(t *testing.T) {
	vm := goja.New()
	msg := viewBase(t)
	var g Gate
	obj, v := NewView(vm, msg.ProtoReflect(), WithGate(&g))
	var closedInside bool
	vm.Set("closeGate", func() {
		done := make(chan struct{})
		go func() {
			g.Close()
			close(done)
		}()
		select {
		case <-done:
			closedInside = true
		case <-time.After(10 * time.Second):
		}
	})
	// The getter runs inside Err's conversion; it reads the view (an
	// operation nested in Err's), then the gate closes while it runs.
	runOn(t, vm, `
		m.fNested = {get name() { const s = m.fString; closeGate(); return s + "!" }, count: 7};`, obj)
	if err := v.Err(); err == nil {
		t.Error("Err() = nil, though the gate closed during its conversion")
	}
	if !closedInside {
		t.Error("Close did not return while the getter ran")
	}
	if msg.FNested.GetCount() == 7 || msg.FNested.GetName() == "str!" {
		t.Errorf("fNested = %v; want the conversion stopped", msg.FNested)
	}
	if !g.Closed() || g.Enter() {
		t.Fatal("the gate is open after Close")
	}
	if got := runOn(t, vm, `return String(m.fNested)`, obj).String(); got != "undefined" {
		t.Errorf("after Close, m.fNested = %s; want undefined", got)
	}
}

// TestGateErrReportsAStoppedConversion checks that an Err the gate stopped
// midway does not report success: the values it was storing were not
// stored.
func TestGateErrReportsAStoppedConversion(t *testing.T) {
	vm := goja.New()
	msg := viewBase(t)
	var g Gate
	obj, v := NewView(vm, msg.ProtoReflect(), WithGate(&g))
	closeDone := make(chan struct{})
	vm.Set("closeGate", func() {
		go func() {
			g.Close()
			close(closeDone)
		}()
		for !g.Closed() {
			runtime.Gosched()
		}
	})
	runOn(t, vm, `
		const a = ["", "b", "c"];
		Object.defineProperty(a, 0, {enumerable: true, get() { closeGate(); return "a" }});
		m.rString = a;`, obj)
	err := v.Err()
	<-closeDone
	if slices.Equal(msg.RString, []string{"a", "b", "c"}) {
		t.Fatalf("rString = %q; want the conversion stopped", msg.RString)
	}
	if err == nil {
		t.Errorf("Err() = nil, though the gate closed during its conversion and rString was not stored (it is %q); want an error", msg.RString)
	}
}
