package isolate

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	isolatev1 "github.com/apihooks/apihooks/gen/apihooks/isolate/v1"
	"github.com/apihooks/apihooks/interceptor/engine"
)

// Pool runs scripts in worker processes, one run at a time per worker. It
// is safe for concurrent use, and it has the contract of engine.Engine.Run.
//
// Workers start when a run needs one, and a worker that died or was killed
// is replaced by the next run that needs it. A worker is killed (SIGKILL)
// when its memory goes over the limit, and whenever a run is abandoned
// (timeout, cancelled call) before the worker answered, so that no
// abandoned script goes on in the background.
type Pool struct {
	opts   options
	hashes scriptHashes
	files  fileSets
	nextID atomic.Uint64

	// slots holds one token per worker the pool may run: an idle worker,
	// or nil for one not started (or dead). A run takes a token and puts
	// one back.
	slots chan *worker
	// closing is closed by Close.
	closing chan struct{}
	spawn   spawner

	mu     sync.Mutex
	closed bool
	live   map[*worker]struct{}
	wg     sync.WaitGroup
}

// New returns a pool; it starts no process until a run needs one.
func New(opts ...Option) *Pool {
	p := &Pool{
		opts:    evaluateOptions(opts),
		closing: make(chan struct{}),
		live:    map[*worker]struct{}{},
	}
	p.slots = make(chan *worker, p.opts.workers)
	for range p.opts.workers {
		p.slots <- nil
	}
	return p
}

// Close kills every worker, waits until each is reaped and every goroutine
// of the pool has ended. Runs going on end with an error; later runs fail.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return
	}
	p.closed = true
	close(p.closing)
	for w := range p.live {
		w.kill()
	}
	p.mu.Unlock()
	p.wg.Wait()
	p.spawn.stop()
}

var errClosed = &engine.Error{Kind: engine.Closed, Message: "hook worker pool is closed"}

// Run runs s for call in a worker process. It returns when the worker
// answered, at the wall-clock ceiling of the call's time limit
// (engine.WallCeiling), or when ctx ends, whichever comes first; in the
// last two cases the worker is killed. The time limit itself counts the
// CPU time of the run, as engine.Engine counts it, inside the worker.
// Waiting for a free worker is bounded by ctx and by the queue wait (then
// the run fails with Kind Overloaded), and starting a new worker by ctx and
// the start timeout. A run for a hook's ctx.call (engine.InNestedCall) never
// waits: with no worker free, it gets one of its own, which ends with it.
// Run never changes call's messages: a changed message comes back as a new
// one in the Outcome.
func (p *Pool) Run(ctx context.Context, s *engine.Script, call *engine.Call) (engine.Outcome, error) {
	timeout := call.Timeout
	if timeout <= 0 {
		timeout = p.opts.timeout
	}
	if err := ctx.Err(); err != nil {
		return engine.Outcome{}, canceled(err)
	}
	in, err := p.encodeRun(ctx, s, call)
	if err != nil {
		return engine.Outcome{}, &engine.Error{Kind: engine.Crashed, Message: "hook worker: " + err.Error()}
	}
	in.TimeoutNanos = int64(timeout)
	in.Id = p.nextID.Add(1)
	w, own, err := p.acquire(ctx)
	if err != nil {
		return engine.Outcome{}, err
	}
	out, err := w.run(ctx, s, in, call, timeout)
	if own {
		w.kill()
	} else {
		p.release(w)
	}
	return out, err
}

func canceled(err error) *engine.Error {
	return &engine.Error{Kind: engine.Canceled, Message: err.Error(), Err: err}
}

// acquire takes a worker, starting one when the token it got has none. own
// is set for a worker of a nested call's own, which takes no token.
func (p *Pool) acquire(ctx context.Context) (w *worker, own bool, err error) {
	select {
	case w = <-p.slots:
	default:
		if engine.InNestedCall(ctx) {
			// The run that made the call waits for it, holding a worker
			// or a run of the engine: waiting for a worker could wait for
			// that run. Calls nest engine.MaxCallDepth deep at most, so
			// such workers are bounded too.
			w, err = p.start(ctx)
			return w, true, err
		}
		t := time.NewTimer(p.opts.queueWait)
		defer t.Stop()
		select {
		case w = <-p.slots:
		case <-ctx.Done():
			return nil, false, canceled(ctx.Err())
		case <-t.C:
			return nil, false, &engine.Error{Kind: engine.Overloaded, Message: fmt.Sprintf(
				"not run: all %d hook worker processes were busy for %v", cap(p.slots), p.opts.queueWait)}
		case <-p.closing:
			return nil, false, errClosed
		}
	}
	if w != nil && !w.dead() {
		return w, false, nil
	}
	if w, err = p.start(ctx); err != nil {
		p.slots <- nil
		return nil, false, err
	}
	return w, false, nil
}

// release gives back the token of w, or an empty one when w is dead.
func (p *Pool) release(w *worker) {
	if w.dead() {
		p.slots <- nil
		return
	}
	p.slots <- w
}

// start starts a worker process and waits until it is ready.
func (p *Pool) start(parent context.Context) (*worker, error) {
	ctx, cancel := context.WithTimeout(parent, p.opts.startTimeout)
	defer cancel()
	w, err := p.spawn.start(p)
	if err == errClosed {
		return nil, err
	}
	if err != nil {
		return nil, &engine.Error{Kind: engine.Crashed, Message: "start hook worker: " + err.Error()}
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		w.kill()
		w.abandon()
		return nil, errClosed
	}
	p.live[w] = struct{}{}
	p.wg.Add(1)
	p.mu.Unlock()
	go w.reap()
	if err := w.setup(ctx, p.opts.memoryLimit); err != nil {
		if perr := parent.Err(); perr != nil {
			return nil, canceled(perr)
		}
		return nil, &engine.Error{Kind: engine.Crashed, Message: "start hook worker: " + err.Error()}
	}
	p.opts.logger.Debug("hook worker started", "pid", w.pid, "baseline_bytes", w.baseline)
	return w, nil
}

// forget removes a reaped worker.
func (p *Pool) forget(w *worker) {
	p.mu.Lock()
	delete(p.live, w)
	p.mu.Unlock()
}

// logScript logs a line a script wrote, or the worker's engine's own line
// about what it logged, with the call's method and hook.
func (p *Pool) logScript(ctx context.Context, call *engine.Call, l *isolatev1.Log) {
	level := slog.Level(l.Level)
	log := p.opts.logger
	if !log.Enabled(ctx, level) {
		return
	}
	id := call.ID
	if id == "" {
		id = call.Hook
	}
	attrs := []slog.Attr{slog.String("method", call.Method), slog.String("hook", id)}
	if l.FromScript {
		// origin tells a script's lines from the daemon's own, whose
		// wording a script may use.
		attrs = append(attrs, slog.String("origin", "script"))
	}
	if l.HasValue {
		attrs = append(attrs, slog.Any("value", jsonValue(l.ValueJson)))
	}
	log.LogAttrs(ctx, level, l.Message, attrs...)
}
