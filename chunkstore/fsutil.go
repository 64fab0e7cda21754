package chunkstore

import (
	"fmt"
	"os"
	"path/filepath"
)

// writeFileAtomic writes name in dir durably: temp file, fsync, rename,
// directory fsync. Readers see either nothing or the whole file.
func writeFileAtomic(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(name)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := fault(StepCreate, tmp, ""); err != nil {
		return err
	}
	if err := fault(StepWrite, tmp, ""); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Join(dir, name), err)
	}
	if err := fault(StepSync, tmp, ""); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", filepath.Join(dir, name), err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := fault(StepRename, tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	ok = true
	return syncDir(filepath.Dir(filepath.Join(dir, name)))
}

func syncDir(dir string) error {
	if err := fault(StepSyncDir, dir, ""); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
