package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Backend says how to reach the backend.
type Backend struct {
	// Target is the backend's address, in gRPC's target syntax
	// ("host:port", "dns:///host:port", "unix:///path").
	Target string
	// TLS selects TLS; CACert (a PEM bundle) verifies the backend's
	// certificate instead of the system's roots, and Cert and Key (PEM
	// files) are a client certificate.
	TLS               bool
	CACert, Cert, Key string
	// Authority, when set, is the :authority of calls to the backend and
	// the name its certificate is checked against.
	Authority string
}

// Dial returns a connection to the backend, made with DialOptions. It does
// no I/O: gRPC connects on the first call, and again whenever the backend
// comes back after going away.
func Dial(b Backend) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if b.TLS {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: b.Authority}
		if b.CACert != "" {
			pem, err := os.ReadFile(b.CACert)
			if err != nil {
				return nil, fmt.Errorf("backend CA: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("backend CA %s: no PEM certificate in it", b.CACert)
			}
		}
		if (b.Cert == "") != (b.Key == "") {
			return nil, errors.New("the backend's client certificate and key go together")
		}
		if b.Cert != "" {
			c, err := tls.LoadX509KeyPair(b.Cert, b.Key)
			if err != nil {
				return nil, fmt.Errorf("backend client certificate: %w", err)
			}
			cfg.Certificates = []tls.Certificate{c}
		}
		creds = credentials.NewTLS(cfg)
	} else if b.CACert != "" || b.Cert != "" || b.Key != "" {
		return nil, errors.New("a backend CA, certificate or key needs TLS")
	}
	opts := append(DialOptions(), grpc.WithTransportCredentials(creds))
	if b.Authority != "" {
		opts = append(opts, grpc.WithAuthority(b.Authority))
	}
	cc, err := grpc.NewClient(b.Target, opts...)
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", b.Target, err)
	}
	return cc, nil
}
