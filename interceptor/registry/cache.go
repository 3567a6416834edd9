package registry

import (
	"regexp"
	"slices"
	"time"
)

// The bounds of a response cache configuration.
const (
	// MaxCacheTTL is the longest ttl a cache document may set.
	MaxCacheTTL = 24 * time.Hour
	// DefaultCacheMaxEntries is a cache's bound on entries when its
	// document sets none; MaxCacheMaxEntries is the largest it may set.
	DefaultCacheMaxEntries = 1000
	MaxCacheMaxEntries     = 100_000
	// DefaultCacheMaxBytes bounds the stored responses of one method's cache
	// (their encoded size) when its document sets no maxBytes;
	// MaxCacheMaxBytes is the largest it may set.
	DefaultCacheMaxBytes = 64 << 20
	MaxCacheMaxBytes     = 1 << 30
)

// metadataKeyPattern is what gRPC allows in a metadata key, lower case.
var metadataKeyPattern = regexp.MustCompile(`^[0-9a-z_.-]+$`)

// CacheDocument is a response cache configuration's value in etcd, a JSON
// object. Unknown fields are rejected.
type CacheDocument struct {
	// TTL is how long a stored response is served, a Go duration
	// (required, positive, at most MaxCacheTTL).
	TTL string `json:"ttl"`
	// MaxEntries bounds the responses stored (DefaultCacheMaxEntries when
	// absent); the least recently used go first.
	MaxEntries *int `json:"maxEntries,omitempty"`
	// MaxBytes bounds the encoded size of the responses stored
	// (DefaultCacheMaxBytes when absent).
	MaxBytes *int64 `json:"maxBytes,omitempty"`
	// KeyMetadata lists the incoming metadata keys, lower case, whose
	// values are part of the cache key besides the request.
	KeyMetadata []string `json:"keyMetadata,omitempty"`
}

// CacheConfig is a method's response cache configuration, decoded and
// checked. It is immutable once built; a changed document builds a new one.
type CacheConfig struct {
	Key CacheKey
	// Revision is the etcd revision that last modified the key.
	Revision int64
	// TTL is how long a stored response is served.
	TTL time.Duration
	// MaxEntries and MaxBytes bound what the cache holds.
	MaxEntries int
	MaxBytes   int64
	// KeyMetadata lists the metadata keys whose values are part of the
	// cache key, in the document's order.
	KeyMetadata []string
}

// DecodeCacheDocument decodes and checks a cache document. The error names
// the field at fault.
func DecodeCacheDocument(b []byte) (*CacheDocument, error) {
	var d CacheDocument
	if err := decodeStrict(b, &d, "document", "ttl, maxEntries, maxBytes, keyMetadata"); err != nil {
		return nil, err
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return &d, nil
}

// Validate checks the fields' values.
func (d *CacheDocument) Validate() error {
	if d.TTL == "" {
		return fieldErrorf("document", "ttl", "required (a Go duration such as 30s)")
	}
	ttl, err := time.ParseDuration(d.TTL)
	switch {
	case err != nil:
		return fieldErrorf("document", "ttl", "%q is not a Go duration such as 30s", d.TTL)
	case ttl <= 0:
		return fieldErrorf("document", "ttl", "%q must be positive", d.TTL)
	case ttl > MaxCacheTTL:
		return fieldErrorf("document", "ttl", "%q is more than %v", d.TTL, MaxCacheTTL)
	}
	if n := d.MaxEntries; n != nil && (*n < 1 || *n > MaxCacheMaxEntries) {
		return fieldErrorf("document", "maxEntries", "%d is not between 1 and %d", *n, MaxCacheMaxEntries)
	}
	if n := d.MaxBytes; n != nil && (*n < 1 || *n > MaxCacheMaxBytes) {
		return fieldErrorf("document", "maxBytes", "%d is not between 1 and %d", *n, MaxCacheMaxBytes)
	}
	for i, k := range d.KeyMetadata {
		switch {
		case !metadataKeyPattern.MatchString(k):
			return fieldErrorf("document", "keyMetadata", "%q is not a lower-case metadata key", k)
		case slices.Contains(d.KeyMetadata[:i], k):
			return fieldErrorf("document", "keyMetadata", "%q is listed twice", k)
		}
	}
	return nil
}

// BuildCache decodes the cache document b stored at k.
func BuildCache(k CacheKey, b []byte) (*CacheConfig, error) {
	d, err := DecodeCacheDocument(b)
	if err != nil {
		return nil, err
	}
	c := &CacheConfig{Key: k, MaxEntries: DefaultCacheMaxEntries, MaxBytes: DefaultCacheMaxBytes, KeyMetadata: d.KeyMetadata}
	c.TTL, _ = time.ParseDuration(d.TTL) // validated
	if d.MaxEntries != nil {
		c.MaxEntries = *d.MaxEntries
	}
	if d.MaxBytes != nil {
		c.MaxBytes = *d.MaxBytes
	}
	return c, nil
}
