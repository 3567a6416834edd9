package ops_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write the hooks page's screenshots to docs/")

// TestScreenshots writes README's screenshots of the hooks page, the list
// and the create form, to docs/:
//
//	go test ./server/ops/ -run TestScreenshots -update-screenshots
func TestScreenshots(t *testing.T) {
	if !*updateScreenshots {
		t.Skip("run with -update-screenshots to write docs/*.png")
	}
	d := startDaemon(t, nil)
	d.put(t, "events.v1.EventService/SendEvent/pre/deny-guest", `{"script": "module.exports = (ctx) => { if (ctx.request.toUserId === 'guest') return {status: 403, message: 'guests may not send events'} }", "description": "Guests may not send events"}`)
	d.put(t, "events.v1.EventService/SendEvent/pre/addvalue", `{"script": "module.exports = (ctx) => { ctx.request.eventData = {...ctx.request.eventData, source: ctx.params.source} }", "params": {"source": "apihooks"}, "order": 10, "description": "Tags each event with its source"}`)
	d.put(t, "events.v1.EventService/SendEvent/post/stamp-response", `{"script": "module.exports = (ctx) => { ctx.response.eventId = 'evt-' + ctx.response.eventId }", "enabled": false, "description": "Prefixes event IDs"}`)
	d.put(t, "events.v1.EventService/GetEvents/pre/limit", `{"script": "module.exports = (ctx) => {", "description": "Caps the page size"}`)
	d.put(t, "events.v1.EventService/*/error/hide-internal", `{"script": "module.exports = (ctx) => { if (ctx.error.code === 13) return {status: 13, message: 'internal error'} }", "description": "Hides internal error details"}`)
	ctx := browser(t)
	run(t, ctx, "open the page", chromedp.Navigate(d.url("/")), chromedp.WaitVisible(css(`body[data-ready="true"]`)))
	waitFor(t, ctx, "every hook", `document.querySelectorAll('#list tr[data-key]').length === 5`)
	waitFor(t, ctx, "every hook loaded", `![...document.querySelectorAll('#list .health')].some(h => h.textContent === 'not loaded yet')`)

	dir := filepath.Join("..", "..", "docs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shoot := func(name, sel string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.Screenshot(css(sel)))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	shoot("hooks-page-list.png", "body")

	run(t, ctx, "open the create form",
		chromedp.Click(css(`#create`)),
		chromedp.WaitVisible(css(`#editor`)),
		chromedp.SetValue(css(`#f-method`), "events.v1.EventService/SendEvent"),
		chromedp.SendKeys(css(`#f-name`), "deny-bots"),
		chromedp.SetValue(css(`#f-description`), "Bots may not send events"),
		setScript("// ctx.request is the call's request; return nothing to let it go on.\nmodule.exports = function (ctx) {\n  if (ctx.request.toUserId.startsWith(\"bot-\")) {\n    return { status: 403, message: \"bots may not send events\" }\n  }\n  ctx.request.eventType = \n};\n"),
	)
	waitFor(t, ctx, "the syntax error shown", `document.querySelector('.cm-lint-marker-error')`)
	run(t, ctx, "hide the list", eval(`document.querySelector('#list').hidden = true`))
	shoot("hooks-page-create.png", "#editor")
}
