//go:build ignore

// build bundles CodeMirror into ../assets/codemirror.min.js:
//
//	cd server/ops/codemirror && npm ci && go run build.go

package main

import (
	"fmt"
	"os"

	"github.com/evanw/esbuild/pkg/api"
)

func main() {
	r := api.Build(api.BuildOptions{
		EntryPoints: []string{"./entry.js"}, Bundle: true, MinifyWhitespace: true, MinifyIdentifiers: true, MinifySyntax: true,
		Format: api.FormatIIFE, Target: api.ES2020, Outfile: "../assets/codemirror.min.js", Write: true, LegalComments: api.LegalCommentsEndOfFile,
		NodePaths: []string{"./node_modules"},
	})
	for _, e := range r.Errors {
		fmt.Println(e.Text)
	}
	if len(r.Errors) > 0 {
		os.Exit(1)
	}
}
