package openapi_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/herald-gateway/herald/openapi"
)

// problemSources are the packages that write problem documents.
var problemSources = []string{"../api", "../api/problem", "../gateway", "../gateway/admission"}

// TestEveryProblemTypeIsDocumented: every problem type the code can answer, read from its
// source (the type* and Type* constants, and the literal codes given to badRequest and
// problem.New), has a row in the problem-type table at the top of openapi.yaml, so a new refusal
// cannot ship undocumented.
func TestEveryProblemTypeIsDocumented(t *testing.T) {
	documented := map[string]bool{}
	row := regexp.MustCompile("^\\s*\\| (`[a-z-]+`(?:, `[a-z-]+`)*) \\|")
	for line := range strings.SplitSeq(string(openapi.Spec), "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			for _, code := range strings.Split(m[1], ", ") {
				documented[strings.Trim(code, "`")] = true
			}
		}
	}
	types := map[string]string{} // code -> where
	for _, dir := range problemSources {
		collectProblemTypes(t, dir, types)
	}
	if len(types) < 20 {
		t.Fatalf("found only %d problem types in the sources: %v", len(types), types)
	}
	for code, where := range types {
		if !documented[code] {
			t.Errorf("problem type %q (%s) is not in openapi.yaml's problem-type table", code, where)
		}
	}
}

// collectProblemTypes adds the problem types written in the non-test Go files of dir.
func collectProblemTypes(t *testing.T, dir string, types map[string]string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s: %v", dir, err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		add := func(e ast.Expr) {
			if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if code, err := strconv.Unquote(lit.Value); err == nil {
					types[code] = fset.Position(lit.Pos()).String()
				}
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.ValueSpec:
				for i, id := range n.Names {
					if i < len(n.Values) && regexp.MustCompile(`^(type|Type)[A-Z]`).MatchString(id.Name) {
						add(n.Values[i])
					}
				}
			case *ast.CallExpr:
				switch fn := n.Fun.(type) {
				case *ast.Ident:
					if fn.Name == "badRequest" && len(n.Args) > 0 {
						add(n.Args[0])
					}
				case *ast.SelectorExpr:
					if x, ok := fn.X.(*ast.Ident); ok && x.Name == "problem" && fn.Sel.Name == "New" && len(n.Args) > 1 {
						add(n.Args[1])
					}
				}
			}
			return true
		})
	}
}
