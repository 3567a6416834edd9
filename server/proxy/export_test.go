package proxy

// GrpcJSFiles are the files @grpc/reflection sends for the demo service
// of repair_test.go, as text protos.
var GrpcJSFiles = []string{grpcJSDemo, grpcJSProtobuf}
