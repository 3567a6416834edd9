package ops_test

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browserTimeout bounds everything one test does in the browser.
const browserTimeout = 3 * time.Minute

// browser starts a headless Chromium for the test, with a fresh profile,
// and returns a context to drive it with chromedp. Without Chromium the
// test is skipped, except in CI (CI set), where .ci/run installs it.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if inCI {
			t.Fatal("no chromium on PATH: apt-get install -y chromium")
		}
		t.Skip("no chromium on PATH (apt-get install -y chromium): the page is not tested in a browser")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		// Chromium puts its singleton socket in the temporary folder and
		// leaves it there when it is stopped at the end of the test.
		chromedp.Env("TMPDIR=" + t.TempDir()),
		chromedp.WindowSize(1280, 1000),
		// Without these, Chromium's own connections are refused many at
		// a time on a machine with no internet.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	}
	ctx, cancelTimeout := context.WithTimeout(context.Background(), browserTimeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancelTimeout()
	})
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// run runs chromedp actions, failing the test with what was being done.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitFor polls the JavaScript expression cond in the page until it is
// true, failing the test after waitTimeout with what it waited for and
// the value of show, when given.
func waitFor(t *testing.T, ctx context.Context, what, cond string, show ...string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+cond+")"))
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			msg := ""
			for _, s := range show {
				v, _ := chromedp.Run(ctx, chromedp.Evaluate[any](s))
				msg += fmt.Sprintf("; %s = %v", s, v)
			}
			t.Fatalf("timed out waiting for %s%s", what, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// eval runs a JavaScript expression for its effect.
func eval(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[any](expr)(ctx, t)
		return err
	})
}

// evalAs returns the value of a JavaScript expression.
func evalAs[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// css is a CSS selector.
type css = chromedp.CSS
