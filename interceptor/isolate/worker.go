package isolate

import (
	"bufio"
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

	isolatev1 "github.com/apihooks/apihooks/gen/apihooks/isolate/v1"
	"github.com/apihooks/apihooks/interceptor/engine"
)

// worker is the daemon's side of one worker process.
type worker struct {
	p        *Pool
	cmd      *exec.Cmd
	pid      int
	baseline int64
	stdin    io.WriteCloser
	stdout   io.ReadCloser
	stderr   io.ReadCloser
	in       frameWriter

	// outputs carries what the worker answers: Ready, Result, NeedScript.
	outputs chan *isolatev1.Output
	// killed is set once the pool killed the worker; stopped is closed
	// then, so the reader never blocks on outputs nobody waits for.
	killed   atomic.Bool
	stopOnce sync.Once
	stopped  chan struct{}
	// oom is set when the worker's standard error reported a fatal out of
	// memory.
	oom        atomic.Bool
	stderrDone chan struct{}
	// exited is closed once the process is reaped; exitErr is its state.
	exited  chan struct{}
	exitErr error

	// Owned by the run holding the worker.
	sent map[string]bool
	// cur is the run going on, whose log lines come in.
	cur atomic.Pointer[current]
}

// current is the run a worker is busy with.
type current struct {
	ctx  context.Context
	id   uint64
	call *engine.Call
}

func (p *Pool) command() (*exec.Cmd, error) {
	path := p.opts.path
	if path == "" {
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
	w := &worker{p: p, cmd: cmd, outputs: make(chan *isolatev1.Output, 1), stopped: make(chan struct{}),
		stderrDone: make(chan struct{}), exited: make(chan struct{}), sent: map[string]bool{}}
	if w.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if w.stdout, err = cmd.StdoutPipe(); err != nil {
		return nil, err
	}
	if w.stderr, err = cmd.StderrPipe(); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w.pid = cmd.Process.Pid
	w.in.w = w.stdin
	return w, nil
}

// abandon reaps a worker whose reading goroutines never started.
func (w *worker) abandon() {
	w.stdin.Close()
	w.cmd.Wait()
}

// kill kills the process; the reader then reaps it.
func (w *worker) kill() {
	w.killed.Store(true)
	w.stopOnce.Do(func() { close(w.stopped) })
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
	in := &isolatev1.Input{Kind: &isolatev1.Input_Setup{Setup: &isolatev1.Setup{MemoryLimit: memoryLimit}}}
	if err := w.in.write(in); err != nil {
		return w.deathCause(ctx, err)
	}
	select {
	case out := <-w.outputs:
		r := out.GetReady()
		if r == nil {
			return fmt.Errorf("worker %d answered its setup with %T", w.pid, out.Kind)
		}
		w.baseline = r.BaselineBytes
		return nil
	case <-w.exited:
		return fmt.Errorf("worker %d exited at start: %v", w.pid, w.exitErr)
	case <-ctx.Done():
		return fmt.Errorf("worker %d: %w", w.pid, ctx.Err())
	}
}

// deathCause waits (within ctx) for a worker a write failed on to exit.
func (w *worker) deathCause(ctx context.Context, err error) error {
	select {
	case <-w.exited:
		return fmt.Errorf("worker %d exited: %v", w.pid, w.exitErr)
	case <-ctx.Done():
		return fmt.Errorf("worker %d: %w", w.pid, err)
	}
}

// run sends in to the worker and waits for its result. It kills the worker
// when the run times out, when ctx ends, or when the worker's answer is
// not what the protocol allows.
func (w *worker) run(ctx context.Context, s *engine.Script, in *isolatev1.Run, call *engine.Call, timeout time.Duration) (engine.Outcome, error) {
	w.cur.Store(&current{ctx: ctx, id: in.Id, call: call})
	defer w.cur.Store(nil)
	for _, md := range descriptors(call) {
		for _, f := range w.p.files.get(md) {
			if !w.sent[f.GetName()] {
				in.Files = append(in.Files, f)
				w.sent[f.GetName()] = true
			}
		}
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	msg := &isolatev1.Input{Kind: &isolatev1.Input_Run{Run: in}}
	for {
		if err := w.in.write(msg); err != nil {
			return w.died(t)
		}
		select {
		case out := <-w.outputs:
			switch k := out.Kind.(type) {
			case *isolatev1.Output_Result:
				if k.Result.Id != in.Id {
					w.kill()
					return engine.Outcome{}, &engine.Error{Kind: engine.Crashed, Message: fmt.Sprintf(
						"hook worker %d answered run %d with the result of run %d; killed", w.pid, in.Id, k.Result.Id)}
				}
				o, err := decodeResult(k.Result, call)
				var ee *engine.Error
				if errors.As(err, &ee) && (ee.Kind == engine.Timeout || ee.Kind == engine.Canceled) {
					// The script may still be busy in native code.
					w.kill()
				}
				return o, err
			case *isolatev1.Output_NeedScript:
				if k.NeedScript.Id == in.Id && !in.HasSource {
					in.ScriptSource, in.HasSource = s.Source(), true
					continue
				}
			}
			w.kill()
			return engine.Outcome{}, &engine.Error{Kind: engine.Crashed, Message: fmt.Sprintf(
				"hook worker %d answered with an unexpected %T; killed", w.pid, out.Kind)}
		case <-w.exited:
			return w.died(t)
		case <-t.C:
			w.kill()
			return engine.Outcome{}, &engine.Error{Kind: engine.Timeout, Message: fmt.Sprintf("timed out after %v", timeout)}
		case <-ctx.Done():
			w.kill()
			return engine.Outcome{}, canceled(ctx.Err())
		case <-w.p.closing:
			w.kill()
			return engine.Outcome{}, errClosed
		}
	}
}

// died returns the error of a run whose worker died under it, once the
// worker is reaped (or at t).
func (w *worker) died(t *time.Timer) (engine.Outcome, error) {
	select {
	case <-w.exited:
	case <-t.C:
		w.kill()
		return engine.Outcome{}, &engine.Error{Kind: engine.Crashed, Message: fmt.Sprintf("hook worker %d stopped answering; killed", w.pid)}
	}
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

// readOutput reads what the worker writes until it ends, then reaps it.
func (w *worker) readOutput() {
	defer w.p.wg.Done()
	r := bufio.NewReaderSize(w.stdout, 64<<10)
	var buf []byte
	var err error
	for {
		out := new(isolatev1.Output)
		if buf, err = readFrame(r, buf, out); err != nil {
			break
		}
		if l := out.GetLog(); l != nil {
			if c := w.cur.Load(); c != nil && c.id == l.Id {
				w.p.logScript(c.ctx, c.call, l)
			}
			continue
		}
		select {
		case w.outputs <- out:
		case <-w.stopped:
		}
	}
	killed := w.killed.Load()
	if !errors.Is(err, io.EOF) && !killed {
		w.p.opts.logger.Warn("hook worker: bad output; killing it", "pid", w.pid, "error", err)
	}
	w.kill()
	<-w.stderrDone
	w.stdin.Close()
	w.exitErr = w.cmd.Wait()
	w.p.forget(w)
	close(w.exited)
	if !killed || w.oom.Load() {
		w.p.opts.logger.Warn("hook worker exited", "pid", w.pid, "state", w.exitErr, "out_of_memory", w.oom.Load())
	}
}

// readStderr logs what the worker writes to its standard error, and notes
// a fatal out of memory.
func (w *worker) readStderr() {
	defer w.p.wg.Done()
	defer close(w.stderrDone)
	sc := bufio.NewScanner(w.stderr)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if outOfMemory(line) {
			w.oom.Store(true)
		}
		w.p.opts.logger.Warn("hook worker: "+line, "pid", w.pid)
	}
	io.Copy(io.Discard, w.stderr)
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

// jsonValue decodes a logged value.
func jsonValue(b []byte) any {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return string(b)
	}
	return v
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
