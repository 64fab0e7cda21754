package tapefs

// NewSTModelDrive exposes the st driver running on its model of the
// kernel's st (st_model_test.go) to the conformance suite, which lives in
// package tapefs_test because tapetest imports tapefs.
func NewSTModelDrive() (Drive, func(capacity, earlyWarning int64), func(on bool)) {
	d, m := newModelDrive()
	return d, m.setCapacity, func(on bool) { m.writeProt = on }
}
