package isolate

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	isolatev1 "github.com/apihooks/apihooks/gen/apihooks/isolate/v1"
	"github.com/apihooks/apihooks/interceptor/engine"
)

// worker is the daemon's side of one worker process. The run holding it
// writes to its standard input and reads its standard output itself, with
// no hop through another goroutine: it polls for the answer for a short
// while, then waits in the network poller (see answerReader). A run that
// must stop waiting kills the worker, which ends the read.
type worker struct {
	p        *Pool
	cmd      *exec.Cmd
	pid      int
	baseline int64
	stdin    *os.File
	stdout   *os.File
	stderr   io.ReadCloser
	in       frameWriter
	out      *bufio.Reader
	buf      []byte

	// killed is set once the pool killed the worker.
	killed atomic.Bool
	// oom is set when the worker's standard error reported that memory was
	// refused.
	oom atomic.Bool
	// exited is closed once the process is reaped; exitErr is its state.
	exited  chan struct{}
	exitErr error

	// mu guards method and hook, those of the run the worker is doing, or
	// did last when it died in it; empty while it is idle. What it writes
	// to its standard error is logged with them.
	mu           sync.Mutex
	method, hook string

	// sent are the descriptor files the worker has been sent, by name.
	sent map[string]protoreflect.FileDescriptor
}

func (p *Pool) command() (*exec.Cmd, error) {
	path := p.opts.path
	if path == "" {
		if !askedFirst.Load() {
			return nil, ErrNoWorkerEntry
		}
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find this program: %w", err)
		}
		path = exe
	}
	cmd := exec.Command(path, p.opts.args...)
	// One core per worker: one run at a time needs no more, and a worker
	// cannot take the daemon's other cores.
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	childAttr(cmd)
	return cmd, nil
}

// newWorker starts a worker process. Call it on the spawner's thread.
func (p *Pool) newWorker() (*worker, error) {
	cmd, err := p.command()
	if err != nil {
		return nil, err
	}
	w := &worker{p: p, cmd: cmd, exited: make(chan struct{}), sent: map[string]protoreflect.FileDescriptor{}}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	answers, err := newAnswerReader(outR, answerSpin)
	if err != nil {
		closeAll(inR, inW, outR, outW)
		return nil, err
	}
	cmd.Stdin, cmd.Stdout = inR, outW
	if w.stderr, err = cmd.StderrPipe(); err != nil {
		closeAll(inR, inW, outR, outW)
		return nil, err
	}
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		closeAll(inW, outR)
		return nil, err
	}
	w.pid = cmd.Process.Pid
	w.stdin, w.stdout = inW, outR
	w.in.w = inW
	w.out = bufio.NewReaderSize(answers, 64<<10)
	return w, nil
}

// answerSpin is how long a run polls for its worker's answer before it
// waits in the network poller.
const answerSpin = 25 * time.Microsecond

func closeAll(fs ...*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// abandon reaps a worker whose reaper never started.
func (w *worker) abandon() {
	closeAll(w.stdin, w.stdout)
	w.cmd.Wait()
}

// kill kills the process; its reaper then reaps it.
func (w *worker) kill() {
	w.killed.Store(true)
	w.cmd.Process.Kill()
}

// dead reports whether the worker was killed or has exited.
func (w *worker) dead() bool {
	if w.killed.Load() {
		return true
	}
	select {
	case <-w.exited:
		return true
	default:
		return false
	}
}

// setup sends the worker its settings and waits until it is ready.
func (w *worker) setup(ctx context.Context, memoryLimit int64) error {
	stop := context.AfterFunc(ctx, w.kill)
	defer stop()
	in := &isolatev1.Input{Kind: &isolatev1.Input_Setup{Setup: &isolatev1.Setup{MemoryLimit: memoryLimit}}}
	if err := w.in.write(in); err != nil {
		return w.startErr(ctx, err)
	}
	var out isolatev1.Output
	var err error
	if w.buf, err = readFrame(w.out, w.buf, &out); err != nil {
		return w.startErr(ctx, err)
	}
	r := out.GetReady()
	if r == nil {
		return fmt.Errorf("worker %d answered its setup with %T", w.pid, out.Kind)
	}
	w.baseline = r.BaselineBytes
	return nil
}

func (w *worker) startErr(ctx context.Context, err error) error {
	w.kill()
	if ctx.Err() != nil {
		return fmt.Errorf("worker %d: %w", w.pid, ctx.Err())
	}
	<-w.exited
	return fmt.Errorf("worker %d exited at start (%v): %v", w.pid, w.exitErr, err)
}

// run sends in to the worker and reads its answer. It kills the worker
// when the run times out, when ctx ends, or when the worker's answer is
// not what the protocol allows.
func (w *worker) run(ctx context.Context, s *engine.Script, in *isolatev1.Run, call *engine.Call, timeout time.Duration) (engine.Outcome, error) {
	w.doing(call.Method, cmp.Or(call.ID, call.Hook))
	// A worker that died in the run keeps it, for its last words.
	defer func() {
		if !w.dead() {
			w.doing("", "")
		}
	}()
	w.addFiles(in, call)
	stop := context.AfterFunc(ctx, w.kill)
	defer stop()
	// The worker's engine ends the run at its time limit, in CPU time; a
	// worker still busy at the wall-clock ceiling is killed.
	var timedOut atomic.Bool
	t := time.AfterFunc(engine.WallCeiling(timeout), func() { timedOut.Store(true); w.kill() })
	defer t.Stop()
	msg := &isolatev1.Input{Kind: &isolatev1.Input_Run{Run: in}}
	var out isolatev1.Output
	for {
		if err := w.in.write(msg); err != nil {
			return w.failed(ctx, timeout, timedOut.Load())
		}
	read:
		out.Reset()
		var err error
		if w.buf, err = readFrame(w.out, w.buf, &out); err != nil {
			return w.failed(ctx, timeout, timedOut.Load())
		}
		switch k := out.Kind.(type) {
		case *isolatev1.Output_Log:
			if k.Log.Id == in.Id {
				w.p.logScript(ctx, call, k.Log)
			}
			goto read
		case *isolatev1.Output_Result:
			if k.Result.Id != in.Id {
				break
			}
			o, err := decodeResult(k.Result, call)
			var ee *engine.Error
			if errors.As(err, &ee) && (ee.Kind == engine.Timeout || ee.Kind == engine.Canceled) {
				// The script may still be busy in native code.
				w.kill()
			}
			return o, err
		case *isolatev1.Output_Call:
			if k.Call.Id == in.Id {
				res := &isolatev1.Input{Kind: &isolatev1.Input_CallResult{CallResult: answerCall(ctx, call, k.Call)}}
				if err := w.in.write(res); err != nil {
					return w.failed(ctx, timeout, timedOut.Load())
				}
				goto read
			}
		case *isolatev1.Output_NeedScript:
			if k.NeedScript.Id == in.Id && !in.HasSource {
				in.ScriptSource, in.HasSource = s.Source(), true
				continue
			}
		case *isolatev1.Output_NeedFiles:
			if k.NeedFiles.Id == in.Id && !in.ResetFiles {
				clear(w.sent)
				in.Files = nil
				w.addFiles(in, call)
				in.ResetFiles = true
				continue
			}
		}
		w.kill()
		return engine.Outcome{}, &engine.Error{Kind: engine.Crashed, Message: fmt.Sprintf(
			"hook worker %d answered run %d out of turn; killed", w.pid, in.Id)}
	}
}

// answerCall makes the ctx.call c of the run of call, in ctx, as the engine
// makes one in process, and returns its answer for the worker.
func answerCall(ctx context.Context, call *engine.Call, c *isolatev1.Call) *isolatev1.CallResult {
	resp, err := makeCall(ctx, call, c)
	if err != nil {
		st := status.Convert(err)
		// A peer's message may hold bytes that are not UTF-8, which a
		// string field cannot carry.
		return &isolatev1.CallResult{Id: c.Id, StatusCode: int32(cmp.Or(st.Code(), codes.Unknown)), StatusMessage: strings.ToValidUTF8(st.Message(), "\uFFFD")}
	}
	return &isolatev1.CallResult{Id: c.Id, Response: resp}
}

func makeCall(ctx context.Context, call *engine.Call, c *isolatev1.Call) ([]byte, error) {
	if call.Caller == nil {
		return nil, engine.ErrNoCaller
	}
	nested, err := engine.NestCall(ctx, call, c.Method)
	if err != nil {
		return nil, err
	}
	if c.TimeoutNanos > 0 {
		var cancel context.CancelFunc
		nested, cancel = context.WithTimeout(nested, time.Duration(c.TimeoutNanos))
		defer cancel()
	}
	return call.Caller(nested, c.Method, c.Request)
}

// failed returns the error of a run whose pipe failed: a timeout, a
// cancelled call, a closed pool, or a worker that died under it.
func (w *worker) failed(ctx context.Context, timeout time.Duration, timedOut bool) (engine.Outcome, error) {
	w.kill()
	switch {
	case timedOut:
		return engine.Outcome{}, &engine.Error{Kind: engine.Timeout, Message: fmt.Sprintf(
			"timed out: still running after %v (ten times its time limit of %v); worker killed", engine.WallCeiling(timeout), timeout)}
	case ctx.Err() != nil:
		return engine.Outcome{}, canceled(ctx.Err())
	}
	<-w.exited // soon: it was killed
	select {
	case <-w.p.closing:
		return engine.Outcome{}, errClosed
	default:
	}
	if w.oom.Load() {
		return engine.Outcome{}, &engine.Error{Kind: engine.Exhausted, Message: fmt.Sprintf(
			"worker exceeded its memory limit of %s; killed", formatBytes(w.p.opts.memoryLimit))}
	}
	return engine.Outcome{}, &engine.Error{Kind: engine.Crashed, Message: fmt.Sprintf("worker crashed (%v)", w.exitErr)}
}

// doing records the method and hook of the run the worker is doing.
func (w *worker) doing(method, hook string) {
	w.mu.Lock()
	w.method, w.hook = method, hook
	w.mu.Unlock()
}

// runAttrs returns the method and hook of the worker's run, if any.
func (w *worker) runAttrs() []any {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.method == "" && w.hook == "" {
		return nil
	}
	return []any{"method", w.method, "hook", w.hook}
}

// stderrWindow is how long a live worker's lines on its standard error are
// collected before they are logged, as one line.
const stderrWindow = time.Second

// reap logs what the worker writes to its standard error, noting a refused
// allocation, and reaps the worker when it ends. What a dying worker writes
// (the Go runtime's fatal error and its goroutines' stacks: hundreds of
// lines) is logged in the one line that says it exited; a live worker's
// lines, in one line a stderrWindow at most. Either holds the start of
// what was written (stderrExcerpt bytes at most) and the count of the
// lines left out.
func (w *worker) reap() {
	defer w.p.wg.Done()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(w.stderr)
		sc.Buffer(make([]byte, 0, 4096), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		io.Copy(io.Discard, w.stderr)
	}()
	var written stderrLines
	window := time.NewTimer(time.Hour)
	window.Stop()
	for open := true; open; {
		select {
		case line, ok := <-lines:
			if !ok {
				open = false
				break
			}
			if outOfMemory(line) {
				w.oom.Store(true)
			}
			if written.n == 0 {
				window.Reset(stderrWindow)
			}
			written.add(line)
		case <-window.C:
			w.p.opts.logger.Warn("hook worker wrote to its standard error",
				append(append([]any{"pid", w.pid}, w.runAttrs()...), written.attrs()...)...)
			written = stderrLines{}
		}
	}
	window.Stop()
	killed := w.killed.Load()
	w.exitErr = w.cmd.Wait()
	closeAll(w.stdin, w.stdout)
	w.p.forget(w)
	if !killed || w.oom.Load() || written.n > 0 {
		attrs := append([]any{"pid", w.pid, "state", w.exitErr, "out_of_memory", w.oom.Load()}, w.runAttrs()...)
		w.p.opts.logger.Warn("hook worker exited", append(attrs, written.attrs()...)...)
	}
	close(w.exited)
}

// stderrExcerpt bounds the part of a worker's standard error that is
// logged.
const stderrExcerpt = 2 << 10

// stderrLines collects lines of a worker's standard error: the start of
// them, up to stderrExcerpt bytes, and the count of the others.
type stderrLines struct {
	excerpt strings.Builder
	n, kept int
}

func (s *stderrLines) add(line string) {
	s.n++
	room := stderrExcerpt - s.excerpt.Len()
	if s.kept > 0 {
		room-- // the newline before it
	}
	if s.kept < s.n-1 || room < len(line) && s.kept > 0 {
		return // whole lines only after the first, and none after a gap
	}
	if s.kept > 0 {
		s.excerpt.WriteByte('\n')
	}
	if len(line) > room {
		line = strings.ToValidUTF8(line[:room], "") + "..."
	}
	s.excerpt.WriteString(line)
	s.kept++
}

// attrs are the log attributes of the lines: the first, the excerpt when
// it holds more, and how many lines it leaves out.
func (s *stderrLines) attrs() []any {
	if s.n == 0 {
		return nil
	}
	text := s.excerpt.String()
	first, _, more := strings.Cut(text, "\n")
	attrs := []any{"stderr", first}
	if more {
		attrs = append(attrs, "stderr_excerpt", text)
	}
	return append(attrs, "stderr_lines_dropped", s.n-s.kept)
}

// outOfMemory reports whether a line of a worker's standard error says
// that memory was refused: the Go runtime's fatal errors, and those of the
// race detector's runtime, when a mapping goes over RLIMIT_DATA.
func outOfMemory(line string) bool {
	for _, s := range []string{"out of memory", "cannot allocate memory", "(errno: 12)", "address space collisions for -race mode"} {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

// jsonValue is a logged value as the engine logs it in process: its JSON
// text.
func jsonValue(b []byte) any {
	if !json.Valid(b) {
		return string(b)
	}
	return json.RawMessage(b)
}

func formatBytes(n int64) string {
	switch {
	case n%(1<<30) == 0 && n > 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n%(1<<20) == 0 && n > 0:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// spawner starts worker processes from one goroutine locked to its thread
// for the pool's life. A worker's parent-death signal fires when the thread
// that started it ends, and a thread ends when a goroutine that locked it
// returns without unlocking: a thread that only the spawner ever uses ends
// only with the process.
type spawner struct {
	once sync.Once
	reqs chan chan spawned
	done chan struct{}
}

type spawned struct {
	w   *worker
	err error
}

func (s *spawner) start(p *Pool) (*worker, error) {
	s.once.Do(func() {
		s.reqs = make(chan chan spawned)
		s.done = make(chan struct{})
		go func() {
			defer close(s.done)
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for {
				select {
				case reply := <-s.reqs:
					w, err := p.newWorker()
					reply <- spawned{w, err}
				case <-p.closing:
					return
				}
			}
		}()
	})
	reply := make(chan spawned, 1)
	select {
	case s.reqs <- reply:
	case <-p.closing:
		return nil, errClosed
	}
	r := <-reply
	return r.w, r.err
}

// stop waits for the spawner to end; the pool is closing.
func (s *spawner) stop() {
	s.once.Do(func() {}) // orders this read of done after start's write
	if s.done != nil {
		<-s.done
	}
}

// addFiles adds to in the descriptor files of call's messages that the
// worker has not been sent. When one of them was sent under its name with
// other contents (the proxy learned its backend's descriptors anew), the
// worker is told to forget every file and is sent all of the run's; of two
// versions of a file in one run (a response decoded with descriptors
// learned after its request was), the one not sent before goes.
func (w *worker) addFiles(in *isolatev1.Run, call *engine.Call) {
	// The files of the request, the response and the answer's type.
	sets := make([][]file, 0, 3)
	for _, md := range descriptors(call) {
		sets = append(sets, w.p.files.get(md))
	}
	var fresh map[string]protoreflect.FileDescriptor
	for _, files := range sets {
		for _, f := range files {
			if sent, ok := w.sent[f.fd.Path()]; ok && sent != f.fd {
				if fresh == nil {
					fresh = map[string]protoreflect.FileDescriptor{}
				}
				fresh[f.fd.Path()] = f.fd
			}
		}
	}
	if fresh != nil {
		clear(w.sent)
		in.ResetFiles = true
	}
	for _, files := range sets {
		for _, f := range files {
			path := f.fd.Path()
			if _, ok := w.sent[path]; ok {
				continue
			}
			if newer, ok := fresh[path]; ok && newer != f.fd {
				continue
			}
			in.Files = append(in.Files, f.proto)
			w.sent[path] = f.fd
		}
	}
}
