package embedetcd_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/apihooks/apihooks/internal/etcdtest"
	"github.com/apihooks/apihooks/server/embedetcd"
)

// TestOldRevisionsAreCompacted: with a history to keep, the embedded etcd
// compacts revisions older than it by itself, so that its database does
// not grow for ever.
func TestOldRevisionsAreCompacted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := embedetcd.Start(ctx, embedetcd.Config{Dir: t.TempDir(), ClientAddr: etcdtest.FreeAddr(t), PeerAddr: etcdtest.FreeAddr(t),
		Fast: true, History: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	c, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first, err := c.Put(ctx, "/k", "1")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := c.Put(ctx, "/k", time.Now().String()); err != nil {
			t.Fatal(err)
		}
		_, err := c.Get(ctx, "/k", clientv3.WithRev(first.Header.Revision))
		if errors.Is(err, rpctypes.ErrCompacted) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if ctx.Err() != nil {
			t.Fatal("revision", first.Header.Revision, "was never compacted")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
