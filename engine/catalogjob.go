package engine

import "encoding/json"

// decodeJob parses one value of the catalog's jobs bucket (a JSON Job).
// The catalog is history only; a record that does not parse is reported
// by its caller with its key, and nothing else in the catalog depends on it.
func decodeJob(v []byte) (Job, error) {
	var j Job
	if err := json.Unmarshal(v, &j); err != nil {
		return Job{}, err
	}
	return j, nil
}
