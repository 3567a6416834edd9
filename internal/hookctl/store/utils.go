package store

import (
	"context"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/apihooks/apihooks/interceptor/registry"
)

// UtilVersion is one stored version of a util.
type UtilVersion struct {
	Version int
	Path    string
	// Raw is the stored value; Doc is it decoded, or nil with DocErr.
	Raw    []byte
	Doc    *registry.UtilDocument
	DocErr error
	// ModRevision and CreateRevision are etcd's.
	ModRevision, CreateRevision int64
}

// Util is what etcd holds for one util: its versions and which is active.
type Util struct {
	Name string
	// Versions are ascending.
	Versions []UtilVersion
	// Active is the active version, 0 when there is none; ActiveErr is set
	// when the active key's value is invalid. ActiveRevision is the active
	// key's mod revision, 0 when it is absent.
	Active         int
	ActiveErr      error
	ActiveRevision int64
}

// Version returns version v, or nil.
func (u *Util) Version(v int) *UtilVersion {
	for i := range u.Versions {
		if u.Versions[i].Version == v {
			return &u.Versions[i]
		}
	}
	return nil
}

// Latest returns the highest version stored, 0 when there is none.
func (u *Util) Latest() int {
	if len(u.Versions) == 0 {
		return 0
	}
	return u.Versions[len(u.Versions)-1].Version
}

// Paths returns every key of the util, with its mod revision.
func (u *Util) Paths(prefix string) map[string]int64 {
	out := map[string]int64{}
	for _, v := range u.Versions {
		out[v.Path] = v.ModRevision
	}
	if u.ActiveRevision != 0 {
		out[UtilPath(prefix, u.Name, 0)] = u.ActiveRevision
	}
	return out
}

// UtilPath returns the etcd key of version v of a util, or of its active
// pointer when v is 0.
func UtilPath(prefix, name string, v int) string {
	return prefix + registry.UtilKey{Name: name, Version: v}.String()
}

// Utils reads every key under the utils directory at one revision, which
// it returns, with the utils as the daemon compiles hooks against them.
// Keys that are not valid util keys are left out.
func (s *Store) Utils(ctx context.Context) (map[string]*Util, *registry.Utils, int64, error) {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	dir := registry.UtilsDir(s.cfg.Prefix)
	resp, err := s.client.Get(ctx, dir, clientv3.WithPrefix())
	if err != nil {
		return nil, nil, 0, s.wrap(err)
	}
	utils := map[string]*Util{}
	values := map[string][]byte{}
	for _, kv := range resp.Kvs {
		path := string(kv.Key)
		k, err := registry.ParseUtilKey(s.cfg.Prefix, path)
		if err != nil {
			continue
		}
		values[path] = kv.Value
		u := utils[k.Name]
		if u == nil {
			u = &Util{Name: k.Name}
			utils[k.Name] = u
		}
		if k.Active() {
			u.ActiveRevision = kv.ModRevision
			d, err := registry.DecodeActiveDocument(kv.Value)
			if err != nil {
				u.ActiveErr = err
				continue
			}
			u.Active = d.Version
			continue
		}
		v := UtilVersion{Version: k.Version, Path: path, Raw: kv.Value, ModRevision: kv.ModRevision, CreateRevision: kv.CreateRevision}
		v.Doc, v.DocErr = registry.DecodeUtilDocument(kv.Value)
		u.Versions = append(u.Versions, v)
	}
	for _, u := range utils {
		slices.SortFunc(u.Versions, func(a, b UtilVersion) int { return a.Version - b.Version })
	}
	return utils, registry.NewUtils(s.cfg.Prefix, values), resp.Header.Revision, nil
}

// ActivationHistory returns the versions a util's active key named, newest
// first, with the revision each was activated at, as far back as etcd
// keeps history (at most limit entries).
func (s *Store) ActivationHistory(ctx context.Context, name string, limit int) ([]Activation, error) {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	path := UtilPath(s.cfg.Prefix, name, 0)
	var out []Activation
	rev := int64(0)
	for len(out) < limit {
		opts := []clientv3.OpOption{}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.client.Get(ctx, path, opts...)
		if err != nil {
			if strings.Contains(err.Error(), "compacted") {
				break
			}
			return out, s.wrap(err)
		}
		if len(resp.Kvs) == 0 {
			break
		}
		kv := resp.Kvs[0]
		a := Activation{Revision: kv.ModRevision}
		if d, err := registry.DecodeActiveDocument(kv.Value); err == nil {
			a.Version = d.Version
		}
		out = append(out, a)
		if kv.ModRevision <= 1 {
			break
		}
		rev = kv.ModRevision - 1
	}
	return out, nil
}

// Activation is one value of a util's active key: the version it named
// (0 when the value was invalid) from Revision on.
type Activation struct {
	Version  int   `json:"version"`
	Revision int64 `json:"revision"`
}
