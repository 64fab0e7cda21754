package engine

import (
	"context"
	"reflect"
	"testing"

	"github.com/recall-backup/recall/chunkstore"
)

// openSession takes a write session on an open store; the caller closes it.
func openSession(t testing.TB, st *chunkstore.Store, o SessionOptions) *Session {
	t.Helper()
	s, err := NewStore(st).Session(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Reading is a type: restore, verify and the recovery tree get a Reader,
// so nothing a Reader or its StoreReader offers may write or lead to what
// writes.
func TestReaderCannotWrite(t *testing.T) {
	writers := map[reflect.Type]bool{
		reflect.TypeOf(&chunkstore.Store{}):  true,
		reflect.TypeOf(&chunkstore.Lock{}):   true,
		reflect.TypeOf(&chunkstore.Writer{}): true,
		reflect.TypeOf(&Store{}):             true,
		reflect.TypeOf(&Session{}):           true,
	}
	writes := []string{"LockWriter", "NewWriter", "SaveBlob", "SavePoint", "RemovePoint", "CommitPoint", "Close", "Store", "Session",
		"RebuildIndex", "SalvagePacks", "HealConfig", "ChangePassword"}
	for _, typ := range []reflect.Type{reflect.TypeOf((*StoreReader)(nil)).Elem(), reflect.TypeOf(&Reader{})} {
		for _, name := range writes {
			if _, ok := typ.MethodByName(name); ok {
				t.Errorf("%v has write method %s", typ, name)
			}
		}
		for i := 0; i < typ.NumMethod(); i++ {
			m := typ.Method(i)
			ft := m.Type
			for j := 0; j < ft.NumOut(); j++ {
				if writers[ft.Out(j)] {
					t.Errorf("%v.%s returns %v, which can write", typ, m.Name, ft.Out(j))
				}
			}
		}
	}
}
