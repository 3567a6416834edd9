package schema

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/apihooks/apihooks/internal/reflectclient"
)

// FromServer asks a running server for its services and their descriptors
// through gRPC server reflection (grpc.reflection.v1, or v1alpha), over
// plaintext. The services it lists are the ones it serves; hookctl treats
// those but grpc.* as hookable, as the daemon does by default.
func FromServer(ctx context.Context, addr string) (*Source, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", addr, err)
	}
	defer conn.Close()
	services, fds, err := reflectclient.Read(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", addr, err)
	}
	files, err := buildFiles(fds)
	if err != nil {
		return nil, fmt.Errorf("server %s: reflection: %w", addr, err)
	}
	return newSource("server "+addr, files, services), nil
}
