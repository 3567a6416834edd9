package hookctl_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apihooks/apihooks/interceptor/registry"
)

// putVersions writes n versions of a hook whose script returns its version
// number, and returns the revision of each.
func putVersions(t *testing.T, e *env, n int) []int64 {
	t.Helper()
	dir := t.TempDir()
	var revs []int64
	for i := 1; i <= n; i++ {
		script := filepath.Join(dir, fmt.Sprintf("v%d.js", i))
		writeFile(t, script, fmt.Sprintf("// version %d\nundefined\n", i))
		e.want(0, "put", sendEvent, "pre", "h", "--script", script, "--order", fmt.Sprint(i))
		revs = append(revs, e.revision())
	}
	return revs
}

func (e *env) script(key string) string {
	e.t.Helper()
	d, err := registry.DecodeDocument([]byte(e.hooks()[key]))
	if err != nil {
		e.t.Fatalf("%s: %v", key, err)
	}
	return d.Script
}

func TestRollbackAfterTwoChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	revs := putVersions(t, e, 3)
	key := sendEvent + "/pre/h"

	r := e.want(0, "history", sendEvent, "pre", "h")
	mustContain(t, "history", r.stdout,
		fmt.Sprintf("%d (current)", revs[2]), "order: 2 → 3; script: +1 -1 lines",
		fmt.Sprint(revs[1]), "order: 1 → 2",
		fmt.Sprint(revs[0]), "created")

	r = e.want(0, "rollback", sendEvent, "pre", "h")
	mustContain(t, "rollback", r.stdout, fmt.Sprintf("back to the version of revision %d", revs[1]), "order: 3 → 2")
	if got := e.script(key); !strings.Contains(got, "version 2") {
		t.Errorf("script after rollback: got %q; want version 2", got)
	}
	now := e.revision()
	if now <= revs[2] {
		t.Errorf("rollback revision: got %d; want a new revision after %d", now, revs[2])
	}

	r = e.want(0, "rollback", sendEvent, "pre", "h", "--to-revision", fmt.Sprint(revs[0]))
	mustContain(t, "rollback --to-revision", r.stdout, fmt.Sprintf("back to the version of revision %d", revs[0]))
	if got := e.script(key); !strings.Contains(got, "version 1") {
		t.Errorf("script after rollback --to-revision: got %q; want version 1", got)
	}
	r = e.want(0, "history", sendEvent, "pre", "h", "-o", "json")
	mustContain(t, "history -o json", r.stdout, `"complete": true`, `"version": 5`, `"current": true`)

	r = e.want(0, "rollback", sendEvent, "pre", "h", "--to-revision", fmt.Sprint(revs[0]), "-o", "yaml")
	mustContain(t, "rollback to the same version", r.stdout, "action: unchanged", fmt.Sprintf("rolledBackTo: %d", revs[0]))
	e.want(1, "rollback", sendEvent, "pre", "h", "--to-revision", "1")
}

func TestHistoryAfterCompactionSaysWhichVersionsAreGone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	revs := putVersions(t, e, 4)
	if _, err := e.etcd.Compact(context.Background(), revs[2]); err != nil {
		t.Fatal(err)
	}

	r := e.want(0, "history", sendEvent, "pre", "h")
	mustContain(t, "history", r.stdout,
		fmt.Sprintf("%d (current)", revs[3]),
		fmt.Sprintf("Versions before revision %d were compacted (versions 1-2 of this key are gone); etcd keeps history from revision %d on.", revs[2], revs[2]))
	mustNotContain(t, "history", r.stdout, fmt.Sprintf("\n%d ", revs[1]))

	r = e.want(1, "rollback", sendEvent, "pre", "h", "--to-revision", fmt.Sprint(revs[0]))
	mustContain(t, "rollback to a compacted revision", r.stderr,
		fmt.Sprintf("revision %d was compacted: etcd keeps history from revision %d on", revs[0], revs[2]))

	// The version before the current is still held: rollback works.
	r = e.want(0, "rollback", sendEvent, "pre", "h")
	mustContain(t, "rollback", r.stdout, fmt.Sprintf("version of revision %d", revs[2]))

	// Compact everything: only the current version is left.
	if _, err := e.etcd.Compact(context.Background(), e.revision()); err != nil {
		t.Fatal(err)
	}
	r = e.want(1, "rollback", sendEvent, "pre", "h")
	mustContain(t, "rollback after full compaction", r.stderr, "no earlier version to roll back to: versions before revision")
}

func TestADeletedHookHasHistoryAndIsPutBackByRollback(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	revs := putVersions(t, e, 2)
	key := sendEvent + "/pre/h"
	e.want(0, "delete", sendEvent, "pre", "h")
	deleted := e.revision()

	r := e.want(0, "history", sendEvent, "pre", "h")
	mustContain(t, "history of a deleted hook", r.stdout,
		fmt.Sprintf("Deleted at revision %d", deleted), fmt.Sprint(revs[1]), "order: 1 → 2", fmt.Sprint(revs[0]), "created")
	mustNotContain(t, "history of a deleted hook", r.stdout, "(current)")

	r = e.want(0, "rollback", sendEvent, "pre", "h")
	mustContain(t, "rollback of a deleted hook", r.stdout, fmt.Sprintf("restored %s pre h, deleted at revision %d, as the version of revision %d", sendEvent, deleted, revs[1]))
	if got := e.script(key); !strings.Contains(got, "version 2") {
		t.Errorf("script after undelete: got %q; want version 2", got)
	}

	e.want(0, "delete", sendEvent, "pre", "h")
	e.want(0, "rollback", sendEvent, "pre", "h", "--to-revision", fmt.Sprint(revs[0]))
	if got := e.script(key); !strings.Contains(got, "version 1") {
		t.Errorf("script after undelete --to-revision: got %q; want version 1", got)
	}
	e.want(1, "history", sendEvent, "pre", "never-existed")
}

// TestHistoryLimit: history lists the 20 newest versions unless --limit says
// otherwise, and the oldest one listed says what it changed: the versions
// before it were left out, not compacted.
func TestHistoryLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const versions = 25
	var revs []int64
	for i := 1; i <= versions; i++ {
		revs = append(revs, e.put(sendEvent+"/pre/h", fmt.Sprintf(`{"script":"undefined","order":%d}`, i)))
	}
	cases := []struct {
		name string
		args []string
		// rows is how many versions are listed, newest first.
		rows int
		// oldest is what the oldest row listed says it changed.
		oldest string
		footer string
	}{
		{"20 by default", nil, 20, "order: 5 → 6", "Older versions not shown (--limit 20)."},
		{"--limit 3", []string{"--limit", "3"}, 3, "order: 22 → 23", "Older versions not shown (--limit 3)."},
		{"--limit 0 lists all", []string{"--limit", "0"}, versions, "created", ""},
		{"a limit above the versions held lists all", []string{"--limit", "25"}, versions, "created", ""},
		{"a limit one below lists all but the first", []string{"--limit", "24"}, 24, "order: 1 → 2", "Older versions not shown (--limit 24)."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := e.want(0, append([]string{"history", sendEvent, "pre", "h"}, tc.args...)...)
			lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
			var rows []string
			for _, l := range lines[2:] { // the hook, the table's header
				if strings.HasPrefix(l, "Older versions") {
					break
				}
				rows = append(rows, l)
			}
			if len(rows) != tc.rows {
				t.Fatalf("got %d rows; want %d\n%s", len(rows), tc.rows, r.stdout)
			}
			if want := fmt.Sprint(revs[versions-1]); !strings.HasPrefix(rows[0], want+" (current)") {
				t.Errorf("newest row: got %q; want revision %s (current)", rows[0], want)
			}
			oldest := rows[len(rows)-1]
			if want := fmt.Sprint(revs[versions-tc.rows]); !strings.HasPrefix(oldest, want+" ") || !strings.HasSuffix(oldest, tc.oldest) {
				t.Errorf("oldest row: got %q; want revision %s, %q", oldest, want, tc.oldest)
			}
			mustNotContain(t, "history", r.stdout, "compacted")
			if tc.footer != "" {
				mustContain(t, "history", r.stdout, tc.footer)
			} else {
				mustNotContain(t, "history", r.stdout, "not shown")
			}
		})
	}
}
