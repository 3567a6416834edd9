package interceptor

import (
	"container/list"
	"context"
	"encoding/binary"
	"runtime"
	"slices"
	"sync"
	"time"
	"weak"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/apihooks/apihooks/interceptor/registry"
)

// cached answers a call of a method with a response cache: from the cache
// when it holds a response to the same request (and the same values of the
// configuration's metadata keys), without running hooks or the handler;
// otherwise through call, storing the response, and the headers and
// trailers the handler set, when the call succeeds. Errors are never
// stored, nor a response an error hook gave in place of one.
func (h *hooks) cached(ctx context.Context, msg proto.Message, method string, handler grpc.UnaryHandler, chain *registry.Chain) (any, error) {
	c := h.cacheFor(chain)
	// The key is taken before any hook runs, since a pre-hook may change
	// the request in place.
	key, err := c.key(ctx, msg)
	if err != nil {
		resp, _, err := h.call(ctx, msg, method, handler, chain)
		return resp, err
	}
	if e, ok := c.get(key, chain, time.Now()); ok {
		// Stored from a message that encodes, it always decodes; if not,
		// the call is served as if the cache had missed.
		if resp, err := e.response(); err == nil {
			// Nothing is sent before the response: these cannot fail.
			if len(e.header) > 0 {
				_ = grpc.SetHeader(ctx, e.header.Copy())
			}
			if len(e.trailer) > 0 {
				_ = grpc.SetTrailer(ctx, e.trailer.Copy())
			}
			return resp, nil
		}
	}
	rec := &recordingStream{}
	if sts := grpc.ServerTransportStreamFromContext(ctx); sts != nil {
		rec.ServerTransportStream = sts
		ctx = grpc.NewContextWithServerTransportStream(ctx, rec)
	}
	resp, rescued, err := h.call(ctx, msg, method, handler, chain)
	if err == nil && !rescued {
		if m, ok := resp.(proto.Message); ok && m != nil && m.ProtoReflect().IsValid() {
			rec.mu.Lock()
			header, trailer := rec.header, rec.trailer
			rec.mu.Unlock()
			c.put(key, chain, m, header, trailer, time.Now())
		}
	}
	return resp, err
}

// recordingStream keeps the headers and trailers set through it, as they
// go on to the call's stream.
type recordingStream struct {
	grpc.ServerTransportStream
	mu              sync.Mutex
	header, trailer metadata.MD
}

func (s *recordingStream) SetHeader(md metadata.MD) error {
	return s.record(&s.header, md, s.ServerTransportStream.SetHeader(md))
}

func (s *recordingStream) SendHeader(md metadata.MD) error {
	return s.record(&s.header, md, s.ServerTransportStream.SendHeader(md))
}

func (s *recordingStream) SetTrailer(md metadata.MD) error {
	return s.record(&s.trailer, md, s.ServerTransportStream.SetTrailer(md))
}

// record adds md to *into when the stream took it (err is nil), and
// returns err.
func (s *recordingStream) record(into *metadata.MD, md metadata.MD, err error) error {
	if err == nil {
		s.mu.Lock()
		*into = metadata.Join(*into, md)
		s.mu.Unlock()
	}
	return err
}

// cacheFor returns the response cache of chain's configuration, made on
// first use. A cache lives as long as its configuration: once no snapshot
// refers to it (its document changed or was deleted), the cache is
// dropped.
func (h *hooks) cacheFor(chain *registry.Chain) *responseCache {
	cfg := chain.Cache
	wp := weak.Make(cfg)
	if c, ok := h.caches.Load(wp); ok {
		return c.(*responseCache)
	}
	c, loaded := h.caches.LoadOrStore(wp, newResponseCache(cfg, chain))
	if !loaded {
		runtime.AddCleanup(cfg, func(wp weak.Pointer[registry.CacheConfig]) { h.caches.Delete(wp) }, wp)
	}
	return c.(*responseCache)
}

// responseCache holds the responses of one method, least recently used
// first out, within a bound on entries and on their encoded size. It is
// safe for concurrent use.
type responseCache struct {
	ttl         time.Duration
	maxEntries  int
	maxBytes    int64
	keyMetadata []string

	mu    sync.Mutex
	items map[string]*list.Element // of *cacheEntry
	lru   list.List                // most recently used at the front
	bytes int64
	// hooks are the method's hooks the stored responses were made with.
	// A call under other hooks (one added, changed, deleted, enabled or
	// disabled since) empties the cache: a response is never served past
	// a change of the hooks that would have run on it.
	hooks hookSet
}

// hookSet is the hooks of a chain, by identity: a hook's new version is
// another *registry.Hook.
type hookSet struct{ pre, post, errs []*registry.Hook }

func hooksOf(chain *registry.Chain) hookSet { return hookSet{chain.Pre, chain.Post, chain.Error} }

// of reports whether s is chain's hooks.
func (s hookSet) of(chain *registry.Chain) bool {
	return slices.Equal(s.pre, chain.Pre) && slices.Equal(s.post, chain.Post) && slices.Equal(s.errs, chain.Error)
}

// cacheEntry is one stored response, encoded (what the cache holds is
// what its bounds count), with the headers and trailers that came with
// it. They are never changed once stored: callers get copies.
type cacheEntry struct {
	key string
	// empty is an empty message of the response's type, to decode into.
	empty           protoreflect.Message
	data            []byte
	header, trailer metadata.MD
	size            int64
	expires         time.Time
}

// stored is how responses are encoded for the cache: as they are, since
// the server sent them so.
var stored = proto.MarshalOptions{AllowPartial: true}

// response decodes the stored response into a new message.
func (e *cacheEntry) response() (proto.Message, error) {
	m := e.empty.New().Interface()
	if err := (proto.UnmarshalOptions{AllowPartial: true}).Unmarshal(e.data, m); err != nil {
		return nil, err
	}
	return m, nil
}

func newResponseCache(cfg *registry.CacheConfig, chain *registry.Chain) *responseCache {
	return &responseCache{
		ttl: cfg.TTL, maxEntries: cfg.MaxEntries, maxBytes: cfg.MaxBytes, keyMetadata: cfg.KeyMetadata,
		items: map[string]*list.Element{}, hooks: hooksOf(chain),
	}
}

var deterministic = proto.MarshalOptions{Deterministic: true}

// key returns the cache key of a call: the values of the configured
// metadata keys, each length-prefixed, then the request's deterministic
// encoding.
func (c *responseCache) key(ctx context.Context, msg proto.Message) ([]byte, error) {
	var b []byte
	for _, k := range c.keyMetadata {
		vals := metadata.ValueFromIncomingContext(ctx, k)
		b = binary.AppendUvarint(b, uint64(len(vals)))
		for _, v := range vals {
			b = binary.AppendUvarint(b, uint64(len(v)))
			b = append(b, v...)
		}
	}
	return deterministic.MarshalAppend(b, msg)
}

// get returns the entry stored under key, if it has not expired at now.
// The entry must not be changed. A call under other hooks than the
// responses were made with empties the cache first.
func (c *responseCache) get(key []byte, chain *registry.Chain, now time.Time) (*cacheEntry, bool) {
	c.mu.Lock()
	if !c.hooks.of(chain) {
		c.items, c.bytes, c.hooks = map[string]*list.Element{}, 0, hooksOf(chain)
		c.lru.Init()
		c.mu.Unlock()
		return nil, false
	}
	el, ok := c.items[string(key)]
	if !ok {
		c.mu.Unlock()
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.removeLocked(el)
		c.mu.Unlock()
		return nil, false
	}
	c.lru.MoveToFront(el)
	c.mu.Unlock()
	return e, true
}

// put stores resp, encoded, with header and trailer, under key until
// now + ttl, and evicts expired responses from the least recently used
// end, then the least recently used beyond the bounds. A response larger
// than the whole byte bound is not stored, nor one made under other hooks
// (chain's) than the cache now holds responses of.
func (c *responseCache) put(key []byte, chain *registry.Chain, resp proto.Message, header, trailer metadata.MD, now time.Time) {
	data, err := stored.Marshal(resp)
	if err != nil {
		return
	}
	size := int64(len(key)+len(data)) + mdSize(header) + mdSize(trailer)
	if size > c.maxBytes {
		return
	}
	e := &cacheEntry{key: string(key), empty: resp.ProtoReflect().New(), data: data, header: header.Copy(), trailer: trailer.Copy(),
		size: size, expires: now.Add(c.ttl)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.hooks.of(chain) {
		return
	}
	for el := c.lru.Back(); el != nil && !now.Before(el.Value.(*cacheEntry).expires); el = c.lru.Back() {
		c.removeLocked(el)
	}
	if old, ok := c.items[e.key]; ok {
		c.removeLocked(old)
	}
	c.items[e.key] = c.lru.PushFront(e)
	c.bytes += size
	for c.lru.Len() > c.maxEntries || c.bytes > c.maxBytes {
		c.removeLocked(c.lru.Back())
	}
}

// mdSize is the bytes of md's keys and values.
func mdSize(md metadata.MD) int64 {
	var n int
	for k, vs := range md {
		for _, v := range vs {
			n += len(k) + len(v)
		}
	}
	return int64(n)
}

func (c *responseCache) removeLocked(el *list.Element) {
	e := c.lru.Remove(el).(*cacheEntry)
	delete(c.items, e.key)
	c.bytes -= e.size
}
