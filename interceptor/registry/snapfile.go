package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// snapshotFileVersion is the version of the snapshot file's format.
const snapshotFileVersion = 1

// saveDelay is how long the snapshot file waits after a change for more,
// so a burst of changes is written once.
const saveDelay = 100 * time.Millisecond

// snapshotFile is the content of the snapshot file: the raw documents in
// force, as etcd stored them (hooks and response cache configurations).
type snapshotFile struct {
	Version  int            `json:"version"`
	Prefix   string         `json:"prefix"`
	Revision int64          `json:"revision"`
	Saved    time.Time      `json:"saved"`
	Hooks    []snapshotHook `json:"hooks"`
}

// snapshotHook is one etcd key and its value.
type snapshotHook struct {
	Key         string `json:"key"`
	Value       string `json:"value"`
	ModRevision int64  `json:"modRevision"`
}

// readSnapshotFile reads and checks the snapshot file at path, written for
// prefix.
func readSnapshotFile(path, prefix string) (*snapshotFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("registry: snapshot file: %w", err)
	}
	var f snapshotFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("registry: snapshot file %s: %w", path, err)
	}
	switch {
	case f.Version != snapshotFileVersion:
		return nil, fmt.Errorf("registry: snapshot file %s: version %d; want %d", path, f.Version, snapshotFileVersion)
	case f.Prefix != prefix:
		return nil, fmt.Errorf("registry: snapshot file %s: written for prefix %q; want %q", path, f.Prefix, prefix)
	}
	for _, h := range f.Hooks {
		under := strings.HasPrefix(h.Key, HooksDir(prefix)) || strings.HasPrefix(h.Key, CacheDir(prefix)) || strings.HasPrefix(h.Key, UtilsDir(prefix))
		if !under || h.ModRevision <= 0 || h.ModRevision > f.Revision {
			return nil, fmt.Errorf("registry: snapshot file %s: bad entry %q at revision %d", path, h.Key, h.ModRevision)
		}
	}
	return &f, nil
}

// saveLoop writes the snapshot file after changes until ctx ends, then
// once more if a change is pending.
func (r *Registry) saveLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			select {
			case <-r.save:
				r.saveNow()
			default:
			}
			return
		case <-r.save:
		}
		t := time.NewTimer(saveDelay)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		select {
		case <-r.save:
		default:
		}
		r.saveNow()
	}
}

// saveNow writes the documents in force to the snapshot file.
func (r *Registry) saveNow() {
	f := snapshotFile{Version: snapshotFileVersion, Prefix: r.opts.prefix, Saved: time.Now().UTC()}
	r.mu.Lock()
	f.Revision = r.rev
	for key, e := range r.entries {
		switch {
		case e.hook != nil:
			f.Hooks = append(f.Hooks, snapshotHook{Key: key, Value: string(e.raw), ModRevision: e.hook.Revision})
		case e.cache != nil:
			f.Hooks = append(f.Hooks, snapshotHook{Key: key, Value: string(e.raw), ModRevision: e.cache.Revision})
		}
	}
	for key, u := range r.utilValues {
		f.Hooks = append(f.Hooks, snapshotHook{Key: key, Value: string(u.value), ModRevision: u.modRev})
	}
	r.mu.Unlock()
	slices.SortFunc(f.Hooks, func(a, b snapshotHook) int { return strings.Compare(a.Key, b.Key) })
	if err := writeFileAtomic(r.opts.snapshotFile, f); err != nil {
		r.opts.logger.Error("cannot write the hook snapshot file", "file", r.opts.snapshotFile, "error", err)
	}
}

// writeFileAtomic writes v as JSON to path through a synced temporary
// file renamed over it, so a crash leaves the old file or the new one.
func writeFileAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = tmp.Write(b)
	err = errors.Join(err, tmp.Sync(), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // make the rename durable; not every file system can
		d.Close()
	}
	return nil
}
