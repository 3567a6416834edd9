package ops_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/internal/etcdtest"
)

const denyGuest = `module.exports = function (ctx) {
  if (ctx.request.toUserId === "guest") {
    return { status: 403, message: "guests may not send events" };
  }
};
`

// row is the page's row of a hook.
func row(key string) string { return `document.querySelector('tr[data-key="` + key + `"]')` }

// setScript replaces the script in the page's code editor.
func setScript(script string) chromedp.Action[chromedp.Void] {
	b, _ := json.Marshal(script)
	return eval(`view.dispatch({changes: {from: 0, to: view.state.doc.length, insert: ` + string(b) + `}}); true`)
}

// guestCode calls SendEvent as the guest user and returns the status code.
func guestCode(d *daemon) codes.Code {
	_, err := d.events.SendEvent(context.Background(), &eventsv1.SendEventRequest{ToUserId: "guest", EventType: "t"})
	return status.Code(err)
}

func TestPageCreatesDisablesAndRollsBackAHook(t *testing.T) {
	d := startDaemon(t, nil)
	ctx := browser(t)
	const key = "events.v1.EventService/SendEvent/pre/deny-guest"

	run(t, ctx, "open the page", chromedp.Navigate(d.url("/")), chromedp.WaitVisible(css(`body[data-ready="true"]`)))
	waitFor(t, ctx, "the empty list", `document.querySelector('#list .empty')`)

	// [+Create]: pick the method from the server's own descriptors.
	run(t, ctx, "open the create form",
		chromedp.Click(css(`#create`)),
		chromedp.WaitVisible(css(`#editor`)),
		chromedp.SetValue(css(`#f-method`), "events.v1.EventService/SendEvent"),
		chromedp.SetValue(css(`#f-phase`), "pre"),
		chromedp.SendKeys(css(`#f-name`), "deny-guest"),
		chromedp.SetValue(css(`#f-description`), "Guests may not send events"),
	)
	options := evalAs[[]string](t, ctx, `[...document.querySelectorAll('#f-method option')].map(o => o.value)`)
	if !contains(options, "events.v1.EventService/GetEvents") || !contains(options, "events.v1.EventService/*") {
		t.Errorf("method picker offers %v; want the EventService's methods from the server's descriptors", options)
	}

	// A syntax error shows, in place, before saving; saving is refused.
	run(t, ctx, "type a script with a syntax error", setScript("module.exports = function (ctx) {\n  let x = ;\n};\n"))
	waitFor(t, ctx, "the syntax error under the editor",
		`document.querySelector('#f-diag').textContent.includes('line 2')`, `document.querySelector('#f-diag').textContent`)
	waitFor(t, ctx, "the syntax error in the editor's gutter", `document.querySelector('.cm-lint-marker-error')`)
	run(t, ctx, "try to save", chromedp.Click(css(`#save`)))
	waitFor(t, ctx, "saving refused", `document.querySelector('#save-msg').textContent.includes('not saved')`,
		`document.querySelector('#save-msg').textContent`)
	if code := guestCode(d); code != codes.OK {
		t.Fatalf("after a refused save, SendEvent(guest) = %v; want OK: nothing was written", code)
	}

	// The test panel runs the hook on a sample request, unsaved.
	run(t, ctx, "fix the script and test it",
		setScript(denyGuest),
		chromedp.Click(css(`#testpanel summary`)),
		chromedp.SetValue(css(`#t-request`), `{"toUserId": "guest", "eventType": "t"}`),
		chromedp.Click(css(`#run-test`)),
	)
	waitFor(t, ctx, "the test's outcome", `document.querySelector('#t-result').textContent.includes('outcome: reject')`,
		`document.querySelector('#t-result').textContent`)
	if !strings.Contains(evalString(t, ctx, `document.querySelector('#t-result').textContent`), "PERMISSION_DENIED") {
		t.Errorf("test result does not show the rejection's status")
	}

	run(t, ctx, "save", chromedp.Click(css(`#save`)))
	waitFor(t, ctx, "the new hook in the list", row(key), `document.querySelector('#save-msg').textContent`)
	waitFor(t, ctx, "the hook loaded", row(key)+`.querySelector('.health').textContent === 'ok'`, row(key)+`.textContent`)
	if txt := evalString(t, ctx, `document.querySelector('.group[data-target="events.v1.EventService/SendEvent"] h3').textContent`); txt != "events.v1.EventService/SendEvent" {
		t.Errorf("group heading = %q; want the method", txt)
	}
	eventually(t, "the hook to reject the guest", func() bool { return guestCode(d) == codes.PermissionDenied })

	// Disable it: calls go on without it.
	run(t, ctx, "disable", chromedp.Click(css(`tr[data-key="`+key+`"] button[data-action="disable"]`)))
	waitFor(t, ctx, "the hook shown disabled", row(key)+`.querySelector('.enabled').textContent === 'no'`, row(key)+`.textContent`)
	eventually(t, "the disabled hook to let the guest through", func() bool { return guestCode(d) == codes.OK })

	// Roll back to the version before: enabled again.
	run(t, ctx, "open the history", chromedp.Click(css(`tr[data-key="`+key+`"] button[data-action="history"]`)))
	waitFor(t, ctx, "two versions", `document.querySelectorAll('#history-rows tr').length === 2`)
	run(t, ctx, "roll back", chromedp.Click(css(`#history-rows button[data-action="rollback"]`)))
	waitFor(t, ctx, "the rollback done", `document.querySelector('#history-msg').textContent.includes('rolled back')`,
		`document.querySelector('#history-msg').textContent`)
	waitFor(t, ctx, "the hook shown enabled", row(key)+`.querySelector('.enabled').textContent === 'yes'`, row(key)+`.textContent`)
	eventually(t, "the rolled back hook to reject the guest again", func() bool { return guestCode(d) == codes.PermissionDenied })
	waitFor(t, ctx, "three versions in the history", `document.querySelectorAll('#history-rows tr').length === 3`)
}

func TestPageFlagsBrokenDocuments(t *testing.T) {
	d := startDaemon(t, nil)
	ctx := browser(t)
	const broken = "events.v1.EventService/GetEvents/pre/typo"
	const edited = "events.v1.EventService/SendEvent/pre/stamp"
	const ignored = "events.v1.EventServce/SendEvent/pre/typo" // a service the daemon does not serve
	d.put(t, broken, `{"script": "module.exports = (ctx) => {", "ordr": 1}`)
	d.put(t, ignored, `{"script": "module.exports = (ctx) => {}"}`)
	d.put(t, edited, `{"script": "undefined"}`)
	eventually(t, "the valid hook to be in force", func() bool { return guestCode(d) == codes.OK })
	d.put(t, edited, `{"script": "module.exports = (ctx) => {"}`)

	// A fleet registry, as daemons that register themselves keep it.
	if _, err := d.etcd.Put(context.Background(), "/apihooks/daemons/d1", `{"id": "d1", "address": "10.0.0.7:50051", "revision": 42, "synced": true}`); err != nil {
		t.Fatal(err)
	}

	run(t, ctx, "open the page", chromedp.Navigate(d.url("/")), chromedp.WaitVisible(css(`body[data-ready="true"]`)))
	waitFor(t, ctx, "the fleet's daemon in the header", `document.querySelector('#daemon').textContent.includes('d1 (10.0.0.7:50051) at 42')`,
		`document.querySelector('#daemon').textContent`)
	waitFor(t, ctx, "the broken hook flagged", row(broken)+` && `+row(broken)+`.querySelector('.health').textContent.startsWith('broken')`,
		row(broken)+`?.textContent`)
	if txt := evalString(t, ctx, row(broken)+`.querySelector('.health small').textContent`); !strings.Contains(txt, "unknown field") {
		t.Errorf("broken hook's error = %q; want the document's error", txt)
	}
	waitFor(t, ctx, "the invalid update flagged, with the version that still runs",
		row(edited)+` && `+row(edited)+`.querySelector('.health').textContent.startsWith('invalid; revision')`, row(edited)+`?.textContent`)
	waitFor(t, ctx, "the hook on a service not served flagged ignored, with why",
		row(ignored)+` && `+row(ignored)+`.querySelector('.health').firstChild.textContent === 'ignored' && `+
			row(ignored)+`.querySelector('.health small').textContent.includes('events.v1.EventServce is not hookable')`,
		row(ignored)+`?.textContent`)
}

func evalString(t *testing.T, ctx context.Context, expr string) string {
	t.Helper()
	return evalAs[string](t, ctx, expr)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestPageEditKeepsWhatItDoesNotShow: editing a hook on the page changes
// what the form changes and keeps the rest of its document: its style,
// which the form shows, and its owner, which only its team's manifest
// changes.
func TestPageEditKeepsWhatItDoesNotShow(t *testing.T) {
	d := startDaemon(t, nil)
	ctx := browser(t)
	const key = "events.v1.EventService/GetEvents/pre/g"
	d.put(t, key, `{"script": "function main(g) {}\nmodule.exports = main;", "style": "apimaker", "owner": "team-a"}`)

	run(t, ctx, "open the page", chromedp.Navigate(d.url("/")), chromedp.WaitVisible(css(`body[data-ready="true"]`)))
	waitFor(t, ctx, "the hook in the list", row(key))
	run(t, ctx, "edit the hook's description",
		chromedp.Click(css(`tr[data-key="`+key+`"] button[data-action="edit"]`)),
		chromedp.WaitVisible(css(`#editor`)),
		chromedp.SetValue(css(`#f-description`), "edited on the page"),
	)
	if got := evalString(t, ctx, `document.querySelector('#f-style').value`); got != "apimaker" {
		t.Errorf("the form's style = %q; want apimaker", got)
	}
	run(t, ctx, "save", chromedp.Click(css(`#save`)))
	eventually(t, "the edit in etcd", func() bool {
		resp, err := d.etcd.Get(context.Background(), "/apihooks/hooks/"+key)
		if err != nil || len(resp.Kvs) == 0 {
			return false
		}
		var doc struct{ Description, Style, Owner string }
		if err := json.Unmarshal(resp.Kvs[0].Value, &doc); err != nil || doc.Description != "edited on the page" {
			return false
		}
		if doc.Style != "apimaker" || doc.Owner != "team-a" {
			t.Fatalf("after the edit: style %q, owner %q; want apimaker and team-a kept", doc.Style, doc.Owner)
		}
		return true
	})
}

// While etcd does not answer, the page says so, with etcd's error, and
// shows the hooks the daemon runs from memory: on a page opened before the
// outage, and on one opened during it.
func TestPageDuringAnEtcdOutage(t *testing.T) {
	e := etcdtest.Start(t)
	d := startDaemonOn(t, e)
	ctx := browser(t)
	const key = "events.v1.EventService/SendEvent/pre/deny-guest"
	rev := putOn(t, e, key, `{"script": "module.exports = (ctx) => { if (ctx.request.toUserId === 'guest') return {status: 403} }"}`)
	eventually(t, "the daemon to load the hook", func() bool { return readState(t, d).Revision >= rev })

	header := `document.querySelector('#daemon').textContent`
	banner := `(document.querySelector('#banner').hidden ? '' : document.querySelector('#banner').textContent)`
	run(t, ctx, "open the page", chromedp.Navigate(d.url("/")), chromedp.WaitVisible(css(`body[data-ready="true"]`)))
	waitFor(t, ctx, "the header to say the daemon follows etcd", header+`.includes('following etcd')`, header)

	e.Stop()
	outage := func(what string) {
		t.Helper()
		waitFor(t, ctx, what+": the header to say etcd is unreachable",
			header+`.includes('etcd unreachable') && !`+header+`.includes('following etcd') && !`+header+`.includes('etcd revision 0')`, header)
		waitFor(t, ctx, what+": etcd's error in the banner", banner+`.includes('etcd at ')`, banner)
		waitFor(t, ctx, what+": the hook the daemon runs", row(key)+` && `+row(key)+`.querySelector('.health').textContent === 'ok'`, row(key)+`?.textContent`)
	}
	outage("the page opened before")
	run(t, ctx, "open the page again", chromedp.Navigate(d.url("/")), chromedp.WaitVisible(css(`body[data-ready="true"]`)))
	outage("the page opened during the outage")

	e.Start()
	waitFor(t, ctx, "the header to say the daemon follows etcd again", header+`.includes('following etcd')`, header)
	waitFor(t, ctx, "the banner gone", banner+` === ''`, banner)
}
