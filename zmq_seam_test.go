package tlszmq

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
)

// The ZeroMQ layer (Client, Server and their workers) drives its engines through the public
// Engine API only, as a user's own transport would: no field and no unexported method of
// Engine is touched outside the engine's files. The test reads the source: it finds the
// engine's unexported members in tlszmq.go, then every selector in the layer's files whose
// operand is an engine (a variable or field named e) and that names one of them.
func TestTransportUsesOnlyThePublicEngine(t *testing.T) {
	fset := token.NewFileSet()
	engine, err := parser.ParseFile(fset, "tlszmq.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	private := map[string]bool{}
	for _, d := range engine.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Recv != nil && receiverIs(d.Recv, "Engine") && !ast.IsExported(d.Name.Name) {
				private[d.Name.Name] = true
			}
		case *ast.GenDecl:
			for _, spec := range d.Specs {
				ts, ok := spec.(*ast.TypeSpec)
				if !ok || ts.Name.Name != "Engine" {
					continue
				}
				for _, f := range ts.Type.(*ast.StructType).Fields.List {
					for _, n := range f.Names {
						private[n.Name] = true
					}
				}
			}
		}
	}
	if len(private) < 10 {
		t.Fatalf("found %d unexported members of Engine in tlszmq.go; the test no longer reads it right", len(private))
	}

	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	engineFiles := map[string]bool{"tlszmq.go": true, "context.go": true, "config.go": true, "errors.go": true}
	checked := 0
	for _, ent := range entries {
		name := ent.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") || engineFiles[name] {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok || !private[sel.Sel.Name] || !isEngineOperand(sel.X) {
				return true
			}
			t.Errorf("%s: the ZeroMQ layer uses Engine.%s, which is not public", fset.Position(sel.Pos()), sel.Sel.Name)
			return true
		})
	}
	if checked < 5 {
		t.Fatalf("checked %d files of the ZeroMQ layer; the test no longer finds them", checked)
	}
}

// receiverIs reports whether a method's receiver is T or *T.
func receiverIs(recv *ast.FieldList, typ string) bool {
	if len(recv.List) != 1 {
		return false
	}
	x := recv.List[0].Type
	if star, ok := x.(*ast.StarExpr); ok {
		x = star.X
	}
	id, ok := x.(*ast.Ident)
	return ok && id.Name == typ
}

// isEngineOperand reports whether x is how the ZeroMQ layer names an engine: e, or a field e.
func isEngineOperand(x ast.Expr) bool {
	switch x := x.(type) {
	case *ast.Ident:
		return x.Name == "e"
	case *ast.SelectorExpr:
		return x.Sel.Name == "e"
	}
	return false
}
